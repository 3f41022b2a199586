package plain_test

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/robust"
)

// reveal runs a whole round of g's session with the helper h: every
// member in in protects its (Δ, w), h aggregates, the first t members
// reveal to g's target, which decrypts.
func reveal(t *testing.T, g *group, h protect.Helper, r fl.Round, in map[fl.NodeID]update) protect.Sum {
	t.Helper()
	prot := make(map[fl.NodeID][]byte)
	for id, u := range in {
		v := u.delta.Clone()
		v.Scale(u.weight) // as a node weighs its update before protecting it
		var err error
		if prot[id], err = g.parties[id].Protect(r, v, u.weight); err != nil {
			t.Fatal(err)
		}
	}
	agg, err := h.Aggregate(r, prot)
	if err != nil {
		t.Fatal(err)
	}
	revealers := g.sess.Sorted()[:g.sess.Threshold]
	req := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: revealers, Target: g.target.Public()}
	shares := make(map[fl.NodeID][]byte)
	for _, id := range revealers {
		if shares[id], err = g.parties[id].Reveal(req, &protect.MemLedger{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := h.Open(req, shares)
	if err != nil {
		t.Fatal(err)
	}
	sum, err := g.target.Decrypt(res)
	if err != nil {
		t.Fatal(err)
	}
	return sum
}

type update struct {
	delta  fl.Vector
	weight float64
}

// TestRule checks that a helper with a robust rule reveals W·rule(Δ) with
// weight W, so that the sum divided by its weight is the rule's output,
// which one attacker cannot drag away, while the sum (no rule) is dragged.
func TestRule(t *testing.T) {
	g := newGroup(t, "rule", 3, "a", "b", "c", "d", "e")
	in := map[fl.NodeID]update{
		"a": {fl.Vector{1, 2}, 1},
		"b": {fl.Vector{1.2, 2.1}, 2},
		"c": {fl.Vector{0.9, 1.8}, 3},
		"d": {fl.Vector{1.1, 2.3}, 4},
		"e": {fl.Vector{-100, -100}, 10}, // the attacker, with a large claimed weight
	}
	deltas := []fl.Vector{in["a"].delta, in["b"].delta, in["c"].delta, in["d"].delta, in["e"].delta}
	for _, spec := range []string{"median:f=1", "trimmed:beta=0.2,f=1", "krum:f=1", "multikrum:m=3,f=1", "cclip:tau=1,iters=3,f=2"} {
		t.Run(spec, func(t *testing.T) {
			h, err := plain.Scheme{Rule: spec}.NewHelper(g.sess)
			if err != nil {
				t.Fatal(err)
			}
			sum := reveal(t, g, h, 1, in)
			if sum.Weight != 20 {
				t.Errorf("weight %v, want 20 (Σw)", sum.Weight)
			}
			rule, err := robust.Parse(spec, 5)
			if err != nil {
				t.Fatal(err)
			}
			want, err := rule.Aggregate(deltas)
			if err != nil {
				t.Fatal(err)
			}
			for j, x := range sum.Vector {
				if got := x / sum.Weight; math.Abs(got-want[j]) > 1e-12 {
					t.Errorf("value %d: sum/weight %v, %s gives %v", j, got, spec, want[j])
				}
				if got := x / sum.Weight; got < 0.5 {
					t.Errorf("value %d: %v: the attacker moved the aggregate", j, got)
				}
			}
		})
	}
	// The positive control: without a rule, the weighted mean is dragged
	// below zero by the one attacker.
	sum := reveal(t, g, g.helper, 2, in)
	if got := sum.Vector[0] / sum.Weight; got > -40 {
		t.Errorf("mean of the updates %v: the attacker should dominate it", got)
	}
}

// TestRuleRefusals checks the rule's errors: an infeasible cohort, too
// many updates without a Δ (weight 0), a rule that no cohort of the
// session can satisfy, and that Check still checks one upload alone.
func TestRuleRefusals(t *testing.T) {
	g := newGroup(t, "refusals", 2, "a", "b", "c", "d", "e")
	h, err := plain.Scheme{Rule: "krum:f=1"}.NewHelper(g.sess)
	if err != nil {
		t.Fatal(err)
	}
	protectAll := func(r fl.Round, w map[fl.NodeID]float64) map[fl.NodeID][]byte {
		out := make(map[fl.NodeID][]byte)
		for id, weight := range w {
			b, err := g.parties[id].Protect(r, fl.Vector{weight, 1}, weight)
			if err != nil {
				t.Fatal(err)
			}
			out[id] = b
		}
		return out
	}
	// Krum with f=1 needs 2f+3 = 5 updates; 4 is refused, never averaged.
	four := protectAll(1, map[fl.NodeID]float64{"a": 1, "b": 1, "c": 1, "d": 1})
	if _, err := h.Aggregate(1, four); !errors.Is(err, robust.ErrInfeasible) {
		t.Errorf("krum:f=1 on 4 updates: got %v, want ErrInfeasible", err)
	}
	// One upload alone is checked, not aggregated.
	checker, ok := h.(protect.Checker)
	if !ok {
		t.Fatal("a helper with a rule is not a protect.Checker")
	}
	if err := protect.Check(h, 1, "a", four["a"]); err != nil {
		t.Errorf("Check of a good upload: %v", err)
	}
	if err := checker.Check(2, "a", four["a"]); !errors.Is(err, protect.ErrForeign) {
		t.Errorf("Check of an upload for round 1 in round 2: got %v, want ErrForeign", err)
	}
	if err := checker.Check(1, "b", four["a"]); !errors.Is(err, protect.ErrForeign) {
		t.Errorf("Check of a's upload as b's: got %v, want ErrForeign", err)
	}
	if err := checker.Check(1, "z", four["a"]); !errors.Is(err, protect.ErrNotMember) {
		t.Errorf("Check of an upload from a non-member: got %v, want ErrNotMember", err)
	}
	// Weight 0 gives no Δ: one such update is dropped as Byzantine (f=1),
	// two are refused.
	med, err := plain.Scheme{Rule: "median:f=1"}.NewHelper(g.sess)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := med.Aggregate(3, protectAll(3, map[fl.NodeID]float64{"a": 0, "b": 1, "c": 2, "d": 3, "e": 4})); err != nil {
		t.Errorf("median:f=1 with one update of weight 0: %v", err)
	}
	if _, err := med.Aggregate(4, protectAll(4, map[fl.NodeID]float64{"a": 0, "b": 0, "c": 2, "d": 3, "e": 4})); !errors.Is(err, robust.ErrNonFinite) {
		t.Errorf("median:f=1 with two updates of weight 0: got %v, want ErrNonFinite", err)
	}
	// A rule no cohort of 5 members satisfies, and one that is not a rule.
	for spec, want := range map[string]error{"bulyan:f=1": robust.ErrInfeasible, "average": robust.ErrSpec} {
		_, err := plain.Scheme{Rule: spec}.NewHelper(g.sess)
		if !errors.Is(err, want) || !strings.Contains(err.Error(), spec) {
			t.Errorf("NewHelper with rule %q: got %v, want an error naming it and wrapping %v", spec, err, want)
		}
	}
}

// BenchmarkAggregateRule measures the helper's Aggregate of 10 updates of
// 7,850 values (the demo's softmax on Fashion-MNIST), summed and under
// each rule: the rule's cost on the coordinator, against the sum in the
// same run.
func BenchmarkAggregateRule(b *testing.B) {
	members := []fl.NodeID{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"}
	g := newGroup(b, "bench", 5, members...)
	rng := rand.New(rand.NewPCG(1, 2))
	prot := make(map[fl.NodeID][]byte)
	for _, id := range members {
		v := make(fl.Vector, 7850)
		for j := range v {
			v[j] = rng.NormFloat64()
		}
		var err error
		if prot[id], err = g.parties[id].Protect(1, v, 1); err != nil {
			b.Fatal(err)
		}
	}
	for _, spec := range []string{"mean", "median:f=4", "trimmed:beta=0.2,f=2", "krum:f=3", "multikrum:m=7,f=3", "bulyan:f=1", "cclip:tau=0,iters=3,f=4"} {
		b.Run(spec, func(b *testing.B) {
			h, err := plain.Scheme{Rule: spec}.NewHelper(g.sess)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				if _, err := h.Aggregate(1, prot); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
