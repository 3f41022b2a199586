package robust

import (
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
)

// Mean is the plain (optionally weighted) mean: FedAvg's aggregation. It is
// not robust: one update moves it arbitrarily far, and it refuses non-finite
// updates rather than return NaN.
type Mean struct{}

// NewMean returns the mean rule.
func NewMean() *Mean { return &Mean{} }

// Name returns "Mean".
func (*Mean) Name() string { return "Mean" }

// String returns "mean".
func (*Mean) String() string { return "mean" }

// Aggregate returns the mean of updates.
func (r *Mean) Aggregate(updates []fl.Vector) (fl.Vector, error) {
	kept, _, err := prepare(r.Name(), updates, 0)
	if err != nil {
		return nil, err
	}
	return average(len(kept[0]), kept, nil), nil
}

// AggregateWeighted returns Σ wᵢxᵢ / Σ wᵢ.
func (r *Mean) AggregateWeighted(updates []fl.Vector, weights []float64) (fl.Vector, error) {
	kept, _, err := prepare(r.Name(), updates, 0)
	if err != nil {
		return nil, err
	}
	p, err := probabilities(r.Name(), weights, len(kept))
	if err != nil {
		return nil, err
	}
	return average(len(kept[0]), kept, p), nil
}

// Median is FedMedian: the coordinate-wise median. With an even number of
// updates it is the midpoint of the two middle values.
type Median struct{ n, f int }

// NewMedian returns the coordinate-wise median for n updates of which f may
// be Byzantine. It requires 2f < n.
func NewMedian(n, f int) (*Median, error) {
	r := &Median{n: n, f: f}
	if err := r.feasible(n); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Median) feasible(n int) error {
	if err := checkNF(r.Name(), n, r.f); err != nil {
		return err
	}
	if 2*r.f >= n {
		return &InfeasibleError{Rule: r.Name(), N: n, F: r.f, Need: "2f < n"}
	}
	return nil
}

// Name returns "FedMedian".
func (*Median) Name() string { return "FedMedian" }

// String returns the canonical spec, "median:f=F".
func (r *Median) String() string { return fmt.Sprintf("median:f=%d", r.f) }

// Aggregate returns the coordinate-wise median of the finite updates.
func (r *Median) Aggregate(updates []fl.Vector) (fl.Vector, error) {
	if err := r.feasible(len(updates)); err != nil {
		return nil, err
	}
	kept, _, err := prepare(r.Name(), updates, r.f)
	if err != nil {
		return nil, err
	}
	return median(kept), nil
}

// median returns the coordinate-wise median of finite vectors.
func median(vs []fl.Vector) fl.Vector {
	out := make(fl.Vector, len(vs[0]))
	columns(vs, func(j int, col []float64) { out[j] = medianOf(col) })
	return out
}

// TrimmedMean is FedTrimmedAvg: for each coordinate, drop the ⌊βn⌋ largest
// and ⌊βn⌋ smallest values and average the rest.
type TrimmedMean struct {
	n, f int
	beta float64
}

// NewTrimmedMean returns the coordinate-wise β-trimmed mean for n updates of
// which f may be Byzantine. It requires 0 ≤ β < 1/2 and f ≤ βn, so that
// every Byzantine value can be trimmed.
func NewTrimmedMean(n, f int, beta float64) (*TrimmedMean, error) {
	r := &TrimmedMean{n: n, f: f, beta: beta}
	if !(beta >= 0 && beta < 0.5) {
		return nil, &InfeasibleError{Rule: r.Name(), N: n, F: f, Need: fmt.Sprintf("0 ≤ β < 1/2, have β=%v", beta)}
	}
	if err := r.feasible(n); err != nil {
		return nil, err
	}
	return r, nil
}

// trim returns ⌊βn⌋, forgiving rounding just below an integer.
func (r *TrimmedMean) trim(n int) int { return int(math.Floor(r.beta*float64(n) + 1e-9)) }

func (r *TrimmedMean) feasible(n int) error {
	if err := checkNF(r.Name(), n, r.f); err != nil {
		return err
	}
	if r.trim(n) < r.f {
		return &InfeasibleError{Rule: r.Name(), N: n, F: r.f, Need: fmt.Sprintf("β ≥ f/n, have β=%v", r.beta)}
	}
	return nil
}

// Name returns "FedTrimmedAvg".
func (*TrimmedMean) Name() string { return "FedTrimmedAvg" }

// String returns the canonical spec, "trimmed:beta=β,f=F".
func (r *TrimmedMean) String() string {
	return fmt.Sprintf("trimmed:beta=%s,f=%d", fmtFloat(r.beta), r.f)
}

// Aggregate returns the coordinate-wise trimmed mean of the finite updates.
// After dropping k malformed updates it trims ⌊β(n−k)⌋ ≥ f−k per side.
func (r *TrimmedMean) Aggregate(updates []fl.Vector) (fl.Vector, error) {
	if err := r.feasible(len(updates)); err != nil {
		return nil, err
	}
	kept, _, err := prepare(r.Name(), updates, r.f)
	if err != nil {
		return nil, err
	}
	n := len(kept)
	t := r.trim(n)
	out := make(fl.Vector, len(kept[0]))
	columns(kept, func(j int, col []float64) {
		sortFloats(col)
		out[j] = meanOf(col[t : n-t])
	})
	return out, nil
}
