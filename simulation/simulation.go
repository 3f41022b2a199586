// Package simulation runs a whole federation inside one process, in plaintext:
// the research and baseline tool behind `cloister simulate` and
// `cloister train`.
//
// # What it does
//
// [Run] partitions the training set over n simulated sites, then for each
// round trains a copy of the global model on every site's shard, forms the
// example-weighted mean of the updates Δ = local − global (FedAvg, McMahan
// et al. 2017) and lets the server [strategy] apply it. After every round it
// evaluates the global model on the held-out test set and reports it.
//
// [Centralized] trains one model on the whole training set: the baseline that
// federated results are compared against.
//
// Nothing here is protected: updates are summed in the clear. The networked
// federation (packages round, node, coordinator) runs the same training under
// threshold homomorphic encryption.
//
// # Determinism
//
// Every random choice comes from the seed: the partition, each site's
// initialisation and shuffling (one stream per site and round), so the same
// configuration gives bit-identical results.
package simulation

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/strategy"
)

// Config describes a simulated federation.
type Config struct {
	Data        dataset.Split
	Model       model.Spec // Inputs and Classes are filled from Data when zero
	Optimizer   model.SGD  // the sites' local optimizer (batch, lr, momentum, FedProx μ)
	Strategy    strategy.Strategy
	Nodes       int
	Partition   dataset.Partition
	Rounds      int
	LocalEpochs int
	Seed        uint64
	// Parallel bounds how many sites train at once; 0 means GOMAXPROCS.
	Parallel int
	// Now is the clock used for the seconds reported per round; nil means time.Now.
	Now func() time.Time
}

// RoundResult is the evaluation of the global model after one round (or epoch).
type RoundResult struct {
	Round    int     `json:"round"`
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
	Seconds  float64 `json:"seconds"`
}

// Result is a whole run.
type Result struct {
	Rounds []RoundResult `json:"rounds"`
	Final  struct {
		Accuracy float64 `json:"accuracy"`
		Loss     float64 `json:"loss"`
	} `json:"final"`
	Params fl.Vector `json:"-"` // the final global model
}

// ErrConfig reports an unusable configuration.
var ErrConfig = errors.New("simulation: invalid configuration")

func (c *Config) fill() error {
	if c.Data.Train == nil || c.Data.Test == nil || c.Data.Train.Len() == 0 || c.Data.Test.Len() == 0 {
		return fmt.Errorf("%w: empty training or test set", ErrConfig)
	}
	if c.Model.Inputs == 0 {
		c.Model.Inputs = c.Data.Train.Features
	}
	if c.Model.Classes == 0 {
		c.Model.Classes = c.Data.Train.Classes
	}
	if c.Rounds < 1 {
		return fmt.Errorf("%w: %d rounds", ErrConfig, c.Rounds)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Parallel <= 0 {
		c.Parallel = runtime.GOMAXPROCS(0)
	}
	return nil
}

// Run simulates federated training and calls progress after every round.
func Run(cfg Config, progress func(RoundResult)) (*Result, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if cfg.Nodes < 1 || cfg.LocalEpochs < 1 {
		return nil, fmt.Errorf("%w: %d nodes, %d local epochs", ErrConfig, cfg.Nodes, cfg.LocalEpochs)
	}
	if cfg.Strategy == nil {
		return nil, fmt.Errorf("%w: no server strategy", ErrConfig)
	}
	train := cfg.Data.Train
	parts, err := cfg.Partition.Split(train.Y, train.Classes, cfg.Nodes, rand.New(rand.NewPCG(cfg.Seed, 1)))
	if err != nil {
		return nil, fmt.Errorf("partitioning %s over %d nodes: %w", train.Name, cfg.Nodes, err)
	}
	shards := make([]*dataset.Set, len(parts))
	for i, idx := range parts {
		shards[i] = train.Subset(idx)
	}
	global, err := model.New(cfg.Model, rand.New(rand.NewPCG(cfg.Seed, 2)))
	if err != nil {
		return nil, err
	}

	res := &Result{}
	for r := 1; r <= cfg.Rounds; r++ {
		start := cfg.Now()
		params := global.Params()
		updates := make([]fl.Update, len(shards))
		errs := make([]error, len(shards))
		sem := make(chan struct{}, cfg.Parallel)
		var wg sync.WaitGroup
		for i, shard := range shards {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				rng := rand.New(rand.NewPCG(cfg.Seed, uint64(r)<<32|uint64(i)+3))
				local := global.Clone()
				var anchor fl.Vector
				if cfg.Optimizer.ProxMu > 0 {
					anchor = params
				}
				if _, err := cfg.Optimizer.Train(local, shard, cfg.LocalEpochs, anchor, rng); err != nil {
					errs[i] = fmt.Errorf("round %d, node %d: %w", r, i+1, err)
					return
				}
				delta := local.Params()
				if err := delta.Add(-1, params); err != nil {
					errs[i] = err
					return
				}
				updates[i] = fl.Update{Node: fl.NodeID(fmt.Sprintf("node-%d", i+1)), Round: fl.Round(r), Delta: delta, Weight: float64(shard.Len())}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		mean, _, err := strategy.WeightedMean(updates)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", r, err)
		}
		next, err := cfg.Strategy.Apply(params, mean)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", r, err)
		}
		if err := global.SetParams(next); err != nil {
			return nil, fmt.Errorf("round %d: %w", r, err)
		}
		m, err := global.Evaluate(cfg.Data.Test)
		if err != nil {
			return nil, fmt.Errorf("round %d: evaluating: %w", r, err)
		}
		res.add(r, m, cfg.Now().Sub(start), progress)
	}
	res.Params = global.Params()
	return res, nil
}

// Centralized trains one model on the whole training set for cfg.Rounds
// epochs (Nodes, Partition, LocalEpochs and Strategy are ignored) and calls
// progress after every epoch.
func Centralized(cfg Config, progress func(RoundResult)) (*Result, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	m, err := model.New(cfg.Model, rand.New(rand.NewPCG(cfg.Seed, 2)))
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 3))
	res := &Result{}
	for e := 1; e <= cfg.Rounds; e++ {
		start := cfg.Now()
		if _, err := cfg.Optimizer.Train(m, cfg.Data.Train, 1, nil, rng); err != nil {
			return nil, fmt.Errorf("epoch %d: %w", e, err)
		}
		metrics, err := m.Evaluate(cfg.Data.Test)
		if err != nil {
			return nil, fmt.Errorf("epoch %d: evaluating: %w", e, err)
		}
		res.add(e, metrics, cfg.Now().Sub(start), progress)
	}
	res.Params = m.Params()
	return res, nil
}

func (res *Result) add(r int, m fl.Metrics, d time.Duration, progress func(RoundResult)) {
	rr := RoundResult{Round: r, Accuracy: m.Accuracy, Loss: m.Loss, Seconds: d.Seconds()}
	res.Rounds = append(res.Rounds, rr)
	res.Final.Accuracy, res.Final.Loss = m.Accuracy, m.Loss
	if progress != nil {
		progress(rr)
	}
}
