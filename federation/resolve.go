package federation

import (
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/round"
)

// Overrides are what a daemon or the command line may change in what a
// manifest implies. The zero value changes nothing.
type Overrides struct {
	// Scheme replaces the scheme the manifest's mode names (tests).
	Scheme protect.Scheme
	// MaxMessage, if not 0, replaces the message limit computed from the
	// manifest (an operator's override, e.g. for larger TEE evidence). A
	// limit below what the federation's largest message needs is refused
	// with an error wrapping ErrLimitTooSmall.
	MaxMessage int64
	// MaxEpsilon, if not 0, is a node's own privacy limit, [Budget.Local]:
	// site policy the coordinator cannot override. It needs DP in the
	// manifest.
	MaxEpsilon float64
}

// Federation is a manifest resolved into what the daemons and the command
// line run: the same for the coordinator and every node, since they
// resolve the same signed manifest.
type Federation struct {
	// Manifest is the manifest resolved.
	Manifest *Manifest
	// Scheme is the aggregation mode's scheme, set to apply the manifest's
	// rule ([SchemeOf]), or Overrides.Scheme.
	Scheme protect.Scheme
	// Round is the engine's configuration ([RoundConfig]), with MaxRound
	// set to Budget.MaxRound under DP. The daemons add their deadlines.
	Round round.Config
	// Sizes bounds every kind of message ([MessageSizes]).
	Sizes Sizes
	// MaxMessage is the transport's message limit: Sizes.MaxMessage, or
	// Overrides.MaxMessage ([Sizes.Limit]).
	MaxMessage int64
	// Budget is the privacy budget, nil without DP in the manifest.
	Budget *Budget
}

// Budget is a federation's privacy budget: the accounting rule both
// daemons price rounds with ([Privacy]), the manifest's ε, and the round
// cap it implies.
type Budget struct {
	// Rule is the accounting rule: ε after r rounds.
	Rule dp.Rounds
	// Epsilon is the manifest's ε budget.
	Epsilon float64
	// MaxRound is the round cap: the last round number that may start,
	// counting aborted rounds (one may have revealed its aggregate), the
	// largest r with ε(r) ≤ Epsilon. 0 means the budget does not cover a
	// single round (the coordinator refuses to start; nodes refuse every
	// round).
	MaxRound fl.Round
	// Local is a node's own limit (Overrides.MaxEpsilon); 0 means none.
	Local float64
}

// Cost returns the federation's ε after round r, and the same in micro-ε
// (the unit of audit logs).
func (b *Budget) Cost(r fl.Round) (dp.Cost, int64, error) {
	c, err := b.Rule.After(int(r))
	if err != nil {
		return c, 0, err
	}
	micro, err := c.Micro()
	return c, micro, err
}

// Price prices the commit of round r for an audit log that has recorded
// spent micro-ε so far: total is micro(ε(r)), and inc what the commit adds,
// total − spent (0 if total is not above spent: a commit heard again, or
// a round already paid for). The increments of a log add up to the
// cumulative ε, aborted rounds before r included.
func (b *Budget) Price(r fl.Round, spent int64) (c dp.Cost, inc, total int64, err error) {
	c, total, err = b.Cost(r)
	if err != nil {
		return c, 0, 0, err
	}
	if total > spent {
		inc = total - spent
	}
	return c, inc, total, nil
}

// Resolve checks what the manifest m implies and returns it with the
// overrides o applied: the scheme, the engine's configuration, the
// message sizes and limit, and the privacy budget.
func Resolve(m *Manifest, o Overrides) (*Federation, error) {
	if m == nil {
		return nil, errors.New("federation: no manifest")
	}
	f := &Federation{Manifest: m, Scheme: o.Scheme}
	var err error
	if f.Round, err = RoundConfig(m); err != nil {
		return nil, err
	}
	if f.Scheme == nil {
		if f.Scheme, err = SchemeOf(m); err != nil {
			return nil, err
		}
	}
	if f.Budget, err = NewBudget(m, f.Round, f.Scheme.Capacity(), o.MaxEpsilon); err != nil {
		return nil, err
	}
	if f.Budget != nil {
		f.Round.MaxRound = f.Budget.MaxRound
	}
	if f.Sizes, err = MessageSizes(m, f.Scheme); err != nil {
		return nil, err
	}
	if f.MaxMessage, err = f.Sizes.Limit(o.MaxMessage); err != nil {
		return nil, err
	}
	return f, nil
}

// NewBudget returns the budget the manifest m sets under the privacy rule
// for the engine configuration cfg and the scheme's limits lim
// ([Privacy]), with a node's own limit local (0: none); nil without DP. A
// local limit without DP in the manifest is an error: every round would
// have unbounded ε. [Resolve] calls it; tests may call it with other
// limits.
func NewBudget(m *Manifest, cfg round.Config, lim protect.Capacity, local float64) (*Budget, error) {
	if math.IsNaN(local) || math.IsInf(local, 0) || local < 0 {
		return nil, fmt.Errorf("federation: max epsilon %v must be finite and non-negative (0: no local limit)", local)
	}
	rule, ok, err := Privacy(m, cfg, lim)
	if err != nil {
		return nil, err
	}
	if !ok {
		if local > 0 {
			return nil, fmt.Errorf("federation: max epsilon %v, but the manifest has no differential privacy (dp.noise_multiplier 0): every round's ε is unbounded, so this node would refuse them all", local)
		}
		return nil, nil
	}
	n, err := rule.MaxRounds(m.DP.Epsilon)
	if err != nil {
		return nil, fmt.Errorf("federation: the manifest's ε budget %v: %w", m.DP.Epsilon, err)
	}
	return &Budget{Rule: rule, Epsilon: m.DP.Epsilon, MaxRound: fl.Round(n), Local: local}, nil
}

// NoiseFor returns the smallest noise multiplier σ, to 0.001, with which
// the manifest's ε budget covers rounds rounds under the federation's
// privacy rule (the manifest's clip, δ and minimum cohort unchanged). It
// needs DP in the manifest.
func (f *Federation) NoiseFor(rounds int) (float64, error) {
	if f.Budget == nil {
		return 0, errors.New("federation: the manifest has no differential privacy")
	}
	lim := f.Scheme.Capacity()
	ruleFor := func(sigma float64) (dp.Rounds, error) {
		m := *f.Manifest
		m.DP.NoiseMultiplier = sigma
		rule, _, err := Privacy(&m, f.Round, lim)
		return rule, err
	}
	d, rule := f.Manifest.DP, f.Budget.Rule
	// The accountant's multiplier is slightly below σ (dp.DistributedMultiplier):
	// scale what dp.NoiseFor finds back to σ, round up, and check.
	z, err := dp.NoiseFor(d.Epsilon, d.Delta, rule.SampleRate, rounds)
	if err != nil {
		return 0, err
	}
	sigma := math.Ceil(z*d.NoiseMultiplier/rule.Multiplier*1000) / 1000
	for range 100 {
		r, err := ruleFor(sigma)
		if err != nil {
			return 0, err
		}
		if m, err := r.MaxRounds(d.Epsilon); err == nil && m >= rounds {
			break
		}
		sigma += 0.001
	}
	return sigma, nil
}

// Terms returns the engine's terms of the resolved manifest (round.Terms):
// signed is the signed manifest they come from, summary what an amendment
// changed.
func (f *Federation) Terms(signed []byte, summary string) round.Terms {
	t := f.Round.Terms()
	t.Manifest, t.Summary = slices.Clone(signed), summary
	return t
}
