// Package scaffold holds the vector plumbing and the node-side rules of
// SCAFFOLD (Karimireddy et al. 2020), whose server step is
// [github.com/cloisterfl/cloister/strategy.Scaffold].
//
// # Why one vector
//
// SCAFFOLD corrects client drift with control variates: a server control c
// and one control cᵢ per node. A round moves two things, the model x and the
// server control c, and every node returns two updates, Δy and Δc. Under
// encryption (mhe, secagg, paillier) the aggregation modes sum one vector per
// node, so both halves travel concatenated:
//
//	model   = Join(x, c)        the global vector, length 2d, sealed as usual
//	update  = Join(Δy, Δc)      what a node clips, noises, weights, encrypts
//
// The sum of the joined updates is the join of the sums, so after the usual
// division by Σw the leader holds Join(Δ̄y, Δ̄c) and passes it, with the joined
// model, to Strategy.Apply. The first model is Join(x₀, zeros).
//
// # A node's round (Algorithm 1, option II)
//
//	x, c := Split(model)                   // server model and control
//	y := x.Clone()
//	for k := 0; k < K; k++ {                // K local steps of size η
//		g := gradient(y)
//		Correct(g, ci, c)                   // g ← g − cᵢ + c
//		y.Add(-η, g)
//	}
//	ci2, dc, _ := NextControl(ci, c, x, y, K, η)
//	dy := y.Clone(); dy.Add(-1, x)         // Δy = y − x
//	update, _ := Join(dy, dc)
//	ci = ci2                                // keep cᵢ locally, sealed at rest
//
// The node keeps cᵢ between rounds (zeros at first). A node that skips a
// round keeps its cᵢ unchanged. Package client runs this loop with
// minibatch SGD (momentum, weight decay, FedProx's term) for both the node
// and the simulation.
//
// # Interaction with weights, clipping and noise
//
// Clipping to norm C and the distributed DP noise apply to the joined vector,
// so the bound covers Δc too. The aggregation weights wᵢ apply to both halves,
// so c tracks the w-weighted mean of the cᵢ rather than the plain mean of the
// paper; with weights that stay fixed across rounds this is the same
// algorithm under a weighted objective, which is what FedAvg's weighting
// optimizes anyway.
//
// # Reference
//
// S. P. Karimireddy, S. Kale, M. Mohri, S. J. Reddi, S. U. Stich, A. T.
// Suresh, "SCAFFOLD: Stochastic Controlled Averaging for Federated
// Learning", ICML 2020, https://arxiv.org/abs/1910.06378.
package scaffold

import (
	"errors"
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
)

// ErrNonFinite reports a NaN or infinite input or result.
var ErrNonFinite = errors.New("scaffold: non-finite value")

// Join returns the concatenation (a, b). a and b must have the same length.
func Join(a, b fl.Vector) (fl.Vector, error) {
	if len(a) != len(b) {
		return nil, fmt.Errorf("%w: joining halves of %d and %d values", fl.ErrDimension, len(a), len(b))
	}
	out := make(fl.Vector, 0, 2*len(a))
	return append(append(out, a...), b...), nil
}

// Split undoes Join: it returns copies of the two halves of v. v must have
// even length.
func Split(v fl.Vector) (a, b fl.Vector, err error) {
	if len(v)%2 != 0 {
		return nil, nil, fmt.Errorf("%w: splitting %d values into two halves", fl.ErrDimension, len(v))
	}
	h := len(v) / 2
	return append(fl.Vector{}, v[:h]...), append(fl.Vector{}, v[h:]...), nil
}

// Correct applies SCAFFOLD's drift correction to a local gradient in place:
// grad ← grad − local + server, where local is the node's control cᵢ and
// server is the server control c.
func Correct(grad, local, server fl.Vector) error {
	if len(grad) != len(local) || len(grad) != len(server) {
		return fmt.Errorf("%w: gradient %d, node control %d, server control %d values", fl.ErrDimension, len(grad), len(local), len(server))
	}
	for i := range grad {
		g := grad[i] - local[i] + server[i]
		if math.IsNaN(g) || math.IsInf(g, 0) {
			return fmt.Errorf("%w: corrected gradient value %d", ErrNonFinite, i)
		}
		grad[i] = g
	}
	return nil
}

// NextControl returns the node's next control cᵢ⁺ and the control update
// Δc = cᵢ⁺ − cᵢ, by option II of the paper:
//
//	cᵢ⁺ = cᵢ − c + (x − y) / (K·η)
//
// where local is cᵢ, server is c, global is x (the model the round started
// from), trained is y (the model after K local steps of size η). steps must
// be positive and lr positive and finite.
func NextControl(local, server, global, trained fl.Vector, steps int, lr float64) (next, delta fl.Vector, err error) {
	d := len(global)
	if len(local) != d || len(server) != d || len(trained) != d {
		return nil, nil, fmt.Errorf("%w: node control %d, server control %d, global %d, trained %d values",
			fl.ErrDimension, len(local), len(server), d, len(trained))
	}
	if steps <= 0 {
		return nil, nil, fmt.Errorf("scaffold: %d local steps, want at least 1", steps)
	}
	if !(lr > 0) || math.IsInf(lr, 0) {
		return nil, nil, fmt.Errorf("scaffold: learning rate %v, want a positive finite number", lr)
	}
	k := float64(steps) * lr
	next, delta = make(fl.Vector, d), make(fl.Vector, d)
	for i := range next {
		dc := (global[i]-trained[i])/k - server[i]
		delta[i] = dc
		next[i] = local[i] + dc
		if math.IsNaN(next[i]) || math.IsInf(next[i], 0) || math.IsNaN(dc) || math.IsInf(dc, 0) {
			return nil, nil, fmt.Errorf("%w: control value %d", ErrNonFinite, i)
		}
	}
	return next, delta, nil
}
