package compress

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/fl"
)

// MaxExact is the largest magnitude, after scaling, that a Quantizer
// encodes: 2⁵², below which float64 holds every integer and its fractional
// part exactly enough for rounding.
const MaxExact = 1 << 52

// Quantizer maps vectors to fixed-point integers modulo 2^bits, for
// aggregation modes that add integers (secagg masks, Paillier plaintexts),
// and maps sums of them back. It is an immutable value built by
// NewQuantizer for a given number of summands, and refuses to encode any
// value that a sum of that many encodings could overflow with (see the
// package documentation).
type Quantizer struct {
	scale    float64
	bits     int
	summands int
	maxAbs   float64
}

// NewQuantizer returns a Quantizer that encodes x as R(x·scale) in two's
// complement modulo 2^bits, for sums of up to summands encodings.
// scale must be positive and finite, bits in [2, 64], summands at least 1,
// and the resulting MaxAbs positive.
func NewQuantizer(scale float64, bits, summands int) (*Quantizer, error) {
	if !(scale > 0) || math.IsInf(scale, 0) {
		return nil, fmt.Errorf("%w: quantizer scale %v, want a finite value > 0", ErrSpec, scale)
	}
	if bits < 2 || bits > 64 {
		return nil, fmt.Errorf("%w: quantizer bits %d outside [2, 64]", ErrSpec, bits)
	}
	if summands < 1 {
		return nil, fmt.Errorf("%w: quantizer for %d summands, want at least 1", ErrSpec, summands)
	}
	// Each encoding has magnitude ≤ |x|·scale + 1; the sum of n of them
	// must stay ≤ 2^(bits−1) − 1.
	limit := (math.Ldexp(1, bits-1) - 1) / float64(summands)
	perValue := math.Min(limit-1, MaxExact)
	if perValue <= 0 {
		return nil, fmt.Errorf("%w: %d bits cannot hold the sum of %d encodings", ErrRange, bits, summands)
	}
	return &Quantizer{scale: scale, bits: bits, summands: summands, maxAbs: perValue / scale}, nil
}

// Scale returns the scale: one unit of the integer encoding is 1/scale.
func (q *Quantizer) Scale() float64 { return q.scale }

// Bits returns the width of the integers.
func (q *Quantizer) Bits() int { return q.bits }

// Summands returns how many encodings may be summed.
func (q *Quantizer) Summands() int { return q.summands }

// MaxAbs returns the largest |x| Encode accepts:
// min(((2^(bits−1) − 1)/summands − 1), 2⁵²) / scale.
func (q *Quantizer) MaxAbs() float64 { return q.maxAbs }

func (q *Quantizer) mask() uint64 {
	if q.bits == 64 {
		return math.MaxUint64
	}
	return 1<<q.bits - 1
}

// Encode returns the encodings of v's elements, each in [0, 2^bits).
// With rng, each x·scale is rounded at random to one of its two integer
// neighbours, up with probability equal to its fractional part, so the
// decoded value is unbiased; with rng nil it is rounded to nearest.
// An element that is not finite or exceeds MaxAbs in magnitude is an error
// naming it.
func (q *Quantizer) Encode(v fl.Vector, rng *rand.Rand) ([]uint64, error) {
	out := make([]uint64, len(v))
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("%w: element %d is %v", ErrNonFinite, i, x)
		}
		if math.Abs(x) > q.maxAbs {
			return nil, fmt.Errorf("%w: element %d is %g, beyond the quantizer's bound %g for %d summands of %d bits", ErrRange, i, x, q.maxAbs, q.summands, q.bits)
		}
		y := x * q.scale
		var r float64
		if rng != nil {
			r = math.Floor(y)
			if rng.Float64() < y-r {
				r++
			}
		} else {
			r = math.RoundToEven(y)
		}
		out[i] = uint64(int64(r)) & q.mask()
	}
	return out, nil
}

// Add sets dst to dst + src modulo 2^bits, element by element. The sum of
// encodings decodes to the sum of the decoded values as long as no more
// than Summands encodings were added.
func (q *Quantizer) Add(dst, src []uint64) error {
	if len(dst) != len(src) {
		return fmt.Errorf("quantizer: adding %d encodings to %d: %w", len(src), len(dst), fl.ErrDimension)
	}
	m := q.mask()
	for i := range dst {
		dst[i] = (dst[i] + src[i]) & m
	}
	return nil
}

// Decode maps encodings (or a modular sum of at most Summands of them) back
// to values: the integer read in two's complement, divided by scale.
// An element at or above 2^bits is an error wrapping ErrFormat.
func (q *Quantizer) Decode(enc []uint64) (fl.Vector, error) {
	m := q.mask()
	half := uint64(1) << (q.bits - 1)
	v := make(fl.Vector, len(enc))
	for i, e := range enc {
		if e&^m != 0 {
			return nil, fmt.Errorf("%w: encoding %d is %d, beyond %d bits", ErrFormat, i, e, q.bits)
		}
		var s int64
		switch {
		case q.bits == 64:
			s = int64(e)
		case e >= half:
			s = int64(e) - int64(1)<<q.bits
		default:
			s = int64(e)
		}
		v[i] = float64(s) / q.scale
	}
	return v, nil
}
