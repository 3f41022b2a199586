package dp

import (
	"errors"
	"math"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

func TestNoiseOnGrid(t *testing.T) {
	const bits = 12
	n, err := NewNoise(0.01, bits)
	if err != nil {
		t.Fatal(err)
	}
	v := make(fl.Vector, 100000)
	for i := range v {
		v[i] = 0.123456789
	}
	if err := n.Add(v, seeded(1)); err != nil {
		t.Fatal(err)
	}
	var sum, sq float64
	for i, x := range v {
		if g := math.Ldexp(x, bits); g != math.Trunc(g) {
			t.Fatalf("element %d = %v is not a multiple of 2^-%d", i, x, bits)
		}
		d := x - 0.123456789
		sum += d
		sq += d * d
	}
	mean := sum / float64(len(v))
	variance := sq/float64(len(v)) - mean*mean
	// Rounding is unbiased, and adds at most a quarter grid step squared
	// of variance.
	step := math.Ldexp(1, -bits)
	if se := math.Sqrt(variance / float64(len(v))); math.Abs(mean) > 5*se {
		t.Errorf("mean error %v, more than 5 standard errors (%v)", mean, se)
	}
	if want := 0.01 * 0.01; variance < want*0.97 || variance > (want+step*step/4)*1.03 {
		t.Errorf("variance %v, want about %v", variance, want)
	}
}

// TestRoundingUnbiased uses the smallest noise the grid allows, so that
// biased rounding (a shift of up to half a step) would stand out.
func TestRoundingUnbiased(t *testing.T) {
	const bits = 4
	n, err := NewNoise(1.0/16, bits) // one grid step
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range []float64{0.3 / 16, -0.3 / 16, 5 + 0.9/16, -7.01} {
		v := make(fl.Vector, 200000)
		for i := range v {
			v[i] = x
		}
		if err := n.Add(v, seeded(2)); err != nil {
			t.Fatal(err)
		}
		var sum float64
		for _, y := range v {
			sum += y
		}
		mean := sum / float64(len(v))
		if se := math.Sqrt((1.0/256 + 1.0/1024) / float64(len(v))); math.Abs(mean-x) > 5*se {
			t.Errorf("x = %v: mean %v, want %v ± %v", x, mean, x, 5*se)
		}
	}
}

func TestNoiseErrors(t *testing.T) {
	n, _ := NewNoise(0.1, DefaultBits)
	v := fl.Vector{1, math.NaN(), 3}
	if err := n.Add(v, seeded(1)); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN: %v, want ErrNonFinite", err)
	}
	if v[0] != 1 || v[2] != 3 {
		t.Errorf("vector changed on error: %v", v)
	}
	v = fl.Vector{1, 1 << 40}
	if err := n.Add(v, seeded(1)); !errors.Is(err, ErrRange) || v[0] != 1 {
		t.Errorf("out of range: %v, vector %v", err, v)
	}
	if err := n.Add(fl.Vector{1}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil reader: %v", err)
	}
	if err := n.Add(fl.Vector{1}, iotestErr{errors.New("x")}); err == nil {
		t.Error("failing reader: no error")
	}
	for _, c := range []struct {
		std  float64
		bits int
	}{{0, 10}, {-1, 10}, {math.NaN(), 10}, {math.Inf(1), 10}, {1, -1}, {1, MaxBits + 1}, {1e-9, 20}, {1e6, 20}} {
		if _, err := NewNoise(c.std, c.bits); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewNoise(%v, %d) = %v, want ErrInvalid", c.std, c.bits, err)
		}
	}
	if err := AddNoise(fl.Vector{1}, -1, seeded(1)); !errors.Is(err, ErrInvalid) {
		t.Errorf("AddNoise(std=−1) = %v", err)
	}
	if err := AddNoise(nil, 1, seeded(1)); err != nil {
		t.Errorf("AddNoise on an empty vector: %v", err)
	}
}

func TestNoiseShare(t *testing.T) {
	for _, k := range []int{1, 3, 10, 100} {
		s, err := NoiseShare(1.1, 0.5, k)
		if err != nil {
			t.Fatal(err)
		}
		// k shares of variance s² add up to (σC)².
		if total := float64(k) * s * s; math.Abs(total-1.1*1.1*0.25) > 1e-12 {
			t.Errorf("k=%d: total variance %v, want %v", k, total, 1.1*1.1*0.25)
		}
	}
	for _, c := range []struct {
		sigma, clip float64
		k           int
	}{{0, 1, 1}, {1, 0, 1}, {1, 1, 0}, {math.NaN(), 1, 1}, {1, math.Inf(1), 1}} {
		if _, err := NoiseShare(c.sigma, c.clip, c.k); !errors.Is(err, ErrInvalid) {
			t.Errorf("NoiseShare(%v, %v, %d) = %v", c.sigma, c.clip, c.k, err)
		}
	}
}

// TestDistributedNoise simulates k honest nodes that each add their share:
// the variance of the sum is the full (σC)².
func TestDistributedNoise(t *testing.T) {
	const sigma, clip, k, dim = 1.1, 1.0, 5, 50000
	std, _ := NoiseShare(sigma, clip, k)
	n, err := NewNoise(std, DefaultBits)
	if err != nil {
		t.Fatal(err)
	}
	sum := make(fl.Vector, dim)
	r := seeded(5)
	for range k {
		v := make(fl.Vector, dim)
		if err := n.Add(v, r); err != nil {
			t.Fatal(err)
		}
		if err := sum.Add(1, v); err != nil {
			t.Fatal(err)
		}
	}
	var sq float64
	for _, x := range sum {
		sq += x * x
	}
	want := sigma * sigma * clip * clip
	if got := sq / dim; math.Abs(got-want) > 5*want*math.Sqrt(2.0/dim) {
		t.Errorf("variance of the sum %v, want %v", got, want)
	}
}

func TestDistributedMultiplier(t *testing.T) {
	// Large per-node noise in grid steps: τ vanishes, and only rounding
	// inflates the sensitivity.
	z, err := DistributedMultiplier(1.1, 1, 10, 1000000, 20)
	if err != nil {
		t.Fatal(err)
	}
	want := 1.1 * 1 / (1 + 1000*math.Ldexp(1, -20))
	if math.Abs(z-want) > 1e-9 {
		t.Errorf("z = %v, want %v", z, want)
	}
	if z >= 1.1 {
		t.Errorf("z = %v not below σ", z)
	}
	// Half a grid step of noise per node: the sum strays from a discrete
	// Gaussian and τ costs privacy.
	std, _ := NoiseShare(1, 1, 4)
	bits := int(math.Round(math.Log2(0.5 / std)))
	zSmall, err := DistributedMultiplier(1, 1, 4, 100, bits)
	if err != nil {
		t.Fatal(err)
	}
	delta, _ := QuantizedSensitivity(1, 100, bits)
	if noTau := 1 / delta; zSmall >= noTau {
		t.Errorf("with σ_g = 1/2, z = %v should be below the τ-free %v", zSmall, noTau)
	}
	if _, err := DistributedMultiplier(1, 1, 4, 100, bits-2); !errors.Is(err, ErrInvalid) {
		t.Errorf("σ_g below 1/2: %v", err)
	}
	if s, _ := QuantizedSensitivity(2, 10000, 10); s != 2+100.0/1024 {
		t.Errorf("QuantizedSensitivity = %v", s)
	}
}

func BenchmarkNoiseAdd(b *testing.B) {
	const dim = 100000
	n, _ := NewNoise(0.35, DefaultBits)
	v := make(fl.Vector, dim)
	r := seeded(1)
	for b.Loop() {
		if err := n.Add(v, r); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*dim), "ns/coord")
}
