package dataset

import (
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// balanced returns n labels cycling through the classes.
func balanced(n, classes int) []int {
	y := make([]int, n)
	for i := range y {
		y[i] = i % classes
	}
	return y
}

func TestParsePartition(t *testing.T) {
	good := map[string]Partition{
		"iid":            IID{},
		"dirichlet:0.1":  Dirichlet{Alpha: 0.1},
		"dirichlet:1e-3": Dirichlet{Alpha: 0.001},
		"dirichlet:100":  Dirichlet{Alpha: 100},
		"shards:2":       Shards{PerSite: 2},
	}
	for spec, want := range good {
		p, err := ParsePartition(spec)
		if err != nil || p != want {
			t.Errorf("ParsePartition(%q) = %v, %v; want %v", spec, p, err, want)
			continue
		}
		if again, err := ParsePartition(p.String()); err != nil || again != p {
			t.Errorf("%q: String %q does not parse back: %v, %v", spec, p.String(), again, err)
		}
	}
	for _, spec := range []string{"dirichlet:-1", "dirichlet:0", "dirichlet:x", "dirichlet:", "dirichlet", "dirichlet:NaN", "dirichlet:Inf",
		"shards:0", "shards:-2", "shards:1.5", "shards:", "foo", "", "IID", "iid:3"} {
		p, err := ParsePartition(spec)
		if err == nil || !strings.Contains(err.Error(), `"`+spec+`"`) {
			t.Errorf("ParsePartition(%q) = %v, %v; want an error quoting the spec", spec, p, err)
		}
	}
	_, err := ParsePartition("foo")
	if !strings.Contains(err.Error(), "iid, dirichlet:ALPHA") {
		t.Errorf("unknown spec error %q does not list the forms", err)
	}
}

var partitions = []Partition{IID{}, Dirichlet{Alpha: 0.1}, Dirichlet{Alpha: 1}, Dirichlet{Alpha: 1000}, Shards{PerSite: 1}, Shards{PerSite: 3}}

func TestPartitionProperties(t *testing.T) {
	for _, p := range partitions {
		for _, c := range []struct{ examples, classes, sites int }{
			{1, 1, 1}, {7, 3, 1}, {10, 2, 10}, {100, 10, 7}, {999, 5, 33}, {60, 3, 20},
		} {
			labels := balanced(c.examples, c.classes)
			sites, err := p.Split(labels, c.classes, c.sites, rand.New(rand.NewPCG(1, 2)))
			if _, isShards := p.(Shards); isShards && c.examples < c.sites*p.(Shards).PerSite {
				if err == nil {
					t.Errorf("%v: %d examples over %d sites: no error", p, c.examples, c.sites)
				}
				continue
			}
			if err != nil {
				t.Errorf("%v %+v: %v", p, c, err)
				continue
			}
			if len(sites) != c.sites {
				t.Errorf("%v %+v: %d sites", p, c, len(sites))
			}
			var all []int
			for s, idx := range sites {
				if len(idx) == 0 {
					t.Errorf("%v %+v: site %d is empty", p, c, s)
				}
				if !slices.IsSorted(idx) {
					t.Errorf("%v %+v: site %d not sorted", p, c, s)
				}
				all = append(all, idx...)
			}
			slices.Sort(all)
			for i, x := range all {
				if x != i {
					t.Fatalf("%v %+v: examples used %v, want each of 0..%d once", p, c, all, c.examples-1)
				}
			}
			if len(all) != c.examples {
				t.Errorf("%v %+v: %d examples used, want %d", p, c, len(all), c.examples)
			}
		}
	}
}

func TestPartitionReproducible(t *testing.T) {
	labels := balanced(500, 10)
	for _, p := range partitions {
		a, err := p.Split(labels, 10, 8, rand.New(rand.NewPCG(42, 0)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := p.Split(labels, 10, 8, rand.New(rand.NewPCG(42, 0)))
		c, _ := p.Split(labels, 10, 8, rand.New(rand.NewPCG(43, 0)))
		if !slices.EqualFunc(a, b, slices.Equal) {
			t.Errorf("%v: same seed, different split", p)
		}
		if slices.EqualFunc(a, c, slices.Equal) {
			t.Errorf("%v: seeds 42 and 43 gave the same split", p)
		}
	}
}

// maxClassFraction returns the mean, over sites, of the fraction of a
// site's examples in its most common class: 1/classes for a perfectly
// mixed site, 1 for a single-class site.
func maxClassFraction(sites [][]int, labels []int, classes int) float64 {
	var sum float64
	for _, idx := range sites {
		count := make([]int, classes)
		for _, i := range idx {
			count[labels[i]]++
		}
		sum += float64(slices.Max(count)) / float64(len(idx))
	}
	return sum / float64(len(sites))
}

func TestDirichletSkew(t *testing.T) {
	labels := balanced(5000, 10)
	rng := rand.New(rand.NewPCG(7, 7))
	skew := func(p Partition) float64 {
		sites, err := p.Split(labels, 10, 20, rng)
		if err != nil {
			t.Fatal(err)
		}
		return maxClassFraction(sites, labels, 10)
	}
	iid, d100, d1, d01 := skew(IID{}), skew(Dirichlet{Alpha: 100}), skew(Dirichlet{Alpha: 1}), skew(Dirichlet{Alpha: 0.1})
	t.Logf("mean max-class fraction: iid %.2f, α=100 %.2f, α=1 %.2f, α=0.1 %.2f", iid, d100, d1, d01)
	if iid > 0.2 || d100 > 0.2 {
		t.Errorf("iid (%.2f) and α=100 (%.2f) should be near 0.1", iid, d100)
	}
	if d01 < 0.5 || d01 < 3*iid || d1 <= iid || d01 <= d1 {
		t.Errorf("skew not increasing as α falls: iid %.2f, α=1 %.2f, α=0.1 %.2f", iid, d1, d01)
	}
}

func TestDirichletRepairsEmptySites(t *testing.T) {
	// With α tiny nearly every class goes to one site, so most of the 50
	// sites start empty and must be repaired.
	labels := balanced(60, 3)
	for seed := range uint64(20) {
		sites, err := Dirichlet{Alpha: 0.001}.Split(labels, 3, 50, rand.New(rand.NewPCG(seed, 0)))
		if err != nil {
			t.Fatal(err)
		}
		for s, idx := range sites {
			if len(idx) == 0 {
				t.Fatalf("seed %d: site %d empty", seed, s)
			}
		}
	}
	// n == N: every site gets exactly one example.
	sites, err := Dirichlet{Alpha: 0.5}.Split(labels, 3, 60, rand.New(rand.NewPCG(1, 0)))
	if err != nil {
		t.Fatal(err)
	}
	for s, idx := range sites {
		if len(idx) != 1 {
			t.Fatalf("site %d has %d examples, want 1", s, len(idx))
		}
	}
}

func TestShardsLabelsPerSite(t *testing.T) {
	labels := balanced(600, 10) // 60 per class: 20 shards of 30 never straddle a class
	for _, k := range []int{1, 2} {
		sites, err := Shards{PerSite: k}.Split(labels, 10, 10, rand.New(rand.NewPCG(3, 0)))
		if err != nil {
			t.Fatal(err)
		}
		for s, idx := range sites {
			seen := map[int]bool{}
			for _, i := range idx {
				seen[labels[i]] = true
			}
			if len(seen) > k || len(idx) != 60 {
				t.Errorf("shards:%d: site %d has %d examples of %d labels, want 60 of ≤ %d", k, s, len(idx), len(seen), k)
			}
		}
	}
}

func TestPartitionErrors(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	labels := balanced(10, 2)
	tests := []struct {
		name    string
		p       Partition
		labels  []int
		classes int
		n       int
		rng     *rand.Rand
		want    string
	}{
		{"too many sites", IID{}, labels, 2, 11, rng, `partition "iid": 11 sites but only 10 examples`},
		{"no sites", Dirichlet{Alpha: 1}, labels, 2, 0, rng, `partition "dirichlet:1": 0 sites`},
		{"negative sites", IID{}, labels, 2, -3, rng, `-3 sites`},
		{"no examples", IID{}, nil, 2, 1, rng, `1 sites but only 0 examples`},
		{"nil rng", Shards{PerSite: 1}, labels, 2, 2, nil, `partition "shards:1": nil random source`},
		{"label too big", IID{}, []int{0, 2}, 2, 1, rng, `label 2 of example 1 outside [0, 2)`},
		{"negative label", Dirichlet{Alpha: 1}, []int{-1}, 2, 1, rng, `label -1 of example 0 outside [0, 2)`},
		{"no classes", IID{}, labels, 0, 1, rng, `0 classes`},
		{"bad alpha", Dirichlet{Alpha: -1}, labels, 2, 1, rng, `partition "dirichlet:-1": ALPHA must be a positive number`},
		{"bad K", Shards{}, labels, 2, 1, rng, `partition "shards:0": K must be an integer ≥ 1`},
		{"too few for shards", Shards{PerSite: 3}, labels, 2, 4, rng, `partition "shards:3": 4 sites × 3 shards need at least as many examples, have 10`},
		{"huge K", Shards{PerSite: 1 << 62}, labels, 2, 4, rng, `need at least as many examples`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sites, err := tt.p.Split(tt.labels, tt.classes, tt.n, tt.rng)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, %v; want an error containing %q", sites, err, tt.want)
			}
		})
	}
}

func TestLogGamma(t *testing.T) {
	// The sample mean of Gamma(a, 1) is a.
	rng := rand.New(rand.NewPCG(9, 9))
	for _, a := range []float64{0.1, 0.5, 1, 3, 50} {
		const n = 20000
		var sum float64
		for range n {
			sum += math.Exp(logGamma(rng, a))
		}
		if mean := sum / n; mean < 0.9*a || mean > 1.1*a {
			t.Errorf("Gamma(%v): sample mean %v", a, mean)
		}
	}
}
