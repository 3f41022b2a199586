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
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/attack"
	"github.com/cloisterfl/cloister/client"
	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
	"github.com/cloisterfl/cloister/robust"
	"github.com/cloisterfl/cloister/strategy"
	"github.com/cloisterfl/cloister/strategy/scaffold"
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

	// Cohort is how many nodes train in each round, drawn at random
	// without replacement; 0 means all of them.
	Cohort int
	// Rule aggregates the updates; nil means the mean (FedAvg). Robust
	// rules should be built for the cohort size.
	Rule robust.Rule
	// Attack is what the Byzantine nodes do; nil means they behave.
	Attack attack.Attack
	// Byzantine is how many nodes are malicious: node-1 … node-F.
	Byzantine int
	// Clip bounds the L2 norm of every update, malicious ones included;
	// 0 means no bound.
	Clip float64
	// Privacy adds distributed differential privacy; nil means none.
	// It needs Clip > 0 and the mean rule.
	Privacy *Privacy
	// Compress is how updates travel; the zero Scheme is dense float32.
	Compress compress.Scheme
}

// Privacy configures distributed differential privacy (DP-FedAvg).
type Privacy struct {
	Noise     float64 // noise multiplier σ: the sum's noise is σ·Clip
	MinCohort int     // k, the honest nodes whose shares make up the noise; 0 means the cohort size
	Delta     float64 // δ of the (ε, δ) reported; 0 means 1e-5
	Budget    float64 // ε budget checked before every round; 0 means none
	Bits      int     // resolution of the noise grid; 0 means dp.DefaultBits
}

// DefaultDelta is the δ at which ε is reported when Privacy.Delta is 0.
const DefaultDelta = 1e-5

// RoundResult is the evaluation of the global model after one round (or epoch).
type RoundResult struct {
	Round    int     `json:"round"`
	Accuracy float64 `json:"accuracy"`
	Loss     float64 `json:"loss"`
	Seconds  float64 `json:"seconds"`
	// Epsilon is the privacy spent so far, at Setup.Privacy.Delta; 0 without DP.
	Epsilon float64 `json:"epsilon,omitempty"`
	// BackdoorAccuracy is the fraction of triggered test inputs classified
	// as the backdoor's target; nil unless the attack is a backdoor.
	BackdoorAccuracy *float64 `json:"backdoor_accuracy,omitempty"`
	// BytesUp is the size of all the round's updates on the wire;
	// BytesUpDense what they would take as dense float32 (5 + 4d bytes
	// each, the compress.Dense payload), which uncompressed runs send.
	BytesUp      int64 `json:"bytes_up,omitempty"`
	BytesUpDense int64 `json:"bytes_up_dense,omitempty"`
	// UpdateNorm is the median L2 norm of the honest updates before
	// clipping: a guide for choosing the clipping bound.
	UpdateNorm float64 `json:"update_norm,omitempty"`
	// Clipped counts the updates the clipping bound shortened.
	Clipped int `json:"clipped,omitempty"`
}

// Result is a whole run.
type Result struct {
	Setup  *Setup        `json:"setup,omitempty"`
	Rounds []RoundResult `json:"rounds"`
	Final  struct {
		Accuracy         float64  `json:"accuracy"`
		Loss             float64  `json:"loss"`
		Epsilon          float64  `json:"epsilon,omitempty"`
		BackdoorAccuracy *float64 `json:"backdoor_accuracy,omitempty"`
	} `json:"final"`
	// Stopped says why the run ended before Config.Rounds, if it did.
	Stopped string    `json:"stopped,omitempty"`
	Params  fl.Vector `json:"-"` // the final global model
}

// Setup records the configuration of a Run, for the JSON output.
type Setup struct {
	Model       string        `json:"model"`
	Params      int           `json:"params"`
	Nodes       int           `json:"nodes"`
	Cohort      int           `json:"cohort"`
	Partition   string        `json:"partition"`
	Rounds      int           `json:"rounds"`
	LocalEpochs int           `json:"local_epochs"`
	Strategy    string        `json:"strategy"`
	ProxMu      float64       `json:"prox_mu,omitempty"`
	Rule        string        `json:"rule"`
	Attack      string        `json:"attack,omitempty"`
	Byzantine   int           `json:"byzantine,omitempty"`
	Clip        float64       `json:"clip,omitempty"`
	Compress    string        `json:"compress"`
	Seed        uint64        `json:"seed"`
	Privacy     *PrivacySetup `json:"privacy,omitempty"`
}

// PrivacySetup records the differential privacy of a Run.
type PrivacySetup struct {
	Noise      float64 `json:"noise_multiplier"` // σ
	Clip       float64 `json:"clip"`             // C
	MinCohort  int     `json:"min_cohort"`       // k
	ShareStd   float64 `json:"share_std"`        // σ·C/√k, each node's noise
	MeanStd    float64 `json:"mean_std"`         // the aggregate's noise, σ·C·√(m/k)/m
	Multiplier float64 `json:"accounted_multiplier"`
	SampleRate float64 `json:"sample_rate"` // q = m/n
	Delta      float64 `json:"delta"`
	Budget     float64 `json:"budget,omitempty"`
	Bits       int     `json:"bits"`
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

// check validates the federated parts of a configuration.
func (c *Config) check() error {
	if c.Nodes < 1 || c.LocalEpochs < 1 {
		return fmt.Errorf("%w: %d nodes, %d local epochs", ErrConfig, c.Nodes, c.LocalEpochs)
	}
	if c.Strategy == nil {
		return fmt.Errorf("%w: no server strategy", ErrConfig)
	}
	if c.Partition == nil {
		return fmt.Errorf("%w: no partition", ErrConfig)
	}
	if c.Cohort == 0 {
		c.Cohort = c.Nodes
	}
	if c.Cohort < 1 || c.Cohort > c.Nodes {
		return fmt.Errorf("%w: cohort of %d out of %d nodes", ErrConfig, c.Cohort, c.Nodes)
	}
	if c.Byzantine < 0 || c.Byzantine > c.Nodes {
		return fmt.Errorf("%w: %d Byzantine nodes out of %d", ErrConfig, c.Byzantine, c.Nodes)
	}
	if math.IsNaN(c.Clip) || math.IsInf(c.Clip, 0) || c.Clip < 0 {
		return fmt.Errorf("%w: clipping bound %v, want a finite value ≥ 0", ErrConfig, c.Clip)
	}
	if p := c.Privacy; p != nil {
		if c.Clip <= 0 {
			return fmt.Errorf("%w: differential privacy needs a clipping bound", ErrConfig)
		}
		if !isMean(c.Rule) {
			return fmt.Errorf("%w: differential privacy with the %s rule: the accountant covers the noised mean only", ErrConfig, c.Rule.Name())
		}
		if !(p.Noise > 0) || math.IsInf(p.Noise, 0) {
			return fmt.Errorf("%w: noise multiplier %v, want a finite value > 0", ErrConfig, p.Noise)
		}
		if p.MinCohort < 0 || p.MinCohort > c.Cohort {
			return fmt.Errorf("%w: minimum cohort %d, but a round has %d nodes", ErrConfig, p.MinCohort, c.Cohort)
		}
		if p.Delta != 0 && !(p.Delta > 0 && p.Delta < 1) {
			return fmt.Errorf("%w: δ %v outside (0, 1)", ErrConfig, p.Delta)
		}
		if math.IsNaN(p.Budget) || math.IsInf(p.Budget, 0) || p.Budget < 0 {
			return fmt.Errorf("%w: ε budget %v, want a finite value ≥ 0", ErrConfig, p.Budget)
		}
		if p.Bits < 0 || p.Bits > dp.MaxBits {
			return fmt.Errorf("%w: noise grid of %d bits outside [0, %d]", ErrConfig, p.Bits, dp.MaxBits)
		}
	}
	if _, ok := c.Strategy.(*strategy.Scaffold); ok && c.Optimizer.Cosine {
		return fmt.Errorf("%w: SCAFFOLD's control update assumes a constant local learning rate; turn cosine annealing off", ErrConfig)
	}
	return nil
}

func isMean(r robust.Rule) bool {
	_, ok := r.(*robust.Mean)
	return r == nil || ok
}

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

// noiseReader returns the seeded ChaCha8 stream a node draws its DP noise
// from in one round. Production nodes use crypto/rand.
func noiseReader(seed uint64, round, node int) *rand.ChaCha8 {
	var key [32]byte
	copy(key[:], "cloister-sim-dp-noise")
	binary.LittleEndian.PutUint64(key[8:], seed)
	binary.LittleEndian.PutUint32(key[16:], uint32(round))
	binary.LittleEndian.PutUint32(key[20:], uint32(node))
	return rand.NewChaCha8(key)
}

// privacy is the accounting state of a run.
type privacy struct {
	cfg      Privacy
	q, z     float64
	budget   *dp.Budget
	acc      *dp.Accountant
	noise    *dp.Noise
	shareStd float64
}

func newPrivacy(c *Config, dim int) (*privacy, *PrivacySetup, error) {
	p := &privacy{cfg: *c.Privacy}
	if p.cfg.MinCohort == 0 {
		p.cfg.MinCohort = c.Cohort
	}
	if p.cfg.Delta == 0 {
		p.cfg.Delta = DefaultDelta
	}
	if p.cfg.Bits == 0 {
		p.cfg.Bits = dp.DefaultBits
	}
	var err error
	if p.shareStd, err = dp.NoiseShare(p.cfg.Noise, c.Clip, p.cfg.MinCohort); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	if p.noise, err = dp.NewNoise(p.shareStd, p.cfg.Bits); err != nil {
		return nil, nil, fmt.Errorf("%w: noise share %g on a grid of %d bits: %v", ErrConfig, p.shareStd, p.cfg.Bits, err)
	}
	if p.z, err = dp.DistributedMultiplier(p.cfg.Noise, c.Clip, p.cfg.MinCohort, dim, p.cfg.Bits); err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrConfig, err)
	}
	p.q = float64(c.Cohort) / float64(c.Nodes)
	if p.cfg.Budget > 0 {
		if p.budget, err = dp.NewBudget(p.cfg.Budget, p.cfg.Delta); err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrConfig, err)
		}
	} else {
		p.acc = new(dp.Accountant)
	}
	m := float64(c.Cohort)
	setup := &PrivacySetup{
		Noise: p.cfg.Noise, Clip: c.Clip, MinCohort: p.cfg.MinCohort, ShareStd: p.shareStd,
		MeanStd: p.shareStd * math.Sqrt(m) / m, Multiplier: p.z, SampleRate: p.q,
		Delta: p.cfg.Delta, Budget: p.cfg.Budget, Bits: p.cfg.Bits,
	}
	return p, setup, nil
}

// check returns a non-empty reason if the next round would exceed the budget.
func (p *privacy) check(round int) (string, error) {
	if p.budget == nil {
		return "", nil
	}
	err := p.budget.Check(p.q, p.z, 1)
	var be *dp.BudgetExceededError
	if errors.As(err, &be) {
		return fmt.Sprintf("privacy budget: round %d would take ε from %.4g to %.4g, past the budget of %g (δ = %g)", round, be.Spent, be.Next, be.Limit, be.Delta), nil
	}
	return "", err
}

// spend records a round and returns ε spent so far.
func (p *privacy) spend() (float64, error) {
	if p.budget != nil {
		if err := p.budget.Spend(p.q, p.z, 1); err != nil {
			return 0, err // Check ran first, so this is not expected
		}
		return p.budget.Spent(), nil
	}
	if err := p.acc.Compose(p.q, p.z, 1); err != nil {
		return 0, err
	}
	eps, _, err := p.acc.Epsilon(p.cfg.Delta)
	return eps, err
}

// Run simulates federated training and calls progress after every round.
func Run(cfg Config, progress func(RoundResult)) (*Result, error) {
	if err := cfg.fill(); err != nil {
		return nil, err
	}
	if err := cfg.check(); err != nil {
		return nil, err
	}
	train := cfg.Data.Train
	parts, err := cfg.Partition.Split(train.Y, train.Classes, cfg.Nodes, rand.New(rand.NewPCG(cfg.Seed, 1)))
	if err != nil {
		return nil, fmt.Errorf("partitioning %s over %d nodes: %w", train.Name, cfg.Nodes, err)
	}
	atk := cfg.Attack
	if atk == nil {
		atk = attack.None{}
	}
	shards := make([]*dataset.Set, len(parts))
	for i, idx := range parts {
		shards[i] = train.Subset(idx)
		if i < cfg.Byzantine {
			if shards[i], err = atk.Poison(shards[i], stream(cfg.Seed, purposePoison, 0, i)); err != nil {
				return nil, fmt.Errorf("node %d: %s: %w", i+1, atk, err)
			}
		}
	}
	global, err := model.New(cfg.Model, rand.New(rand.NewPCG(cfg.Seed, 2)))
	if err != nil {
		return nil, err
	}
	dim := global.NumParams()
	_, isScaffold := cfg.Strategy.(*strategy.Scaffold)
	state := global.Params() // the strategy's vector: Join(x, c) for SCAFFOLD
	var controls []fl.Vector // SCAFFOLD's cᵢ
	if isScaffold {
		if state, err = scaffold.Join(state, make(fl.Vector, dim)); err != nil {
			return nil, err
		}
		controls = make([]fl.Vector, cfg.Nodes)
		for i := range controls {
			controls[i] = make(fl.Vector, dim)
		}
	}
	var triggered *dataset.Set
	if b, ok := atk.(attack.Backdoor); ok {
		if triggered, err = b.Triggered(cfg.Data.Test); err != nil {
			return nil, err
		}
	}
	var encoders []compress.Encoder
	if cfg.Compress != (compress.Scheme{}) {
		encoders = make([]compress.Encoder, cfg.Nodes)
		for i := range encoders {
			encoders[i] = cfg.Compress.NewEncoder()
		}
	}
	rule := cfg.Rule
	if rule == nil {
		rule = robust.NewMean()
	}

	res := &Result{Setup: &Setup{
		Model: cfg.Model.String(), Params: dim, Nodes: cfg.Nodes, Cohort: cfg.Cohort,
		Partition: cfg.Partition.String(), Rounds: cfg.Rounds, LocalEpochs: cfg.LocalEpochs,
		Strategy: cfg.Strategy.String(), ProxMu: cfg.Optimizer.ProxMu, Rule: rule.String(),
		Clip: cfg.Clip, Compress: cfg.Compress.String(), Seed: cfg.Seed,
	}}
	if cfg.Attack != nil {
		res.Setup.Attack, res.Setup.Byzantine = atk.String(), cfg.Byzantine
	}
	var priv *privacy
	if cfg.Privacy != nil {
		if priv, res.Setup.Privacy, err = newPrivacy(&cfg, len(state)); err != nil {
			return nil, err
		}
	}
	cohortRNG := stream(cfg.Seed, purposeCohort, 0, 0)
	ct := client.Trainer{Model: cfg.Model, Optimizer: cfg.Optimizer, Epochs: cfg.LocalEpochs, Scaffold: isScaffold}

	for r := 1; r <= cfg.Rounds; r++ {
		if priv != nil {
			stop, err := priv.check(r)
			if err != nil {
				return nil, fmt.Errorf("round %d: %w", r, err)
			}
			if stop != "" {
				res.Stopped = stop
				break
			}
		}
		start := cfg.Now()
		cohort := make([]int, cfg.Nodes)
		for i := range cohort {
			cohort[i] = i
		}
		if cfg.Cohort < cfg.Nodes {
			cohort = cohortRNG.Perm(cfg.Nodes)[:cfg.Cohort]
			slices.Sort(cohort)
		}
		rr := RoundResult{Round: r}

		// 1. Train.
		updates := make([]fl.Vector, len(cohort))
		errs := make([]error, len(cohort))
		sem := make(chan struct{}, cfg.Parallel)
		var wg sync.WaitGroup
		for j, i := range cohort {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				rng := rand.New(rand.NewPCG(cfg.Seed, uint64(r)<<32|uint64(i)+3))
				var ci fl.Vector
				if isScaffold {
					ci = controls[i]
				}
				u, err := ct.Train(shards[i], state, ci, rng)
				if err == nil {
					updates[j] = u.Delta
					if isScaffold {
						controls[i] = u.Control
					}
				}
				if err != nil {
					errs[j] = fmt.Errorf("round %d, node %d: %w", r, i+1, err)
				}
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}

		// 2. Forge.
		var own, honest []fl.Vector
		var ownAt []int
		for j, i := range cohort {
			if i < cfg.Byzantine {
				own, ownAt = append(own, updates[j]), append(ownAt, j)
			} else {
				honest = append(honest, updates[j])
			}
		}
		if len(own) > 0 {
			forged, err := atk.Forge(own, honest, stream(cfg.Seed, purposeForge, r, 0))
			if err != nil {
				return nil, fmt.Errorf("round %d: %s: %w", r, atk, err)
			}
			for k, j := range ownAt {
				updates[j] = forged[k]
			}
		}
		norms := make([]float64, 0, len(honest))
		for _, h := range honest {
			norms = append(norms, h.Norm())
		}
		rr.UpdateNorm = median(norms)

		// 3–5. Clip, noise, compress.
		clipped := make([]bool, len(cohort))
		bytes := make([]int64, len(cohort))
		for j, i := range cohort {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer func() { <-sem; wg.Done() }()
				u := updates[j]
				if cfg.Clip > 0 {
					s, err := dp.Clip(u, cfg.Clip)
					if err != nil {
						errs[j] = fmt.Errorf("round %d, node %d: clipping: %w", r, i+1, err)
						return
					}
					clipped[j] = s < 1
				}
				if priv != nil {
					if err := priv.noise.Add(u, noiseReader(cfg.Seed, r, i)); err != nil {
						errs[j] = fmt.Errorf("round %d, node %d: noise: %w", r, i+1, err)
						return
					}
				}
				if encoders == nil {
					bytes[j] = int64(5 + 4*len(u))
					return
				}
				p, err := encoders[i].Encode(u, stream(cfg.Seed, purposeCompress, r, i))
				if err != nil {
					errs[j] = fmt.Errorf("round %d, node %d: compressing: %w", r, i+1, err)
					return
				}
				bytes[j] = int64(p.WireSize())
				updates[j] = p.Vector()
			}()
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			return nil, err
		}
		for j := range cohort {
			rr.BytesUp += bytes[j]
			rr.BytesUpDense += int64(5 + 4*len(updates[j]))
			if clipped[j] {
				rr.Clipped++
			}
		}

		// Aggregate and apply.
		var agg fl.Vector
		switch {
		case !isMean(rule):
			agg, err = rule.Aggregate(updates)
		case priv != nil:
			agg, err = robust.NewMean().Aggregate(updates)
		default:
			us := make([]fl.Update, len(cohort))
			for j, i := range cohort {
				us[j] = fl.Update{Node: fl.NodeID(fmt.Sprintf("node-%d", i+1)), Round: fl.Round(r), Delta: updates[j], Weight: float64(shards[i].Len())}
			}
			agg, _, err = strategy.WeightedMean(us)
		}
		if err != nil {
			return nil, fmt.Errorf("round %d: aggregating with %s: %w", r, rule, err)
		}
		next, err := cfg.Strategy.Apply(state, agg)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", r, err)
		}
		state = next
		x := state
		if isScaffold {
			x = state[:dim]
		}
		if err := global.SetParams(x); err != nil {
			return nil, fmt.Errorf("round %d: %w", r, err)
		}
		if priv != nil {
			if rr.Epsilon, err = priv.spend(); err != nil {
				return nil, fmt.Errorf("round %d: accounting: %w", r, err)
			}
		}
		m, err := global.Evaluate(cfg.Data.Test)
		if err != nil {
			return nil, fmt.Errorf("round %d: evaluating: %w", r, err)
		}
		if triggered != nil {
			bm, err := global.Evaluate(triggered)
			if err != nil {
				return nil, fmt.Errorf("round %d: evaluating the backdoor: %w", r, err)
			}
			rr.BackdoorAccuracy = &bm.Accuracy
		}
		rr.Accuracy, rr.Loss, rr.Seconds = m.Accuracy, m.Loss, cfg.Now().Sub(start).Seconds()
		res.add(rr, progress)
	}
	res.Params = global.Params()
	return res, nil
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
