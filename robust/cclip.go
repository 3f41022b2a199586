package robust

import (
	"fmt"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/fl"
)

// CenteredClip is centered clipping (Karimireddy, He and Jaggi 2021): from
// a reference v it repeats L times
//
//	v ← v + (1/n) Σ (xᵢ − v)·min(1, τ/‖xᵢ − v‖)
//
// so that each update moves the result by at most τ/n per iteration. Each
// step is a convex combination of v and the updates, so the result stays
// within their range.
//
// The paper centres on the previous round's aggregate (with momentum). A
// CenteredClip remembers its last result and uses it as the next reference;
// before the first round, or after [CenteredClip.SetReference] with nil, it
// starts from the coordinate-wise median of the updates. The reference is
// state: restore it with SetReference when an aggregator restarts.
//
// With τ = 0, τ is chosen at each iteration as the median of the distances
// ‖xᵢ − v‖, which the honest majority (f < n/2) bounds.
type CenteredClip struct {
	n, f  int
	tau   float64
	iters int
	ref   fl.Vector
}

// maxIters bounds L, so that a spec cannot ask for unbounded work.
const maxIters = 100

// NewCenteredClip returns centered clipping for n updates of which f may be
// Byzantine, with radius tau ≥ 0 (0 for automatic) and 1 ≤ iters ≤ 100
// iterations. It requires 2f < n.
func NewCenteredClip(n, f int, tau float64, iters int) (*CenteredClip, error) {
	r := &CenteredClip{n: n, f: f, tau: tau, iters: iters}
	if !(tau >= 0) || math.IsInf(tau, 0) {
		return nil, &InfeasibleError{Rule: r.Name(), N: n, F: f, Need: fmt.Sprintf("finite τ ≥ 0, have τ=%v", tau)}
	}
	if iters < 1 || iters > maxIters {
		return nil, &InfeasibleError{Rule: r.Name(), N: n, F: f, Need: fmt.Sprintf("1 ≤ L ≤ %d iterations, have %d", maxIters, iters)}
	}
	if err := r.feasible(n); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *CenteredClip) feasible(n int) error {
	if err := checkNF(r.Name(), n, r.f); err != nil {
		return err
	}
	if 2*r.f >= n {
		return &InfeasibleError{Rule: r.Name(), N: n, F: r.f, Need: "2f < n"}
	}
	return nil
}

// Name returns "CenteredClip".
func (*CenteredClip) Name() string { return "CenteredClip" }

// String returns the canonical spec, "cclip:tau=τ,iters=L,f=F".
func (r *CenteredClip) String() string {
	return fmt.Sprintf("cclip:tau=%s,iters=%d,f=%d", fmtFloat(r.tau), r.iters, r.f)
}

// Reference returns a copy of the current reference, nil if none.
func (r *CenteredClip) Reference() fl.Vector { return r.ref.Clone() }

// SetReference sets the reference the next Aggregate starts from; nil
// means the coordinate-wise median of the updates. It must be finite.
func (r *CenteredClip) SetReference(v fl.Vector) error {
	if !v.Finite() {
		return &NonFiniteError{Rule: r.Name() + " reference", Indices: []int{0}, Limit: 0}
	}
	r.ref = v.Clone()
	return nil
}

// Aggregate returns the centered-clipping aggregate of the finite updates
// and makes it the next reference. On error the reference is unchanged.
func (r *CenteredClip) Aggregate(updates []fl.Vector) (fl.Vector, error) {
	if err := r.feasible(len(updates)); err != nil {
		return nil, err
	}
	kept, _, err := prepare(r.Name(), updates, r.f)
	if err != nil {
		return nil, err
	}
	dim := len(kept[0])
	var v fl.Vector
	switch {
	case r.ref == nil:
		v = median(kept)
	case len(r.ref) != dim:
		return nil, fmt.Errorf("robust: %s: %w: reference has %d values, updates %d", r.Name(), fl.ErrDimension, len(r.ref), dim)
	default:
		v = r.ref.Clone()
	}
	n := float64(len(kept))
	dist := make([]float64, len(kept))
	lambda := make([]float64, len(kept))
	for range r.iters {
		// Work at a power-of-two scale s: differences of huge values then
		// neither overflow nor lose anything.
		s := min(scaleFor(kept...), scaleFor(v))
		for i, x := range kept {
			dist[i] = math.Sqrt(sqDist(x, v, s))
		}
		tau := r.tau * s
		if r.tau == 0 {
			tau = medianOf(slices.Clone(dist))
		}
		for i, d := range dist {
			lambda[i] = 1
			if d > tau {
				lambda[i] = tau / d
			}
		}
		// v + Σ (λᵢ/n)(xᵢ − v): a convex combination of v and the updates,
		// so it lies within their range. Where a difference overflows,
		// redo the coordinate at half scale.
		next := make(fl.Vector, dim)
		for j := range next {
			vj := v[j]
			s, lo, hi := vj, vj, vj
			for i, x := range kept {
				if lambda[i] == 0 {
					continue
				}
				s += lambda[i] / n * (x[j] - vj)
				lo, hi = min(lo, x[j]), max(hi, x[j])
			}
			if math.IsInf(s, 0) || math.IsNaN(s) {
				s = 0.5 * vj
				for i, x := range kept {
					s += lambda[i] / n * (0.5*x[j] - 0.5*vj)
				}
				s *= 2
			}
			next[j] = min(max(s, lo), hi)
		}
		v = next
	}
	r.ref = v.Clone()
	return v, nil
}

// medianOf returns the median of xs, which it reorders.
func medianOf(c []float64) float64 {
	sortFloats(c)
	n := len(c)
	if n%2 == 1 {
		return c[n/2]
	}
	return c[n/2-1]*0.5 + c[n/2]*0.5
}
