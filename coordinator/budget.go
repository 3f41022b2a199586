package coordinator

import (
	"fmt"
	"log/slog"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
)

// budget is the coordinator's half of the federation's privacy budget: its
// I/O around federation.Budget, which states the rule, the cap and the
// price of each round. The coordinator refuses every round that would pass
// the manifest's ε: the engine's MaxRound is the budget's cap (the last
// round number that may start, counting aborted rounds, since one may have
// revealed its aggregate). At each commit it records the ε spent in its
// audit log (epsilon-spent), and when the cap ends the session before the
// planned rounds, it says so (budget-exhausted).
//
// A nil *budget (no DP in the manifest) charges nothing.
type budget struct {
	*federation.Budget
	spent int64 // micro-ε in the audit log so far; owned by the loop
}

// newBudget returns the coordinator's half of the resolved budget fb, or
// nil without DP. It refuses a budget that does not cover a single round.
func newBudget(fb *federation.Budget, man *federation.Manifest) (*budget, error) {
	if fb == nil {
		return nil, nil
	}
	if fb.MaxRound == 0 {
		one, err := fb.Rule.After(1)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("coordinator: the manifest's ε budget %v does not cover a single round (%v, noise multiplier %v, clip %v): raise dp.noise_multiplier or the budget",
			man.DP.Epsilon, one, man.DP.NoiseMultiplier, man.DP.Clip)
	}
	return &budget{Budget: fb}, nil
}

// logPlan says at start what the budget allows.
func (b *budget) logPlan(log *slog.Logger, rounds int) error {
	if b == nil {
		log.Info("no differential privacy in the manifest: ε is not bounded")
		return nil
	}
	last, _, err := b.Cost(b.MaxRound)
	if err != nil {
		return err
	}
	log.Info("privacy budget", "epsilon_budget", b.Epsilon, "delta", b.Rule.Delta, "accountant_multiplier", b.Rule.Multiplier,
		"sample_rate", b.Rule.SampleRate, "max_round", b.MaxRound, "epsilon_at_max_round", last.Epsilon,
		"epsilon_classic_at_max_round", last.Classic)
	if int(b.MaxRound) < rounds {
		log.Warn("the ε budget covers fewer rounds than the manifest plans: the session stops at the cap",
			"max_round", b.MaxRound, "rounds_planned", rounds, "epsilon_budget", b.Epsilon)
	}
	return nil
}

// charge sets the MicroEpsilon of every committed-round event to its price
// (federation.Budget.Price): what round r adds to the ε recorded so far,
// so that a log's epsilon-spent records add up to the cumulative ε
// (aborted rounds before r included).
func (b *budget) charge(evs []round.Event) error {
	if b == nil {
		return nil
	}
	for i, e := range evs {
		if e.Kind != round.EventCommitted {
			continue
		}
		_, inc, total, err := b.Price(e.Round, b.spent)
		if err != nil {
			return fmt.Errorf("coordinator: ε of round %d: %w", e.Round, err)
		}
		if inc > 0 {
			evs[i].MicroEpsilon = uint64(inc)
			b.spent = total
		}
	}
	return nil
}

// spentEntry returns the epsilon-spent record of a committed-round event
// that charge has priced.
func (b *budget) spentEntry(log *slog.Logger, e round.Event) (auditEntry, bool) {
	if b == nil || e.MicroEpsilon == 0 {
		return auditEntry{}, false
	}
	c, total, err := b.Cost(e.Round)
	if err != nil {
		return auditEntry{}, false // charge computed the same without error
	}
	log.Info("epsilon spent", "round", e.Round, "epsilon_round", dp.EpsilonFromMicro(int64(e.MicroEpsilon)),
		"epsilon_total", c.Epsilon, "epsilon_total_classic", c.Classic, "delta", c.Delta, "epsilon_budget", b.Epsilon)
	return auditEntry{kind: audit.EpsilonSpent, data: audit.Data{Round: e.Round, MicroEpsilon: int64(e.MicroEpsilon),
		TotalMicroEpsilon: total, Delta: c.Delta}}, true
}

// exhaustedEntry returns the budget-exhausted record when the session ended
// at the cap with fewer commits than planned.
func (b *budget) exhaustedEntry(log *slog.Logger, last fl.Round, commits, rounds int) (auditEntry, bool) {
	if b == nil || last < b.MaxRound || commits >= rounds {
		return auditEntry{}, false
	}
	now, total, err1 := b.Cost(b.MaxRound)
	next, _, err2 := b.Cost(b.MaxRound + 1)
	if err1 != nil || err2 != nil {
		return auditEntry{}, false
	}
	reason := fmt.Sprintf("round %d would take ε from %.6g to %.6g (classic %.6g), past the budget of %g; %d of %d rounds committed",
		b.MaxRound+1, now.Epsilon, next.Epsilon, next.Classic, b.Epsilon, commits, rounds)
	log.Warn("privacy budget exhausted: the session stops", "reason", reason, "epsilon_total", now.Epsilon,
		"delta", now.Delta, "commits", commits, "rounds_planned", rounds)
	return auditEntry{kind: audit.BudgetExhausted, data: audit.Data{Round: b.MaxRound, TotalMicroEpsilon: total, Delta: now.Delta,
		Reason: audit.Reason(reason)}}, true
}

// Privacy is the privacy part of the /rounds document.
type Privacy struct {
	NoiseMultiplier float64 `json:"noise_multiplier"`      // σ of the manifest
	Clip            float64 `json:"clip"`                  // C of the manifest
	Budget          float64 `json:"epsilon_budget"`        // ε of the manifest
	Delta           float64 `json:"delta"`                 // δ of the manifest
	Multiplier      float64 `json:"accountant_multiplier"` // the noise multiplier the accountant uses (federation.Privacy)
	SampleRate      float64 `json:"sample_rate"`
	// MaxRound is the last round number the budget lets start.
	MaxRound fl.Round `json:"max_round"`
	// Exhausted: the session ended at MaxRound with fewer commits than planned.
	Exhausted bool `json:"exhausted"`
}
