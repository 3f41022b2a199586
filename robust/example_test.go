package robust_test

import (
	"errors"
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/robust"
)

// An aggregator enclave with seven updates, one of them an attack and one
// malformed. Krum, built for f = 2, picks an honest update and never the
// malformed one.
func Example() {
	updates := []fl.Vector{
		{1.0, 0.9}, {1.1, 1.0}, {0.9, 1.1}, {1.0, 1.0}, {1.05, 0.95},
		{1e6, -1e6},       // attacker
		{math.NaN(), 1.0}, // malformed: dropped, counted against f
	}
	krum, err := robust.Parse("krum:f=2", len(updates))
	if err != nil {
		panic(err)
	}
	agg, err := krum.Aggregate(updates)
	fmt.Println(krum.Name(), agg, err)

	median, _ := robust.Parse("median", len(updates))
	agg, _ = median.Aggregate(updates)
	fmt.Println(median, agg)

	// The plain mean refuses rather than return NaN.
	_, err = robust.NewMean().Aggregate(updates)
	fmt.Println(errors.Is(err, robust.ErrNonFinite), err)
	// Output:
	// Krum [1.05 0.95] <nil>
	// median:f=3 [1.025 0.975]
	// true robust: Mean: updates [6] have non-finite values; it can drop at most 0
}

// Infeasible configurations are refused with a typed error.
func ExampleNewBulyan() {
	_, err := robust.NewBulyan(10, 2)
	var ie *robust.InfeasibleError
	if errors.As(err, &ie) {
		fmt.Println(ie.Rule, ie.N, ie.F, ie.Need)
	}
	// Output: Bulyan 10 2 n ≥ 4f+3
}
