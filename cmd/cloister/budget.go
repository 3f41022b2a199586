package main

import (
	"fmt"
	"io"

	"github.com/cloisterfl/cloister/federation"
)

// budgetNote tells the admin of a new federation when its ε budget covers
// fewer rounds than it plans (the coordinator stops at the budget), and
// which noise multiplier would cover them all (federation.Federation.NoiseFor).
func budgetNote(w io.Writer, man *federation.Manifest) error {
	fed, err := federation.Resolve(man, federation.Overrides{})
	if err != nil || fed.Budget == nil {
		return err
	}
	n, rounds := int(fed.Budget.MaxRound), man.Training.Rounds
	if n >= rounds {
		return nil
	}
	sigma, err := fed.NoiseFor(rounds)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "cloister: note: the ε budget %g covers %d of the %d rounds: the coordinator will stop after round %d (--dp-noise %g covers them all)\n",
		man.DP.Epsilon, n, rounds, n, sigma)
	return nil
}
