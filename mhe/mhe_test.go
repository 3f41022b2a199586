package mhe

import (
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// testPreset is InsecureTest under -short and Agg128 otherwise.
func testPreset() *Preset {
	if testing.Short() {
		return InsecureTest
	}
	return Agg128
}

// seeded returns a deterministic randomness source for tests.
func seeded(seed uint64) io.Reader {
	var s [32]byte
	for i := range 8 {
		s[i] = byte(seed >> (8 * i))
	}
	return rand.NewChaCha8(s)
}

func members(n int) []fl.NodeID {
	m := make([]fl.NodeID, n)
	for i := range m {
		m[i] = fl.NodeID(fmt.Sprintf("node-%02d", i))
	}
	return m
}

// fixture is a session whose setup has run in one process.
type fixture struct {
	sch     *Scheme
	sess    protect.Group
	parties map[fl.NodeID]protect.Party
	helper  protect.Helper
	target  protect.Target
	anns    map[fl.NodeID][]byte
	publics map[fl.NodeID][]byte
	private map[fl.NodeID]map[fl.NodeID][]byte // recipient → dealer → payload
	setup   []byte
	dealt   map[fl.NodeID][]byte // party states after Deal, before Accept
}

func newFixture(tb testing.TB, p *Preset, n, t int) *fixture {
	tb.Helper()
	return newSessionFixture(tb, p, protect.Group{ID: []byte("test session"), Members: members(n), Threshold: t}, 1000, 7)
}

// newSessionFixture runs the setup of session s. Party i's randomness is
// seeded with seed+i, the target's with targetSeed.
func newSessionFixture(tb testing.TB, p *Preset, s protect.Group, seed, targetSeed uint64) *fixture {
	tb.Helper()
	sch, err := New(p)
	if err != nil {
		tb.Fatal(err)
	}
	f := &fixture{sch: sch, sess: s,
		parties: map[fl.NodeID]protect.Party{}, anns: map[fl.NodeID][]byte{}, publics: map[fl.NodeID][]byte{},
		private: map[fl.NodeID]map[fl.NodeID][]byte{}, dealt: map[fl.NodeID][]byte{}}
	for i, m := range f.sess.Members {
		pa, err := sch.NewParty(f.sess, m, seeded(seed+uint64(i)))
		if err != nil {
			tb.Fatal(err)
		}
		f.parties[m] = pa
		if f.anns[m], err = pa.Announce(); err != nil {
			tb.Fatal(err)
		}
		f.private[m] = map[fl.NodeID][]byte{}
	}
	for _, m := range f.sess.Members {
		d, err := f.parties[m].Deal(f.anns)
		if err != nil {
			tb.Fatalf("%s: Deal: %v", m, err)
		}
		f.publics[m] = d.Public
		if f.dealt[m], err = f.parties[m].MarshalBinary(); err != nil {
			tb.Fatal(err)
		}
		for r, b := range d.Private {
			f.private[r][m] = b
		}
	}
	if f.helper, err = sch.NewHelper(f.sess); err != nil {
		tb.Fatal(err)
	}
	if f.setup, err = f.helper.Setup(f.anns, f.publics); err != nil {
		tb.Fatal(err)
	}
	for _, m := range f.sess.Members {
		if err := f.parties[m].Accept(f.setup, f.private[m]); err != nil {
			tb.Fatalf("%s: Accept: %v", m, err)
		}
	}
	if f.target, err = sch.NewTarget(seeded(targetSeed)); err != nil {
		tb.Fatal(err)
	}
	return f
}

// round protects one vector per member of in, aggregates, reveals with the
// first t members of revealers and opens.
func (f *fixture) round(tb testing.TB, r fl.Round, in map[fl.NodeID]fl.Vector, w map[fl.NodeID]float64, revealers []fl.NodeID) (protect.Sum, protect.RevealRequest) {
	tb.Helper()
	up := map[fl.NodeID][]byte{}
	for m, v := range in {
		b, err := f.parties[m].Protect(r, v, w[m])
		if err != nil {
			tb.Fatalf("%s: Protect: %v", m, err)
		}
		up[m] = b
	}
	agg, err := f.helper.Aggregate(r, up)
	if err != nil {
		tb.Fatalf("Aggregate: %v", err)
	}
	req := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: revealers, Target: f.target.Public(), Included: keysOf(up)}
	shares := map[fl.NodeID][]byte{}
	for _, m := range revealers {
		s, err := f.parties[m].Reveal(req, &protect.MemLedger{})
		if err != nil {
			tb.Fatalf("%s: Reveal: %v", m, err)
		}
		shares[m] = s
	}
	res, err := f.helper.Open(req, shares)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	sum, err := f.target.Decrypt(res)
	if err != nil {
		tb.Fatalf("Decrypt: %v", err)
	}
	return sum, req
}

func randomVector(r *rand.Rand, d int, norm float64) fl.Vector {
	v := make(fl.Vector, d)
	for i := range v {
		v[i] = r.NormFloat64()
	}
	if n := v.Norm(); n > 0 {
		v.Scale(norm / n)
	}
	return v
}

// maxErr returns the largest absolute error of got against want, and of
// the weights.
func maxErr(tb testing.TB, got protect.Sum, want fl.Vector, wantW float64) float64 {
	tb.Helper()
	if len(got.Vector) != len(want) {
		tb.Fatalf("got %d values, want %d", len(got.Vector), len(want))
	}
	m := math.Abs(got.Weight - wantW)
	for i := range want {
		m = max(m, math.Abs(got.Vector[i]-want[i]))
	}
	return m
}

func TestEndToEnd(t *testing.T) {
	p := testPreset()
	S := p.Slots()
	for _, tc := range []struct {
		n, t int
		dims []int
	}{
		{3, 2, []int{0, 1, 100, S - 1, S, S + 1}},
		{4, 4, []int{2*S + 5}},
		{1, 1, []int{10}},
		{5, 1, []int{10}},
	} {
		t.Run(fmt.Sprintf("n=%d,t=%d", tc.n, tc.t), func(t *testing.T) {
			f := newFixture(t, p, tc.n, tc.t)
			rng := rand.New(rand.NewPCG(1, 2))
			for ri, d := range tc.dims {
				in := map[fl.NodeID]fl.Vector{}
				w := map[fl.NodeID]float64{}
				want := make(fl.Vector, d)
				var wantW float64
				for _, m := range f.sess.Members {
					in[m] = randomVector(rng, d, 1)
					w[m] = rng.Float64()
					want.Add(1, in[m])
					wantW += w[m]
				}
				// revealers: the last t members, in reverse order
				var rev []fl.NodeID
				for i := tc.n - 1; len(rev) < tc.t; i-- {
					rev = append(rev, f.sess.Members[i])
				}
				sum, _ := f.round(t, fl.Round(ri+1), in, w, rev)
				e := maxErr(t, sum, want, wantW)
				if e > p.Capacity().MaxError {
					t.Errorf("d=%d: max error %g > MaxError %g", d, e, p.Capacity().MaxError)
				}
				t.Logf("d=%d: max error 2^%.1f (MaxError 2^%.1f)", d, math.Log2(e), math.Log2(p.Capacity().MaxError))
			}
		})
	}
}

func TestRevealOnce(t *testing.T) {
	p := InsecureTest
	f := newFixture(t, p, 3, 2)
	in := map[fl.NodeID]fl.Vector{}
	w := map[fl.NodeID]float64{}
	for _, m := range f.sess.Members {
		in[m], w[m] = fl.Vector{1, 2, 3}, 1
	}
	_, req := f.round(t, 1, in, w, f.sess.Members[:2])
	l := &protect.MemLedger{}
	pa := f.parties[f.sess.Members[0]]
	if _, err := pa.Reveal(req, l); err != nil {
		t.Fatal(err)
	}
	s, err := pa.Reveal(req, l)
	if !errors.Is(err, protect.ErrRevealed) || s != nil {
		t.Fatalf("second reveal: %v, %d bytes; want ErrRevealed and no share", err, len(s))
	}
	// Open with t−1 shares.
	s0, err := pa.Reveal(req, &protect.MemLedger{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = f.helper.Open(req, map[fl.NodeID][]byte{f.sess.Members[0]: s0})
	if !errors.Is(err, protect.ErrNotEnoughShares) {
		t.Fatalf("Open with t−1 shares: %v, want ErrNotEnoughShares", err)
	}
}

// A party restored at any stage of the setup carries on from there.
func TestPersistStages(t *testing.T) {
	p := InsecureTest
	sch, _ := New(p)
	sess := protect.Group{ID: []byte("stages"), Members: members(3), Threshold: 2}
	parties := map[fl.NodeID]protect.Party{}
	anns := map[fl.NodeID][]byte{}
	reload := func(m fl.NodeID) {
		t.Helper()
		st, err := parties[m].MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		if parties[m], err = sch.LoadParty(sess, m, st, seeded(99)); err != nil {
			t.Fatalf("LoadParty(%s): %v", m, err)
		}
	}
	for i, m := range sess.Members {
		var err error
		if parties[m], err = sch.NewParty(sess, m, seeded(uint64(i))); err != nil {
			t.Fatal(err)
		}
		a, _ := parties[m].Announce()
		reload(m) // fresh
		if anns[m], _ = parties[m].Announce(); string(anns[m]) != string(a) {
			t.Fatal("a restored fresh party announces another nonce")
		}
	}
	publics := map[fl.NodeID][]byte{}
	private := map[fl.NodeID]map[fl.NodeID][]byte{}
	for _, m := range sess.Members {
		d, err := parties[m].Deal(anns)
		if err != nil {
			t.Fatal(err)
		}
		reload(m) // dealt
		if _, err := parties[m].Deal(anns); err == nil {
			t.Fatal("a restored dealt party deals again")
		}
		publics[m] = d.Public
		for r, b := range d.Private {
			if private[r] == nil {
				private[r] = map[fl.NodeID][]byte{}
			}
			private[r][m] = b
		}
	}
	h, _ := sch.NewHelper(sess)
	setup, err := h.Setup(anns, publics)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range sess.Members {
		if err := parties[m].Accept(setup, private[m]); err != nil {
			t.Fatal(err)
		}
		reload(m) // ready
	}
	f := &fixture{sch: sch, sess: sess, parties: parties, helper: h}
	if f.target, err = sch.NewTarget(seeded(5)); err != nil {
		t.Fatal(err)
	}
	in := map[fl.NodeID]fl.Vector{}
	w := map[fl.NodeID]float64{}
	for _, m := range sess.Members {
		in[m], w[m] = fl.Vector{1, -1}, 2
	}
	sum, _ := f.round(t, 1, in, w, sess.Members[1:])
	if e := maxErr(t, sum, fl.Vector{3, -3}, 6); e > p.Capacity().MaxError {
		t.Fatalf("error %g after restoring at every stage", e)
	}
}

// keysOf is the included set of an aggregate of up (RevealRequest.Included).
func keysOf(up map[fl.NodeID][]byte) []fl.NodeID {
	return slices.Sorted(maps.Keys(up))
}
