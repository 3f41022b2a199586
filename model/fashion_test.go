package model_test

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/model"
)

// TestFashionMNIST trains both models briefly on the real Fashion-MNIST
// (Debian package dataset-fashion-mnist). The ten-epoch accuracy targets
// are checked end to end through `cloister train`; two epochs here keep
// the test under a few seconds per model.
func TestFashionMNIST(t *testing.T) {
	if testing.Short() {
		t.Skip("trains on 60,000 images; skipped with -short")
	}
	sp, err := dataset.LoadFashionMNIST(dataset.DefaultFashionMNISTDir)
	if errors.Is(err, dataset.ErrNotFound) {
		t.Skipf("%v (apt-get install dataset-fashion-mnist)", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		spec model.Spec
		min  float64 // test accuracy after two epochs
	}{
		{model.Spec{Kind: model.Softmax, Inputs: 784, Classes: 10}, 0.80},
		{model.Spec{Kind: model.MLP, Inputs: 784, Classes: 10, Hidden: []int{128}}, 0.85},
	}
	for _, c := range cases {
		t.Run(c.spec.String(), func(t *testing.T) {
			m, err := model.New(c.spec, rand.New(rand.NewPCG(1, 2)))
			if err != nil {
				t.Fatal(err)
			}
			loss, err := model.DefaultSGD().Train(m, sp.Train, 2, nil, rand.New(rand.NewPCG(3, 4)))
			if err != nil {
				t.Fatal(err)
			}
			met, err := m.Evaluate(sp.Test)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("train loss %.4f, test %+v", loss, met)
			if met.Accuracy < c.min || met.Examples != 10000 {
				t.Errorf("test accuracy %.4f on %d examples, want ≥ %.2f on 10000", met.Accuracy, met.Examples, c.min)
			}
		})
	}
}
