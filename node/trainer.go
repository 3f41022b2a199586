package node

import (
	"context"
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

// trainer runs a node's training and evaluation tasks. Its local trainer
// computes the update: the built-in models over client.Trainer (builtin),
// or an external trainer process through the trainer API (external.go).
// Either way the node applies its policy to the update here (clip, its
// share of the DP noise, the weight): a trainer never sees or skips
// that. It is used by one goroutine at a time.
type trainer struct {
	self   fl.NodeID
	local  localTrainer
	policy client.Policy // clip, noise share (the manifest's k = MinCohort), weight cap
	noise  io.Reader     // the DP noise's randomness: crypto/rand (Config.InsecureNoise in tests)
	// members, if not 0, replaces policy.Members: the member count of the
	// manifest in force (an amendment changes it; the weight cap keeps the
	// members' sum in range).
	members atomic.Int64

	// SCAFFOLD (built-in models only): the global vector and the update
	// join the model and the control variates (strategy/scaffold). ctl
	// holds this node's control cᵢ and the ones its training tasks
	// computed, which it adopts when a round that included its update
	// commits.
	scaffold bool
	ctl      *control

	// byz, if set, makes this node a Byzantine attacker
	// (Config.InsecureAttack): tests and research only.
	byz *byzantine
}

// localTrainer computes a node's local updates and evaluations.
type localTrainer interface {
	// prepare readies the trainer before the node's engine runs (an
	// external trainer attaches and makes the initial weights).
	prepare(ctx context.Context) error
	// initial returns the initial model (nil if there is none).
	initial() fl.Vector
	// train returns the update of round r from global, before the
	// node's policy, and the trainer's own time on it (0 when it is
	// the node's).
	train(ctx context.Context, r fl.Round, global fl.Vector) (*client.Update, time.Duration, error)
	// evaluate returns the metrics of global on local test data.
	evaluate(ctx context.Context, r fl.Round, global fl.Vector) (fl.Metrics, error)
}

// ErrDataMismatch: local data whose features or classes are not those of
// the manifest's model.
var ErrDataMismatch = errors.New("node: local data does not fit the manifest's model")

// newTrainer returns the trainer of the manifest's built-in model on the
// node's local data.
func newTrainer(man *federation.Manifest, self fl.NodeID, train, test *dataset.Set, lim protect.Capacity, seed uint64) (*trainer, error) {
	if man.Model.External() {
		return nil, fmt.Errorf("node: the manifest's model is an external trainer's (%s): the node needs one (Config.Trainer)", man.Model)
	}
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
	if err := checkDim(man, lim); err != nil {
		return nil, err
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
	t, err := newPolicy(man, self, lim)
	if err != nil {
		return nil, err
	}
	t.scaffold = ct.Scaffold
	t.ctl = &control{ci: make(fl.Vector, spec.NumParams()), pending: map[fl.Round]fl.Vector{}}
	t.local = &builtin{client: ct, sgd: sgd, trainSet: train, testSet: test, seed: seed, salt: salt(self), scaffold: ct.Scaffold, ctl: t.ctl}
	return t, nil
}

// checkDim refuses a model whose vectors the scheme cannot carry.
func checkDim(man *federation.Manifest, lim protect.Capacity) error {
	n, dim := man.Model.NumParams(), federation.VectorLen(man)
	if n < 1 || dim > lim.MaxDim {
		return fmt.Errorf("node: model %s with %d parameters (vectors of %d) does not fit the scheme (at most %d values)", man.Model, n, dim, lim.MaxDim)
	}
	return nil
}

// newPolicy returns a trainer without its local trainer: the node's
// policy on updates, from the manifest.
func newPolicy(man *federation.Manifest, self fl.NodeID, lim protect.Capacity) (*trainer, error) {
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
	return &trainer{self: self, policy: policy, noise: rand.Reader}, nil
}

// salt is a node's share of the seeds, from its NodeID: nodes with the
// same seed shuffle differently.
func salt(self fl.NodeID) uint64 {
	h := fnv.New64a()
	h.Write([]byte(self))
	return h.Sum64()
}

// initial returns the initial model (only the member that makes the group
// key calls it).
func (t *trainer) initial() fl.Vector { return t.local.initial() }

// trainResult is what a training task reports besides the update.
type trainResult struct {
	Update   fl.Update
	Loss     float64
	Examples int
	Clip     float64 // the factor clipping applied (1: none)
	Capped   bool    // the weight was lowered to keep the sum within the scheme's range
	Attack   string  // the attack that forged the update ("": none)
	Seconds  float64
	// Compute is an external trainer's own time on the task (0 for the
	// built-in models): Seconds − Compute is the trainer API's overhead.
	Compute float64
}

// trainTask trains from global and returns the update the round engine
// protects: Δ = local − global, clipped to C and noised with this node's
// share when the manifest has DP, scaled by the weight w
// (client.Update.Weigh: examples/ExamplesPerWeight without DP, 1 with it,
// capped so that the members' sum stays within the scheme's Limits.MaxAbs).
//
// Under SCAFFOLD, global is Join(x, c) and the update Join(Δy, Δc) (see
// strategy/scaffold): both halves are clipped, noised and weighted as one
// vector. The node's next control cᵢ waits in t.ctl until the round
// commits with this node's update included.
func (t *trainer) trainTask(ctx context.Context, r fl.Round, global fl.Vector) (trainResult, error) {
	start := time.Now()
	u, compute, err := t.local.train(ctx, r, global)
	if err != nil {
		return trainResult{}, err
	}
	if t.scaffold {
		t.ctl.propose(r, u.Control)
	}
	if t.byz != nil {
		if err := t.byz.forge(r, global, u); err != nil {
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
		Seconds: time.Since(start).Seconds(), Compute: compute.Seconds(),
	}
	if t.byz != nil {
		res.Attack = t.byz.attack.String()
	}
	return res, nil
}

// evaluate returns the metrics of model v on the local test data.
func (t *trainer) evaluate(ctx context.Context, r fl.Round, v fl.Vector) (fl.Metrics, error) {
	return t.local.evaluate(ctx, r, v)
}

// builtin trains the manifest's built-in model with client.Trainer; the
// node adds its data, its random streams and, under SCAFFOLD, the control
// variate it keeps on disk (control.go).
type builtin struct {
	client   client.Trainer
	sgd      model.SGD // = client.Optimizer
	trainSet *dataset.Set
	testSet  *dataset.Set
	seed     uint64
	salt     uint64 // from the NodeID, so that nodes shuffle differently
	scaffold bool
	ctl      *control
}

func (b *builtin) prepare(context.Context) error { return nil }

// initial returns the initial model, seeded by the node's seed, so runs
// with the same seed start from the same model.
func (b *builtin) initial() fl.Vector {
	v, err := b.client.Initial(mrand.New(mrand.NewPCG(b.seed, 0x636c6f6973746572)))
	if err != nil {
		return nil // round refuses an empty initial model
	}
	return v
}

func (b *builtin) train(_ context.Context, r fl.Round, global fl.Vector) (*client.Update, time.Duration, error) {
	var ci fl.Vector
	if b.scaffold {
		ci = b.ctl.current()
	}
	u, err := b.client.Train(b.trainSet, global, ci, mrand.New(mrand.NewPCG(b.seed^b.salt, uint64(r))))
	return u, 0, err
}

func (b *builtin) evaluate(_ context.Context, _ fl.Round, v fl.Vector) (fl.Metrics, error) {
	return b.client.Evaluate(v, b.testSet)
}
