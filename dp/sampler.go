package dp

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"math/big"
	"math/bits"
)

// Loop limits of the sampler. A working random source exceeds any of them
// with probability below 2^-1000; a broken one (constant bytes) hits them
// instead of looping forever, and the sampler reports ErrRandomness.
const (
	maxRejections = 1000    // uniform draws rejected in a row
	maxK          = 1000    // length of the Bernoulli(exp(−γ)) series
	maxGeometric  = 1 << 16 // successes of Bernoulli(exp(−1)) in a row
	maxAttempts   = 10000   // rejected candidates of one discrete Gaussian
)

// source turns an io.Reader into exact uniform integers and Bernoulli
// variables. It reads ahead into a buffer, so it may consume more bytes from
// the reader than it uses.
type source struct {
	r    io.Reader
	buf  []byte
	pos  int
	res  uint64 // unused random bits
	nres uint   // how many bits of res are unused
}

func newSource(r io.Reader, bufSize int) *source {
	return &source{r: r, buf: make([]byte, bufSize), pos: bufSize}
}

// word returns 64 fresh random bits.
func (s *source) word() (uint64, error) {
	if s.pos+8 > len(s.buf) {
		if _, err := io.ReadFull(s.r, s.buf); err != nil {
			return 0, fmt.Errorf("dp: reading randomness: %w", err)
		}
		s.pos = 0
	}
	w := binary.LittleEndian.Uint64(s.buf[s.pos:])
	s.pos += 8
	return w, nil
}

// bits returns k (≤ 64) fresh random bits.
func (s *source) bits(k uint) (uint64, error) {
	if k == 64 {
		return s.word()
	}
	if s.nres < k {
		w, err := s.word()
		if err != nil {
			return 0, err
		}
		s.res, s.nres = w, 64
	}
	v := s.res & (1<<k - 1)
	s.res >>= k
	s.nres -= k
	return v, nil
}

// uniform returns an integer uniform in [0, n), n ≥ 1, by rejection from the
// smallest enclosing power of two: exact, at most two draws on average.
func (s *source) uniform(n uint64) (uint64, error) {
	if n <= 1 {
		return 0, nil
	}
	k := uint(bits.Len64(n - 1))
	for range maxRejections {
		x, err := s.bits(k)
		if err != nil {
			return 0, err
		}
		if x < n {
			return x, nil
		}
	}
	return 0, ErrRandomness
}

// bernoulli returns true with probability num/den, 0 ≤ num ≤ den, den ≥ 1.
func (s *source) bernoulli(num, den uint64) (bool, error) {
	u, err := s.uniform(den)
	return u < num, err
}

// bernoulliExpFrac returns true with probability exp(−num/den), for
// 0 ≤ num ≤ den (CKS20, Algorithm 1, first part): with K the first index at
// which a Bernoulli(γ/K) comes up false, P[K odd] = exp(−γ). Bernoulli(γ/K) is
// drawn as the conjunction of Bernoulli(1/K) and Bernoulli(num/den), which
// keeps every denominator within 64 bits.
func (s *source) bernoulliExpFrac(num, den uint64) (bool, error) {
	for k := uint64(1); k <= maxK; k++ {
		if k > 1 {
			u, err := s.uniform(k)
			if err != nil {
				return false, err
			}
			if u != 0 {
				return k%2 == 1, nil
			}
		}
		ok, err := s.bernoulli(num, den)
		if err != nil {
			return false, err
		}
		if !ok {
			return k%2 == 1, nil
		}
	}
	return false, ErrRandomness
}

// bernoulliExp returns true with probability exp(−(whole + num/den)), for
// 0 ≤ num < den (CKS20, Algorithm 1, second part): exp(−1) whole times, then
// the fraction.
func (s *source) bernoulliExp(whole, num, den uint64) (bool, error) {
	for i := uint64(0); i < whole; i++ {
		if i >= maxGeometric {
			return false, ErrRandomness
		}
		ok, err := s.bernoulliExpFrac(1, 1)
		if err != nil || !ok {
			return false, err
		}
	}
	return s.bernoulliExpFrac(num, den)
}

// laplace returns a discrete Laplace variable with scale t ≥ 1:
// P[Y = y] ∝ exp(−|y|/t) (CKS20, Algorithm 2, with s = 1).
func (s *source) laplace(t uint64) (int64, error) {
	for range maxAttempts {
		u, err := s.uniform(t)
		if err != nil {
			return 0, err
		}
		ok, err := s.bernoulliExpFrac(u, t)
		if err != nil {
			return 0, err
		}
		if !ok {
			continue
		}
		var v uint64 // geometric: successes of Bernoulli(exp(−1)) before a failure
		for {
			if v >= maxGeometric {
				return 0, ErrRandomness
			}
			ok, err := s.bernoulliExpFrac(1, 1)
			if err != nil {
				return 0, err
			}
			if !ok {
				break
			}
			v++
		}
		hi, x := bits.Mul64(v, t)
		x += u
		if hi != 0 || x < u || x > math.MaxInt64 {
			continue // |Y| ≥ 2^63: probability below exp(−2^63/t); redraw
		}
		neg, err := s.bits(1)
		if err != nil {
			return 0, err
		}
		if neg == 1 {
			if x == 0 {
				continue
			}
			return -int64(x), nil
		}
		return int64(x), nil
	}
	return 0, ErrRandomness
}

// Range of the discrete Gaussian's σ accepted by NewDiscreteGaussian.
const (
	MinSigma = 1.0 / 1024
	MaxSigma = 1 << 30
)

// DiscreteGaussian samples the discrete Gaussian distribution on the
// integers, P[X = x] ∝ exp(−x²/(2σ²)), exactly, with the algorithm of
// Canonne, Kamath and Steinke (2020), Algorithm 3: a discrete Laplace
// candidate Y of scale t = ⌊σ⌋ + 1 is accepted with probability
// exp(−(|Y| − σ²/t)²/(2σ²)). Every probability is a ratio of integers, and
// every random choice is a comparison of uniform integers drawn from the
// reader: no floating-point number touches a sample, so the output
// distribution has none of the holes and biases that make floating-point
// samplers leak (Mironov 2012).
//
// The parameter σ² is held as the rational t·s/b, with b a power of two and
// s an integer, rounded up from the requested σ² (see [DiscreteGaussian.Sigma2]),
// so the noise is never smaller than asked for. With μ = σ²/t = s/b the
// acceptance exponent is (b|Y| − s)²/(2tsb), a ratio of 128-bit and 64-bit
// integers: b is chosen as large as possible with 2tsb < 2^62, which keeps σ²
// exact to a relative 2^-30 or better across [MinSigma, MaxSigma].
//
// The sampler is exact except that a candidate whose acceptance exponent
// exceeds 2^64 is rejected outright: its true acceptance probability is below
// exp(−2^64).
//
// A DiscreteGaussian holds no state besides its parameter and is safe for
// concurrent use.
type DiscreteGaussian struct {
	sigma   float64 // requested σ
	t, s, b uint64  // σ² = t·s/b; Laplace scale t
	d       uint64  // 2·t·s·b, the acceptance denominator
}

// NewDiscreteGaussian returns a sampler for the discrete Gaussian with
// parameter sigma (approximately its standard deviation; see
// [DiscreteGaussian.Variance]). sigma must be in [MinSigma, MaxSigma].
func NewDiscreteGaussian(sigma float64) (*DiscreteGaussian, error) {
	if !(sigma >= MinSigma && sigma <= MaxSigma) {
		return nil, invalid("discrete Gaussian σ=%v is outside [%g, %g]", sigma, MinSigma, float64(MaxSigma))
	}
	t := uint64(math.Floor(sigma)) + 1
	sig2 := new(big.Rat).SetFloat64(sigma)
	sig2.Mul(sig2, sig2)
	limit := new(big.Int).Lsh(big.NewInt(1), 62)
	for m := 62; m >= 0; m-- {
		b := uint64(1) << m
		// s = ⌈σ²·b/t⌉
		x := new(big.Rat).Mul(sig2, new(big.Rat).SetFrac(new(big.Int).SetUint64(b), new(big.Int).SetUint64(t)))
		s, rem := new(big.Int).QuoRem(x.Num(), x.Denom(), new(big.Int))
		if rem.Sign() != 0 {
			s.Add(s, big.NewInt(1))
		}
		d := new(big.Int).Mul(s, new(big.Int).SetUint64(2*t))
		d.Mul(d, new(big.Int).SetUint64(b))
		if d.Cmp(limit) < 0 {
			return &DiscreteGaussian{sigma: sigma, t: t, s: s.Uint64(), b: b, d: d.Uint64()}, nil
		}
	}
	return nil, invalid("discrete Gaussian σ=%v cannot be represented", sigma) // unreachable within [MinSigma, MaxSigma]
}

// Sigma2 returns the exact parameter σ² the sampler uses, a rational at least
// the square of the σ it was created with.
func (g *DiscreteGaussian) Sigma2() *big.Rat {
	n := new(big.Int).Mul(new(big.Int).SetUint64(g.t), new(big.Int).SetUint64(g.s))
	return new(big.Rat).SetFrac(n, new(big.Int).SetUint64(g.b))
}

// Variance returns the variance of the distribution, Σ x² P[x]. It is below
// σ²; the gap is about 4π²σ⁴·exp(−2π²σ²) (by Poisson summation), a relative
// 2e-7 at σ = 1 and below double precision from σ = 1.5 on, where Variance
// returns σ² itself.
func (g *DiscreteGaussian) Variance() float64 {
	s2, _ := g.Sigma2().Float64()
	if s2 >= 2.25 {
		return s2
	}
	var num, den float64 = 0, 1
	for x := 1.0; x < 100; x++ {
		p := math.Exp(-x * x / (2 * s2))
		num += 2 * x * x * p
		den += 2 * p
	}
	return num / den
}

// Sample draws one value, reading randomness from r. In production r must
// be crypto/rand.Reader (or another cryptographically secure source); tests
// pass a seeded reader for reproducibility. Sample reads 8 bytes at a time;
// to draw many values, use Fill, which buffers.
func (g *DiscreteGaussian) Sample(r io.Reader) (int64, error) {
	if r == nil {
		return 0, invalid("nil random source")
	}
	return g.sample(newSource(r, 8))
}

// Fill sets every element of dst to an independent draw, reading randomness
// from r through a buffer (so it may read past what it uses). On error, dst
// holds draws up to an unspecified point and must be discarded.
func (g *DiscreteGaussian) Fill(dst []int64, r io.Reader) error {
	if r == nil {
		return invalid("nil random source")
	}
	src := newSource(r, 4096)
	for i := range dst {
		x, err := g.sample(src)
		if err != nil {
			return err
		}
		dst[i] = x
	}
	return nil
}

func (g *DiscreteGaussian) sample(src *source) (int64, error) {
	for range maxAttempts {
		y, err := src.laplace(g.t)
		if err != nil {
			return 0, err
		}
		mag := uint64(y)
		if y < 0 {
			mag = uint64(-y)
		}
		// Accept with probability exp(−(b|Y| − s)²/(2tsb)).
		hi, by := bits.Mul64(g.b, mag)
		if hi != 0 {
			continue // exponent ≥ 2^64
		}
		x := by - g.s
		if by < g.s {
			x = g.s - by
		}
		hi, lo := bits.Mul64(x, x)
		if hi >= g.d {
			continue // exponent ≥ 2^64
		}
		whole, frac := bits.Div64(hi, lo, g.d)
		ok, err := src.bernoulliExp(whole, frac, g.d)
		if err != nil {
			return 0, err
		}
		if ok {
			return y, nil
		}
	}
	return 0, ErrRandomness
}
