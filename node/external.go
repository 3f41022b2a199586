package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cloisterfl/cloister/client"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	trainerapi "github.com/cloisterfl/cloister/trainer"
)

// Trainer is an external trainer as a node uses it: a *trainer.Host (the
// trainer API on the node's Unix socket, with the trainer process it
// supervises), or a fake in tests. It validates what the trainer returns
// (layout, finite values, example counts); the node bounds each call with
// Config.TrainerTimeout.
type Trainer interface {
	Init(ctx context.Context, seed uint64) (fl.Vector, error)
	Train(ctx context.Context, t trainerapi.TrainTask) (trainerapi.Result, error)
	Evaluate(ctx context.Context, t trainerapi.EvalTask) (trainerapi.Evaluation, error)
}

// DefaultTrainerTimeout bounds each task of an external trainer when
// Config.TrainerTimeout is 0.
const DefaultTrainerTimeout = 10 * time.Minute

// ErrNotExternal: an external trainer for a manifest whose model is built
// in.
var ErrNotExternal = errors.New("node: the manifest's model is built in, not an external trainer's")

// newExternal returns the trainer of a manifest of model kind external:
// ext trains and evaluates on its own data, the node keeps its policy.
func newExternal(man *federation.Manifest, self fl.NodeID, ext Trainer, train, test *dataset.Set, timeout time.Duration,
	lim protect.Capacity, seed uint64, log *slog.Logger) (*trainer, error) {
	if !man.Model.External() {
		return nil, fmt.Errorf("%w (%s): make the federation with cloister init --model external --layout FILE", ErrNotExternal, man.Model)
	}
	if train != nil || test != nil {
		return nil, errors.New("node: local data and an external trainer: the trainer reads its own data")
	}
	if man.Training.Scaffold() {
		return nil, fmt.Errorf("node: SCAFFOLD (%s) does not run with an external trainer", man.Training.Strategy)
	}
	if err := checkDim(man, lim); err != nil {
		return nil, err
	}
	if timeout <= 0 {
		timeout = DefaultTrainerTimeout
	}
	t, err := newPolicy(man, self, lim)
	if err != nil {
		return nil, err
	}
	tr := man.Training
	t.local = &external{
		t: ext, timeout: timeout, seed: seed, salt: salt(self), dim: man.Model.NumParams(), log: log,
		config: trainerapi.Config{Epochs: tr.LocalEpochs, Batch: tr.Batch, LearningRate: tr.LearningRate, Momentum: tr.Momentum,
			ProxMu: tr.ProxMu, Rounds: tr.Rounds, Strategy: tr.Strategy},
	}
	return t, nil
}

// external runs a node's tasks on an external trainer.
type external struct {
	t       Trainer
	timeout time.Duration
	seed    uint64 // the node's: the initial weights' seed, the same at every node
	salt    uint64 // the NodeID's share of each round's seed
	dim     int
	config  trainerapi.Config
	log     *slog.Logger
	init    fl.Vector // the initial weights, from prepare
}

// prepare waits for the trainer (as long as ctx lasts: an attached
// trainer may come late) and asks it for the initial weights, seeded
// with the node's seed. A trainer whose layout is not the manifest's, or
// that fails, is an error: the node does not start.
func (e *external) prepare(ctx context.Context) error {
	start := time.Now()
	for {
		tctx, cancel := context.WithTimeout(ctx, e.timeout)
		v, err := e.t.Init(tctx, e.seed)
		cancel()
		if errors.Is(err, trainerapi.ErrNoTrainer) && ctx.Err() == nil {
			e.log.Warn("waiting for the trainer to attach", "waited_s", time.Since(start).Seconds(), "err", err)
			continue
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			return fmt.Errorf("node: the trainer's initial weights: %w", err)
		}
		if len(v) != e.dim || !v.Finite() {
			return fmt.Errorf("node: the trainer's initial weights: %d values (finite: %v), the manifest's model has %d", len(v), v.Finite(), e.dim)
		}
		e.init = v
		e.log.Info("trainer ready", "params", len(v), "wait_s", time.Since(start).Seconds())
		return nil
	}
}

func (e *external) initial() fl.Vector { return e.init.Clone() }

// roundSeed is the seed of this node's training in round r: distinct per
// node and round, reproducible from the node's seed.
func (e *external) roundSeed(r fl.Round) uint64 {
	x := e.seed ^ e.salt ^ uint64(r)*0x9e3779b97f4a7c15
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

func (e *external) train(ctx context.Context, r fl.Round, global fl.Vector) (*client.Update, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	res, err := e.t.Train(ctx, trainerapi.TrainTask{Round: r, Seed: e.roundSeed(r), Global: global, Config: e.config})
	if err != nil {
		return nil, 0, err
	}
	if len(res.Delta) != len(global) {
		return nil, 0, fmt.Errorf("node: the trainer's update has %d values, the model %d", len(res.Delta), len(global))
	}
	return &client.Update{Delta: res.Delta, Examples: res.Examples, Loss: res.Metrics["loss"], Scale: 1}, res.Compute, nil
}

func (e *external) evaluate(ctx context.Context, r fl.Round, global fl.Vector) (fl.Metrics, error) {
	ctx, cancel := context.WithTimeout(ctx, e.timeout)
	defer cancel()
	ev, err := e.t.Evaluate(ctx, trainerapi.EvalTask{Round: r, Seed: e.roundSeed(r), Global: global})
	if err != nil {
		return fl.Metrics{}, err
	}
	return ev.Metrics, nil
}
