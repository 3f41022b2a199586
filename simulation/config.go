package simulation

import (
	"errors"
	"fmt"
	"math"
	"runtime"
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

// ConfigError is an ErrConfig that names the field at fault, for callers
// (the CLI) that point their users at the setting to change.
type ConfigError struct {
	Field string // the Config field, as "Cohort" or "Privacy.MinCohort"
	Err   error
}

func (e *ConfigError) Error() string        { return ErrConfig.Error() + ": " + e.Err.Error() }
func (e *ConfigError) Unwrap() error        { return e.Err }
func (e *ConfigError) Is(target error) bool { return target == ErrConfig }

func invalid(field, format string, args ...any) error {
	return &ConfigError{Field: field, Err: fmt.Errorf(format, args...)}
}

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
		return invalid("Rounds", "%d rounds", c.Rounds)
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
	if c.Nodes < 1 {
		return invalid("Nodes", "%d nodes, want at least 1", c.Nodes)
	}
	if c.LocalEpochs < 1 {
		return invalid("LocalEpochs", "%d local epochs, want at least 1", c.LocalEpochs)
	}
	if c.Strategy == nil {
		return invalid("Strategy", "no server strategy")
	}
	if c.Partition == nil {
		return invalid("Partition", "no partition")
	}
	if c.Cohort == 0 {
		c.Cohort = c.Nodes
	}
	if c.Cohort < 1 || c.Cohort > c.Nodes {
		return invalid("Cohort", "cohort of %d out of %d nodes", c.Cohort, c.Nodes)
	}
	if c.Byzantine < 0 || c.Byzantine > c.Nodes {
		return invalid("Byzantine", "%d Byzantine nodes out of %d", c.Byzantine, c.Nodes)
	}
	if math.IsNaN(c.Clip) || math.IsInf(c.Clip, 0) || c.Clip < 0 {
		return invalid("Clip", "clipping bound %v, want a finite value ≥ 0", c.Clip)
	}
	if p := c.Privacy; p != nil {
		if c.Clip <= 0 {
			return invalid("Clip", "differential privacy needs a clipping bound")
		}
		if !isMean(c.Rule) {
			return invalid("Rule", "differential privacy with the %s rule: the accountant covers the noised mean only", c.Rule.Name())
		}
		if !(p.Noise > 0) || math.IsInf(p.Noise, 0) {
			return invalid("Privacy.Noise", "noise multiplier %v, want a finite value > 0", p.Noise)
		}
		if p.MinCohort < 0 || p.MinCohort > c.Cohort {
			return invalid("Privacy.MinCohort", "minimum cohort %d, but a round has %d nodes", p.MinCohort, c.Cohort)
		}
		if p.Delta != 0 && !(p.Delta > 0 && p.Delta < 1) {
			return invalid("Privacy.Delta", "δ %v outside (0, 1)", p.Delta)
		}
		if math.IsNaN(p.Budget) || math.IsInf(p.Budget, 0) || p.Budget < 0 {
			return invalid("Privacy.Budget", "ε budget %v, want a finite value ≥ 0", p.Budget)
		}
		if p.Bits < 0 || p.Bits > dp.MaxBits {
			return invalid("Privacy.Bits", "noise grid of %d bits outside [0, %d]", p.Bits, dp.MaxBits)
		}
	}
	_, isScaffold := c.Strategy.(*strategy.Scaffold)
	t := client.Trainer{Model: c.Model, Optimizer: c.Optimizer, Epochs: c.LocalEpochs, Scaffold: isScaffold}
	if err := t.Validate(); err != nil {
		return &ConfigError{Field: "Optimizer", Err: err}
	}
	return nil
}

func isMean(r robust.Rule) bool {
	_, ok := r.(*robust.Mean)
	return r == nil || ok
}
