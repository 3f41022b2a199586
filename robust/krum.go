package robust

import (
	"fmt"
	"slices"

	"github.com/cloisterfl/cloister/fl"
)

// Krum returns the one update whose n−f−2 nearest neighbours are closest to
// it, by sum of squared Euclidean distances (Blanchard et al. 2017).
type Krum struct{ n, f int }

// NewKrum returns Krum for n updates of which f may be Byzantine. It
// requires 2f + 2 < n.
func NewKrum(n, f int) (*Krum, error) {
	r := &Krum{n: n, f: f}
	if err := krumFeasible(r.Name(), n, f); err != nil {
		return nil, err
	}
	return r, nil
}

func krumFeasible(rule string, n, f int) error {
	if err := checkNF(rule, n, f); err != nil {
		return err
	}
	if 2*f+2 >= n {
		return &InfeasibleError{Rule: rule, N: n, F: f, Need: "2f+2 < n"}
	}
	return nil
}

// Name returns "Krum".
func (*Krum) Name() string { return "Krum" }

// String returns the canonical spec, "krum:f=F".
func (r *Krum) String() string { return fmt.Sprintf("krum:f=%d", r.f) }

// Aggregate returns a copy of the selected update.
func (r *Krum) Aggregate(updates []fl.Vector) (fl.Vector, error) {
	i, err := r.Select(updates)
	if err != nil {
		return nil, err
	}
	return updates[i].Clone(), nil
}

// Select returns the index of the update Krum selects. It is never an
// update with non-finite values.
func (r *Krum) Select(updates []fl.Vector) (int, error) {
	if err := krumFeasible(r.Name(), len(updates), r.f); err != nil {
		return 0, err
	}
	kept, idx, err := prepare(r.Name(), updates, r.f)
	if err != nil {
		return 0, err
	}
	f := r.f - (len(updates) - len(kept))
	d := distances(kept)
	alive := make([]bool, len(kept))
	for i := range alive {
		alive[i] = true
	}
	best := ranked(krumScores(d, alive, f), alive)[0]
	return idx[best], nil
}

// MultiKrum averages the m updates with the best Krum scores (Blanchard et
// al. 2017). With m = 1 it is Krum; with m = n it is the mean.
type MultiKrum struct{ n, f, m int }

// NewMultiKrum returns MultiKrum for n updates of which f may be Byzantine,
// averaging m of them. It requires 2f + 2 < n and 1 ≤ m ≤ n − f.
func NewMultiKrum(n, f, m int) (*MultiKrum, error) {
	r := &MultiKrum{n: n, f: f, m: m}
	if err := r.feasible(n); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *MultiKrum) feasible(n int) error {
	if err := krumFeasible(r.Name(), n, r.f); err != nil {
		return err
	}
	if r.m < 1 || r.m > n-r.f {
		return &InfeasibleError{Rule: r.Name(), N: n, F: r.f, Need: fmt.Sprintf("1 ≤ m ≤ n−f, have m=%d", r.m)}
	}
	return nil
}

// Name returns "MultiKrum".
func (*MultiKrum) Name() string { return "MultiKrum" }

// String returns the canonical spec, "multikrum:m=M,f=F".
func (r *MultiKrum) String() string { return fmt.Sprintf("multikrum:m=%d,f=%d", r.m, r.f) }

// Select returns the indices of the m selected updates, best first.
func (r *MultiKrum) Select(updates []fl.Vector) ([]int, error) {
	if err := r.feasible(len(updates)); err != nil {
		return nil, err
	}
	kept, idx, err := prepare(r.Name(), updates, r.f)
	if err != nil {
		return nil, err
	}
	f := r.f - (len(updates) - len(kept))
	d := distances(kept)
	alive := make([]bool, len(kept))
	for i := range alive {
		alive[i] = true
	}
	order := ranked(krumScores(d, alive, f), alive)[:r.m]
	sel := make([]int, len(order))
	for k, i := range order {
		sel[k] = idx[i]
	}
	return sel, nil
}

// Aggregate returns the mean of the selected updates.
func (r *MultiKrum) Aggregate(updates []fl.Vector) (fl.Vector, error) {
	return r.AggregateWeighted(updates, nil)
}

// AggregateWeighted returns the weighted mean of the selected updates; the
// weights do not affect the selection. nil weights mean equal weights.
func (r *MultiKrum) AggregateWeighted(updates []fl.Vector, weights []float64) (fl.Vector, error) {
	if weights != nil && len(weights) != len(updates) {
		return nil, fmt.Errorf("%w: %s: %d weights for %d updates", ErrWeight, r.Name(), len(weights), len(updates))
	}
	sel, err := r.Select(updates)
	if err != nil {
		return nil, err
	}
	vs := make([]fl.Vector, len(sel))
	var p []float64
	if weights != nil {
		ws := make([]float64, len(sel))
		for k, i := range sel {
			ws[k] = weights[i]
		}
		if p, err = probabilities(r.Name(), ws, len(sel)); err != nil {
			return nil, err
		}
	}
	for k, i := range sel {
		vs[k] = updates[i]
	}
	return average(len(vs[0]), vs, p), nil
}

// Bulyan is El Mhamdi et al.'s Bulyan over Krum: it selects θ = n − 2f
// updates by repeated Krum, then for each coordinate averages the
// β = θ − 2f selected values closest to their median.
type Bulyan struct{ n, f int }

// NewBulyan returns Bulyan for n updates of which f may be Byzantine. It
// requires n ≥ 4f + 3.
func NewBulyan(n, f int) (*Bulyan, error) {
	r := &Bulyan{n: n, f: f}
	if err := r.feasible(n); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Bulyan) feasible(n int) error {
	if err := checkNF(r.Name(), n, r.f); err != nil {
		return err
	}
	if n < 4*r.f+3 {
		return &InfeasibleError{Rule: r.Name(), N: n, F: r.f, Need: "n ≥ 4f+3"}
	}
	return nil
}

// Name returns "Bulyan".
func (*Bulyan) Name() string { return "Bulyan" }

// String returns the canonical spec, "bulyan:f=F".
func (r *Bulyan) String() string { return fmt.Sprintf("bulyan:f=%d", r.f) }

// Select returns the indices of the θ updates chosen by repeated Krum, in
// the order chosen.
func (r *Bulyan) Select(updates []fl.Vector) ([]int, error) {
	if err := r.feasible(len(updates)); err != nil {
		return nil, err
	}
	kept, idx, err := prepare(r.Name(), updates, r.f)
	if err != nil {
		return nil, err
	}
	f := r.f - (len(updates) - len(kept))
	theta := len(kept) - 2*f
	d := distances(kept)
	alive := make([]bool, len(kept))
	for i := range alive {
		alive[i] = true
	}
	sel := make([]int, 0, theta)
	for len(sel) < theta {
		best := ranked(krumScores(d, alive, f), alive)[0]
		alive[best] = false
		sel = append(sel, idx[best])
	}
	return sel, nil
}

// Aggregate returns Bulyan's aggregate.
func (r *Bulyan) Aggregate(updates []fl.Vector) (fl.Vector, error) {
	sel, err := r.Select(updates)
	if err != nil {
		return nil, err
	}
	f := r.f
	for _, u := range updates {
		if !u.Finite() {
			f--
		}
	}
	theta := len(sel)
	beta := theta - 2*f
	vs := make([]fl.Vector, theta)
	for k, i := range sel {
		vs[k] = updates[i]
	}
	out := make(fl.Vector, len(vs[0]))
	columns(vs, func(j int, col []float64) {
		sortFloats(col)
		out[j] = meanOf(closestToMedian(col, beta))
	})
	return out, nil
}

// closestToMedian returns the k values of sorted col closest to its median,
// preferring lower values on ties. They form a contiguous window.
func closestToMedian(col []float64, k int) []float64 {
	n := len(col)
	var med float64
	if n%2 == 1 {
		med = col[n/2]
	} else {
		med = col[n/2-1]*0.5 + col[n/2]*0.5
	}
	// Halved differences cannot overflow.
	h := med * 0.5
	lo := n/2 - 1 // col[lo] ≤ med ≤ col[lo+1] once lo is adjusted
	if n%2 == 1 {
		lo = n / 2
	}
	hi := lo + 1
	for hi-lo-1 < k {
		switch {
		case lo < 0:
			hi++
		case hi >= n:
			lo--
		case h-col[lo]*0.5 <= col[hi]*0.5-h:
			lo--
		default:
			hi++
		}
	}
	return col[lo+1 : hi]
}

// distances returns the symmetric matrix of squared distances between the
// finite vectors vs, computed at a common power-of-two scale, so that it
// never overflows and ranks exactly as the true distances.
func distances(vs []fl.Vector) [][]float64 {
	s := scaleFor(vs...)
	d := make([][]float64, len(vs))
	for i := range d {
		d[i] = make([]float64, len(vs))
	}
	for i := range vs {
		for j := i + 1; j < len(vs); j++ {
			x := sqDist(vs[i], vs[j], s)
			d[i][j], d[j][i] = x, x
		}
	}
	return d
}

// krumScores returns, for every alive i, the sum of its q smallest squared
// distances to other alive vectors, with q = r − f − 2 for r alive vectors,
// clamped to [1, r−1] as repeated Krum runs low on candidates.
func krumScores(d [][]float64, alive []bool, f int) []float64 {
	var r int
	for _, a := range alive {
		if a {
			r++
		}
	}
	q := min(max(r-f-2, 1), r-1)
	scores := make([]float64, len(d))
	row := make([]float64, 0, len(d))
	for i := range d {
		if !alive[i] {
			continue
		}
		row = row[:0]
		for j, x := range d[i] {
			if j != i && alive[j] {
				row = append(row, x)
			}
		}
		slices.Sort(row)
		var s float64
		for _, x := range row[:q] {
			s += x
		}
		scores[i] = s
	}
	return scores
}

// ranked returns the alive indices by ascending score, ties by index.
func ranked(scores []float64, alive []bool) []int {
	var order []int
	for i, a := range alive {
		if a {
			order = append(order, i)
		}
	}
	slices.SortStableFunc(order, func(a, b int) int {
		switch {
		case scores[a] < scores[b]:
			return -1
		case scores[a] > scores[b]:
			return 1
		}
		return 0
	})
	return order
}
