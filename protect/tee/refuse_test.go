package tee_test

import (
	"bytes"
	"crypto/hpke"
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/blindscan"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/tee"
	"github.com/cloisterfl/cloister/robust"
)

// group is a set-up tee session: parties sealing to the aggregator whose
// identity is id, the coordinator's blind helper, the aggregator's helper
// (made from the setup the coordinator broadcast) and the group target.
type group struct {
	sess       protect.Group
	id         hpke.PrivateKey
	parties    map[fl.NodeID]protect.Party
	setup      []byte
	coord, agg protect.Helper
	target     protect.Target
	cmp        compress.Scheme // the updates' compression on every side
}

func identity(t testing.TB, seed byte) hpke.PrivateKey {
	t.Helper()
	id, err := tee.NewIdentity(rand.NewChaCha8([32]byte{seed}))
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func newGroup(t testing.TB, name string, th int, id hpke.PrivateKey, rule string, members ...fl.NodeID) *group {
	t.Helper()
	return newGroupOf(t, compress.Scheme{}, name, th, id, rule, members...)
}

// newGroupOf is newGroup with updates compressed by cmp.
func newGroupOf(t testing.TB, cmp compress.Scheme, name string, th int, id hpke.PrivateKey, rule string, members ...fl.NodeID) *group {
	t.Helper()
	key := id.PublicKey().Bytes()
	g := &group{sess: protect.Group{ID: []byte(name), Members: members, Threshold: th}, id: id,
		parties: make(map[fl.NodeID]protect.Party), cmp: cmp}
	rng := rand.NewChaCha8([32]byte{1})
	node := tee.Scheme{Key: key, Compress: cmp}
	var err error
	if g.coord, err = (tee.Scheme{Rule: rule, Compress: cmp}).NewHelper(g.sess); err != nil {
		t.Fatal(err)
	}
	if g.target, err = node.NewTarget(rng); err != nil {
		t.Fatal(err)
	}
	anns := make(map[fl.NodeID][]byte)
	for _, m := range members {
		if g.parties[m], err = node.NewParty(g.sess, m, rng); err != nil {
			t.Fatal(err)
		}
		if anns[m], err = g.parties[m].Announce(); err != nil {
			t.Fatal(err)
		}
	}
	publics := make(map[fl.NodeID][]byte)
	private := make(map[fl.NodeID]map[fl.NodeID][]byte)
	for _, m := range members {
		d, err := g.parties[m].Deal(anns)
		if err != nil {
			t.Fatal(err)
		}
		publics[m] = d.Public
		for to, b := range d.Private {
			if private[to] == nil {
				private[to] = make(map[fl.NodeID][]byte)
			}
			private[to][m] = b
		}
	}
	if g.setup, err = g.coord.Setup(anns, publics); err != nil {
		t.Fatal(err)
	}
	for _, m := range members {
		if err := g.parties[m].Accept(g.setup, private[m]); err != nil {
			t.Fatal(err)
		}
	}
	if g.agg, err = teeScheme(g, rule).NewAggregator(g.sess, g.setup); err != nil {
		t.Fatal(err)
	}
	return g
}

// teeScheme is the aggregator's scheme of g, with rule.
func teeScheme(g *group, rule string) tee.Scheme {
	return tee.Scheme{Identity: g.id, Rule: rule, Compress: g.cmp}
}

// seal has every member of in seal its weighted update for round r.
func (g *group) seal(t *testing.T, r fl.Round, in map[fl.NodeID]update) map[fl.NodeID][]byte {
	t.Helper()
	prot := make(map[fl.NodeID][]byte)
	for id, u := range in {
		v := u.delta.Clone()
		v.Scale(u.weight)
		var err error
		if prot[id], err = g.parties[id].Protect(r, v, u.weight); err != nil {
			t.Fatal(err)
		}
	}
	return prot
}

// request aggregates prot on the coordinator and has the first t members
// reveal (sign) the request to target.
func (g *group) request(t *testing.T, r fl.Round, prot map[fl.NodeID][]byte, target []byte) (protect.RevealRequest, map[fl.NodeID][]byte) {
	t.Helper()
	agg, err := g.coord.Aggregate(r, prot)
	if err != nil {
		t.Fatal(err)
	}
	revealers := g.sess.Sorted()[:g.sess.Threshold]
	req := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: revealers, Target: target}
	shares := make(map[fl.NodeID][]byte)
	for _, id := range revealers {
		if shares[id], err = g.parties[id].Reveal(req, &protect.MemLedger{}); err != nil {
			t.Fatal(err)
		}
	}
	return req, shares
}

type update struct {
	delta  fl.Vector
	weight float64
}

var honest = map[fl.NodeID]update{
	"a": {fl.Vector{1, 2, 3, 4}, 1},
	"b": {fl.Vector{1.2, 2.1, 2.9, 4.2}, 2},
	"c": {fl.Vector{0.9, 1.8, 3.1, 3.9}, 3},
	"d": {fl.Vector{1.1, 2.3, 3.2, 4.1}, 4},
}

func withAttacker() map[fl.NodeID]update {
	in := make(map[fl.NodeID]update)
	for k, v := range honest {
		in[k] = v
	}
	in["e"] = update{fl.Vector{-100, -100, -100, -100}, 10}
	return in
}

// TestRule: the aggregator applies the rule inside, and the result, divided
// by its weight, is the rule's output, which one attacker cannot drag,
// while the sum is dragged.
func TestRule(t *testing.T) {
	in := withAttacker()
	var deltas []fl.Vector
	for _, id := range slices.Sorted(mapsKeys(in)) {
		deltas = append(deltas, in[id].delta)
	}
	for _, spec := range []string{"", "median:f=1", "trimmed:beta=0.2,f=1", "krum:f=1", "multikrum:m=3,f=1", "cclip:tau=1,iters=3,f=2"} {
		t.Run("rule="+spec, func(t *testing.T) {
			g := newGroup(t, "rule", 3, identity(t, 9), spec, "a", "b", "c", "d", "e")
			req, shares := g.request(t, 1, g.seal(t, 1, in), g.target.Public())
			res, err := g.agg.Open(req, shares)
			if err != nil {
				t.Fatal(err)
			}
			sum, err := g.target.Decrypt(res)
			if err != nil {
				t.Fatal(err)
			}
			if sum.Weight != 20 {
				t.Errorf("weight %v, want 20", sum.Weight)
			}
			got := sum.Vector.Clone()
			got.Scale(1 / sum.Weight)
			if spec == "" {
				if got[0] > -40 {
					t.Errorf("mean %v: the attacker should drag it below −40 (positive control)", got)
				}
				return
			}
			rule, err := robust.Parse(spec, 5)
			if err != nil {
				t.Fatal(err)
			}
			want, err := rule.Aggregate(deltas)
			if err != nil {
				t.Fatal(err)
			}
			for j := range want {
				if math.Abs(got[j]-want[j]) > 1e-12*math.Max(1, math.Abs(want[j])) {
					t.Errorf("value %d: %v, the rule gives %v", j, got[j], want[j])
				}
				if got[j] < 0.5 || got[j] > 5 {
					t.Errorf("value %d: %v, dragged by the attacker", j, got[j])
				}
			}
		})
	}
}

func mapsKeys(m map[fl.NodeID]update) func(func(fl.NodeID) bool) {
	return func(yield func(fl.NodeID) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// TestRuleInfeasible: a rule whose precondition fails for the cohort that
// showed up aborts the round; it is never averaged. One that no cohort of
// the session can meet is refused at NewHelper.
func TestRuleInfeasible(t *testing.T) {
	g := newGroup(t, "infeasible", 2, identity(t, 9), "krum:f=1", "a", "b", "c", "d", "e")
	part := map[fl.NodeID]update{"a": honest["a"], "b": honest["b"], "c": honest["c"], "d": honest["d"]}
	req, shares := g.request(t, 1, g.seal(t, 1, part), g.target.Public())
	if _, err := g.agg.Open(req, shares); !errors.Is(err, robust.ErrInfeasible) {
		t.Errorf("krum:f=1 on 4 updates: got %v, want robust.ErrInfeasible", err)
	}
	_, err := tee.Scheme{Rule: "bulyan:f=2"}.NewHelper(g.sess)
	if !errors.Is(err, robust.ErrInfeasible) {
		t.Errorf("bulyan:f=2 with 5 members: got %v, want robust.ErrInfeasible", err)
	}
}

// TestForeignKey: an update sealed to another aggregator's key is refused,
// by name, at the coordinator that knows the attested key, and at the
// other aggregator; members told of two keys cannot complete a setup.
func TestForeignKey(t *testing.T) {
	g := newGroup(t, "key", 2, identity(t, 9), "", "a", "b", "c")
	other := identity(t, 10)
	prot := g.seal(t, 1, map[fl.NodeID]update{"a": honest["a"], "b": honest["b"], "c": honest["c"]})

	coord, err := tee.Scheme{Key: other.PublicKey().Bytes()}.NewHelper(g.sess)
	if err != nil {
		t.Fatal(err)
	}
	err = protect.Check(coord, 1, "a", prot["a"])
	if !errors.Is(err, protect.ErrForeign) || !strings.Contains(err.Error(), "aggregator key") {
		t.Errorf("coordinator expecting another aggregator key: got %v, want ErrForeign naming the aggregator key", err)
	}
	if _, err := (tee.Scheme{Identity: other}).NewAggregator(g.sess, g.setup); !errors.Is(err, protect.ErrForeign) {
		t.Errorf("another aggregator loading the setup: got %v, want ErrForeign", err)
	}
	// The other aggregator cannot load the members' setup (above), so it
	// opens nothing of theirs.
	h, err := tee.Scheme{Identity: other}.NewHelper(g.sess)
	if err != nil {
		t.Fatal(err)
	}
	req, shares := g.request(t, 1, prot, g.target.Public())
	if _, err := h.Open(req, shares); !errors.Is(err, protect.ErrForeign) || !strings.Contains(err.Error(), "setup") {
		t.Errorf("another aggregator, without the members' setup, opening: got %v, want ErrForeign naming the setup", err)
	}

	// Two parties told of different aggregator keys.
	s := protect.Group{ID: []byte("two keys"), Members: []fl.NodeID{"a", "b"}, Threshold: 1}
	rng := rand.NewChaCha8([32]byte{3})
	pa, _ := tee.Scheme{Key: g.id.PublicKey().Bytes()}.NewParty(s, "a", rng)
	pb, _ := tee.Scheme{Key: other.PublicKey().Bytes()}.NewParty(s, "b", rng)
	aa, _ := pa.Announce()
	ab, _ := pb.Announce()
	_, err = pa.Deal(map[fl.NodeID][]byte{"a": aa, "b": ab})
	if !errors.Is(err, protect.ErrForeign) || !strings.Contains(err.Error(), "same attested aggregator") {
		t.Errorf("Deal with announcements naming two aggregator keys: got %v", err)
	}
}

// TestReplay: a sealed update replayed in another round or under another
// member is refused by its envelope; one whose envelope was rewritten to
// pass does not open inside the aggregator.
func TestReplay(t *testing.T) {
	g := newGroup(t, "replay", 2, identity(t, 9), "", "a", "b", "c")
	in := map[fl.NodeID]update{"a": honest["a"], "b": honest["b"], "c": honest["c"]}
	r1 := g.seal(t, 1, in)

	if err := protect.Check(g.coord, 2, "a", r1["a"]); !errors.Is(err, protect.ErrForeign) || !strings.Contains(err.Error(), "replay") {
		t.Errorf("round 1's update in round 2: got %v, want ErrForeign (a replay)", err)
	}
	if err := protect.Check(g.coord, 1, "b", r1["a"]); !errors.Is(err, protect.ErrForeign) || !strings.Contains(err.Error(), "replay") {
		t.Errorf("a's update as b's: got %v, want ErrForeign (a replay)", err)
	}

	// Rewrite the envelope's round (offset: header 6, session 32,
	// transcript 32) so that the coordinator's checks pass.
	r2 := g.seal(t, 2, in)
	forged := bytes.Clone(r1["a"])
	binary.BigEndian.PutUint64(forged[6+32+32:], 2)
	r2["a"] = forged
	req, shares := g.request(t, 2, r2, g.target.Public())
	_, err := g.agg.Open(req, shares)
	if !errors.Is(err, protect.ErrForeign) || !strings.Contains(err.Error(), "does not open") {
		t.Errorf("round 1's update with its round rewritten: got %v, want ErrForeign (does not open)", err)
	}
}

// TestForgedTarget: the coordinator cannot have the aggregate sealed to a
// key of its own: the revealers' signed shares name the target, and a
// share it makes up is not signed by the member.
func TestForgedTarget(t *testing.T) {
	g := newGroup(t, "target", 2, identity(t, 9), "", "a", "b", "c")
	prot := g.seal(t, 1, map[fl.NodeID]update{"a": honest["a"], "b": honest["b"], "c": honest["c"]})
	req, shares := g.request(t, 1, prot, g.target.Public())
	mine, err := tee.Scheme{}.NewTarget(rand.NewChaCha8([32]byte{66}))
	if err != nil {
		t.Fatal(err)
	}
	req.Target = mine.Public()
	if _, err := g.agg.Open(req, shares); !errors.Is(err, protect.ErrForeign) || !strings.Contains(err.Error(), "target") {
		t.Errorf("shares for the group target, request for another: got %v", err)
	}
	// Re-sign nothing: flip the signature's last byte of a share that
	// names the coordinator's target.
	for id, s := range shares {
		s[len(s)-1] ^= 1
		shares[id] = s
	}
	req.Target = g.target.Public()
	if _, err := g.agg.Open(req, shares); !errors.Is(err, protect.ErrForeign) || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("shares with bad signatures: got %v, want ErrForeign (not signed)", err)
	}
}

// TestBlind: the coordinator's helper cannot open, and nothing it holds or
// relays (sealed updates, the aggregate, shares, the result) contains an
// update or the sum in the clear.
func TestBlind(t *testing.T) {
	g := newGroup(t, "blind", 2, identity(t, 9), "", "a", "b", "c")
	rng := rand.New(rand.NewPCG(1, 2))
	in := make(map[fl.NodeID]update)
	wins := make(map[[32]byte]string)
	sum := make(fl.Vector, 64)
	for _, id := range []fl.NodeID{"a", "b", "c"} {
		v := make(fl.Vector, 64)
		for i := range v {
			v[i] = rng.NormFloat64()
		}
		in[id] = update{v, 1}
		blindscan.Windows(v, "update of "+string(id), wins)
		for i := range v {
			sum[i] += v[i]
		}
	}
	blindscan.Windows(sum, "sum", wins)
	prot := g.seal(t, 1, in)
	req, shares := g.request(t, 1, prot, g.target.Public())
	if _, err := g.coord.Open(req, shares); !errors.Is(err, protect.ErrNotReady) {
		t.Errorf("the coordinator's Open: got %v, want ErrNotReady", err)
	}
	res, err := g.agg.Open(req, shares)
	if err != nil {
		t.Fatal(err)
	}
	seen := [][]byte{req.Aggregate, res, g.setup}
	for _, b := range prot {
		seen = append(seen, b)
	}
	for _, b := range shares {
		seen = append(seen, b)
	}
	for _, b := range seen {
		if hits := blindscan.Scan(b, wins); len(hits) > 0 {
			t.Errorf("the coordinator sees %v", hits)
		}
	}
	got, err := g.target.Decrypt(res)
	if err != nil {
		t.Fatal(err)
	}
	for i := range sum {
		if math.Abs(got.Vector[i]-sum[i]) > 1e-12 {
			t.Fatalf("value %d: %v, want %v", i, got.Vector[i], sum[i])
		}
	}
}
