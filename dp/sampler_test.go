package dp

import (
	"bytes"
	crand "crypto/rand"
	"errors"
	"io"
	"math"
	"math/rand/v2"
	"testing"
)

// seeded returns a deterministic reader for tests. Production code passes
// crypto/rand.Reader.
func seeded(seed byte) io.Reader {
	var s [32]byte
	s[0] = seed
	return rand.NewChaCha8(s)
}

// dgaussPMF returns the exact probabilities of the discrete Gaussian with
// parameter sigma2 on [-n, n].
func dgaussPMF(sigma2 float64, n int) map[int64]float64 {
	p := make(map[int64]float64)
	var z float64
	for x := -10 * n; x <= 10*n; x++ {
		z += math.Exp(-float64(x*x) / (2 * sigma2))
	}
	for x := -n; x <= n; x++ {
		p[int64(x)] = math.Exp(-float64(x*x)/(2*sigma2)) / z
	}
	return p
}

// TestDiscreteGaussianMoments checks mean ≈ 0 and variance ≈ σ² over many
// draws from a fixed seed, at small, medium and large σ. The bounds are five
// standard errors.
func TestDiscreteGaussianMoments(t *testing.T) {
	for _, sigma := range []float64{1, 3.7, 100, 12345.6, 1e6, 1 << 29} {
		g, err := NewDiscreteGaussian(sigma)
		if err != nil {
			t.Fatal(err)
		}
		n := 200000
		xs := make([]int64, n)
		if err := g.Fill(xs, seeded(1)); err != nil {
			t.Fatal(err)
		}
		var sum, sq float64
		for _, x := range xs {
			f := float64(x)
			sum += f
			sq += f * f
		}
		mean := sum / float64(n)
		variance := sq/float64(n) - mean*mean
		v := g.Variance()
		if se := math.Sqrt(v / float64(n)); math.Abs(mean) > 5*se {
			t.Errorf("σ=%v: mean %v, more than 5 standard errors (%v) from 0", sigma, mean, se)
		}
		// The variance of the sample variance of a (near-)Gaussian is 2σ⁴/n.
		if se := v * math.Sqrt(2/float64(n)); math.Abs(variance-v) > 5*se {
			t.Errorf("σ=%v: variance %v, want %v ± %v", sigma, variance, v, 5*se)
		}
	}
}

// TestDiscreteGaussianPMF compares the histogram of draws with the exact
// probabilities by a chi-squared test, for σ below, at and above 1.
func TestDiscreteGaussianPMF(t *testing.T) {
	for _, sigma := range []float64{0.3, 0.8, 1.5, 4} {
		g, err := NewDiscreteGaussian(sigma)
		if err != nil {
			t.Fatal(err)
		}
		s2, _ := g.Sigma2().Float64()
		const n = 200000
		xs := make([]int64, n)
		if err := g.Fill(xs, seeded(2)); err != nil {
			t.Fatal(err)
		}
		k := int(6*sigma) + 1
		pmf := dgaussPMF(s2, k)
		counts := make(map[int64]float64)
		for _, x := range xs {
			counts[x]++
		}
		// One bin per value expected at least 5 times, one bin for the rest.
		var chi2, seenIn, expectIn float64
		bins := 0
		for x := -k; x <= k; x++ {
			e := n * pmf[int64(x)]
			if e < 5 {
				continue
			}
			d := counts[int64(x)] - e
			chi2 += d * d / e
			seenIn += counts[int64(x)]
			expectIn += e
			bins++
		}
		if rest := n - expectIn; rest >= 5 {
			d := (n - seenIn) - rest
			chi2 += d * d / rest
			bins++
		}
		// For ν = bins−1 ≤ 50 degrees of freedom, ν + 5√(2ν) is far in
		// the tail of the chi-squared distribution (p < 1e-4).
		nu := float64(bins - 1)
		if chi2 > nu+5*math.Sqrt(2*nu) {
			t.Errorf("σ=%v: χ² = %.1f with %v degrees of freedom", sigma, chi2, nu)
		}
	}
}

func TestDiscreteGaussianDeterministic(t *testing.T) {
	g, _ := NewDiscreteGaussian(2.5)
	a := make([]int64, 1000)
	b := make([]int64, 1000)
	if err := g.Fill(a, seeded(7)); err != nil {
		t.Fatal(err)
	}
	if err := g.Fill(b, seeded(7)); err != nil {
		t.Fatal(err)
	}
	c := make([]int64, 1000)
	if err := g.Fill(c, seeded(8)); err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("draw %d differs with the same seed: %d, %d", i, a[i], b[i])
		}
		if a[i] == c[i] {
			same++
		}
	}
	if same > 400 {
		t.Errorf("different seeds agree on %d of 1000 draws", same)
	}
	r1, r2 := seeded(3), seeded(3)
	for range 100 {
		x, err1 := g.Sample(r1)
		y, err2 := g.Sample(r2)
		if err1 != nil || err2 != nil || x != y {
			t.Fatalf("Sample: %d, %v and %d, %v", x, err1, y, err2)
		}
	}
}

func TestDiscreteGaussianParameter(t *testing.T) {
	for _, sigma := range []float64{MinSigma, 0.3, 1, 1.1, math.Pi, 1000.5, 1e6, MaxSigma} {
		g, err := NewDiscreteGaussian(sigma)
		if err != nil {
			t.Fatal(err)
		}
		s2, _ := g.Sigma2().Float64()
		if s2 < sigma*sigma || s2 > sigma*sigma*(1+1e-8) {
			t.Errorf("σ=%v: σ² parameter %v, want in [σ², σ²(1+1e-8)]", sigma, s2)
		}
		if g.d >= 1<<62 || g.d != 2*g.t*g.s*g.b {
			t.Errorf("σ=%v: denominator %d out of range", sigma, g.d)
		}
		if v := g.Variance(); v > s2 || (sigma >= 1 && v < s2*(1-1e-6)) {
			t.Errorf("σ=%v: variance %v, parameter %v", sigma, v, s2)
		}
	}
	for _, sigma := range []float64{0, -1, math.NaN(), math.Inf(1), MinSigma / 2, MaxSigma * 2} {
		if _, err := NewDiscreteGaussian(sigma); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewDiscreteGaussian(%v) = %v, want ErrInvalid", sigma, err)
		}
	}
	g, _ := NewDiscreteGaussian(1)
	if _, err := g.Sample(nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("Sample(nil) = %v", err)
	}
}

type constReader byte

func (c constReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(c)
	}
	return len(p), nil
}

// TestDiscreteGaussianBrokenSource checks that a broken random source ends
// in an error, never in an endless loop or a panic.
func TestDiscreteGaussianBrokenSource(t *testing.T) {
	for _, sigma := range []float64{0.5, 3, 1e6} {
		g, _ := NewDiscreteGaussian(sigma)
		for _, r := range []io.Reader{constReader(0), constReader(0xff)} {
			xs := make([]int64, 10)
			if err := g.Fill(xs, r); !errors.Is(err, ErrRandomness) {
				t.Errorf("σ=%v, constant bytes %x: %v, want ErrRandomness", sigma, r, err)
			}
		}
		// Other constant patterns may or may not stall the sampler; either
		// way it must return.
		for c := range 256 {
			_ = g.Fill(make([]int64, 3), constReader(c))
		}
		if _, err := g.Sample(bytes.NewReader(make([]byte, 3))); !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Errorf("short reader: %v", err)
		}
		want := errors.New("entropy pool offline")
		if err := g.Fill(make([]int64, 1), iotestErr{want}); !errors.Is(err, want) {
			t.Errorf("failing reader: %v", err)
		}
	}
}

type iotestErr struct{ err error }

func (r iotestErr) Read([]byte) (int, error) { return 0, r.err }

func TestBernoulliExp(t *testing.T) {
	// Bernoulli(exp(−γ)) for γ = whole + num/den, against the exact rate.
	src := newSource(seeded(4), 4096)
	for _, c := range []struct{ whole, num, den uint64 }{{0, 0, 1}, {0, 1, 1}, {0, 1, 3}, {0, 7, 10}, {1, 1, 2}, {2, 5, 7}, {0, 1 << 61, 1<<62 - 1}} {
		const n = 100000
		var hits int
		for range n {
			ok, err := src.bernoulliExp(c.whole, c.num, c.den)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				hits++
			}
		}
		p := math.Exp(-(float64(c.whole) + float64(c.num)/float64(c.den)))
		if se := math.Sqrt(p * (1 - p) / n); math.Abs(float64(hits)/n-p) > 5*se+1e-12 {
			t.Errorf("exp(−(%d + %d/%d)): rate %v, want %v", c.whole, c.num, c.den, float64(hits)/n, p)
		}
	}
}

func BenchmarkDiscreteGaussian(b *testing.B) {
	for _, bc := range []struct {
		name  string
		sigma float64
		r     io.Reader
	}{
		{"sigma=10/chacha8", 10, seeded(1)},
		{"sigma=1e3/chacha8", 1e3, seeded(1)},
		{"sigma=1e6/chacha8", 1e6, seeded(1)},
		{"sigma=1e6/crypto_rand", 1e6, crand.Reader},
	} {
		b.Run(bc.name, func(b *testing.B) {
			g, _ := NewDiscreteGaussian(bc.sigma)
			xs := make([]int64, 1024)
			b.ResetTimer()
			for b.Loop() {
				if err := g.Fill(xs, bc.r); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/sample")
		})
	}
}

// BenchmarkGaussianFloat is the baseline measured in the same run: an
// ordinary floating-point Gaussian (math/rand/v2 NormFloat64 over ChaCha8),
// which is fast but unsafe for privacy.
func BenchmarkGaussianFloat(b *testing.B) {
	var s [32]byte
	r := rand.New(rand.NewChaCha8(s))
	xs := make([]float64, 1024)
	for b.Loop() {
		for i := range xs {
			xs[i] = 1e6 * r.NormFloat64()
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/sample")
}
