package federation

import (
	"fmt"

	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/round"
)

// Privacy returns the federation's privacy accounting: the rule by which
// the coordinator caps the session at the manifest's ε budget and every
// node checks its own --max-epsilon, so both ends compute the same ε for
// every round. ok is false when the manifest has no DP (noise multiplier
// 0): then nothing bounds ε.
//
// The rule. Round r (the engine's round number, which only grows and counts
// aborted rounds too, since an aborted round may have revealed its
// aggregate) releases one noised sum: at least k = the manifest's minimum
// cohort members clip their update to C and add σ·C/√k of discrete Gaussian
// noise (node's trainer, [dp.NoiseShare]), and their weight is 1. The
// accountant composes r steps of the Gaussian mechanism with noise
// multiplier [dp.DistributedMultiplier](σ, C, k, dim, dp.DefaultBits), where
// dim is bounded by the scheme's Limits.MaxDim − 1 (the weight takes a
// slot): the coordinator does not know the model's dimension, and a bound
// only overstates ε. ε is stated at the manifest's δ by both conversions
// ([dp.Cost]); the improved one (Balle et al. 2020) is enforced.
//
// The sampling rate q is 1: the cohort is every live member, and a
// coordinator that chose cohorts could void any amplification by sampling
// anyway. If the engine samples (0 < cfg.Fraction < 1), q = Fraction, which
// is valid only if the draw is random and hidden from the adversary.
func Privacy(man *Manifest, cfg round.Config, lim protect.Capacity) (rule dp.Rounds, ok bool, err error) {
	d := man.DP
	if d.NoiseMultiplier == 0 {
		return dp.Rounds{}, false, nil
	}
	q := 1.0
	if cfg.Fraction > 0 && cfg.Fraction < 1 {
		q = cfg.Fraction
	}
	dim := lim.MaxDim - 1
	if dim < 1 {
		return dp.Rounds{}, false, fmt.Errorf("federation: the scheme's limit of %d values leaves no room for an update", lim.MaxDim)
	}
	rule, err = dp.NewRounds(d.NoiseMultiplier, d.Clip, man.MinCohort, dim, q, d.Delta)
	if err != nil {
		return dp.Rounds{}, false, fmt.Errorf("federation: the manifest's DP (noise_multiplier %v, clip %v, min_cohort %d, delta %v): %w",
			d.NoiseMultiplier, d.Clip, man.MinCohort, d.Delta, err)
	}
	return rule, true, nil
}
