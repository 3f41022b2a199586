package attack

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
)

// images returns n random 4×4 "images" with labels cycling over 3 classes.
func images(n int) *dataset.Set {
	rng := rand.New(rand.NewPCG(1, 1))
	s := &dataset.Set{Name: "toy", Features: 16, Classes: 3, X: make([]float64, 16*n), Y: make([]int, n)}
	for i := range s.X {
		s.X[i] = rng.Float64() * 0.5
	}
	for i := range s.Y {
		s.Y[i] = i % 3
	}
	return s
}

func vecs(vs ...fl.Vector) []fl.Vector { return vs }

func TestParse(t *testing.T) {
	for spec, want := range map[string]string{
		"none":                      "none",
		"label-flip":                "label-flip",
		"sign-flip":                 "sign-flip:scale=4",
		"sign-flip:10":              "sign-flip:scale=10",
		"gaussian":                  "gaussian:scale=1",
		"scale":                     "scale:factor=25",
		"scale:factor=3":            "scale:factor=3",
		"ipm":                       "ipm:eps=0.1",
		"ipm:100":                   "ipm:eps=100",
		"alie:z=1.5":                "alie:z=1.5",
		"backdoor":                  "backdoor:target=0,frac=0.5,boost=25,size=3,value=1",
		"backdoor:7":                "backdoor:target=7,frac=0.5,boost=25,size=3,value=1",
		"BACKDOOR:frac=0.2,boost=1": "backdoor:target=0,frac=0.2,boost=1,size=3,value=1",
	} {
		a, err := Parse(spec, 25, 5)
		if err != nil {
			t.Errorf("Parse(%q): %v", spec, err)
			continue
		}
		if a.String() != want {
			t.Errorf("Parse(%q) = %s, want %s", spec, a, want)
		}
		back, err := Parse(a.String(), 25, 5)
		if err != nil || back.String() != a.String() {
			t.Errorf("%s does not round-trip: %v, %v", a, back, err)
		}
		if !strings.HasPrefix(a.String(), a.Name()) {
			t.Errorf("%s has name %s", a, a.Name())
		}
	}
	for _, spec := range []string{
		"", "flip", "sign-flip:", "sign-flip:-1", "sign-flip:x", "label-flip:3", "scale:0",
		"ipm:eps=1,eps=2", "ipm:z=1", "backdoor:target=1.5", "backdoor:frac=0", "backdoor:frac=2",
		"backdoor:size=0", "alie:z=NaN", "gaussian:Inf",
	} {
		_, err := Parse(spec, 25, 5)
		if !errors.Is(err, ErrSpec) {
			t.Errorf("Parse(%q) = %v, want ErrSpec", spec, err)
		} else if !strings.Contains(err.Error(), "\""+spec+"\"") {
			t.Errorf("Parse(%q): error %q does not quote the spec", spec, err)
		}
	}
	if _, err := Parse("alie", 10, 6); !errors.Is(err, ErrSpec) {
		t.Errorf("alie with a malicious majority: %v", err)
	}
	if _, err := Parse("none", 3, 4); !errors.Is(err, ErrSpec) {
		t.Errorf("f > n: %v", err)
	}
}

// ALIE's default z (Baruch et al., Algorithm 3) for published settings.
func TestALIEZ(t *testing.T) {
	for _, c := range []struct {
		n, f int
		want float64
	}{
		{25, 5, 0.4677},  // s = 8, Φ⁻¹(17/25)
		{50, 12, 0.5828}, // s = 14, Φ⁻¹(0.72)
		{10, 2, 0.2533},  // s = 4, Φ⁻¹(0.6)
	} {
		s := c.n/2 + 1 - c.f
		p := float64(c.n-s) / float64(c.n)
		// Φ(z) must equal p.
		z, err := ALIEZ(c.n, c.f)
		if err != nil {
			t.Fatal(err)
		}
		if phi := 0.5 * math.Erfc(-z/math.Sqrt2); math.Abs(phi-p) > 1e-12 {
			t.Errorf("n=%d f=%d: Φ(z=%v) = %v, want %v", c.n, c.f, z, phi, p)
		}
		if math.Abs(z-c.want) > 1e-4 {
			t.Errorf("n=%d f=%d: z = %v, want %v", c.n, c.f, z, c.want)
		}
	}
}

func TestModelPoisoning(t *testing.T) {
	rng := rand.New(rand.NewPCG(2, 3))
	own := vecs(fl.Vector{1, -2, 3}, fl.Vector{0.5, 0, -1})
	honest := vecs(fl.Vector{1, 1, 1}, fl.Vector{3, 1, -1}, fl.Vector{2, 4, 0})
	ownCopy := vecs(own[0].Clone(), own[1].Clone())
	check := func(a Attack, want []fl.Vector) {
		t.Helper()
		got, err := a.Forge(own, honest, rng)
		if err != nil {
			t.Fatalf("%s: %v", a, err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d updates, want %d", a, len(got), len(want))
		}
		for i := range want {
			for j := range want[i] {
				if math.Abs(got[i][j]-want[i][j]) > 1e-12 {
					t.Fatalf("%s: update %d = %v, want %v", a, i, got[i], want[i])
				}
			}
		}
	}
	check(None{}, own)
	check(LabelFlip{}, own)
	check(SignFlip{Scale: 4}, vecs(fl.Vector{-4, 8, -12}, fl.Vector{-2, 0, 4}))
	check(Scale{Factor: 25}, vecs(fl.Vector{25, -50, 75}, fl.Vector{12.5, 0, -25}))
	check(Backdoor{Boost: 10}, vecs(fl.Vector{10, -20, 30}, fl.Vector{5, 0, -10}))
	// Honest mean (2, 2, 0), sample std (1, √3, 1).
	check(IPM{Eps: 0.1}, vecs(fl.Vector{-0.2, -0.2, 0}, fl.Vector{-0.2, -0.2, 0}))
	check(ALIE{Z: 1}, vecs(fl.Vector{1, 2 - math.Sqrt(3), -1}, fl.Vector{1, 2 - math.Sqrt(3), -1}))

	// Gaussian: matched norm, random direction, different each time.
	g, err := Gaussian{Scale: 1}.Forge(own, honest, rng)
	if err != nil {
		t.Fatal(err)
	}
	for i := range own {
		if math.Abs(g[i].Norm()-own[i].Norm()) > 1e-12 {
			t.Errorf("gaussian update %d has norm %v, want %v", i, g[i].Norm(), own[i].Norm())
		}
	}
	big := make(fl.Vector, 10000)
	big[0] = 1
	gb, _ := Gaussian{Scale: 2}.Forge(vecs(big), nil, rng)
	if cos := gb[0][0] / gb[0].Norm(); math.Abs(cos) > 0.05 {
		t.Errorf("gaussian update is aligned with the honest one: cosine %v", cos)
	}
	if math.Abs(gb[0].Norm()-2) > 1e-12 {
		t.Errorf("gaussian:scale=2 norm %v", gb[0].Norm())
	}

	// Nothing was modified.
	for i := range own {
		for j := range own[i] {
			if own[i][j] != ownCopy[i][j] {
				t.Fatalf("Forge modified its input")
			}
		}
	}
	// Omniscient attacks need honest updates; lengths must agree.
	if _, err := (ALIE{Z: 1}).Forge(own, nil, rng); !errors.Is(err, ErrUpdates) {
		t.Errorf("alie without honest updates: %v", err)
	}
	if _, err := (IPM{Eps: 1}).Forge(own, vecs(fl.Vector{1}, fl.Vector{1, 2}), rng); !errors.Is(err, ErrUpdates) {
		t.Errorf("ipm with ragged honest updates: %v", err)
	}
	if _, err := (SignFlip{Scale: 1}).Forge(vecs(fl.Vector{1}, fl.Vector{1, 2}), nil, rng); !errors.Is(err, ErrUpdates) {
		t.Errorf("ragged own updates: %v", err)
	}
}

// ALIE stays within the honest spread, which is why distance-based rules
// cannot single it out: each coordinate lies Z standard deviations from the
// mean.
func TestALIEWithinSpread(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 5))
	var honest []fl.Vector
	for range 20 {
		v := make(fl.Vector, 50)
		for j := range v {
			v[j] = 1 + rng.NormFloat64()
		}
		honest = append(honest, v)
	}
	z, _ := ALIEZ(25, 5)
	out, err := ALIE{Z: z}.Forge(make([]fl.Vector, 5), honest, rng)
	if err != nil {
		t.Fatal(err)
	}
	mu, _ := mean(honest, "")
	for j := range mu {
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, h := range honest {
			lo, hi = min(lo, h[j]), max(hi, h[j])
		}
		if x := out[0][j]; x < lo || x > hi || x >= mu[j] {
			t.Fatalf("coordinate %d: %v outside the honest range [%v, %v] or not below the mean %v", j, x, lo, hi, mu[j])
		}
	}
}

func TestLabelFlip(t *testing.T) {
	set := images(9)
	p, err := LabelFlip{}.Poison(set, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := range set.Y {
		if set.Y[i] != i%3 {
			t.Fatal("Poison modified its input")
		}
		if p.Y[i] != 2-set.Y[i] {
			t.Errorf("label %d flipped to %d", set.Y[i], p.Y[i])
		}
	}
	for i := range set.X {
		if p.X[i] != set.X[i] {
			t.Fatal("label flipping changed features")
		}
	}
	if _, err := (LabelFlip{}).Poison(&dataset.Set{Classes: 1}, nil); !errors.Is(err, ErrData) {
		t.Errorf("one class: %v", err)
	}
}

func TestBackdoor(t *testing.T) {
	set := images(100)
	b := Backdoor{Target: 1, Frac: 0.3, Boost: 5, Size: 2, Value: 1}
	p, err := b.Poison(set, rand.New(rand.NewPCG(6, 7)))
	if err != nil {
		t.Fatal(err)
	}
	trigger := []int{10, 11, 14, 15} // bottom-right 2×2 of a 4×4 image
	stamped := 0
	for i := range p.Y {
		row := p.Row(i)
		on := true
		for _, j := range trigger {
			on = on && row[j] == 1
		}
		for j := range row {
			if !containsInt(trigger, j) && row[j] != set.Row(i)[j] {
				t.Fatalf("example %d: pixel %d changed outside the trigger", i, j)
			}
		}
		if on {
			stamped++
			if p.Y[i] != 1 {
				t.Errorf("stamped example %d has label %d, want the target 1", i, p.Y[i])
			}
		} else if p.Y[i] != set.Y[i] {
			t.Errorf("clean example %d relabelled", i)
		}
	}
	if stamped != 30 {
		t.Errorf("%d of 100 examples stamped, want 30", stamped)
	}
	if set.X[10] == 1 {
		t.Fatal("Poison modified its input")
	}
	trig, err := b.Triggered(set)
	if err != nil {
		t.Fatal(err)
	}
	if trig.Len() != 67 { // labels 0 and 2 among i%3 for 100 examples: 34 + 33
		t.Errorf("triggered test set has %d examples, want 67", trig.Len())
	}
	for i := range trig.Y {
		if trig.Y[i] != 1 || trig.Row(i)[15] != 1 {
			t.Fatalf("triggered example %d: label %d, corner %v", i, trig.Y[i], trig.Row(i)[15])
		}
	}
	for _, bad := range []*dataset.Set{
		{Name: "rect", Features: 15, Classes: 3, X: make([]float64, 15), Y: []int{0}},
	} {
		if _, err := b.Poison(bad, rand.New(rand.NewPCG(1, 1))); !errors.Is(err, ErrData) || !strings.Contains(err.Error(), "15 features") {
			t.Errorf("non-square images: %v", err)
		}
	}
	if _, err := (Backdoor{Target: 3, Size: 1, Frac: 1}).Triggered(set); !errors.Is(err, ErrData) {
		t.Errorf("target beyond the classes: %v", err)
	}
}

func containsInt(s []int, x int) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}
