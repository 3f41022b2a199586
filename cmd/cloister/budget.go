package main

import (
	"fmt"
	"io"
	"math"

	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/mode"
	"github.com/cloisterfl/cloister/pki"
)

// privacyRule returns the federation's privacy accounting, the rule the
// coordinator and the nodes enforce (mode.Privacy), as a function of the
// noise multiplier σ (the manifest's when sigma is 0).
func privacyRule(man *pki.Manifest) (func(sigma float64) (dp.Rounds, error), error) {
	scheme, err := mode.Scheme(man.Mode, man.Preset)
	if err != nil {
		return nil, err
	}
	rcfg, err := mode.RoundConfig(man)
	if err != nil {
		return nil, err
	}
	lim := scheme.Limits()
	return func(sigma float64) (dp.Rounds, error) {
		m := *man
		if sigma != 0 {
			m.DP.NoiseMultiplier = sigma
		}
		rule, _, err := mode.Privacy(&m, rcfg, lim)
		return rule, err
	}, nil
}

// budgetNote tells the admin of a new federation when its ε budget covers
// fewer rounds than it plans (the coordinator stops at the budget), and
// which noise multiplier would cover them all.
func budgetNote(w io.Writer, man *pki.Manifest) error {
	ruleFor, err := privacyRule(man)
	if err != nil {
		return err
	}
	rule, err := ruleFor(0)
	if err != nil {
		return err
	}
	d, rounds := man.DP, man.Training.Rounds
	n, err := rule.MaxRounds(d.Epsilon)
	if err != nil || n >= rounds {
		return err
	}
	// The accountant's multiplier is slightly below σ (dp.DistributedMultiplier):
	// scale what NoiseFor finds back to σ, round up, and check.
	z, err := dp.NoiseFor(d.Epsilon, d.Delta, rule.SampleRate, rounds)
	if err != nil {
		return err
	}
	sigma := math.Ceil(z*d.NoiseMultiplier/rule.Multiplier*1000) / 1000
	for range 100 {
		r, err := ruleFor(sigma)
		if err != nil {
			return err
		}
		if m, err := r.MaxRounds(d.Epsilon); err == nil && m >= rounds {
			break
		}
		sigma += 0.001
	}
	fmt.Fprintf(w, "cloister: note: the ε budget %g covers %d of the %d rounds: the coordinator will stop after round %d (--dp-noise %g covers them all)\n",
		d.Epsilon, n, rounds, n, sigma)
	return nil
}
