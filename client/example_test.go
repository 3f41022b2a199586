package client_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/client"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/model"
)

// One site's round: train from the global model, then clip, weigh and
// (here without DP noise) hand the update over.
func Example() {
	data := &dataset.Set{Name: "toy", Features: 2, Classes: 2}
	for i := range 64 {
		c := i % 2
		data.X = append(data.X, float64(c), float64(1-c))
		data.Y = append(data.Y, c)
	}
	t := client.Trainer{
		Model:     model.Spec{Kind: model.Softmax, Inputs: 2, Classes: 2},
		Optimizer: model.SGD{LR: 0.5, Batch: 8},
		Epochs:    2,
	}
	if err := t.Validate(); err != nil {
		panic(err)
	}
	global, _ := t.Initial(rand.New(rand.NewPCG(1, 2)))
	u, err := t.Train(data, global, nil, rand.New(rand.NewPCG(3, 4)))
	if err != nil {
		panic(err)
	}
	p := client.Policy{Clip: 1, MaxAbs: 2048, Members: 3}
	if err := p.Apply(u, nil); err != nil { // no noise, so no randomness
		panic(err)
	}
	fmt.Printf("%d values, norm ≤ 1: %v, weight %v\n", len(u.Delta), u.Delta.Norm() <= 1+1e-12, u.Weight)
	// Output: 6 values, norm ≤ 1: true, weight 1
}
