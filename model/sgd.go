package model

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
)

// SGD is minibatch stochastic gradient descent with heavy-ball momentum,
// L2 weight decay and the FedProx proximal term. With the anchor w_g given
// to [SGD.Train], it minimizes
//
//	mean cross-entropy(w) + WeightDecay/2·‖w‖² + ProxMu/2·‖w − w_g‖²
//
// and each step, with g the gradient of that objective on one batch, does
//
//	v ← Momentum·v + g
//	w ← w − LR·v
//
// which is PyTorch's torch.optim.SGD with the same lr, momentum and
// weight_decay (dampening 0, no Nesterov). Weight decay applies to every
// parameter, biases included. The velocity v starts at zero in each call
// to Train, as local training in a federated round usually does.
//
// With Cosine set, epoch e of the n epochs of one Train call uses the
// learning rate [CosineLR](LR, e, n), like PyTorch's CosineAnnealingLR
// stepped once per epoch. A call with one epoch uses LR unchanged.
type SGD struct {
	LR          float64 // step size, finite and > 0
	Momentum    float64 // momentum coefficient in [0, 1); 0 disables it
	WeightDecay float64 // L2 coefficient λ ≥ 0
	ProxMu      float64 // FedProx coefficient μ ≥ 0; 0 is plain SGD (FedAvg)
	Batch       int     // examples per step, ≥ 1; a last, smaller batch ends each epoch
	Cosine      bool    // anneal LR towards 0 over the epochs of each Train call
}

// DefaultSGD returns the settings used when nothing else is chosen: LR
// 0.05, momentum 0.9, batch 64, cosine annealing, no weight decay and no
// proximal term. On Fashion-MNIST scaled to [0, 1], ten epochs in one
// Train call reach about 0.89 test accuracy with the MLP 784-128-10 and
// 0.84 with softmax regression.
func DefaultSGD() SGD {
	return SGD{LR: 0.05, Momentum: 0.9, Batch: 64, Cosine: true}
}

// CosineLR returns the learning rate of epoch e (counted from 1) of n
// under cosine annealing from lr towards 0: lr·(1 + cos(π·(e−1)/n))/2.
// Epoch 1 gets lr. A caller that runs one Train call per epoch, to report
// progress in between, can set [SGD.LR] from it to follow the schedule.
func CosineLR(lr float64, e, n int) float64 {
	if n < 1 || e < 1 {
		return lr
	}
	return lr * (1 + math.Cos(math.Pi*float64(e-1)/float64(n))) / 2
}

// Validate reports an error wrapping [ErrHyperparameter] if a setting is
// out of range.
func (o SGD) Validate() error {
	finite := func(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }
	switch {
	case !finite(o.LR) || o.LR <= 0:
		return fmt.Errorf("%w: learning rate %v, want a finite value > 0", ErrHyperparameter, o.LR)
	case !finite(o.Momentum) || o.Momentum < 0 || o.Momentum >= 1:
		return fmt.Errorf("%w: momentum %v, want a value in [0, 1)", ErrHyperparameter, o.Momentum)
	case !finite(o.WeightDecay) || o.WeightDecay < 0:
		return fmt.Errorf("%w: weight decay %v, want a finite value ≥ 0", ErrHyperparameter, o.WeightDecay)
	case !finite(o.ProxMu) || o.ProxMu < 0:
		return fmt.Errorf("%w: proximal μ %v, want a finite value ≥ 0", ErrHyperparameter, o.ProxMu)
	case o.Batch < 1:
		return fmt.Errorf("%w: batch size %d, want at least 1", ErrHyperparameter, o.Batch)
	}
	return nil
}

// Train runs epochs passes of minibatch SGD over set, updating m in place,
// and returns the mean cross-entropy over the examples of the last epoch
// (measured on each batch before its step; the regularization terms are
// not included).
//
// Each epoch visits the examples in an order drawn from rng, so the same
// model, data, settings and rng state give bit-identical parameters.
// anchor is the global model w_g of the FedProx term; it must be given
// when ProxMu > 0 and may be nil otherwise.
//
// On error m is left unchanged. If the loss or a parameter becomes NaN or
// infinite, Train returns an error wrapping [ErrDiverged]; a smaller LR
// usually helps.
func (o SGD) Train(m Model, set *dataset.Set, epochs int, anchor fl.Vector, rng *rand.Rand) (meanLoss float64, err error) {
	if m == nil {
		return 0, fmt.Errorf("%w: nil model", ErrInput)
	}
	if epochs < 1 {
		return 0, fmt.Errorf("%w: %d epochs, want at least 1", ErrHyperparameter, epochs)
	}
	if rng == nil {
		return 0, fmt.Errorf("model: Train: nil *rand.Rand")
	}
	if err := checkSet(m.Spec(), set); err != nil {
		return 0, err
	}
	t, err := o.newTrainer(m, anchor, min(o.Batch, set.Len()))
	if err != nil {
		return 0, err
	}
	snapshot := t.w.Clone()
	restore := func(err error) (float64, error) {
		copy(t.w, snapshot)
		return 0, err
	}

	total := set.Len()
	order := make([]int, total)
	for i := range order {
		order[i] = i
	}
	for e := 1; e <= epochs; e++ {
		if o.Cosine {
			t.lr = CosineLR(o.LR, e, epochs)
		}
		rng.Shuffle(total, func(i, j int) { order[i], order[j] = order[j], order[i] })
		var sum float64
		for start := 0; start < total; start += t.batch {
			rows := min(t.batch, total-start)
			x, y := t.gather(set, order[start:start+rows])
			loss, err := t.step(x, y)
			if err != nil {
				return restore(err)
			}
			if math.IsNaN(loss) || math.IsInf(loss, 0) {
				return restore(fmt.Errorf("%w: loss %v in epoch %d at example %d of %d (learning rate %v)", ErrDiverged, loss, e, start, total, t.lr))
			}
			sum += loss * float64(rows)
		}
		meanLoss = sum / float64(total)
	}
	if !t.w.Finite() {
		return restore(fmt.Errorf("%w: non-finite parameters after %d epochs (learning rate %v)", ErrDiverged, epochs, o.LR))
	}
	return meanLoss, nil
}

// checkSet validates a data set against a model's spec.
func checkSet(spec Spec, set *dataset.Set) error {
	if set == nil {
		return fmt.Errorf("%w: nil data set", ErrInput)
	}
	if set.Len() == 0 {
		return fmt.Errorf("%w: data set %s has no examples", ErrInput, set.Name)
	}
	if set.Features != spec.Inputs {
		return fmt.Errorf("%w: data set %s has %d features, %s takes %d", ErrInput, set.Name, set.Features, spec, spec.Inputs)
	}
	if len(set.X) != set.Len()*set.Features {
		return fmt.Errorf("%w: data set %s has %d feature values for %d examples of %d features", ErrInput, set.Name, len(set.X), set.Len(), set.Features)
	}
	for i, c := range set.Y {
		if c < 0 || c >= spec.Classes {
			return fmt.Errorf("%w: data set %s: example %d has label %d, want [0, %d)", ErrLabel, set.Name, i, c, spec.Classes)
		}
	}
	return nil
}

// trainer holds the buffers of one training run, so that steps allocate
// nothing.
type trainer struct {
	o      SGD
	lr     float64 // the current learning rate
	m      Model
	w      fl.Vector // m's live parameters
	anchor fl.Vector // nil unless ProxMu > 0
	grad   fl.Vector
	vel    fl.Vector
	batch  int
	x      []float64 // batch × Inputs
	y      []int
}

func (o SGD) newTrainer(m Model, anchor fl.Vector, batch int) (*trainer, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	spec := m.Spec()
	w := m.live()
	if anchor != nil {
		if err := checkParams("FedProx anchor", anchor, spec, len(w)); err != nil {
			return nil, err
		}
	}
	if o.ProxMu > 0 && anchor == nil {
		return nil, fmt.Errorf("%w: proximal μ %v needs the global model as anchor, got nil", ErrHyperparameter, o.ProxMu)
	}
	if o.ProxMu == 0 {
		anchor = nil
	}
	return &trainer{
		o:      o,
		lr:     o.LR,
		m:      m,
		w:      w,
		anchor: anchor,
		grad:   make(fl.Vector, len(w)),
		vel:    make(fl.Vector, len(w)),
		batch:  batch,
		x:      make([]float64, batch*spec.Inputs),
		y:      make([]int, batch),
	}, nil
}

// gather copies the examples at idx into the batch buffers.
func (t *trainer) gather(set *dataset.Set, idx []int) ([]float64, []int) {
	f := set.Features
	for j, i := range idx {
		copy(t.x[j*f:(j+1)*f], set.X[i*f:(i+1)*f])
		t.y[j] = set.Y[i]
	}
	return t.x[:len(idx)*f], t.y[:len(idx)]
}

// gradient sets t.grad to the gradient of the regularized objective on one
// batch and returns the batch's mean cross-entropy and the objective.
func (t *trainer) gradient(x []float64, y []int) (ce, objective float64, err error) {
	ce, err = t.m.Gradient(x, y, t.grad)
	if err != nil {
		return 0, 0, err
	}
	objective = ce
	wd, mu := t.o.WeightDecay, t.o.ProxMu
	g, w := t.grad, t.w
	switch {
	case t.anchor != nil:
		a := t.anchor[:len(w)]
		g = g[:len(w)]
		var sw, sd float64
		for i, wi := range w {
			d := wi - a[i]
			g[i] += wd*wi + mu*d
			sw += wi * wi
			sd += d * d
		}
		objective += wd/2*sw + mu/2*sd
	case wd != 0:
		g = g[:len(w)]
		var sw float64
		for i, wi := range w {
			g[i] += wd * wi
			sw += wi * wi
		}
		objective += wd / 2 * sw
	}
	return ce, objective, nil
}

// step does one SGD update on a batch and returns its cross-entropy.
func (t *trainer) step(x []float64, y []int) (float64, error) {
	ce, _, err := t.gradient(x, y)
	if err != nil {
		return 0, err
	}
	lr, mom := t.lr, t.o.Momentum
	w, v, g := t.w, t.vel[:len(t.w)], t.grad[:len(t.w)]
	for i, gi := range g {
		vi := mom*v[i] + gi
		v[i] = vi
		w[i] -= lr * vi
	}
	return ce, nil
}
