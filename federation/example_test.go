package federation_test

import (
	"fmt"

	"github.com/cloisterfl/cloister/federation"
)

// Resolve gives the coordinator, every node and the command line the same
// runtime from one manifest. (A real manifest comes from federation.Verify;
// this one lists five unnamed members for brevity.)
func ExampleResolve() {
	man := &federation.Manifest{Version: federation.ManifestVersion, Federation: "fed-example",
		Members: make([]federation.Principal, 5), Threshold: 3, MinCohort: 3, Mode: federation.ModeMHE, Preset: "Agg128",
		DP:       federation.DP{NoiseMultiplier: 3, Clip: 1, Epsilon: 8, Delta: 1e-5},
		Model:    federation.ModelSpec{Kind: "mlp", Inputs: 784, Classes: 10, Hidden: []int{128}},
		Training: federation.Training{Rounds: 30, LocalEpochs: 1, Batch: 32, LearningRate: 0.1}}
	fed, err := federation.Resolve(man, federation.Overrides{})
	if err != nil {
		panic(err)
	}
	fmt.Println("scheme:", fed.Scheme.Name(), "threshold:", fed.Round.Threshold, "rounds:", fed.Round.Rounds)
	fmt.Println("message limit:", fed.MaxMessage, "bytes, for the largest message,", fed.Sizes.Largest)
	b := fed.Budget
	last, _, _ := b.Cost(b.MaxRound)
	fmt.Printf("the budget ε = %g stops the session after round %d (ε %.4g)\n", b.Epsilon, b.MaxRound, last.Epsilon)
	sigma, _ := fed.NoiseFor(man.Training.Rounds)
	fmt.Println("noise multiplier for all", man.Training.Rounds, "rounds:", sigma)
	// Output:
	// scheme: mhe threshold: 3 rounds: 30
	// message limit: 3801088 bytes, for the largest message, GroupKey
	// the budget ε = 8 stops the session after round 21 (ε 7.79)
	// noise multiplier for all 30 rounds: 3.507
}

// CanonicalRule writes a rule spec as the manifest carries it, with f (the
// Byzantine members it withstands) written out: by default the most the
// rule tolerates with the minimum cohort, the smallest a round aggregates.
func ExampleCanonicalRule() {
	for _, spec := range []string{"mean", "median", "krum", "trimmed:0.2", "bulyan", "bulyan:f=2"} {
		canon, err := federation.CanonicalRule(spec, 7)
		if err != nil {
			fmt.Println(spec, "→ error:", err)
			continue
		}
		fmt.Printf("%s → %q\n", spec, canon)
	}
	// Output:
	// mean → ""
	// median → "median:f=3"
	// krum → "krum:f=2"
	// trimmed:0.2 → "trimmed:beta=0.2,f=1"
	// bulyan → "bulyan:f=1"
	// bulyan:f=2 → error: rule "bulyan:f=2" for a minimum cohort of 7 updates: parsing "bulyan:f=2": robust: Bulyan with n=7, f=2 is infeasible: needs n ≥ 4f+3
}
