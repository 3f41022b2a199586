package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	mrand "math/rand/v2"
	"time"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/strategy/scaffold"
)

// ExamplesPerWeight is the number of local training examples that count as
// one unit of an update's weight (without DP): w = examples / 1024, a power
// of two so the division is exact.
const ExamplesPerWeight = 1024

// trainer runs a node's training and evaluation tasks. It is used by one
// goroutine at a time.
type trainer struct {
	self     fl.NodeID
	spec     model.Spec
	sgd      model.SGD
	epochs   int
	train    *dataset.Set
	test     *dataset.Set
	dp       federation.DP
	members  int
	cohort   int // the manifest's minimum cohort: the k of dp.NoiseShare
	limits   protect.Limits
	seed     uint64
	salt     uint64 // from the NodeID, so that nodes shuffle differently
	initSeed uint64
	noise    io.Reader // the DP noise's randomness: crypto/rand (Config.InsecureNoise in tests)

	// SCAFFOLD: the global vector and the update join the model and the
	// control variates (strategy/scaffold). ctl holds this node's control
	// cᵢ and the ones its training tasks computed, which it adopts when a
	// round that included its update commits.
	scaffold bool
	ctl      *control
}

// ErrDataMismatch: local data whose features or classes are not those of
// the manifest's model.
var ErrDataMismatch = errors.New("node: local data does not fit the manifest's model")

func newTrainer(man *federation.Manifest, self fl.NodeID, train, test *dataset.Set, lim protect.Limits, seed uint64) (*trainer, error) {
	if train == nil || train.Len() == 0 {
		return nil, fmt.Errorf("node: no training data")
	}
	if test == nil || test.Len() == 0 {
		return nil, fmt.Errorf("node: no test data")
	}
	spec := man.Model.Spec()
	for _, d := range []struct {
		name string
		set  *dataset.Set
	}{{"training", train}, {"test", test}} {
		if d.set.Features != spec.Inputs || d.set.Classes != spec.Classes {
			return nil, fmt.Errorf("%w: %s data %s has %d features and %d classes, the manifest's model %s has %d inputs and %d classes",
				ErrDataMismatch, d.name, d.set.Name, d.set.Features, d.set.Classes, spec, spec.Inputs, spec.Classes)
		}
	}
	n := spec.NumParams()
	dim := n
	if man.Training.Scaffold() {
		dim = 2 * n // the model joined with the control variate
	}
	if n < 1 || dim > lim.MaxDim {
		return nil, fmt.Errorf("node: model %s with %d parameters (vectors of %d) does not fit the scheme (at most %d values)", spec, n, dim, lim.MaxDim)
	}
	tr := man.Training
	sgd := model.SGD{LR: tr.LearningRate, Momentum: tr.Momentum, Batch: tr.Batch, ProxMu: tr.ProxMu}
	if err := sgd.Validate(); err != nil {
		return nil, fmt.Errorf("node: training settings from the manifest: %w", err)
	}
	if tr.LocalEpochs < 1 {
		return nil, fmt.Errorf("node: %d local epochs in the manifest", tr.LocalEpochs)
	}
	h := fnv.New64a()
	h.Write([]byte(self))
	return &trainer{
		self: self, spec: spec, sgd: sgd, epochs: tr.LocalEpochs, train: train, test: test,
		dp: man.DP, members: len(man.Members), cohort: man.MinCohort, limits: lim,
		seed: seed, salt: h.Sum64(), initSeed: seed, noise: rand.Reader,
		scaffold: tr.Scaffold(), ctl: &control{ci: make(fl.Vector, n), pending: map[fl.Round]fl.Vector{}},
	}, nil
}

// initial returns the initial model (only the member that makes the group
// key calls it): seeded by the node's seed, so runs with the same seed start
// from the same model.
func (t *trainer) initial() fl.Vector {
	m, err := model.New(t.spec, mrand.New(mrand.NewPCG(t.initSeed, 0x636c6f6973746572)))
	if err != nil {
		return nil // round refuses an empty initial model
	}
	if t.scaffold {
		v, err := scaffold.Join(m.Params(), make(fl.Vector, m.NumParams())) // the server control starts at 0
		if err != nil {
			return nil
		}
		return v
	}
	return m.Params()
}

// trainResult is what a training task reports besides the update.
type trainResult struct {
	Update   fl.Update
	Loss     float64
	Examples int
	Clip     float64 // the factor dp.Clip applied (1: none)
	Capped   bool    // the weight was lowered to keep the sum within the scheme's range
	Seconds  float64
}

// trainTask trains on the local data from global and returns the update
// the round engine protects: Δ = local − global, clipped to C and noised
// with this node's share when the manifest has DP, scaled by the weight w.
//
// The weight. Without DP, w = examples/ExamplesPerWeight, so the federation
// computes the example-weighted mean Σ wΔ / Σ w. The scheme decrypts sums
// correctly only within ±Limits.MaxAbs (2048 for mhe's presets), for every
// coordinate of Σ wΔ and for Σ w itself. Each node therefore caps its own
// contribution at MaxAbs/(2n) per coordinate, n the number of members:
//
//	w ≤ MaxAbs / (2 · n · max(1, max_j |Δ_j|))
//
// so that the sum over all n members stays within MaxAbs/2, whatever the
// others send. A capped node counts for less than its examples: the result
// is still a weighted mean of the updates. With DP, w = 1 for every node:
// each update's sensitivity is then C and the noise shares add up to σ·C on
// the sum, as the accountant assumes; weighting by examples would scale both.
//
// Under SCAFFOLD, global is Join(x, c) and the update Join(Δy, Δc) (see
// strategy/scaffold): both halves are clipped, noised and weighted as one
// vector. The node's next control cᵢ waits in t.ctl until the round
// commits with this node's update included.
func (t *trainer) trainTask(r fl.Round, global fl.Vector) (trainResult, error) {
	start := time.Now()
	x := global
	if t.scaffold {
		var err error
		if x, _, err = scaffold.Split(global); err != nil {
			return trainResult{}, fmt.Errorf("the global vector is not a SCAFFOLD model and control: %w", err)
		}
	}
	m, err := model.NewFromParams(t.spec, x)
	if err != nil {
		return trainResult{}, fmt.Errorf("the global model does not fit this node's model %s (%d inputs, %d classes): %w",
			t.spec.Kind, t.spec.Inputs, t.spec.Classes, err)
	}
	rng := mrand.New(mrand.NewPCG(t.seed^t.salt, uint64(r)))
	var delta fl.Vector
	var loss float64
	if t.scaffold {
		var next fl.Vector
		if delta, next, err = scaffold.Train(m, t.sgd, t.train, t.epochs, global, t.ctl.current(), rng); err != nil {
			return trainResult{}, fmt.Errorf("training: %w", err)
		}
		dy, _, _ := scaffold.Split(delta)
		y := x.Clone()
		y.Add(1, dy)
		if err := m.SetParams(y); err != nil {
			return trainResult{}, fmt.Errorf("training: %w", err)
		}
		met, err := m.Evaluate(t.train)
		if err != nil {
			return trainResult{}, fmt.Errorf("training loss: %w", err)
		}
		loss = met.Loss
		t.ctl.propose(r, next)
	} else {
		var anchor fl.Vector
		if t.sgd.ProxMu > 0 {
			anchor = global
		}
		if loss, err = t.sgd.Train(m, t.train, t.epochs, anchor, rng); err != nil {
			return trainResult{}, fmt.Errorf("training: %w", err)
		}
		delta = m.Params()
		if err := delta.Add(-1, global); err != nil {
			return trainResult{}, err
		}
	}
	res := trainResult{Loss: loss, Examples: t.train.Len(), Clip: 1}
	var w float64
	if t.dp.NoiseMultiplier > 0 || t.dp.Clip > 0 {
		if t.dp.Clip > 0 {
			if res.Clip, err = dp.Clip(delta, t.dp.Clip); err != nil {
				return trainResult{}, fmt.Errorf("clipping: %w", err)
			}
		}
		if t.dp.NoiseMultiplier > 0 {
			std, err := dp.NoiseShare(t.dp.NoiseMultiplier, t.dp.Clip, t.cohort)
			if err != nil {
				return trainResult{}, fmt.Errorf("noise share: %w", err)
			}
			if err := dp.AddNoise(delta, std, t.noise); err != nil {
				return trainResult{}, fmt.Errorf("noise: %w", err)
			}
		}
		w = 1
	} else {
		w = float64(t.train.Len()) / ExamplesPerWeight
	}
	if !delta.Finite() {
		return trainResult{}, fmt.Errorf("the update is not finite")
	}
	peak := 1.0
	for _, x := range delta {
		peak = max(peak, math.Abs(x))
	}
	if wmax := t.limits.MaxAbs / (2 * float64(t.members) * peak); w > wmax {
		w, res.Capped = wmax, true
	}
	delta.Scale(w)
	res.Update = fl.Update{Node: t.self, Round: r, Delta: delta, Weight: w}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}

// evaluate returns the metrics of model v on the local test data.
func (t *trainer) evaluate(v fl.Vector) (fl.Metrics, error) {
	if t.scaffold {
		x, _, err := scaffold.Split(v)
		if err != nil {
			return fl.Metrics{}, err
		}
		v = x
	}
	m, err := model.NewFromParams(t.spec, v)
	if err != nil {
		return fl.Metrics{}, err
	}
	return m.Evaluate(t.test)
}
