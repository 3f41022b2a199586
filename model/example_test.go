package model_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/model"
)

// Example trains a small MLP on two noisy clusters, then evaluates it.
func Example() {
	rng := rand.New(rand.NewPCG(1, 2))
	set := &dataset.Set{Name: "clusters", Features: 2, Classes: 2}
	for i := 0; i < 200; i++ {
		c := i % 2
		centre := float64(2*c - 1) // −1 or +1
		set.X = append(set.X, centre+0.3*rng.NormFloat64(), centre+0.3*rng.NormFloat64())
		set.Y = append(set.Y, c)
	}

	spec := model.Spec{Kind: model.MLP, Inputs: 2, Classes: 2, Hidden: []int{8}}
	m, err := model.New(spec, rng)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(spec, "has", m.NumParams(), "parameters")

	if _, err := model.DefaultSGD().Train(m, set, 10, nil, rng); err != nil {
		fmt.Println(err)
		return
	}
	metrics, err := m.Evaluate(set)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("accuracy %.2f on %d examples\n", metrics.Accuracy, metrics.Examples)

	// A parameter vector of the wrong length is an error, not a panic.
	err = m.SetParams(make([]float64, 3))
	fmt.Println(err)
	// Output:
	// mlp 2-8-2 has 42 parameters
	// accuracy 1.00 on 200 examples
	// model: invalid parameters: parameter vector has 3 values, mlp 2-8-2 needs 42
}

// ExampleSGD_Train shows local training in a FedProx round: the proximal
// term keeps the local model near the global one it started from.
func ExampleSGD_Train() {
	rng := rand.New(rand.NewPCG(3, 4))
	set := &dataset.Set{Name: "local", Features: 4, Classes: 3}
	for i := 0; i < 90; i++ {
		c := i % 3
		for j := 0; j < 4; j++ {
			v := 0.5 * rng.NormFloat64()
			if j == c {
				v += 2
			}
			set.X = append(set.X, v)
		}
		set.Y = append(set.Y, c)
	}
	global, err := model.New(model.Spec{Kind: model.Softmax, Inputs: 4, Classes: 3}, rng)
	if err != nil {
		fmt.Println(err)
		return
	}

	local := global.Clone()
	opt := model.SGD{LR: 0.05, Momentum: 0.9, ProxMu: 0.1, Batch: 16}
	loss, err := opt.Train(local, set, 3, global.Params(), rng)
	if err != nil {
		fmt.Println(err)
		return
	}
	delta := local.Params()
	_ = delta.Add(-1, global.Params()) // the update Δ = local − global a site sends
	fmt.Printf("loss %.2f, ‖Δ‖ > 0: %v, %d values\n", loss, delta.Norm() > 0, len(delta))

	// FedProx needs the anchor.
	_, err = opt.Train(local, set, 1, nil, rng)
	fmt.Println(err)
	// Output:
	// loss 0.14, ‖Δ‖ > 0: true, 15 values
	// model: invalid hyperparameter: proximal μ 0.1 needs the global model as anchor, got nil
}
