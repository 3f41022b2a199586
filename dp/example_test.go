package dp_test

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
)

// A node's side of a round: clip the update, then add its share of the
// distributed noise. The seeded reader makes the example reproducible; a
// real node passes crypto/rand.Reader.
func Example() {
	const (
		sigma = 1.1 // noise multiplier from the manifest
		clip  = 1.0 // L2 clipping norm C
		k     = 4   // minimum number of honest nodes in an aggregate
	)
	random := rand.NewChaCha8([32]byte{1}) // production: crypto/rand.Reader

	delta := fl.Vector{3, 4, 0, 0}
	scale, err := dp.Clip(delta, clip)
	if err != nil {
		panic(err)
	}
	fmt.Printf("clipped by %.2f to norm %.2f\n", scale, delta.Norm())

	std, _ := dp.NoiseShare(sigma, clip, k)
	noise, err := dp.NewNoise(std, dp.DefaultBits)
	if err != nil {
		panic(err)
	}
	if err := noise.Add(delta, random); err != nil {
		panic(err)
	}
	fmt.Printf("each node adds σ·C/√k = %.2f; the sum over %d nodes carries %.2f\n", std, k, sigma*clip)

	// The multiplier to account with: σ, discounted for the rounding to
	// the grid and for the sum of discrete Gaussians not being one.
	z, _ := dp.DistributedMultiplier(sigma, clip, k, len(delta), dp.DefaultBits)
	fmt.Printf("account with z = %.6f\n", z)
	// Output:
	// clipped by 0.20 to norm 1.00
	// each node adds σ·C/√k = 0.55; the sum over 4 nodes carries 1.10
	// account with z = 1.099998
}

// The TF-Privacy MNIST tutorial: batches of 256 out of 60,000 examples,
// noise multiplier 1.1, 60 epochs, δ = 1e-5.
func ExampleAccountant() {
	var acct dp.Accountant // the zero value tracks dp.DefaultOrders
	if err := acct.Compose(256.0/60000, 1.1, 60*60000/256); err != nil {
		panic(err)
	}
	eps, order, _ := acct.EpsilonClassic(1e-5)
	fmt.Printf("classic:  ε = %.2f at order %v\n", eps, order)
	eps, order, _ = acct.Epsilon(1e-5)
	fmt.Printf("improved: ε = %.2f at order %v\n", eps, order)
	// Output:
	// classic:  ε = 3.01 at order 8.8
	// improved: ε = 2.60 at order 8.1
}

func ExampleNoiseFor() {
	sigma, err := dp.NoiseFor(3, 1e-5, 256.0/60000, 14062)
	if err != nil {
		panic(err)
	}
	fmt.Printf("σ = %.3f\n", sigma)
	steps, _ := dp.StepsFor(3, 1e-5, 256.0/60000, 1.1)
	fmt.Printf("σ = 1.1 affords %d steps\n", steps)
	// Output:
	// σ = 1.014
	// σ = 1.1 affords 18338 steps
}

// The coordinator checks every round against the federation's budget before
// it starts, and records it when it ends.
func ExampleBudget() {
	budget, err := dp.NewBudget(2, 1e-5)
	if err != nil {
		panic(err)
	}
	const q, sigma, steps = 1, 5, 1 // every site in every round
	for round := 1; ; round++ {
		err := budget.Check(q, sigma, steps)
		var exceeded *dp.BudgetExceededError
		if errors.As(err, &exceeded) {
			fmt.Printf("round %d refused: ε would reach %.3f > %g\n", round, exceeded.Next, exceeded.Limit)
			break
		}
		if err := budget.Spend(q, sigma, steps); err != nil {
			panic(err)
		}
	}
	micro, _ := dp.MicroEpsilon(budget.Spent())
	fmt.Printf("spent %d µε in %d rounds\n", micro, budget.Rounds())
	// Output:
	// round 6 refused: ε would reach 2.117 > 2
	// spent 1914250 µε in 5 rounds
}

func ExampleDiscreteGaussian() {
	g, err := dp.NewDiscreteGaussian(3)
	if err != nil {
		panic(err)
	}
	xs := make([]int64, 8)
	if err := g.Fill(xs, rand.NewChaCha8([32]byte{})); err != nil { // production: crypto/rand.Reader
		panic(err)
	}
	fmt.Println(xs, g.Sigma2())
	// Output:
	// [1 -3 2 1 -4 -7 -5 0] 9/1
}

// A federation of 10 sites, each clipping its update of 101,770 values to
// C = 1 and adding its share of σ = 2 noise, every site in every round:
// the ε of the first rounds, and how many rounds a budget of 8 affords.
func ExampleRounds() {
	rule, err := dp.NewRounds(2, 1, 10, 101_770, 1, 1e-5)
	if err != nil {
		panic(err)
	}
	for _, r := range []int{1, 5, 10} {
		c, _ := rule.After(r)
		fmt.Printf("after %2d rounds: ε = %.3f (classic %.3f)\n", r, c.Epsilon, c.Classic)
	}
	n, _ := rule.MaxRounds(8)
	fmt.Println("rounds within ε = 8:", n)
	// Output:
	// after  1 rounds: ε = 2.166 (classic 2.525)
	// after  5 rounds: ε = 5.380 (classic 5.992)
	// after 10 rounds: ε = 8.082 (classic 8.841)
	// rounds within ε = 8: 9
}
