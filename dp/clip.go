package dp

import (
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
)

// Clip scales v in place so that its L2 norm is at most c, and returns the
// factor it applied: 1 if the norm was already at most c (a zero vector
// included), c/‖v‖ otherwise. The norm is computed with scaling, so elements
// as large as math.MaxFloat64 do not overflow it, and after clipping the
// computed norm is guaranteed to be at most c (the factor is nudged down by a
// few ulps if rounding would otherwise leave it a hair above).
//
// c must be positive and finite. If v holds a NaN or an infinity, Clip
// returns an error wrapping ErrNonFinite that names the first such element,
// and leaves v unchanged.
func Clip(v fl.Vector, c float64) (scale float64, err error) {
	if !(c > 0) || math.IsInf(c, 1) {
		return 0, invalid("clipping norm c=%v must be positive and finite", c)
	}
	n := norm(v)
	if math.IsNaN(n) || math.IsInf(n, 0) {
		for i, x := range v {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				return 0, fmt.Errorf("%w: element %d of the vector to clip is %v", ErrNonFinite, i, x)
			}
		}
	}
	if n <= c {
		return 1, nil
	}
	scale = c / n
	v.Scale(c / n)
	// Rounding in the scaling and in the norm can leave the computed norm a
	// few ulps above c; shrink until it is not.
	for range 64 {
		n = norm(v)
		if n <= c {
			return scale, nil
		}
		f := math.Nextafter(c/n, 0)
		v.Scale(f)
		scale *= f
	}
	return scale, nil
}

// norm returns the L2 norm of v without overflow or harmful underflow: the
// plain sum of squares when it is safe, else the scaled sum of squares of
// LAPACK's dnrm2. It returns NaN or Inf only if v holds a NaN or an infinity.
func norm(v fl.Vector) float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	if s >= 0x1p-900 && s <= math.MaxFloat64 {
		return math.Sqrt(s)
	}
	if math.IsNaN(s) {
		return s
	}
	var m float64
	for _, x := range v {
		if a := math.Abs(x); a > m || math.IsNaN(a) {
			m = a
		}
	}
	if m == 0 || math.IsInf(m, 0) || math.IsNaN(m) {
		return m
	}
	s = 0
	for _, x := range v {
		r := x / m
		s += r * r
	}
	return m * math.Sqrt(s)
}
