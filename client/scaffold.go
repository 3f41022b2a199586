package client

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/strategy/scaffold"
)

// trainScaffold runs one site's round of SCAFFOLD (Karimireddy et al.
// 2020, Algorithm 1, option II) from the joined global vector state =
// Join(x, c) and the site's control ci. It returns the joined update
// Join(y − x, Δc), the site's next control, and the mean loss of the last
// epoch's batches (as model.SGD.Train reports it).
//
// Local steps are those of opt (minibatch SGD with momentum, weight decay
// and the FedProx term, as model.SGD does them) on the drift-corrected
// gradient g − cᵢ + c. model.SGD has no hook for the correction, so the loop
// is written here with model.Model.Gradient; with zero controls it takes
// model.SGD's steps exactly. With momentum β, the control update counts each
// step as η/(1−β), the heavy-ball method's effective step: exact for β = 0,
// and close once the K steps of a round are many more than 1/(1−β).
func trainScaffold(m model.Model, opt model.SGD, set *dataset.Set, epochs int, state, ci fl.Vector, rng *rand.Rand) (update, next fl.Vector, meanLoss float64, err error) {
	if err := opt.Validate(); err != nil {
		return nil, nil, 0, err
	}
	x, c, err := scaffold.Split(state)
	if err != nil {
		return nil, nil, 0, err
	}
	if len(x) != m.NumParams() || len(ci) != len(x) {
		return nil, nil, 0, fmt.Errorf("SCAFFOLD: model of %d parameters, state of %d, control of %d: %w", m.NumParams(), len(x), len(ci), fl.ErrDimension)
	}
	n, feat := set.Len(), set.Features
	if n == 0 {
		return nil, nil, 0, fmt.Errorf("SCAFFOLD: %w: empty shard", model.ErrInput)
	}
	batch := min(opt.Batch, n)
	w := x.Clone()
	grad := make(fl.Vector, len(w))
	vel := make(fl.Vector, len(w))
	xb := make([]float64, batch*feat)
	yb := make([]int, batch)
	order := make([]int, n)
	for i := range order {
		order[i] = i
	}
	steps := 0
	for e := 1; e <= epochs; e++ {
		rng.Shuffle(n, func(i, j int) { order[i], order[j] = order[j], order[i] })
		var sum float64
		for start := 0; start < n; start += batch {
			rows := min(batch, n-start)
			for k, i := range order[start : start+rows] {
				copy(xb[k*feat:(k+1)*feat], set.Row(i))
				yb[k] = set.Y[i]
			}
			if err := m.SetParams(w); err != nil {
				return nil, nil, 0, fmt.Errorf("SCAFFOLD: %w after %d steps", model.ErrDiverged, steps)
			}
			loss, err := m.Gradient(xb[:rows*feat], yb[:rows], grad)
			if err != nil {
				return nil, nil, 0, err
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return nil, nil, 0, fmt.Errorf("SCAFFOLD: %w: loss %v at step %d (learning rate %v)", model.ErrDiverged, loss, steps+1, opt.LR)
			}
			for i := range grad {
				grad[i] += opt.WeightDecay*w[i] + opt.ProxMu*(w[i]-x[i])
			}
			if err := scaffold.Correct(grad, ci, c); err != nil {
				return nil, nil, 0, err
			}
			for i := range w {
				vel[i] = opt.Momentum*vel[i] + grad[i]
				w[i] -= opt.LR * vel[i]
			}
			steps++
			sum += loss * float64(rows)
		}
		meanLoss = sum / float64(n)
	}
	if !w.Finite() {
		return nil, nil, 0, fmt.Errorf("SCAFFOLD: %w: non-finite parameters after %d steps (learning rate %v)", model.ErrDiverged, steps, opt.LR)
	}
	next, dc, err := scaffold.NextControl(ci, c, x, w, steps, opt.LR/(1-opt.Momentum))
	if err != nil {
		return nil, nil, 0, err
	}
	dy := w
	if err := dy.Add(-1, x); err != nil {
		return nil, nil, 0, err
	}
	update, err = scaffold.Join(dy, dc)
	return update, next, meanLoss, err
}
