package node

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
)

// ErrLocalLimit reports a round this node refuses to train for: the
// federation's cumulative ε after it would pass the node's own limit
// (Config.MaxEpsilon).
var ErrLocalLimit = errors.New("node: the federation's ε would pass this node's limit")

// ErrBudget reports a round this node refuses to train for because it is
// past the manifest's ε budget: a round the coordinator should not have
// started (it caps rounds at the same figure).
var ErrBudget = errors.New("node: the round is past the manifest's ε budget")

// budget is a node's half of the privacy budget: its I/O around
// federation.Budget, which prices rounds with the same rule as the
// coordinator and holds the same cap. The node refuses to train for a round
// past the cap, or whose cumulative ε would pass the node's own limit
// (site policy the coordinator cannot override: the refusal is the
// engine's, through round.NodeConfig.MayTrain), and records the ε of every
// commit in the node's audit log. A nil *budget (no DP) does nothing.
type budget struct {
	*federation.Budget
	spent int64 // micro-ε in the audit log so far; owned by the loop
	log   *slog.Logger
}

// newBudget returns the node's half of the resolved budget fb (nil without
// DP). It warns when the node's own limit is below the federation's
// budget.
func newBudget(fb *federation.Budget, log *slog.Logger) (*budget, error) {
	if fb == nil {
		return nil, nil
	}
	b := &budget{Budget: fb, log: log}
	if b.Local > 0 && b.Local < b.Epsilon {
		mine, err1 := b.Rule.MaxRounds(b.Local)
		fed, err2 := b.Rule.MaxRounds(b.Epsilon)
		if err := errors.Join(err1, err2); err != nil {
			return nil, err
		}
		log.Warn("this node's max epsilon is below the federation's budget: it will refuse rounds the coordinator may still run",
			"max_epsilon", b.Local, "epsilon_budget", b.Epsilon, "delta", b.Rule.Delta, "rounds_local", mine, "rounds_budget", fed)
	}
	return b, nil
}

// mayTrain is round.NodeConfig.MayTrain: nil if round r is within the
// manifest's budget (r at most the cap the coordinator computes, so that a
// coordinator that does not stop is refused) and the federation's ε after
// round r stays within the node's own limit, if it has one.
func (b *budget) mayTrain(r fl.Round) error {
	if r > b.MaxRound {
		b.log.Warn("refusing to train: the round is past the manifest's ε budget", "round", r, "max_round", b.MaxRound,
			"epsilon_budget", b.Epsilon, "delta", b.Rule.Delta)
		return fmt.Errorf("%w: round %d, the budget ε=%g (δ=%g) covers rounds up to %d", ErrBudget, r, b.Epsilon, b.Rule.Delta, b.MaxRound)
	}
	if b.Local == 0 {
		return nil
	}
	after, err := b.Rule.After(int(r))
	if err != nil {
		return fmt.Errorf("%w: round %d: %v", ErrLocalLimit, r, err)
	}
	if after.Epsilon <= b.Local {
		return nil
	}
	before, err := b.Rule.After(int(r) - 1)
	if err != nil {
		return fmt.Errorf("%w: round %d: %v", ErrLocalLimit, r, err)
	}
	b.log.Warn("refusing to train: the federation's ε would pass this node's limit", "round", r,
		"epsilon_before", before.Epsilon, "epsilon_after", after.Epsilon, "epsilon_after_classic", after.Classic,
		"delta", after.Delta, "max_epsilon", b.Local)
	return fmt.Errorf("%w: round %d would take the federation's ε from %.6g to %.6g (classic %.6g, δ=%g), past this node's max epsilon %g",
		ErrLocalLimit, r, before.Epsilon, after.Epsilon, after.Classic, after.Delta, b.Local)
}

// policy returns the MayTrain hook, or nil without DP.
// mayTrain is the engine's NodeConfig.MayTrain: the budget in force (an
// amendment may change it).
func (n *Node) mayTrain(r fl.Round) error {
	if n.budget == nil {
		return nil
	}
	return n.budget.mayTrain(r)
}

func (b *budget) policy() func(fl.Round) error {
	if b == nil {
		return nil
	}
	return b.mayTrain
}

// spend returns the epsilon-spent record of the commit of round r: its
// price (federation.Budget.Price), what it adds to the ε this log recorded
// so far, and the total. A commit heard again adds nothing and gets no
// record.
func (b *budget) spend(r fl.Round) []auditEntry {
	if b == nil {
		return nil
	}
	c, inc, total, err := b.Price(r, b.spent)
	if err != nil {
		b.log.Error("cannot price a round", "round", r, "err", err)
		return nil
	}
	if inc == 0 {
		return nil
	}
	b.spent = total
	b.log.Info("epsilon spent", "round", r, "epsilon_round", dp.EpsilonFromMicro(inc), "epsilon_total", c.Epsilon,
		"epsilon_total_classic", c.Classic, "delta", c.Delta, "epsilon_budget", b.Epsilon, "max_epsilon", b.Local)
	return []auditEntry{{audit.EpsilonSpent, audit.Data{Round: r, MicroEpsilon: inc, TotalMicroEpsilon: total, Delta: c.Delta}}}
}
