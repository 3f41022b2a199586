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
