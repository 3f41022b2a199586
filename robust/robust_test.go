package robust

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

func vecs(xs ...[]float64) []fl.Vector {
	out := make([]fl.Vector, len(xs))
	for i, x := range xs {
		out[i] = fl.Vector(x)
	}
	return out
}

func scalars(xs ...float64) []fl.Vector {
	out := make([]fl.Vector, len(xs))
	for i, x := range xs {
		out[i] = fl.Vector{x}
	}
	return out
}

func must[T any](t *testing.T) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
}

func near(a, b fl.Vector) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-12*math.Max(1, math.Abs(b[i])) {
			return false
		}
	}
	return true
}

func TestKnownAnswers(t *testing.T) {
	cclip := must[*CenteredClip](t)(NewCenteredClip(3, 1, 1, 1))
	cclip.SetReference(fl.Vector{0})
	for _, tc := range []struct {
		name    string
		rule    Rule
		updates []fl.Vector
		want    fl.Vector
	}{
		{"mean", NewMean(), vecs([]float64{1, 2}, []float64{3, 4}, []float64{5, 9}), fl.Vector{3, 5}},
		{"median odd", must[*Median](t)(NewMedian(3, 1)), vecs([]float64{1, 10}, []float64{2, 20}, []float64{100, -5}), fl.Vector{2, 10}},
		{"median even", must[*Median](t)(NewMedian(4, 1)), scalars(3, 1, 100, 2), fl.Vector{2.5}},
		{"trimmed", must[*TrimmedMean](t)(NewTrimmedMean(5, 1, 0.2)), scalars(4, 100, 2, -50, 3), fl.Vector{3}},
		{"trimmed β=0 is the mean", must[*TrimmedMean](t)(NewTrimmedMean(4, 0, 0)), scalars(1, 2, 3, 10), fl.Vector{4}},
		// Scores with q = 2: 0→5, 1→2, 2→2, 3→5, 100→huge; the tie goes to
		// the lower index.
		{"krum", must[*Krum](t)(NewKrum(5, 1)), scalars(0, 1, 2, 3, 100), fl.Vector{1}},
		{"multikrum", must[*MultiKrum](t)(NewMultiKrum(5, 1, 3)), scalars(0, 1, 2, 3, 100), fl.Vector{1}},
		// Repeated Krum picks 2, 1, 3, 0, 4; the β = 3 closest to the median
		// 2 are 1, 2, 3.
		{"bulyan", must[*Bulyan](t)(NewBulyan(7, 1)), scalars(0, 1, 2, 3, 4, 50, -50), fl.Vector{2}},
		// λ = 1, 1/3, 1/10: v = (0.5 + 1 − 1)/3.
		{"cclip", cclip, scalars(0.5, 3, -10), fl.Vector{0.5 / 3}},
	} {
		got, err := tc.rule.Aggregate(tc.updates)
		if err != nil || !near(got, tc.want) {
			t.Errorf("%s: Aggregate = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}

func TestSelections(t *testing.T) {
	u := scalars(0, 1, 2, 3, 4, 50, -50)
	b := must[*Bulyan](t)(NewBulyan(7, 1))
	if sel := must[[]int](t)(b.Select(u)); !slices.Equal(sel, []int{2, 1, 3, 0, 4}) {
		t.Errorf("Bulyan selects %v, want [2 1 3 0 4]", sel)
	}
	mk := must[*MultiKrum](t)(NewMultiKrum(7, 1, 4))
	if sel := must[[]int](t)(mk.Select(u)); !slices.Equal(sel, []int{2, 1, 3, 0}) {
		t.Errorf("MultiKrum selects %v, want [2 1 3 0]", sel)
	}
}

func TestWeighted(t *testing.T) {
	got := must[fl.Vector](t)(NewMean().AggregateWeighted(vecs([]float64{1, 0}, []float64{3, 0}), []float64{1, 3}))
	if !near(got, fl.Vector{2.5, 0}) {
		t.Errorf("weighted mean = %v, want [2.5 0]", got)
	}
	// MultiKrum selects 1, 2, 0 (values 1, 2, 0) and weights them 1, 2, 1.
	mk := must[*MultiKrum](t)(NewMultiKrum(5, 1, 3))
	got = must[fl.Vector](t)(mk.AggregateWeighted(scalars(0, 1, 2, 3, 100), []float64{1, 1, 2, 1, 1000}))
	if !near(got, fl.Vector{5.0 / 4}) {
		t.Errorf("weighted MultiKrum = %v, want [1.25]", got)
	}
	// Huge weights are rescaled, not overflowed.
	got = must[fl.Vector](t)(NewMean().AggregateWeighted(scalars(1, 3), []float64{math.MaxFloat64, math.MaxFloat64}))
	if !near(got, fl.Vector{2}) {
		t.Errorf("mean with huge weights = %v, want [2]", got)
	}
	for _, w := range [][]float64{{1}, {1, -1}, {1, math.NaN()}, {0, 0}, {1, math.Inf(1)}} {
		if _, err := NewMean().AggregateWeighted(scalars(1, 3), w); !errors.Is(err, ErrWeight) {
			t.Errorf("weights %v: error %v, want ErrWeight", w, err)
		}
	}
	if _, err := mk.AggregateWeighted(scalars(0, 1, 2, 3, 100), []float64{1, 1}); !errors.Is(err, ErrWeight) {
		t.Errorf("MultiKrum with 2 weights for 5 updates: %v", err)
	}
}

func TestInfeasible(t *testing.T) {
	for _, tc := range []struct {
		name string
		make func() error
		ok   bool
	}{
		{"krum 2f+2 = n", func() error { _, err := NewKrum(4, 1); return err }, false},
		{"krum 2f+2 < n", func() error { _, err := NewKrum(5, 1); return err }, true},
		{"krum f=0 n=2", func() error { _, err := NewKrum(2, 0); return err }, false},
		{"krum f=0 n=3", func() error { _, err := NewKrum(3, 0); return err }, true},
		{"multikrum m > n−f", func() error { _, err := NewMultiKrum(7, 2, 6); return err }, false},
		{"multikrum m = n−f", func() error { _, err := NewMultiKrum(7, 2, 5); return err }, true},
		{"multikrum m = 0", func() error { _, err := NewMultiKrum(7, 2, 0); return err }, false},
		{"multikrum 2f+2 = n", func() error { _, err := NewMultiKrum(6, 2, 1); return err }, false},
		{"bulyan n = 4f+2", func() error { _, err := NewBulyan(6, 1); return err }, false},
		{"bulyan n = 4f+3", func() error { _, err := NewBulyan(7, 1); return err }, true},
		{"bulyan f=2 n=10", func() error { _, err := NewBulyan(10, 2); return err }, false},
		{"median 2f = n", func() error { _, err := NewMedian(4, 2); return err }, false},
		{"median 2f < n", func() error { _, err := NewMedian(5, 2); return err }, true},
		{"trimmed β < f/n", func() error { _, err := NewTrimmedMean(10, 3, 0.2); return err }, false},
		{"trimmed β = f/n", func() error { _, err := NewTrimmedMean(10, 2, 0.2); return err }, true},
		{"trimmed β = 0.15, n=20, f=3", func() error { _, err := NewTrimmedMean(20, 3, 0.15); return err }, true},
		{"trimmed β = 1/2", func() error { _, err := NewTrimmedMean(10, 0, 0.5); return err }, false},
		{"trimmed β NaN", func() error { _, err := NewTrimmedMean(10, 0, math.NaN()); return err }, false},
		{"cclip 2f = n", func() error { _, err := NewCenteredClip(4, 2, 1, 1); return err }, false},
		{"cclip τ < 0", func() error { _, err := NewCenteredClip(5, 1, -1, 1); return err }, false},
		{"cclip τ = Inf", func() error { _, err := NewCenteredClip(5, 1, math.Inf(1), 1); return err }, false},
		{"cclip L = 0", func() error { _, err := NewCenteredClip(5, 1, 1, 0); return err }, false},
		{"cclip L = 101", func() error { _, err := NewCenteredClip(5, 1, 1, 101); return err }, false},
		{"negative f", func() error { _, err := NewMedian(5, -1); return err }, false},
		{"n = 0", func() error { _, err := NewMedian(0, 0); return err }, false},
	} {
		err := tc.make()
		if tc.ok != (err == nil) {
			t.Errorf("%s: error %v", tc.name, err)
		}
		var ie *InfeasibleError
		if err != nil && (!errors.Is(err, ErrInfeasible) || !errors.As(err, &ie)) {
			t.Errorf("%s: error %v is not an *InfeasibleError", tc.name, err)
		}
	}
	_, err := NewKrum(4, 1)
	var ie *InfeasibleError
	if errors.As(err, &ie); ie.N != 4 || ie.F != 1 || ie.Rule != "Krum" || !strings.Contains(err.Error(), "2f+2 < n") {
		t.Errorf("NewKrum(4, 1) = %#v", ie)
	}
}

// A rule built for n refuses a round that shrank below feasibility, and
// accepts one that shrank within it.
func TestAggregateCountFeasibility(t *testing.T) {
	k := must[*Krum](t)(NewKrum(6, 1))
	if _, err := k.Aggregate(scalars(1, 2, 3, 4)); !errors.Is(err, ErrInfeasible) {
		t.Errorf("Krum(f=1) on 4 updates: %v, want ErrInfeasible", err)
	}
	if _, err := k.Aggregate(scalars(1, 2, 3, 4, 5)); err != nil {
		t.Errorf("Krum(f=1) on 5 updates: %v", err)
	}
	tm := must[*TrimmedMean](t)(NewTrimmedMean(10, 2, 0.2))
	if _, err := tm.Aggregate(scalars(1, 2, 3, 4, 5, 6, 7, 8, 9)); !errors.Is(err, ErrInfeasible) {
		t.Errorf("TrimmedMean(β=0.2, f=2) on 9 updates: %v, want ErrInfeasible", err)
	}
	rules := allRules(t, 7, 1)
	for _, r := range rules {
		if _, err := r.Aggregate(nil); err == nil {
			t.Errorf("%s: Aggregate(nil) succeeded", r)
		}
		_, err := r.Aggregate(vecs([]float64{1, 2}, []float64{1, 2}, []float64{1}, []float64{1, 2}, []float64{1, 2}, []float64{1, 2}, []float64{1, 2}))
		if !errors.Is(err, fl.ErrDimension) || !strings.Contains(err.Error(), "update 2") {
			t.Errorf("%s: ragged updates: %v, want fl.ErrDimension naming update 2", r, err)
		}
	}
}

// allRules returns one of each rule for n updates with f Byzantine.
func allRules(t *testing.T, n, f int) []Rule {
	t.Helper()
	var rules []Rule
	for _, spec := range []string{"mean", "median", "trimmed:0.2", "krum", "multikrum", "bulyan", "cclip", "cclip:tau=0.5,iters=2"} {
		if spec != "mean" && spec != "trimmed:0.2" {
			spec += map[bool]string{true: ",", false: ":"}[strings.Contains(spec, ":")] + "f=" + string(rune('0'+f))
		}
		if spec == "trimmed:0.2" {
			spec = "trimmed:beta=0.2,f=" + string(rune('0'+f))
		}
		r, err := Parse(spec, n)
		if err != nil {
			t.Fatalf("Parse(%q, %d): %v", spec, n, err)
		}
		rules = append(rules, r)
	}
	return rules
}

var (
	_ Weighted = (*Mean)(nil)
	_ Weighted = (*MultiKrum)(nil)
)

// TestAggregateWeighted: the rule runs on the unweighted Δᵢ and the result
// is scaled by Σwᵢ; an input of weight 0 counts as malformed.
func TestAggregateWeighted(t *testing.T) {
	med, err := NewMedian(3, 1)
	if err != nil {
		t.Fatal(err)
	}
	scaled := []fl.Vector{{2, 4}, {3, 3}, {400, 400}} // Δ = (1,2), (1,1), (100,100)
	weights := []float64{2, 3, 4}
	got, err := AggregateWeighted(med, scaled, weights)
	if err != nil {
		t.Fatal(err)
	}
	if want := (fl.Vector{9, 18}); got[0] != want[0] || got[1] != want[1] {
		t.Errorf("got %v, want 9·median(Δ) = %v", got, want)
	}
	if scaled[0][0] != 2 {
		t.Errorf("the input was modified: %v", scaled[0])
	}
	// Weight 0 on one input: median:f=1 of 3 withstands it.
	if _, err := AggregateWeighted(med, scaled, []float64{2, 3, 0}); err != nil {
		t.Errorf("one weightless input: %v", err)
	}
	if _, err := AggregateWeighted(med, scaled, weights[:2]); err == nil {
		t.Error("3 updates and 2 weights: no error")
	}
}
