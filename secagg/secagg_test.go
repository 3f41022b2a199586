package secagg

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// group is a set-up secagg group for the tests below.
type group struct {
	tb      testing.TB
	s       *Scheme
	g       protect.Group
	ids     []fl.NodeID
	parties map[fl.NodeID]protect.Party
	helper  protect.Helper
	target  *target
	rng     *rand.ChaCha8
}

func newGroup(tb testing.TB, p *Preset, n, t int) *group { return newGroupRun(tb, p, n, t, "") }

// newGroupRun is newGroup for a setup run named run: the same group, other
// randomness.
func newGroupRun(tb testing.TB, p *Preset, n, t int, run string) *group {
	tb.Helper()
	s, _ := New(p)
	gr := &group{tb: tb, s: s, parties: map[fl.NodeID]protect.Party{}, rng: rand.NewChaCha8([32]byte{byte(n), byte(t)})}
	for i := range n {
		gr.ids = append(gr.ids, fl.NodeID(fmt.Sprintf("n%04d", i)))
	}
	gr.g = protect.Group{ID: []byte("secagg-test"), Members: gr.ids, Threshold: t}
	var err error
	if gr.helper, err = s.NewHelper(gr.g); err != nil {
		tb.Fatal(err)
	}
	tg, err := s.NewTarget(gr.rng)
	if err != nil {
		tb.Fatal(err)
	}
	gr.target = tg.(*target)
	anns := map[fl.NodeID][]byte{}
	for _, id := range gr.ids {
		if gr.parties[id], err = s.NewParty(gr.g, id, rand.NewChaCha8(sha256.Sum256([]byte(run+string(id))))); err != nil {
			tb.Fatal(err)
		}
		if anns[id], err = gr.parties[id].Announce(); err != nil {
			tb.Fatal(err)
		}
	}
	deals := map[fl.NodeID]protect.Dealing{}
	pubs := map[fl.NodeID][]byte{}
	for _, id := range gr.ids {
		if deals[id], err = gr.parties[id].Deal(anns); err != nil {
			tb.Fatal(err)
		}
		pubs[id] = deals[id].Public
	}
	setup, err := gr.helper.Setup(anns, pubs)
	if err != nil {
		tb.Fatal(err)
	}
	for _, id := range gr.ids {
		priv := map[fl.NodeID][]byte{}
		for _, d := range gr.ids {
			priv[d] = deals[d].Private[id]
		}
		if err := gr.parties[id].Accept(setup, priv); err != nil {
			tb.Fatal(err)
		}
	}
	return gr
}

// inputs draws an update for each member, within Protect's bound.
func (gr *group) inputs(ids []fl.NodeID, d int) map[fl.NodeID]fl.Vector {
	lim := gr.s.p.caps.MaxAbs / float64(len(gr.ids))
	r := rand.New(gr.rng)
	in := map[fl.NodeID]fl.Vector{}
	for _, id := range ids {
		v := make(fl.Vector, d)
		for i := range v {
			v[i] = lim * (2*r.Float64() - 1)
		}
		in[id] = v
	}
	return in
}

func (gr *group) protect(r fl.Round, in map[fl.NodeID]fl.Vector) map[fl.NodeID][]byte {
	gr.tb.Helper()
	up := map[fl.NodeID][]byte{}
	for _, id := range slices.Sorted(maps.Keys(in)) {
		b, err := gr.parties[id].Protect(r, in[id], 1)
		if err != nil {
			gr.tb.Fatal(err)
		}
		up[id] = b
	}
	return up
}

func (gr *group) request(r fl.Round, up map[fl.NodeID][]byte, revealers []fl.NodeID) protect.RevealRequest {
	gr.tb.Helper()
	agg, err := gr.helper.Aggregate(r, up)
	if err != nil {
		gr.tb.Fatal(err)
	}
	return protect.RevealRequest{Round: r, Aggregate: agg, Revealers: revealers, Target: gr.target.Public(), Uploads: up}
}

// want is the exact sum modulo 2^Bits of the quantized inputs and weights.
func (gr *group) want(in map[fl.NodeID]fl.Vector, d int) []uint64 {
	scale := math.Ldexp(1, gr.s.p.lit.Frac)
	w := make([]uint64, d+1)
	for _, v := range in {
		for i, x := range v {
			w[i] += quantize(x, scale)
		}
		w[d] += quantize(1, scale)
	}
	return w
}

func lowBits(w []uint64, bits int) []uint64 {
	out := make([]uint64, len(w))
	for i, x := range w {
		if bits < 64 {
			x &= 1<<bits - 1
		}
		out[i] = x
	}
	return out
}

// TestDropoutExact: n members, a fraction dropped before the upload and
// the same fraction after it (included, but gone by the reveal); t of the
// rest reveal. The decrypted words are the exact sum modulo 2^Bits of the
// included members' quantized inputs, bit for bit. With fewer than t
// included members left to reveal, Open has fewer than t shares and
// refuses.
func TestDropoutExact(t *testing.T) {
	n, d := 100, 1000
	if testing.Short() {
		n = 30
	}
	for _, p := range []*Preset{ring(t, "secagg32-k7"), ring(t, "secagg64-k7"), Q32, Default} {
		gr := newGroup(t, p, n, n/3)
		for i, frac := range []float64{0, 0.1, 0.3} {
			r := fl.Round(i + 1)
			k := int(math.Round(frac * float64(n)))
			perm := rand.New(gr.rng).Perm(n)
			var included, afterUpload []fl.NodeID
			for j, x := range perm {
				switch {
				case j < k: // dropped before its upload
				case j < 2*k:
					included = append(included, gr.ids[x])
					afterUpload = append(afterUpload, gr.ids[x])
				default:
					included = append(included, gr.ids[x])
				}
			}
			in := gr.inputs(included, d)
			up := gr.protect(r, in)
			live := slices.DeleteFunc(slices.Clone(included), func(id fl.NodeID) bool { return slices.Contains(afterUpload, id) })
			req := gr.request(r, up, live[:gr.g.Threshold])
			shares := map[fl.NodeID][]byte{}
			for _, id := range req.Revealers {
				s, err := gr.parties[id].Reveal(req, &protect.MemLedger{})
				if err != nil {
					t.Fatalf("%s, %.0f%% dropped: Reveal by %s: %v", p.Name(), 100*frac, id, err)
				}
				shares[id] = s
			}
			res, err := gr.helper.Open(req, shares)
			if err != nil {
				t.Fatal(err)
			}
			got, err := gr.target.words(res)
			if err != nil {
				t.Fatal(err)
			}
			if g, w := lowBits(got, p.lit.Bits), lowBits(gr.want(in, d), p.lit.Bits); !slices.Equal(g, w) {
				t.Fatalf("%s, %d dropped before and %d after the upload: the unmasked sum differs from the quantized inputs' sum", p.Name(), k, k)
			}
			sum, err := gr.target.Decrypt(res)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Weight != float64(len(included)) {
				t.Errorf("summed weight %v, want %d", sum.Weight, len(included))
			}
			t.Logf("%s n=%d t=%d: %d dropped before the upload, %d after: exact sum of %d", p.Name(), n, gr.g.Threshold, k, k, len(included))
		}
	}
}

// TestTooFewSurvivors: when fewer than t included members are left to
// reveal, the round cannot open (the engine aborts it).
func TestTooFewSurvivors(t *testing.T) {
	gr := newGroup(t, ring(t, "secagg32-k5"), 12, 7)
	r := fl.Round(1)
	included := gr.ids[:8]
	up := gr.protect(r, gr.inputs(included, 50))
	live := included[:6] // two of the eight are gone by the reveal
	req := gr.request(r, up, append(slices.Clone(live), gr.ids[11]))
	shares := map[fl.NodeID][]byte{}
	for _, id := range live {
		s, err := gr.parties[id].Reveal(req, &protect.MemLedger{})
		if err != nil {
			t.Fatal(err)
		}
		shares[id] = s
	}
	_, err := gr.helper.Open(req, shares)
	if !errors.Is(err, protect.ErrNotEnoughShares) {
		t.Fatalf("Open with %d of %d shares: %v, want ErrNotEnoughShares", len(shares), gr.g.Threshold, err)
	}
	t.Logf("6 live survivors, t = 7: %v", err)
}

// TestRevealRefusals: the checks a revealer makes before it reveals
// anything, each with its error, and nothing recorded.
func TestRevealRefusals(t *testing.T) {
	gr := newGroup(t, ring(t, "secagg32-k3"), 8, 3)
	r := fl.Round(5)
	all := gr.inputs(gr.ids, 20)
	up := gr.protect(r, all)
	p := gr.ids[0]
	base := gr.request(r, up, gr.ids[:3])

	other := newGroupRun(t, ring(t, "secagg32-k3"), 8, 3, "other") // same members and ID: another setup run
	otherUp := other.protect(r, other.inputs(other.ids, 20))

	// The round's ring: drop every neighbour of p, so that p is isolated.
	g := newGraph(gr.parties[p].(*party).transcript, uint64(r), 8, 2)
	isolatedUp := maps.Clone(up)
	for _, u := range g.adj[0] {
		delete(isolatedUp, gr.ids[u])
	}
	isoRev := slices.DeleteFunc(slices.Clone(gr.ids[1:]), func(id fl.NodeID) bool { _, ok := isolatedUp[id]; return !ok })[:3]

	swapped := maps.Clone(up)
	swapped[gr.ids[1]] = up[gr.ids[2]]
	extra := maps.Clone(up)
	delete(extra, gr.ids[7])
	reqExtra := gr.request(r, extra, gr.ids[:3])
	reqExtra.Uploads = up // one more upload than the aggregate includes
	missing := gr.request(r, up, gr.ids[:3])
	missing.Uploads = maps.Clone(up)
	delete(missing.Uploads, gr.ids[4])
	spoiled := gr.request(r, up, gr.ids[:3])
	spoiled.Uploads = maps.Clone(up)
	spoiled.Uploads[gr.ids[4]] = bytes.Clone(up[gr.ids[4]])
	spoiled.Uploads[gr.ids[4]][200] ^= 1
	mixed := maps.Clone(up)
	mixed[gr.ids[6]] = otherUp[gr.ids[6]]

	cases := []struct {
		name string
		req  func() protect.RevealRequest
		want error
	}{
		{"an upload that is not the one the aggregate sums", func() protect.RevealRequest { return spoiled }, protect.ErrForeign},
		{"no upload of an included member", func() protect.RevealRequest { return missing }, protect.ErrMalformed},
		{"an upload of a member the aggregate does not include", func() protect.RevealRequest { return reqExtra }, protect.ErrMalformed},
		{"an included set whose member has no included neighbour", func() protect.RevealRequest {
			q := gr.request(r, isolatedUp, append([]fl.NodeID{p}, isoRev[:2]...))
			return q
		}, ErrIsolated},
		{"an aggregate of another setup run", func() protect.RevealRequest {
			q := other.request(r, otherUp, gr.ids[:3])
			q.Target = gr.target.Public()
			return q
		}, protect.ErrForeign},
		{"uploads of two setup runs", func() protect.RevealRequest {
			_, err := gr.helper.Aggregate(r, mixed)
			if !errors.Is(err, protect.ErrForeign) {
				t.Errorf("Aggregate of uploads of two setup runs: %v, want ErrForeign", err)
			}
			return protect.RevealRequest{Round: r, Aggregate: base.Aggregate, Revealers: base.Revealers, Target: base.Target, Uploads: mixed}
		}, protect.ErrForeign},
		{"an upload relabelled as another member's", func() protect.RevealRequest {
			q := base
			q.Uploads = swapped
			return q
		}, protect.ErrForeign},
		{"an aggregate listing a member twice", func() protect.RevealRequest {
			q := base
			q.Aggregate = bytes.Clone(base.Aggregate)
			off := headerLen + aggregateFixed
			copy(q.Aggregate[off+4:off+8], q.Aggregate[off:off+4]) // second index := first
			return q
		}, protect.ErrMalformed},
	}
	for _, c := range cases {
		l := &countLedger{}
		_, err := gr.parties[p].Reveal(c.req(), l)
		if !errors.Is(err, c.want) {
			t.Errorf("Reveal of a request with %s: %v, want %v", c.name, err, c.want)
		} else {
			t.Logf("%s: %v", c.name, err)
		}
		if l.n > 0 {
			t.Errorf("Reveal of a request with %s recorded it", c.name)
		}
	}
	// The valid request still reveals.
	if _, err := gr.parties[p].Reveal(base, &countLedger{}); err != nil {
		t.Fatalf("the valid request after the refusals: %v", err)
	}
}

type countLedger struct{ n int }

func (l *countLedger) Record(fl.Round, [32]byte) error { l.n++; return nil }

// TestRoundSeeds: the pair seeds of one round say nothing of another's:
// each round's seed is HKDF-Expand of the pair key with the round, and the
// pair key is never revealed. Revealing round 1 with a member dropped, then
// running round 2 with that member included, the coordinator's view of
// round 2 (after Open) is still masked by the group mask, and the round-1
// seeds do not remove round 2's pair masks.
func TestRoundSeeds(t *testing.T) {
	gr := newGroup(t, Q32, 4, 2)
	a := gr.parties[gr.ids[0]].(*party)
	for r := uint64(1); r < 50; r++ {
		if maskSeed(a.pairs[1], r) == maskSeed(a.pairs[1], r+1) {
			t.Fatalf("rounds %d and %d share a pair seed", r, r+1)
		}
	}
	if maskSeed(a.pairs[1], 7) != maskSeed(gr.parties[gr.ids[1]].(*party).pairs[0], 7) {
		t.Fatalf("members 0 and 1 derive different seeds for their pair")
	}
	// The group mask: Open's output is not the sum.
	in := gr.inputs(gr.ids[:3], 64)
	req := gr.request(3, gr.protect(3, in), gr.ids[:2])
	shares := map[fl.NodeID][]byte{}
	for _, id := range req.Revealers {
		shares[id], _ = gr.parties[id].Reveal(req, &protect.MemLedger{})
	}
	res, err := gr.helper.Open(req, shares)
	if err != nil {
		t.Fatal(err)
	}
	want := lowBits(gr.want(in, 64), 32)
	open := readWords(res[len(res)-65*4:], 4)
	same := 0
	for i := range want {
		if open[i] == want[i] {
			same++
		}
	}
	if same > 2 {
		t.Errorf("%d of 65 words of Open's output are the plain sum: the group mask is missing", same)
	}
}
