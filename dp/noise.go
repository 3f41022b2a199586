package dp

import (
	"fmt"
	"io"
	"math"

	"github.com/cloisterfl/cloister/fl"
)

// DefaultBits is the grid resolution AddNoise uses: values are multiples of
// 2^-20 ≈ 9.5e-7.
const DefaultBits = 20

// MaxBits is the finest grid resolution NewNoise accepts.
const MaxBits = 40

// MinGridSigma is the smallest noise standard deviation, in grid steps, that
// NewNoise accepts. Below about one grid step the rounding to the grid would
// be as large as the noise, and the sum of the nodes' discrete Gaussians
// would stray from a discrete Gaussian (see [DistributedMultiplier]).
const MinGridSigma = 1

// Noise adds discrete Gaussian noise on a fixed-point grid of resolution
// 2^-bits. Add maps each element x to
//
//	(R(x·2^bits) + Z) · 2^-bits,
//
// where R rounds randomly to one of the two neighbouring integers, up with
// probability equal to the fractional part (so E[R(y)] = y, to within
// 2^-53), and Z is an independent draw from the discrete Gaussian with
// σ_grid = std·2^bits (see [DiscreteGaussian]). The results are exact
// multiples of 2^-bits.
//
// Rounding moves each element by less than one grid step, so a vector of
// dimension d and L2 norm at most C has norm below C + √d·2^-bits after it:
// that, not C, is the sensitivity the privacy guarantee must use
// ([QuantizedSensitivity], [DistributedMultiplier]).
//
// A Noise holds no state besides its parameters and is safe for concurrent
// use (each call with its own reader).
type Noise struct {
	std  float64
	bits int
	g    *DiscreteGaussian
}

// NewNoise returns a Noise that adds discrete Gaussian noise of standard
// deviation std (in the units of the vector) on the grid of resolution
// 2^-bits. bits must be in [0, MaxBits] and std·2^bits in
// [MinGridSigma, MaxSigma].
func NewNoise(std float64, bits int) (*Noise, error) {
	if bits < 0 || bits > MaxBits {
		return nil, invalid("grid resolution bits=%d is outside [0, %d]", bits, MaxBits)
	}
	if !(std > 0) || math.IsInf(std, 1) {
		return nil, invalid("noise standard deviation %v must be positive and finite", std)
	}
	sg := math.Ldexp(std, bits)
	if !(sg >= MinGridSigma && sg <= MaxSigma) {
		return nil, invalid("noise standard deviation %v is %v grid steps of 2^-%d, outside [%v, %v]; choose another resolution",
			std, sg, bits, MinGridSigma, float64(MaxSigma))
	}
	g, err := NewDiscreteGaussian(sg)
	if err != nil {
		return nil, err
	}
	return &Noise{std: std, bits: bits, g: g}, nil
}

// Std returns the requested standard deviation, in the units of the vector.
func (n *Noise) Std() float64 { return n.std }

// Bits returns the grid resolution: values are multiples of 2^-Bits.
func (n *Noise) Bits() int { return n.bits }

// Sampler returns the discrete Gaussian sampler, whose parameter is in grid
// steps.
func (n *Noise) Sampler() *DiscreteGaussian { return n.g }

// maxGrid bounds |x|·2^bits so that the rounded value plus any plausible
// noise stays an integer that float64 represents exactly.
const maxGrid = 1 << 51

// Add rounds v to the grid and adds noise, in place, reading randomness
// from r. In production r must be crypto/rand.Reader; tests pass a seeded
// reader.
//
// It first checks every element: a NaN or infinity gives an error wrapping
// ErrNonFinite, an element with |x|·2^bits ≥ 2^51 one wrapping ErrRange, and v
// is left unchanged. An error from r can stop Add halfway, leaving v
// partly noised: discard v then, and never send it.
func (n *Noise) Add(v fl.Vector, r io.Reader) error {
	if r == nil {
		return invalid("nil random source")
	}
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return fmt.Errorf("%w: element %d of the vector to noise is %v", ErrNonFinite, i, x)
		}
		if math.Abs(math.Ldexp(x, n.bits)) >= maxGrid {
			return fmt.Errorf("%w: element %d is %v, at least 2^%d on the grid of 2^-%d", ErrRange, i, x, 51-n.bits, n.bits)
		}
	}
	src := newSource(r, 4096)
	for i, x := range v {
		y := math.Ldexp(x, n.bits)
		f := math.Floor(y)
		k := int64(f)
		if frac := y - f; frac > 0 {
			u, err := src.bits(53)
			if err != nil {
				return err
			}
			if float64(u) < math.Ldexp(frac, 53) {
				k++
			}
		}
		z, err := n.g.sample(src)
		if err != nil {
			return err
		}
		if z >= 1<<52 || z <= -(1<<52) {
			// More than 2^21 standard deviations: never happens with a real
			// source, but keep the result exact if it does.
			return fmt.Errorf("%w: noise draw %d overflows the grid", ErrRange, z)
		}
		v[i] = math.Ldexp(float64(k+z), -n.bits)
	}
	return nil
}

// AddNoise adds discrete Gaussian noise of standard deviation std to v in
// place, on the grid of resolution 2^-DefaultBits, reading randomness from r
// (crypto/rand.Reader in production). It is NewNoise(std, DefaultBits)
// followed by Add; build a Noise once to noise many vectors.
func AddNoise(v fl.Vector, std float64, r io.Reader) error {
	n, err := NewNoise(std, DefaultBits)
	if err != nil {
		return err
	}
	return n.Add(v, r)
}

// NoiseShare returns the standard deviation each node adds so that the sum
// over any k honest nodes carries noise of standard deviation at least
// sigma·clip: sigma·clip/√k. Here sigma is the noise multiplier the
// accountant uses, clip the L2 clipping norm of each update, and k the
// federation manifest's minimum number of honest nodes in an aggregate.
// Nodes beyond k only add noise; a dishonest node may add none, which is why
// k counts honest nodes only.
func NoiseShare(sigma, clip float64, k int) (float64, error) {
	if !(sigma > 0) || math.IsInf(sigma, 1) {
		return 0, invalid("noise multiplier σ=%v must be positive and finite", sigma)
	}
	if !(clip > 0) || math.IsInf(clip, 1) {
		return 0, invalid("clipping norm %v must be positive and finite", clip)
	}
	if k < 1 {
		return 0, invalid("minimum honest cohort k=%d must be at least 1", k)
	}
	return sigma * clip / math.Sqrt(float64(k)), nil
}

// QuantizedSensitivity returns the L2 sensitivity of an update of dimension
// dim clipped to norm clip and then rounded to the grid of resolution
// 2^-bits: clip + √dim·2^-bits, since rounding moves each element by less than
// one step.
func QuantizedSensitivity(clip float64, dim, bits int) (float64, error) {
	if !(clip > 0) || math.IsInf(clip, 1) {
		return 0, invalid("clipping norm %v must be positive and finite", clip)
	}
	if dim < 0 {
		return 0, invalid("dimension %d is negative", dim)
	}
	if bits < 0 || bits > MaxBits {
		return 0, invalid("grid resolution bits=%d is outside [0, %d]", bits, MaxBits)
	}
	return clip + math.Ldexp(math.Sqrt(float64(dim)), -bits), nil
}

// DistributedMultiplier returns the noise multiplier to give the accountant
// when k honest nodes each clip their update of dimension dim to clip, round
// it to the grid of resolution 2^-bits, and add discrete Gaussian noise of
// standard deviation NoiseShare(sigma, clip, k), and the aggregate is their
// sum. The result z is at most sigma.
//
// The sum of k discrete Gaussians is not a discrete Gaussian. Kairouz, Liu
// and Steinke (2021), Proposition 14 (Theorem 1 in the introduction), bound
// its Rényi divergence at every order α by α/2·(Δ/(√k·σ_g) + τ√d)², where σ_g
// is each node's σ in grid steps, Δ = clip·2^bits + √dim the sensitivity in
// grid steps (see [QuantizedSensitivity]) and τ = 10·Σ_{j=1}^{k−1}
// exp(−2π²σ_g²·j/(j+1)). That is the RDP of a Gaussian mechanism with noise
// multiplier z = 1/(Δ/(√k·σ_g) + τ√d), which is what this returns: use it in
// place of sigma in [Accountant.Compose] and [Budget]. The bound needs
// σ_g ≥ 1/2. For σ_g of a few grid steps or more τ is below 1e-30 and z is
// sigma·clip/(clip + √dim·2^-bits); the rounding term √dim·2^-bits is the one
// to keep small by choosing bits.
//
// The bound is exact for q = 1 (every node takes part in every round). For
// q < 1 the accountant applies the subsampled-Gaussian analysis of Mironov,
// Talwar and Zhang (2019) to the multiplier z; that analysis is proved for
// the continuous Gaussian, and using it for the distributed discrete
// Gaussian is an approximation, as is standard in practice.
func DistributedMultiplier(sigma, clip float64, k, dim, bits int) (float64, error) {
	std, err := NoiseShare(sigma, clip, k)
	if err != nil {
		return 0, err
	}
	delta, err := QuantizedSensitivity(clip, dim, bits)
	if err != nil {
		return 0, err
	}
	sg := math.Ldexp(std, bits)
	if !(sg >= 0.5) {
		return 0, invalid("each node's noise is %v grid steps of 2^-%d; the distributed discrete Gaussian bound needs at least 1/2", sg, bits)
	}
	var tau float64
	for j := 1; j < k; j++ {
		tau += math.Exp(-2 * math.Pi * math.Pi * sg * sg * float64(j) / float64(j+1))
	}
	tau *= 10
	deltaGrid := math.Ldexp(delta, bits)
	return 1 / (deltaGrid/(math.Sqrt(float64(k))*sg) + tau*math.Sqrt(float64(dim))), nil
}
