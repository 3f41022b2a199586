package model

import (
	"fmt"
	"math"
	"runtime"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
)

// impl is gonum's pure-Go BLAS. It is used directly, not through blas64's
// swappable global, so results never depend on another package's choice.
// Its Dgemm splits large products into blocks computed concurrently, but
// each output block is summed in a fixed order, so results are
// bit-identical whatever GOMAXPROCS is.
var impl gonum.Implementation

// evalChunk is the number of examples Evaluate and Predict process at once.
const evalChunk = 256

// layer is one affine map out = in·Wᵀ + b. W (out×in, row-major) starts at
// off in the parameter vector and b follows it.
type layer struct {
	in, out int
	off     int
}

func (l layer) weights(p []float64) []float64 { return p[l.off : l.off+l.in*l.out] }
func (l layer) bias(p []float64) []float64 {
	return p[l.off+l.in*l.out : l.off+(l.in+1)*l.out]
}

// network implements both Softmax (one layer) and MLP (ReLU between
// layers).
type network struct {
	spec   Spec
	layers []layer
	w      fl.Vector // the parameters; layers index into it

	// Scratch space for up to rows examples: act[l] holds the output of
	// layer l (pre-softmax logits for the last layer, post-ReLU values for
	// the others), and delta[l] the loss gradient with respect to it.
	rows  int
	act   [][]float64
	delta [][]float64
}

var _ Model = (*network)(nil)

func newNetwork(spec Spec) *network {
	spec = spec.clone()
	sizes := spec.sizes()
	n := &network{spec: spec, layers: make([]layer, len(sizes)-1)}
	off := 0
	for l := range n.layers {
		n.layers[l] = layer{in: sizes[l], out: sizes[l+1], off: off}
		off += (sizes[l] + 1) * sizes[l+1]
	}
	n.w = make(fl.Vector, off)
	return n
}

func (n *network) Spec() Spec        { return n.spec.clone() }
func (n *network) NumParams() int    { return len(n.w) }
func (n *network) Params() fl.Vector { return n.w.Clone() }
func (n *network) live() fl.Vector   { return n.w }

func (n *network) SetParams(p fl.Vector) error {
	if err := checkParams("parameter vector", p, n.spec, len(n.w)); err != nil {
		return err
	}
	copy(n.w, p)
	return nil
}

func (n *network) Clone() Model {
	c := newNetwork(n.spec)
	copy(c.w, n.w)
	return c
}

// reserve makes the scratch space hold at least rows examples.
func (n *network) reserve(rows int) {
	if rows <= n.rows {
		return
	}
	n.act = make([][]float64, len(n.layers))
	n.delta = make([][]float64, len(n.layers))
	for l, ly := range n.layers {
		n.act[l] = make([]float64, rows*ly.out)
		n.delta[l] = make([]float64, rows*ly.out)
	}
	n.rows = rows
}

// checkBatch validates the shape of x against rows examples.
func (n *network) checkBatch(x []float64, rows int) error {
	if rows == 0 {
		return fmt.Errorf("%w: empty batch", ErrInput)
	}
	if len(x) != rows*n.spec.Inputs {
		return fmt.Errorf("%w: %d feature values for %d examples of %d features", ErrInput, len(x), rows, n.spec.Inputs)
	}
	return nil
}

func (n *network) checkLabels(y []int) error {
	for i, c := range y {
		if c < 0 || c >= n.spec.Classes {
			return fmt.Errorf("%w: example %d has label %d, want [0, %d)", ErrLabel, i, c, n.spec.Classes)
		}
	}
	return nil
}

// forward computes every layer's output for the rows examples in x and
// returns the logits (rows×Classes, row-major, a view of scratch space).
func (n *network) forward(x []float64, rows int) []float64 {
	in := x
	last := len(n.layers) - 1
	for l, ly := range n.layers {
		z := n.act[l][:rows*ly.out]
		b := ly.bias(n.w)
		for r := 0; r < rows; r++ {
			copy(z[r*ly.out:(r+1)*ly.out], b)
		}
		mulAddTransposed(rows, ly.in, ly.out, in, ly.weights(n.w), z)
		if l < last {
			for i, v := range z {
				if v < 0 {
					z[i] = 0
				}
			}
		}
		in = z
	}
	return n.act[last][:rows*n.spec.Classes]
}

// parallelWork is the number of multiply-adds above which
// mulAddTransposed splits its rows among goroutines.
const parallelWork = 1 << 18

// mulAddTransposed sets z += x·wᵀ for x (rows×in), w (out×in) and z
// (rows×out), all row-major.
//
// gonum's Dgemm only parallelizes products with at least four 64×64 output
// blocks, which a layer's forward pass on a batch of 64 (64×128 outputs)
// does not have. Here the rows are split among up to GOMAXPROCS
// goroutines instead. Every output element is still one dot product
// computed by the same code, so the result does not depend on the split.
func mulAddTransposed(rows, in, out int, x, w, z []float64) {
	workers := min(runtime.GOMAXPROCS(0), rows/8)
	if workers < 2 || rows*in*out < parallelWork {
		impl.Dgemm(blas.NoTrans, blas.Trans, rows, out, in, 1, x, in, w, in, 1, z, out)
		return
	}
	var wg sync.WaitGroup
	per := (rows + workers - 1) / workers
	for r0 := 0; r0 < rows; r0 += per {
		r1 := min(rows, r0+per)
		wg.Go(func() {
			impl.Dgemm(blas.NoTrans, blas.Trans, r1-r0, out, in,
				1, x[r0*in:r1*in], in, w, in, 1, z[r0*out:r1*out], out)
		})
	}
	wg.Wait()
}

// Tile sizes of mulTransposedA: a 64×192 tile is below the size at which
// gonum's Dgemm splits a product into 64×64 blocks, so each tile runs its
// serial kernel, whose vector operations then span 192 columns instead of
// 64.
const (
	tileRows = 64
	tileCols = 192
)

// mulTransposedA sets c = aᵀ·b for a (k×m), b (k×n) and c (m×n), all
// row-major; in the backward pass, the weight gradient dᵀ·x of a batch of
// k examples.
//
// The output is cut into tiles computed independently, by up to
// GOMAXPROCS goroutines when the product is large. Every element is the
// same sum over k in the same order whatever the tiling or the number of
// goroutines, so results are bit-identical.
func mulTransposedA(k, m, n int, a, b, c []float64) {
	type tile struct{ i, j, rows, cols int }
	run := func(t tile) {
		impl.Dgemm(blas.Trans, blas.NoTrans, t.rows, t.cols, k,
			1, a[t.i:], m, b[t.j:], n, 0, c[t.i*n+t.j:], n)
	}
	tiles := ((m + tileRows - 1) / tileRows) * ((n + tileCols - 1) / tileCols)
	workers := min(runtime.GOMAXPROCS(0), tiles)
	next := func(idx int) tile {
		perRow := (n + tileCols - 1) / tileCols
		i, j := (idx/perRow)*tileRows, (idx%perRow)*tileCols
		return tile{i, j, min(tileRows, m-i), min(tileCols, n-j)}
	}
	if workers < 2 || k*m*n < parallelWork {
		for idx := 0; idx < tiles; idx++ {
			run(next(idx))
		}
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Go(func() {
			for idx := w; idx < tiles; idx += workers {
				run(next(idx))
			}
		})
	}
	wg.Wait()
}

// logSumExp returns log Σ exp(row[j]), computed stably by factoring out
// the maximum.
func logSumExp(row []float64) float64 {
	m := row[0]
	for _, v := range row[1:] {
		if v > m {
			m = v
		}
	}
	var s float64
	for _, v := range row {
		s += math.Exp(v - m)
	}
	return m + math.Log(s)
}

func (n *network) Gradient(x []float64, y []int, grad fl.Vector) (float64, error) {
	rows := len(y)
	if err := n.checkBatch(x, rows); err != nil {
		return 0, err
	}
	if len(grad) != len(n.w) {
		return 0, fmt.Errorf("%w: gradient buffer has %d values, %s needs %d", ErrInput, len(grad), n.spec, len(n.w))
	}
	if err := n.checkLabels(y); err != nil {
		return 0, err
	}
	n.reserve(rows)
	logits := n.forward(x, rows)

	// Loss, and its gradient with respect to the logits:
	// (softmax(z) − onehot(y)) / rows.
	classes := n.spec.Classes
	last := len(n.layers) - 1
	dz := n.delta[last][:rows*classes]
	inv := 1 / float64(rows)
	var loss float64
	for r := 0; r < rows; r++ {
		z := logits[r*classes : (r+1)*classes]
		d := dz[r*classes : (r+1)*classes]
		lse := logSumExp(z)
		loss += lse - z[y[r]]
		for j, v := range z {
			d[j] = math.Exp(v-lse) * inv
		}
		d[y[r]] -= inv
	}
	loss *= inv

	// Backward pass, last layer first.
	for l := last; l >= 0; l-- {
		ly := n.layers[l]
		d := n.delta[l][:rows*ly.out]
		in := x
		if l > 0 {
			in = n.act[l-1][:rows*ly.in]
		}
		mulTransposedA(rows, ly.out, ly.in, d, in, ly.weights(grad))
		// db = column sums of d
		db := ly.bias(grad)
		copy(db, d[:ly.out])
		for r := 1; r < rows; r++ {
			for j, v := range d[r*ly.out : (r+1)*ly.out] {
				db[j] += v
			}
		}
		if l == 0 {
			break
		}
		// d_in = d · W, then through the ReLU that produced in.
		dIn := n.delta[l-1][:rows*ly.in]
		impl.Dgemm(blas.NoTrans, blas.NoTrans, rows, ly.in, ly.out,
			1, d, ly.out, ly.weights(n.w), ly.in, 0, dIn, ly.in)
		for i, a := range in {
			if a <= 0 {
				dIn[i] = 0
			}
		}
	}
	return loss, nil
}

func (n *network) Predict(x []float64) ([]int, error) {
	if n.spec.Inputs == 0 || len(x)%n.spec.Inputs != 0 {
		return nil, fmt.Errorf("%w: %d feature values is not a whole number of %d-feature examples", ErrInput, len(x), n.spec.Inputs)
	}
	total := len(x) / n.spec.Inputs
	out := make([]int, 0, total)
	n.reserve(min(total, evalChunk))
	classes := n.spec.Classes
	for start := 0; start < total; start += evalChunk {
		rows := min(evalChunk, total-start)
		logits := n.forward(x[start*n.spec.Inputs:(start+rows)*n.spec.Inputs], rows)
		for r := 0; r < rows; r++ {
			out = append(out, argmax(logits[r*classes:(r+1)*classes]))
		}
	}
	return out, nil
}

func (n *network) Evaluate(set *dataset.Set) (fl.Metrics, error) {
	if set == nil {
		return fl.Metrics{}, fmt.Errorf("%w: nil data set", ErrInput)
	}
	if set.Features != n.spec.Inputs {
		return fl.Metrics{}, fmt.Errorf("%w: data set %s has %d features, %s takes %d", ErrInput, set.Name, set.Features, n.spec, n.spec.Inputs)
	}
	total := set.Len()
	if err := n.checkBatch(set.X, total); err != nil {
		return fl.Metrics{}, fmt.Errorf("data set %s: %w", set.Name, err)
	}
	if err := n.checkLabels(set.Y); err != nil {
		return fl.Metrics{}, fmt.Errorf("data set %s: %w", set.Name, err)
	}
	n.reserve(min(total, evalChunk))
	classes := n.spec.Classes
	var loss float64
	correct := 0
	for start := 0; start < total; start += evalChunk {
		rows := min(evalChunk, total-start)
		logits := n.forward(set.X[start*set.Features:(start+rows)*set.Features], rows)
		for r := 0; r < rows; r++ {
			z := logits[r*classes : (r+1)*classes]
			y := set.Y[start+r]
			loss += logSumExp(z) - z[y]
			if argmax(z) == y {
				correct++
			}
		}
	}
	return fl.Metrics{
		Accuracy: float64(correct) / float64(total),
		Loss:     loss / float64(total),
		Examples: total,
	}, nil
}

// argmax returns the index of the largest value, the first on ties.
func argmax(v []float64) int {
	best := 0
	for i, x := range v {
		if x > v[best] {
			best = i
		}
	}
	return best
}
