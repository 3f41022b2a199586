package robust

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

// honest returns n vectors of length dim scattered by ±spread around 1.
func honest(rng *rand.Rand, n, dim int, spread float64) []fl.Vector {
	out := make([]fl.Vector, n)
	for i := range out {
		out[i] = make(fl.Vector, dim)
		for j := range out[i] {
			out[i][j] = 1 + spread*(2*rng.Float64()-1)
		}
	}
	return out
}

func within(v fl.Vector, lo, hi float64) bool {
	for _, x := range v {
		if !(x >= lo && x <= hi) {
			return false
		}
	}
	return true
}

func TestNonFiniteUpdates(t *testing.T) {
	const n, f, dim = 11, 2, 5
	rng := rand.New(rand.NewPCG(1, 2))
	updates := honest(rng, n, dim, 0.1)
	updates[3][2] = math.NaN()
	updates[7][0] = math.Inf(-1)
	for _, r := range allRules(t, n, f) {
		got, err := r.Aggregate(updates)
		if r.Name() == "Mean" {
			var nf *NonFiniteError
			if !errors.As(err, &nf) || !slices.Equal(nf.Indices, []int{3, 7}) {
				t.Errorf("Mean: error %v, want a NonFiniteError naming updates 3 and 7", err)
			}
			continue
		}
		if err != nil || len(got) != dim || !within(got, 0.9, 1.1) {
			t.Errorf("%s: Aggregate = %v, %v; want a finite vector near 1", r, got, err)
		}
	}
	for _, sel := range selections(t, n, f, updates) {
		if slices.Contains(sel, 3) || slices.Contains(sel, 7) {
			t.Errorf("selection %v includes a non-finite update", sel)
		}
	}
	// One more than f malformed: refuse, naming them.
	updates[9][4] = math.Inf(1)
	for _, r := range allRules(t, n, f) {
		_, err := r.Aggregate(updates)
		var nf *NonFiniteError
		if !errors.As(err, &nf) || !errors.Is(err, ErrNonFinite) || !slices.Equal(nf.Indices, []int{3, 7, 9}) {
			t.Errorf("%s with 3 malformed updates, f=2: error %v", r, err)
		}
	}
}

func selections(t *testing.T, n, f int, updates []fl.Vector) [][]int {
	t.Helper()
	k := must[*Krum](t)(NewKrum(n, f))
	mk := must[*MultiKrum](t)(NewMultiKrum(n, f, n-f))
	b := must[*Bulyan](t)(NewBulyan(n, f))
	i := must[int](t)(k.Select(updates))
	return [][]int{{i}, must[[]int](t)(mk.Select(updates)), must[[]int](t)(b.Select(updates))}
}

func TestHugeValues(t *testing.T) {
	const n, f, dim = 11, 2, 4
	rng := rand.New(rand.NewPCG(3, 4))
	updates := honest(rng, n, dim, 0.1)
	updates[0] = fl.Vector{1e308, -1e308, math.MaxFloat64, -math.MaxFloat64}
	updates[5] = fl.Vector{-math.MaxFloat64, math.MaxFloat64, 1e308, 1e308}
	for _, r := range allRules(t, n, f) {
		got, err := r.Aggregate(updates)
		if err != nil || !got.Finite() {
			t.Errorf("%s: Aggregate = %v, %v; want finite", r, got, err)
			continue
		}
		if r.Name() != "Mean" && !within(got, 0.9, 1.1) {
			t.Errorf("%s: Aggregate = %v, want near 1", r, got)
		}
	}
	for _, sel := range selections(t, n, f, updates) {
		if slices.Contains(sel, 0) || slices.Contains(sel, 5) {
			t.Errorf("selection %v includes a huge update", sel)
		}
	}
	// Everything at the edge of the range.
	edge := make([]fl.Vector, n)
	for i := range edge {
		edge[i] = fl.Vector{math.MaxFloat64, -math.MaxFloat64, math.MaxFloat64 * float64(1-2*(i%2))}
	}
	for _, r := range allRules(t, n, f) {
		got, err := r.Aggregate(edge)
		if err != nil || !got.Finite() || got[0] < math.MaxFloat64*(1-1e-15) || got[1] > -math.MaxFloat64*(1-1e-15) {
			t.Errorf("%s: Aggregate at the edge = %v, %v", r, got, err)
		}
	}
}

// Random hostile inputs: every rule either refuses (too many malformed
// updates) or returns a finite vector inside the per-coordinate range of the
// finite inputs.
func TestHostileProperty(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	pool := []float64{math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat64, -math.MaxFloat64,
		1e308, -1e308, 0, 5e-324, -1e-300, 1e154, 3}
	specs := []string{"mean", "median", "trimmed", "trimmed:0.4", "krum", "krum:f=0", "multikrum",
		"multikrum:m=1", "bulyan", "cclip", "cclip:tau=1e-3,iters=5"}
	for trial := 0; trial < 400; trial++ {
		n, dim := 1+rng.IntN(15), 1+rng.IntN(4)
		updates := make([]fl.Vector, n)
		for i := range updates {
			updates[i] = make(fl.Vector, dim)
			for j := range updates[i] {
				if rng.IntN(3) == 0 {
					updates[i][j] = pool[rng.IntN(len(pool))]
				} else {
					updates[i][j] = rng.NormFloat64()
				}
			}
		}
		before := make([]fl.Vector, n)
		for i := range updates {
			before[i] = updates[i].Clone()
		}
		for _, spec := range specs {
			r, err := Parse(spec, n)
			if err != nil {
				if !errors.Is(err, ErrInfeasible) {
					t.Fatalf("Parse(%q, %d): %v", spec, n, err)
				}
				continue
			}
			got, err := r.Aggregate(updates)
			if err != nil {
				if !errors.Is(err, ErrNonFinite) {
					t.Errorf("%s on %v: %v", r, updates, err)
				}
				continue
			}
			if len(got) != dim || !got.Finite() {
				t.Fatalf("%s on %v = %v", r, updates, got)
			}
			for j, x := range got {
				lo, hi := math.Inf(1), math.Inf(-1)
				for _, u := range updates {
					if u.Finite() {
						lo, hi = min(lo, u[j]), max(hi, u[j])
					}
				}
				if x < lo || x > hi {
					t.Errorf("%s on %v: coordinate %d = %v outside [%v, %v]", r, updates, j, x, lo, hi)
				}
			}
		}
		for i := range updates {
			if !slices.EqualFunc(updates[i], before[i], func(a, b float64) bool {
				return math.Float64bits(a) == math.Float64bits(b)
			}) {
				t.Fatalf("an Aggregate modified update %d", i)
			}
		}
	}
}

// f attackers far away, or colluding at one point, or sending NaN: the
// Krum family picks only honest updates.
func TestKrumPicksHonest(t *testing.T) {
	const dim = 50
	for _, attack := range []struct {
		name string
		vec  func(i int) fl.Vector
	}{
		{"scattered far", func(i int) fl.Vector {
			v := make(fl.Vector, dim)
			for j := range v {
				v[j] = float64((i+1)*1000) * float64(1-2*(j%2))
			}
			return v
		}},
		{"colluding", func(int) fl.Vector {
			v := make(fl.Vector, dim)
			for j := range v {
				v[j] = 5
			}
			return v
		}},
		{"huge", func(i int) fl.Vector {
			v := make(fl.Vector, dim)
			for j := range v {
				v[j] = math.MaxFloat64 * float64(1-2*(i%2))
			}
			return v
		}},
		{"nan", func(int) fl.Vector {
			v := make(fl.Vector, dim)
			v[dim-1] = math.NaN()
			return v
		}},
	} {
		for _, c := range []struct{ n, f int }{{10, 3}, {15, 3}, {25, 5}} {
			rng := rand.New(rand.NewPCG(uint64(c.n), 7))
			updates := honest(rng, c.n, dim, 0.2)
			// Attackers at scattered positions among the honest ones.
			bad := map[int]bool{}
			for k := 0; len(bad) < c.f; k++ {
				i := rng.IntN(c.n)
				if !bad[i] {
					bad[i] = true
					updates[i] = attack.vec(k)
				}
			}
			k := must[*Krum](t)(NewKrum(c.n, c.f))
			if i := must[int](t)(k.Select(updates)); bad[i] {
				t.Errorf("%s n=%d f=%d: Krum selects attacker %d", attack.name, c.n, c.f, i)
			}
			mk := must[*MultiKrum](t)(NewMultiKrum(c.n, c.f, c.n-c.f))
			for _, i := range must[[]int](t)(mk.Select(updates)) {
				if bad[i] {
					t.Errorf("%s n=%d f=%d: MultiKrum selects attacker %d", attack.name, c.n, c.f, i)
				}
			}
			if c.n >= 4*c.f+3 {
				b := must[*Bulyan](t)(NewBulyan(c.n, c.f))
				got := must[fl.Vector](t)(b.Aggregate(updates))
				if !within(got, 0.8, 1.2) {
					t.Errorf("%s n=%d f=%d: Bulyan = %v, want within the honest range", attack.name, c.n, c.f, got)
				}
			}
		}
	}
}

func TestDeterministic(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	updates := honest(rng, 11, 100, 1)
	for _, r := range allRules(t, 11, 2) {
		a, err := r.Aggregate(updates)
		if err != nil {
			t.Fatal(err)
		}
		if c, ok := r.(*CenteredClip); ok {
			c.SetReference(nil)
		}
		b, _ := r.Aggregate(updates)
		for j := range a {
			if math.Float64bits(a[j]) != math.Float64bits(b[j]) {
				t.Errorf("%s: two runs differ at %d", r, j)
				break
			}
		}
	}
}

func TestCenteredClipReference(t *testing.T) {
	r := must[*CenteredClip](t)(NewCenteredClip(3, 1, 100, 1))
	if r.Reference() != nil {
		t.Fatal("fresh rule has a reference")
	}
	// No reference: start from the median (2), then a large τ gives the mean.
	got := must[fl.Vector](t)(r.Aggregate(scalars(1, 2, 6)))
	if !near(got, fl.Vector{3}) || !near(r.Reference(), fl.Vector{3}) {
		t.Errorf("Aggregate = %v, reference %v; want [3] twice", got, r.Reference())
	}
	if _, err := r.Aggregate(vecs([]float64{1, 2}, []float64{1, 2}, []float64{1, 2})); !errors.Is(err, fl.ErrDimension) {
		t.Errorf("reference of another length: %v", err)
	}
	if err := r.SetReference(fl.Vector{math.NaN()}); !errors.Is(err, ErrNonFinite) {
		t.Errorf("SetReference(NaN) = %v", err)
	}
	// A small τ around a reference moves at most τ per iteration.
	r = must[*CenteredClip](t)(NewCenteredClip(3, 1, 0.1, 2))
	r.SetReference(fl.Vector{0})
	got = must[fl.Vector](t)(r.Aggregate(scalars(100, 100, 100)))
	if !near(got, fl.Vector{0.2}) {
		t.Errorf("Aggregate = %v, want [0.2]", got)
	}
}
