// Package simulation runs a whole federation inside one process, in plaintext:
// the research and baseline tool behind `cloister simulate` and
// `cloister train`.
//
// # What it does
//
// [Run] partitions the training set over n simulated sites, then for each
// round trains a copy of the global model on the shard of every site in the
// round's cohort, aggregates the updates Δ = local − global and lets the
// server [strategy] apply the aggregate. After every round it evaluates the
// global model on the held-out test set and reports it. By default the
// aggregate is the example-weighted mean (FedAvg, McMahan et al. 2017).
//
// [Centralized] trains one model on the whole training set: the baseline that
// federated results are compared against.
//
// Nothing here is protected: updates are aggregated in the clear. The
// networked federation (packages round, node, coordinator) runs the same
// training under threshold homomorphic encryption.
//
// # A node's round
//
// Each node in the cohort goes through the same pipeline, in this order:
//
//  1. Train: local SGD (Config.Optimizer, with FedProx's μ when set) on its
//     shard, or SCAFFOLD's corrected SGD when the strategy is SCAFFOLD.
//     A malicious node trains on the data its [attack.Attack] poisoned.
//  2. Forge: the malicious nodes replace their updates with what the attack
//     sends; omniscient attacks (ALIE, IPM) read the honest updates first.
//  3. Clip: with Config.Clip > 0, every update, malicious ones included, is
//     scaled to L2 norm at most C (dp.Clip). This models the norm bound that
//     attested code enforces on the node under `mhe`; the attacker cannot skip
//     it.
//  4. Noise: with Config.Privacy, every node adds its share of the distributed
//     discrete Gaussian noise, standard deviation σ·C/√k (dp.NoiseShare),
//     on dp's fixed-point grid.
//  5. Compress: with Config.Compress, the update is encoded (top-k with error
//     feedback, or 8-bit stochastic quantization) and the server decodes it.
//     Bytes on the wire are counted either way; uncompressed updates count as
//     dense float32 (compress.Dense: 5 + 4d bytes).
//
// The server then aggregates the decoded updates with Config.Rule and applies
// the strategy.
//
// # Aggregation and weights
//
// With no rule, or the mean, the aggregate is FedAvg's example-weighted mean
// Σ nᵢΔᵢ / Σ nᵢ. With differential privacy it is the uniform mean Σ Δᵢ / m
// over the m nodes of the cohort instead, as in DP-FedAvg (McMahan et al.
// 2018): the noise is added to the sum, whose sensitivity to one node is C
// only if every node's weight is the same, so the mean carries noise of
// standard deviation σ·C·√(m/k)/m (σC/m when k = m).
//
// A robust rule (median, trimmed mean, Krum, multi-Krum, Bulyan, centered
// clipping; package robust) aggregates the updates unweighted: weights are the
// nodes' claims, and a rule that honours them is only as robust as they are
// honest. Robust rules need the individual updates in the clear, which is
// why they exist only in the `plain` and `tee` modes; combining them with
// differential privacy is refused, because the accountant's analysis covers
// the noised sum, not a median of individually under-noised updates.
//
// # Attacks
//
// Config.Attack and Config.Byzantine make the first F nodes (node-1 …
// node-F) malicious, deterministically, so runs are comparable. When the
// attack is a backdoor, each round also reports the backdoor accuracy: the
// fraction of triggered test images, outside the target class, that the
// global model classifies as the target (attack.Backdoor.Triggered). With
// Byzantine = 0 it measures the clean model's baseline for the same trigger.
//
// # Differential privacy and accounting
//
// Config.Privacy adds distributed DP. Its accounting follows package dp: the
// noise multiplier given to the accountant is dp.DistributedMultiplier(σ, C,
// k, d, bits), slightly below σ to pay for the grid, and each round composes
// one step of the sampled Gaussian mechanism with sampling rate q = m/n
// (cohort over population) at δ = Privacy.Delta.
//
// Accounting assumptions, stated plainly: with every node in every round
// (the default) q = 1 and the guarantee is a theorem, at the level of one
// site's whole contribution per round. With a smaller cohort, q = m/n
// claims amplification by sampling, which holds only if the cohort is drawn
// at random and the draw stays secret from the adversary; the simulation
// draws it uniformly without replacement (Poisson sampling is what the
// analysis assumes; the fixed-size draw is the usual approximation). The
// networked runtime, whose coordinator is not trusted to sample, accounts
// with q = 1. The noise also assumes that at least k nodes of each cohort
// are honest and add their share; k defaults to the whole cohort.
//
// With Privacy.Budget, the budget is checked before every round
// (dp.Budget.Check): the run stops before a round that would take ε past
// it, and Result.Stopped says why.
//
// The noise here is drawn from a seeded ChaCha8 stream derived from
// Config.Seed, node and round, so that runs are reproducible. That is a
// simulation convenience only: nodes in production draw from crypto/rand.
//
// # Strategies
//
// Config.Strategy is any package strategy server optimizer (FedAvg, FedAdam,
// FedYogi, FedAdagrad, SCAFFOLD); FedProx is the client-side
// Config.Optimizer.ProxMu. For SCAFFOLD (Karimireddy et al. 2020) the global
// vector is Join(x, c) and each node keeps its control variate cᵢ between
// rounds; nodes train with the drift-corrected gradient g − cᵢ + c and update
// cᵢ by option II (strategy/scaffold), with heavy-ball momentum β counted by
// the effective step η/(1−β) (exact for β = 0, an approximation otherwise).
// Pass "scaffold:frac=M/N" when the cohort M is smaller than the population
// N.
//
// # Determinism
//
// Every random choice comes from the seed: the partition, the cohorts, each
// site's initialisation, shuffling, poisoning, noise and quantization (one
// stream per purpose, site and round), so the same configuration gives
// bit-identical results.
//
// # References
//
//   - H. B. McMahan, E. Moore, D. Ramage, S. Hampson, B. Agüera y Arcas.
//     Communication-Efficient Learning of Deep Networks from Decentralized
//     Data. AISTATS 2017.
//   - H. B. McMahan, D. Ramage, K. Talwar, L. Zhang. Learning Differentially
//     Private Recurrent Language Models. ICLR 2018 (DP-FedAvg).
//     arXiv:1710.06963
//   - T. Li et al. Federated Optimization in Heterogeneous Networks. MLSys
//     2020 (FedProx). arXiv:1812.06127
//   - S. P. Karimireddy et al. SCAFFOLD: Stochastic Controlled Averaging for
//     Federated Learning. ICML 2020. arXiv:1910.06378
//
// [arXiv:1710.06963]: https://arxiv.org/abs/1710.06963
// [arXiv:1812.06127]: https://arxiv.org/abs/1812.06127
// [arXiv:1910.06378]: https://arxiv.org/abs/1910.06378
package simulation

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/cloisterfl/cloister/attack"
	"github.com/cloisterfl/cloister/client"
	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/robust"
	"github.com/cloisterfl/cloister/strategy"
)

// stream returns the random stream for one purpose, round and node.
func stream(seed uint64, purpose, round, node int) *rand.Rand {
	return rand.New(rand.NewPCG(seed^uint64(purpose)<<56, uint64(round)<<32|uint64(node)))
}

// Random stream purposes, beyond the original ones (partition 1, model 2,
// training 3+).
const (
	purposePoison = iota + 1
	purposeCohort
	purposeForge
	purposeCompress
)

// Run simulates federated training and calls progress after every round.
func Run(cfg Config, progress func(RoundResult)) (*Result, error) {
	s, err := setup(cfg)
	if err != nil {
		return nil, err
	}
	for r := 1; r <= s.cfg.Rounds; r++ {
		if s.priv != nil {
			stop, err := s.priv.check(r)
			if err != nil {
				return nil, fmt.Errorf("round %d: %w", r, err)
			}
			if stop != "" {
				s.res.Stopped = stop
				break
			}
		}
		rr, err := s.round(r)
		if err != nil {
			return nil, err
		}
		s.res.add(rr, progress)
	}
	if s.res.Params, err = s.client.Params(s.state); err != nil {
		return nil, err
	}
	return s.res, nil
}

// sim is the state of one run: the federation that setup builds, and the
// global vector and the sites' state that the rounds move.
type sim struct {
	cfg       Config
	client    client.Trainer // the sites' local update
	shards    []*dataset.Set
	atk       attack.Attack
	rule      robust.Rule
	triggered *dataset.Set       // the backdoor's test inputs; nil without a backdoor
	encoders  []compress.Encoder // one per site; nil without compression
	priv      *privacy           // nil without DP
	cohortRNG *rand.Rand
	res       *Result

	state    fl.Vector   // the strategy's vector: Join(x, c) for SCAFFOLD
	controls []fl.Vector // SCAFFOLD's cᵢ, one per site
}

// setup checks cfg, partitions and poisons the data, and draws the
// initial model.
func setup(cfg Config) (*sim, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	_, isScaffold := cfg.Strategy.(*strategy.Scaffold)
	s := &sim{cfg: cfg, atk: cfg.Attack, rule: cfg.Rule,
		client: client.Trainer{Model: cfg.Model, Optimizer: cfg.Optimizer, Epochs: cfg.LocalEpochs, Scaffold: isScaffold}}
	if s.atk == nil {
		s.atk = attack.None{}
	}
	if s.rule == nil {
		s.rule = robust.NewMean()
	}
	if err := s.partition(); err != nil {
		return nil, err
	}
	var err error
	if s.state, err = s.client.Initial(rand.New(rand.NewPCG(cfg.Seed, 2))); err != nil {
		return nil, err
	}
	if isScaffold {
		s.controls = make([]fl.Vector, cfg.Nodes)
		for i := range s.controls {
			s.controls[i] = make(fl.Vector, cfg.Model.NumParams())
		}
	}
	if b, ok := s.atk.(attack.Backdoor); ok {
		if s.triggered, err = b.Triggered(cfg.Data.Test); err != nil {
			return nil, err
		}
	}
	if cfg.Compress != (compress.Scheme{}) {
		s.encoders = make([]compress.Encoder, cfg.Nodes)
		for i := range s.encoders {
			s.encoders[i] = cfg.Compress.NewEncoder()
		}
	}
	s.res = &Result{Setup: s.setup()}
	if cfg.Privacy != nil {
		if s.priv, s.res.Setup.Privacy, err = newPrivacy(&s.cfg, len(s.state)); err != nil {
			return nil, err
		}
	}
	s.cohortRNG = stream(cfg.Seed, purposeCohort, 0, 0)
	return s, nil
}

// partition splits the training set over the sites and lets the attack
// poison the Byzantine sites' shards.
func (s *sim) partition() error {
	cfg, train := &s.cfg, s.cfg.Data.Train
	parts, err := cfg.Partition.Split(train.Y, train.Classes, cfg.Nodes, rand.New(rand.NewPCG(cfg.Seed, 1)))
	if err != nil {
		return fmt.Errorf("partitioning %s over %d nodes: %w", train.Name, cfg.Nodes, err)
	}
	s.shards = make([]*dataset.Set, len(parts))
	for i, idx := range parts {
		s.shards[i] = train.Subset(idx)
		if i < cfg.Byzantine {
			if s.shards[i], err = s.atk.Poison(s.shards[i], stream(cfg.Seed, purposePoison, 0, i)); err != nil {
				return fmt.Errorf("node %d: %s: %w", i+1, s.atk, err)
			}
		}
	}
	return nil
}

// setup returns the record of the run's configuration.
func (s *sim) setup() *Setup {
	cfg := &s.cfg
	st := &Setup{
		Model: cfg.Model.String(), Params: cfg.Model.NumParams(), Nodes: cfg.Nodes, Cohort: cfg.Cohort,
		Partition: cfg.Partition.String(), Rounds: cfg.Rounds, LocalEpochs: cfg.LocalEpochs,
		Strategy: cfg.Strategy.String(), ProxMu: cfg.Optimizer.ProxMu, Rule: s.rule.String(),
		Clip: cfg.Clip, Compress: cfg.Compress.String(), Seed: cfg.Seed,
	}
	if cfg.Attack != nil {
		st.Attack, st.Byzantine = s.atk.String(), cfg.Byzantine
	}
	return st
}

// round runs round r: draw the cohort, train, forge, clip, noise and
// compress, aggregate and apply, evaluate.
func (s *sim) round(r int) (RoundResult, error) {
	start := s.cfg.Now()
	cohort := s.cohort()
	rr := RoundResult{Round: r}
	updates, err := s.train(r, cohort)
	if err != nil {
		return rr, err
	}
	if rr.UpdateNorm, err = s.forge(r, cohort, updates); err != nil {
		return rr, err
	}
	if err := s.release(r, cohort, updates, &rr); err != nil {
		return rr, err
	}
	if err := s.aggregate(r, cohort, updates); err != nil {
		return rr, err
	}
	if s.priv != nil {
		if rr.Epsilon, err = s.priv.spend(); err != nil {
			return rr, fmt.Errorf("round %d: accounting: %w", r, err)
		}
	}
	if err := s.evaluate(r, &rr); err != nil {
		return rr, err
	}
	rr.Seconds = s.cfg.Now().Sub(start).Seconds()
	return rr, nil
}

// cohort returns the sites of the next round, in order.
func (s *sim) cohort() []int {
	if s.cfg.Cohort < s.cfg.Nodes {
		cohort := s.cohortRNG.Perm(s.cfg.Nodes)[:s.cfg.Cohort]
		slices.Sort(cohort)
		return cohort
	}
	cohort := make([]int, s.cfg.Nodes)
	for i := range cohort {
		cohort[i] = i
	}
	return cohort
}

// parallel runs f(j, i) for every site i at position j of the cohort, at
// most cfg.Parallel at once, and joins their errors.
func (s *sim) parallel(cohort []int, f func(j, i int) error) error {
	errs := make([]error, len(cohort))
	sem := make(chan struct{}, s.cfg.Parallel)
	var wg sync.WaitGroup
	for j, i := range cohort {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			errs[j] = f(j, i)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// train runs the cohort's local training (step 1), keeping SCAFFOLD's
// next controls.
func (s *sim) train(r int, cohort []int) ([]*client.Update, error) {
	updates := make([]*client.Update, len(cohort))
	err := s.parallel(cohort, func(j, i int) error {
		rng := rand.New(rand.NewPCG(s.cfg.Seed, uint64(r)<<32|uint64(i)+3))
		var ci fl.Vector
		if s.controls != nil {
			ci = s.controls[i]
		}
		u, err := s.client.Train(s.shards[i], s.state, ci, rng)
		if err != nil {
			return fmt.Errorf("round %d, node %d: %w", r, i+1, err)
		}
		if s.controls != nil {
			s.controls[i] = u.Control
		}
		updates[j] = u
		return nil
	})
	return updates, err
}

// forge lets the Byzantine sites replace their updates (step 2) and
// returns the median norm of the honest ones.
func (s *sim) forge(r int, cohort []int, updates []*client.Update) (float64, error) {
	var own, honest []fl.Vector
	var ownAt []int
	for j, i := range cohort {
		if i < s.cfg.Byzantine {
			own, ownAt = append(own, updates[j].Delta), append(ownAt, j)
		} else {
			honest = append(honest, updates[j].Delta)
		}
	}
	if len(own) > 0 {
		forged, err := s.atk.Forge(own, honest, stream(s.cfg.Seed, purposeForge, r, 0))
		if err != nil {
			return 0, fmt.Errorf("round %d: %s: %w", r, s.atk, err)
		}
		for k, j := range ownAt {
			updates[j].Delta = forged[k]
		}
	}
	norms := make([]float64, 0, len(honest))
	for _, h := range honest {
		norms = append(norms, h.Norm())
	}
	return median(norms), nil
}

// release clips, noises and compresses every update (steps 3–5) and
// counts the bytes and the clipped updates into rr.
func (s *sim) release(r int, cohort []int, updates []*client.Update, rr *RoundResult) error {
	bytes := make([]int64, len(cohort))
	err := s.parallel(cohort, func(j, i int) error {
		u := updates[j]
		if s.cfg.Clip > 0 {
			if err := u.Clip(s.cfg.Clip); err != nil {
				return fmt.Errorf("round %d, node %d: %w", r, i+1, err)
			}
		}
		if s.priv != nil {
			if err := u.AddNoise(s.priv.noise, noiseReader(s.cfg.Seed, r, i)); err != nil {
				return fmt.Errorf("round %d, node %d: %w", r, i+1, err)
			}
		}
		if s.encoders == nil {
			bytes[j] = int64(5 + 4*len(u.Delta))
			return nil
		}
		p, err := s.encoders[i].Encode(u.Delta, stream(s.cfg.Seed, purposeCompress, r, i))
		if err != nil {
			return fmt.Errorf("round %d, node %d: compressing: %w", r, i+1, err)
		}
		bytes[j] = int64(p.WireSize())
		u.Delta = p.Vector()
		return nil
	})
	if err != nil {
		return err
	}
	for j, u := range updates {
		rr.BytesUp += bytes[j]
		rr.BytesUpDense += int64(5 + 4*len(u.Delta))
		if u.Scale < 1 {
			rr.Clipped++
		}
	}
	return nil
}

// aggregate combines the updates with the rule (the example-weighted mean
// by default, the uniform mean under DP) and lets the strategy apply the
// aggregate to the global vector.
func (s *sim) aggregate(r int, cohort []int, updates []*client.Update) error {
	deltas := make([]fl.Vector, len(updates))
	for j, u := range updates {
		deltas[j] = u.Delta
	}
	var agg fl.Vector
	var err error
	switch {
	case !isMean(s.rule):
		agg, err = s.rule.Aggregate(deltas)
	case s.priv != nil:
		agg, err = robust.NewMean().Aggregate(deltas)
	default:
		us := make([]fl.Update, len(cohort))
		for j, i := range cohort {
			us[j] = fl.Update{Node: fl.NodeID(fmt.Sprintf("node-%d", i+1)), Round: fl.Round(r), Delta: deltas[j], Weight: float64(updates[j].Examples)}
		}
		agg, _, err = strategy.WeightedMean(us)
	}
	if err != nil {
		return fmt.Errorf("round %d: aggregating with %s: %w", r, s.rule, err)
	}
	next, err := s.cfg.Strategy.Apply(s.state, agg)
	if err != nil {
		return fmt.Errorf("round %d: %w", r, err)
	}
	s.state = next
	return nil
}

// evaluate measures the global model on the test set, and the backdoor on
// its triggered inputs.
func (s *sim) evaluate(r int, rr *RoundResult) error {
	m, err := s.client.Evaluate(s.state, s.cfg.Data.Test)
	if err != nil {
		return fmt.Errorf("round %d: evaluating: %w", r, err)
	}
	rr.Accuracy, rr.Loss = m.Accuracy, m.Loss
	if s.triggered != nil {
		bm, err := s.client.Evaluate(s.state, s.triggered)
		if err != nil {
			return fmt.Errorf("round %d: evaluating the backdoor: %w", r, err)
		}
		rr.BackdoorAccuracy = &bm.Accuracy
	}
	return nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
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
		opt := cfg.Optimizer
		if opt.Cosine {
			// One Train call per epoch, to report progress in between, so
			// the schedule spans the whole run here, not one call.
			opt.LR, opt.Cosine = model.CosineLR(opt.LR, e, cfg.Rounds), false
		}
		if _, err := opt.Train(m, cfg.Data.Train, 1, nil, rng); err != nil {
			return nil, fmt.Errorf("epoch %d: %w", e, err)
		}
		metrics, err := m.Evaluate(cfg.Data.Test)
		if err != nil {
			return nil, fmt.Errorf("epoch %d: evaluating: %w", e, err)
		}
		res.add(RoundResult{Round: e, Accuracy: metrics.Accuracy, Loss: metrics.Loss, Seconds: cfg.Now().Sub(start).Seconds()}, progress)
	}
	res.Params = m.Params()
	return res, nil
}

func (res *Result) add(rr RoundResult, progress func(RoundResult)) {
	res.Rounds = append(res.Rounds, rr)
	res.Final.Accuracy, res.Final.Loss = rr.Accuracy, rr.Loss
	res.Final.Epsilon, res.Final.BackdoorAccuracy = rr.Epsilon, rr.BackdoorAccuracy
	if progress != nil {
		progress(rr)
	}
}
