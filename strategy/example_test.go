package strategy_test

import (
	"fmt"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/strategy"
)

// The leader of a plaintext round averages the updates and applies FedAvg.
func Example() {
	s, err := strategy.New("fedavg")
	if err != nil {
		panic(err)
	}
	global := fl.Vector{1, 1}
	mean, total, err := strategy.WeightedMean([]fl.Update{
		{Node: "hospital-a", Delta: fl.Vector{0.5, 0}, Weight: 300},
		{Node: "hospital-b", Delta: fl.Vector{-0.5, 1}, Weight: 100},
	})
	if err != nil {
		panic(err)
	}
	next, err := s.Apply(global, mean)
	if err != nil {
		panic(err)
	}
	fmt.Println(s, total, next)
	// Output: fedavg:lr=1 400 [1.25 1.25]
}

// The leader of one round applies FedAdam and seals its state with the
// model; the next round's leader restores it before applying the next step.
func ExampleNew() {
	leader1, _ := strategy.New("fedadam:lr=0.1,tau=1e-3")
	model, _ := leader1.Apply(fl.Vector{0, 0}, fl.Vector{1, -2})
	state, _ := leader1.MarshalBinary() // sealed with the group key next to model

	leader2, _ := strategy.New("fedadam:lr=0.1,tau=1e-3")
	if err := leader2.UnmarshalBinary(state); err != nil {
		panic(err)
	}
	model, _ = leader2.Apply(model, fl.Vector{1, -2})
	fmt.Printf("%s %.4f\n", leader2, model)

	// State from another configuration is refused.
	other, _ := strategy.New("fedyogi")
	fmt.Println(other.UnmarshalBinary(state))
	// Output:
	// fedadam:lr=0.1,b1=0.9,b2=0.99,tau=0.001 [0.2327 -0.2337]
	// strategy: bad state: written by "fedadam:lr=0.1,b1=0.9,b2=0.99,tau=0.001", this strategy is "fedyogi:lr=0.01,b1=0.9,b2=0.99,tau=0.001"
}
