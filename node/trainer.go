package node

import (
	"crypto/rand"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	mrand "math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/cloisterfl/cloister/client"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/protect"
)

// ExamplesPerWeight is the number of local training examples that count as
// one unit of an update's weight (without DP); see client.Update.Weigh.
const ExamplesPerWeight = client.ExamplesPerWeight

// trainer runs a node's training and evaluation tasks over client.Trainer,
// which computes the update; the node adds its identity, its data, its
// random streams and, under SCAFFOLD, the control variate it keeps on disk
// (control.go). It is used by one goroutine at a time.
type trainer struct {
	self   fl.NodeID
	client client.Trainer
	sgd    model.SGD // = client.Optimizer
	train  *dataset.Set
	test   *dataset.Set
	policy client.Policy // clip, noise share (the manifest's k = MinCohort), weight cap
	// members, if not 0, replaces policy.Members: the member count of the
	// manifest in force (an amendment changes it; the weight cap keeps the
	// members' sum in range).
	members atomic.Int64
	seed    uint64
	salt    uint64    // from the NodeID, so that nodes shuffle differently
	noise   io.Reader // the DP noise's randomness: crypto/rand (Config.InsecureNoise in tests)

	// SCAFFOLD: the global vector and the update join the model and the
	// control variates (strategy/scaffold). ctl holds this node's control
	// cᵢ and the ones its training tasks computed, which it adopts when a
	// round that included its update commits.
	scaffold bool
	ctl      *control

	// byz, if set, makes this node a Byzantine attacker
	// (Config.InsecureAttack): tests and research only.
	byz *byzantine
}

// ErrDataMismatch: local data whose features or classes are not those of
// the manifest's model.
var ErrDataMismatch = errors.New("node: local data does not fit the manifest's model")

func newTrainer(man *federation.Manifest, self fl.NodeID, train, test *dataset.Set, lim protect.Capacity, seed uint64) (*trainer, error) {
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
	ct := client.Trainer{Model: spec, Optimizer: sgd, Epochs: tr.LocalEpochs, Scaffold: tr.Scaffold()}
	if err := ct.Validate(); err != nil {
		return nil, fmt.Errorf("node: training settings from the manifest: %w", err)
	}
	policy := client.Policy{Clip: man.DP.Clip, MaxAbs: lim.MaxAbs, Members: len(man.Members)}
	if man.DP.NoiseMultiplier > 0 {
		std, err := dp.NoiseShare(man.DP.NoiseMultiplier, man.DP.Clip, man.MinCohort)
		if err != nil {
			return nil, fmt.Errorf("node: the manifest's noise share: %w", err)
		}
		if policy.Noise, err = dp.NewNoise(std, dp.DefaultBits); err != nil {
			return nil, fmt.Errorf("node: the manifest's noise share: %w", err)
		}
	}
	h := fnv.New64a()
	h.Write([]byte(self))
	return &trainer{
		self: self, client: ct, sgd: sgd, train: train, test: test, policy: policy,
		seed: seed, salt: h.Sum64(), noise: rand.Reader,
		scaffold: ct.Scaffold, ctl: &control{ci: make(fl.Vector, n), pending: map[fl.Round]fl.Vector{}},
	}, nil
}

// initial returns the initial model (only the member that makes the group
// key calls it): seeded by the node's seed, so runs with the same seed start
// from the same model.
func (t *trainer) initial() fl.Vector {
	v, err := t.client.Initial(mrand.New(mrand.NewPCG(t.seed, 0x636c6f6973746572)))
	if err != nil {
		return nil // round refuses an empty initial model
	}
	return v
}

// trainResult is what a training task reports besides the update.
type trainResult struct {
	Update   fl.Update
	Loss     float64
	Examples int
	Clip     float64 // the factor clipping applied (1: none)
	Capped   bool    // the weight was lowered to keep the sum within the scheme's range
	Attack   string  // the attack that forged the update ("": none)
	Seconds  float64
}

// trainTask trains on the local data from global and returns the update
// the round engine protects: Δ = local − global, clipped to C and noised
// with this node's share when the manifest has DP, scaled by the weight w
// (client.Update.Weigh: examples/ExamplesPerWeight without DP, 1 with it,
// capped so that the members' sum stays within the scheme's Limits.MaxAbs).
//
// Under SCAFFOLD, global is Join(x, c) and the update Join(Δy, Δc) (see
// strategy/scaffold): both halves are clipped, noised and weighted as one
// vector. The node's next control cᵢ waits in t.ctl until the round
// commits with this node's update included.
func (t *trainer) trainTask(r fl.Round, global fl.Vector) (trainResult, error) {
	start := time.Now()
	var ci fl.Vector
	if t.scaffold {
		ci = t.ctl.current()
	}
	u, err := t.client.Train(t.train, global, ci, mrand.New(mrand.NewPCG(t.seed^t.salt, uint64(r))))
	if err != nil {
		return trainResult{}, err
	}
	if t.scaffold {
		t.ctl.propose(r, u.Control)
	}
	if t.byz != nil {
		if err := t.byz.forge(t, r, global, ci, u); err != nil {
			return trainResult{}, err
		}
	}
	p := t.policy
	if m := t.members.Load(); m > 0 {
		p.Members = int(m)
	}
	if err := p.Apply(u, t.noise); err != nil {
		return trainResult{}, err
	}
	res := trainResult{
		Update: fl.Update{Node: t.self, Round: r, Delta: u.Delta, Weight: u.Weight},
		Loss:   u.Loss, Examples: u.Examples, Clip: u.Scale, Capped: u.Capped,
		Seconds: time.Since(start).Seconds(),
	}
	if t.byz != nil {
		res.Attack = t.byz.attack.String()
	}
	return res, nil
}

// evaluate returns the metrics of model v on the local test data.
func (t *trainer) evaluate(v fl.Vector) (fl.Metrics, error) {
	return t.client.Evaluate(v, t.test)
}
