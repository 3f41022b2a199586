package node

import (
	"errors"
	"fmt"
	"log/slog"
	"math"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mode"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/round"
)

// ErrLocalLimit reports a round this node refuses to train for: the
// federation's cumulative ε after it would pass the node's own limit
// (Config.MaxEpsilon).
var ErrLocalLimit = errors.New("node: the federation's ε would pass this node's limit")

// ErrBudget reports a round this node refuses to train for because it is
// past the manifest's ε budget: a round the coordinator should not have
// started (it caps rounds at the same figure).
var ErrBudget = errors.New("node: the round is past the manifest's ε budget")

// budget is a node's half of the privacy budget. It prices rounds with the
// same rule as the coordinator (mode.Privacy), refuses to train for a round
// whose cumulative ε would pass the node's own limit (site policy the
// coordinator cannot override: the refusal is the engine's, through
// round.NodeConfig.MayTrain), and records the ε of every commit in the
// node's audit log. A nil *budget (no DP, no local limit) does nothing.
type budget struct {
	rule     dp.Rounds
	limit    float64  // the manifest's ε
	maxRound fl.Round // the coordinator's cap for limit: the last round number this node trains for
	local    float64  // Config.MaxEpsilon; 0: none
	spent    int64    // micro-ε in the audit log so far; owned by the loop
	log      *slog.Logger
}

// newBudget checks the node's limit against the manifest. A limit without
// DP in the manifest is an error: every round would have unbounded ε.
func newBudget(man *pki.Manifest, cfg round.Config, lim protect.Limits, local float64, log *slog.Logger) (*budget, error) {
	if math.IsNaN(local) || math.IsInf(local, 0) || local < 0 {
		return nil, fmt.Errorf("node: max epsilon %v must be finite and non-negative (0: no local limit)", local)
	}
	rule, ok, err := mode.Privacy(man, cfg, lim)
	if err != nil {
		return nil, err
	}
	if !ok {
		if local > 0 {
			return nil, fmt.Errorf("node: max epsilon %v, but the manifest has no differential privacy (dp.noise_multiplier 0): every round's ε is unbounded, so this node would refuse them all", local)
		}
		return nil, nil
	}
	fed, err := rule.MaxRounds(man.DP.Epsilon)
	if err != nil {
		return nil, fmt.Errorf("node: the manifest's ε budget %v: %w", man.DP.Epsilon, err)
	}
	b := &budget{rule: rule, limit: man.DP.Epsilon, maxRound: fl.Round(fed), local: local, log: log}
	if local > 0 && local < b.limit {
		mine, err1 := rule.MaxRounds(local)
		fed, err2 := rule.MaxRounds(b.limit)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		log.Warn("this node's max epsilon is below the federation's budget: it will refuse rounds the coordinator may still run",
			"max_epsilon", local, "epsilon_budget", b.limit, "delta", rule.Delta, "rounds_local", mine, "rounds_budget", fed)
	}
	return b, nil
}

// mayTrain is round.NodeConfig.MayTrain: nil if round r is within the
// manifest's budget (r at most the cap the coordinator computes, so that a
// coordinator that does not stop is refused) and the federation's ε after
// round r stays within the node's own limit, if it has one.
func (b *budget) mayTrain(r fl.Round) error {
	if r > b.maxRound {
		b.log.Warn("refusing to train: the round is past the manifest's ε budget", "round", r, "max_round", b.maxRound,
			"epsilon_budget", b.limit, "delta", b.rule.Delta)
		return fmt.Errorf("%w: round %d, the budget ε=%g (δ=%g) covers rounds up to %d", ErrBudget, r, b.limit, b.rule.Delta, b.maxRound)
	}
	if b.local == 0 {
		return nil
	}
	after, err := b.rule.After(int(r))
	if err != nil {
		return fmt.Errorf("%w: round %d: %v", ErrLocalLimit, r, err)
	}
	if after.Epsilon <= b.local {
		return nil
	}
	before, err := b.rule.After(int(r) - 1)
	if err != nil {
		return fmt.Errorf("%w: round %d: %v", ErrLocalLimit, r, err)
	}
	b.log.Warn("refusing to train: the federation's ε would pass this node's limit", "round", r,
		"epsilon_before", before.Epsilon, "epsilon_after", after.Epsilon, "epsilon_after_classic", after.Classic,
		"delta", after.Delta, "max_epsilon", b.local)
	return fmt.Errorf("%w: round %d would take the federation's ε from %.6g to %.6g (classic %.6g, δ=%g), past this node's max epsilon %g",
		ErrLocalLimit, r, before.Epsilon, after.Epsilon, after.Classic, after.Delta, b.local)
}

// policy returns the MayTrain hook, or nil without DP.
func (b *budget) policy() func(fl.Round) error {
	if b == nil {
		return nil
	}
	return b.mayTrain
}

// spent returns the epsilon-spent record of the commit of round r: what it
// adds to the ε this log recorded so far (rounded up to micro-ε), and the
// total. A commit heard again adds nothing and gets no record.
func (b *budget) spend(r fl.Round) []auditEntry {
	if b == nil {
		return nil
	}
	c, err := b.rule.After(int(r))
	if err != nil {
		b.log.Error("cannot price a round", "round", r, "err", err)
		return nil
	}
	total, err := c.Micro()
	if err != nil || total <= b.spent {
		return nil
	}
	inc := total - b.spent
	b.spent = total
	b.log.Info("epsilon spent", "round", r, "epsilon_round", dp.EpsilonFromMicro(inc), "epsilon_total", c.Epsilon,
		"epsilon_total_classic", c.Classic, "delta", c.Delta, "epsilon_budget", b.limit, "max_epsilon", b.local)
	return []auditEntry{{audit.EpsilonSpent, audit.Data{Round: r, MicroEpsilon: inc, TotalMicroEpsilon: total, Delta: c.Delta}}}
}
