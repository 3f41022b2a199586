package robust

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/spec"
)

// Rule aggregates a round's plaintext updates into one.
type Rule interface {
	// Name returns the rule's name in Flower's vocabulary ("FedMedian",
	// "Krum", …).
	Name() string

	// String returns the canonical spec, which Parse accepts back.
	String() string

	// Aggregate returns the aggregate of updates, a new finite vector of their
	// common length. It does not modify updates.
	Aggregate(updates []fl.Vector) (fl.Vector, error)
}

// Weighted is a Rule that can also weight the updates, as FedAvg weights
// them by example count.
type Weighted interface {
	Rule
	// AggregateWeighted is Aggregate with one finite, non-negative weight
	// per update.
	AggregateWeighted(updates []fl.Vector, weights []float64) (fl.Vector, error)
}

var (
	// ErrInfeasible reports a rule that cannot withstand f Byzantine updates
	// out of n. Errors of type *InfeasibleError match it.
	ErrInfeasible = errors.New("robust: infeasible n and f")

	// ErrNonFinite reports updates with NaN or infinite values that a rule
	// cannot drop. Errors of type *NonFiniteError match it.
	ErrNonFinite = errors.New("robust: non-finite updates")

	// ErrEmpty reports an Aggregate call without updates.
	ErrEmpty = errors.New("robust: no updates")

	// ErrSpec reports a rule spec that Parse cannot read.
	ErrSpec = errors.New("robust: bad spec")

	// ErrWeight reports weights that are missing, negative, non-finite or
	// all zero.
	ErrWeight = errors.New("robust: bad weights")
)

// InfeasibleError reports a rule asked to withstand F Byzantine updates out
// of N, or a parameter out of range for N and F.
type InfeasibleError struct {
	Rule string // "Krum", …
	N, F int
	Need string // the condition that fails, e.g. "2f+2 < n"
}

func (e *InfeasibleError) Error() string {
	return fmt.Sprintf("robust: %s with n=%d, f=%d is infeasible: needs %s", e.Rule, e.N, e.F, e.Need)
}

// Is reports whether target is ErrInfeasible.
func (e *InfeasibleError) Is(target error) bool { return target == ErrInfeasible }

// NonFiniteError reports the updates holding NaN or infinite values when the
// rule can drop at most Limit of them (zero for Mean).
type NonFiniteError struct {
	Rule    string
	Indices []int // positions in the updates slice, ascending
	Limit   int
}

func (e *NonFiniteError) Error() string {
	return fmt.Sprintf("robust: %s: updates %v have non-finite values; it can drop at most %d", e.Rule, e.Indices, e.Limit)
}

// Is reports whether target is ErrNonFinite.
func (e *NonFiniteError) Is(target error) bool { return target == ErrNonFinite }

// prepare validates updates: at least one, all of one length. It returns the
// finite ones, with their original indices, after checking that at most
// limit were dropped.
func prepare(rule string, updates []fl.Vector, limit int) (kept []fl.Vector, idx []int, err error) {
	if len(updates) == 0 {
		return nil, nil, fmt.Errorf("%w: %s", ErrEmpty, rule)
	}
	dim := len(updates[0])
	var bad []int
	for i, u := range updates {
		if len(u) != dim {
			return nil, nil, fmt.Errorf("robust: %s: %w: update %d has %d values, update 0 has %d", rule, fl.ErrDimension, i, len(u), dim)
		}
		if !u.Finite() {
			bad = append(bad, i)
			continue
		}
		kept = append(kept, u)
		idx = append(idx, i)
	}
	if len(bad) > limit {
		return nil, nil, &NonFiniteError{Rule: rule, Indices: bad, Limit: limit}
	}
	return kept, idx, nil
}

// scaleFor returns a power of two s such that every |x|·s ≤ 1 when the
// largest magnitude among vs exceeds 1e100, and 1 otherwise. Multiplying by
// s is exact (bar subnormals), so distances computed on scaled values cannot
// overflow and rank exactly as the true ones.
func scaleFor(vs ...fl.Vector) float64 {
	var m float64
	for _, v := range vs {
		for _, x := range v {
			if a := math.Abs(x); a > m {
				m = a
			}
		}
	}
	if m <= 1e100 {
		return 1
	}
	_, e := math.Frexp(m) // m < 2^e
	return math.Ldexp(1, -e)
}

// sqDist returns ‖s·a − s·b‖².
func sqDist(a, b fl.Vector, s float64) float64 {
	var d float64
	if s == 1 {
		for i, x := range a {
			t := x - b[i]
			d += t * t
		}
		return d
	}
	for i, x := range a {
		t := x*s - b[i]*s
		d += t * t
	}
	return d
}

// meanOf returns the mean of finite xs: the plain sum divided by the count
// when that is finite, else the sum at half scale (which cannot overflow),
// and in any case clamped into [min xs, max xs], where the true mean lies.
func meanOf(xs []float64) float64 {
	var s float64
	lo, hi := xs[0], xs[0]
	for _, x := range xs {
		s += x
		lo, hi = min(lo, x), max(hi, x)
	}
	m := s / float64(len(xs))
	if math.IsInf(m, 0) || math.IsNaN(m) {
		s = 0
		for _, x := range xs {
			s += x * 0.5
		}
		m = s / float64(len(xs)) * 2
	}
	return min(max(m, lo), hi)
}

// average returns Σ pᵢvᵢ for probabilities p (nil for uniform) of finite
// vectors, coordinate by coordinate as meanOf does: no overflow, and the
// result within the range of the vectors with positive weight.
func average(dim int, vs []fl.Vector, p []float64) fl.Vector {
	out := make(fl.Vector, dim)
	lo := make([]float64, dim)
	hi := make([]float64, dim)
	for j := range lo {
		lo[j], hi[j] = math.Inf(1), math.Inf(-1)
	}
	weight := func(i int) float64 {
		if p == nil {
			return 1 / float64(len(vs))
		}
		return p[i]
	}
	// Row by row, for the cache.
	for i, v := range vs {
		w := weight(i)
		if w == 0 {
			continue
		}
		for j, x := range v[:dim] {
			out[j] += w * x
			lo[j] = min(lo[j], x)
			hi[j] = max(hi[j], x)
		}
	}
	for j, s := range out {
		if math.IsInf(s, 0) || math.IsNaN(s) {
			// Only near the edge of the range: redo at half scale.
			s = 0
			for i, v := range vs {
				s += weight(i) * (v[j] * 0.5)
			}
			s *= 2
		}
		out[j] = min(max(s, lo[j]), hi[j])
	}
	return out
}

// tile is how many coordinates columns transposes at a time: 512
// coordinates of 25 updates fit in L2.
const tile = 512

// columns calls fn for every coordinate j with the values of the vectors vs
// at j, in a scratch slice fn may reorder. It transposes in tiles so that it
// reads every vector sequentially.
func columns(vs []fl.Vector, fn func(j int, col []float64)) {
	n, dim := len(vs), len(vs[0])
	buf := make([]float64, n*min(tile, dim))
	for j0 := 0; j0 < dim; j0 += tile {
		w := min(tile, dim-j0)
		for i, v := range vs {
			for t, x := range v[j0 : j0+w] {
				buf[t*n+i] = x
			}
		}
		for t := 0; t < w; t++ {
			fn(j0+t, buf[t*n:(t+1)*n])
		}
	}
}

// probabilities validates weights and normalizes them.
func probabilities(rule string, weights []float64, n int) ([]float64, error) {
	if len(weights) != n {
		return nil, fmt.Errorf("%w: %s: %d weights for %d updates", ErrWeight, rule, len(weights), n)
	}
	var total float64
	for i, w := range weights {
		if math.IsNaN(w) || math.IsInf(w, 0) || w < 0 {
			return nil, fmt.Errorf("%w: %s: weight %d is %v", ErrWeight, rule, i, w)
		}
		total += w
	}
	if math.IsInf(total, 0) {
		// Rescale rather than fail: only the ratios matter.
		total = 0
		for _, w := range weights {
			total += w / 1024
		}
		p := make([]float64, n)
		for i, w := range weights {
			p[i] = (w / 1024) / total
		}
		return p, nil
	}
	if total == 0 {
		return nil, fmt.Errorf("%w: %s: all weights are zero", ErrWeight, rule)
	}
	p := make([]float64, n)
	for i, w := range weights {
		p[i] = w / total
	}
	return p, nil
}

// Parse returns the rule a spec names, for a cohort of n updates, as
// described in the package documentation: "mean", "median", "trimmed:0.2",
// "krum:f=2", "multikrum:m=5", "bulyan", "cclip:tau=1".
func Parse(text string, n int) (Rule, error) {
	s, err := spec.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrSpec, err)
	}
	name := s.Name
	fail := func(format string, a ...any) (Rule, error) {
		return nil, fmt.Errorf("%w %w", ErrSpec, s.Errorf(format, a...))
	}
	if n < 1 {
		return fail("cohort of %d updates", n)
	}
	var main string
	var keys []string
	switch name {
	case "mean":
	case "median", "krum", "bulyan":
		main, keys = "f", []string{"f"}
	case "trimmed":
		main, keys = "beta", []string{"beta", "f"}
	case "multikrum":
		main, keys = "m", []string{"m", "f"}
	case "cclip":
		main, keys = "tau", []string{"tau", "f", "iters"}
	default:
		return fail("unknown rule %q (want mean, median, trimmed, krum, multikrum, bulyan or cclip)", name)
	}
	vals, err := s.Args(main, keys...)
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrSpec, err)
	}
	intArg := func(key string, def int) (int, error) {
		x, ok := vals[key]
		if !ok {
			return def, nil
		}
		if x != math.Trunc(x) || x < 0 || x > 1<<30 {
			return 0, fmt.Errorf("%w %w", ErrSpec, s.Errorf("%s=%v is not a non-negative integer", key, x))
		}
		return int(x), nil
	}
	wrap := func(r Rule, err error) (Rule, error) {
		if err != nil {
			return nil, fmt.Errorf("parsing %q: %w", text, err)
		}
		return r, nil
	}
	switch name {
	case "mean":
		return NewMean(), nil
	case "median":
		f, err := intArg("f", (n-1)/2)
		if err != nil {
			return nil, err
		}
		return wrap(asRule(NewMedian(n, f)))
	case "krum":
		f, err := intArg("f", max(0, (n-3)/2))
		if err != nil {
			return nil, err
		}
		return wrap(asRule(NewKrum(n, f)))
	case "bulyan":
		f, err := intArg("f", max(0, (n-3)/4))
		if err != nil {
			return nil, err
		}
		return wrap(asRule(NewBulyan(n, f)))
	case "trimmed":
		beta := 0.2
		if x, ok := vals["beta"]; ok {
			beta = x
		}
		if !(beta >= 0 && beta < 0.5) {
			return fail("beta=%v outside [0, 0.5)", beta)
		}
		f, err := intArg("f", int(math.Floor(beta*float64(n)+1e-9)))
		if err != nil {
			return nil, err
		}
		return wrap(asRule(NewTrimmedMean(n, f, beta)))
	case "multikrum":
		f, err := intArg("f", max(0, (n-3)/2))
		if err != nil {
			return nil, err
		}
		m, err := intArg("m", max(1, n-f))
		if err != nil {
			return nil, err
		}
		return wrap(asRule(NewMultiKrum(n, f, m)))
	default: // cclip
		f, err := intArg("f", (n-1)/2)
		if err != nil {
			return nil, err
		}
		iters, err := intArg("iters", 3)
		if err != nil {
			return nil, err
		}
		tau := vals["tau"]
		if !(tau >= 0) {
			return fail("tau=%v is negative", tau)
		}
		return wrap(asRule(NewCenteredClip(n, f, tau, iters)))
	}
}

// asRule converts a constructor's result to a Rule without turning a nil
// pointer into a non-nil interface.
func asRule[T Rule](r T, err error) (Rule, error) {
	if err != nil {
		return nil, err
	}
	return r, nil
}

func fmtFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// checkNF rejects negative n and f.
func checkNF(rule string, n, f int) error {
	if n < 1 {
		return &InfeasibleError{Rule: rule, N: n, F: f, Need: "n ≥ 1"}
	}
	if f < 0 {
		return &InfeasibleError{Rule: rule, N: n, F: f, Need: "f ≥ 0"}
	}
	return nil
}

// sortFloats sorts finite xs: insertion sort for the short columns of a
// cohort, which beats the general sort there, else slices.Sort.
func sortFloats(xs []float64) {
	if len(xs) > 40 {
		slices.Sort(xs)
		return
	}
	for i := 1; i < len(xs); i++ {
		x := xs[i]
		j := i
		for ; j > 0 && xs[j-1] > x; j-- {
			xs[j] = xs[j-1]
		}
		xs[j] = x
	}
}

// AggregateWeighted applies r to updates that arrive weighted, as they do
// in a federation: input i is wᵢΔᵢ with weight wᵢ (weights[i]). It returns
// W·r(Δ₁, …, Δₖ), Δᵢ = (wᵢΔᵢ)/wᵢ, W = Σwᵢ: the rule runs on the Δᵢ
// unweighted, and a runtime that divides the result by W, as it does for a
// sum, gets the rule's output. An input of weight 0 has no Δ: the rule sees
// it as malformed (its first value NaN), which counts against f. scaled is
// not modified.
func AggregateWeighted(r Rule, scaled []fl.Vector, weights []float64) (fl.Vector, error) {
	if len(scaled) != len(weights) {
		return nil, fmt.Errorf("robust: %d updates and %d weights", len(scaled), len(weights))
	}
	var total float64
	deltas := make([]fl.Vector, len(scaled))
	for i, v := range scaled {
		total += weights[i]
		d := v.Clone()
		if weights[i] > 0 {
			d.Scale(1 / weights[i])
		} else if len(d) > 0 {
			d[0] = math.NaN() // no Δ: malformed for the rule
		}
		deltas[i] = d
	}
	out, err := r.Aggregate(deltas)
	if err != nil {
		return nil, err
	}
	out.Scale(total)
	return out, nil
}
