package client

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
)

func blocks(n int) *dataset.Set {
	rng := rand.New(rand.NewPCG(3, 99))
	s := &dataset.Set{Name: "blocks", Features: 16, Classes: 3, X: make([]float64, 16*n), Y: make([]int, n)}
	for i := range n {
		k := rng.IntN(3)
		s.Y[i] = k
		for j := range 16 {
			s.X[i*16+j] = 0.3 * rng.Float64()
			if j/4 == k {
				s.X[i*16+j] += 0.5
			}
		}
	}
	return s
}

// With zero controls, SCAFFOLD's local loop is exactly model.SGD's: same
// shuffles, same steps, same update and loss, whatever the momentum, weight
// decay and proximal term.
func TestScaffoldLoopMatchesSGD(t *testing.T) {
	set := blocks(100)
	spec := model.Spec{Kind: model.MLP, Inputs: 16, Classes: 3, Hidden: []int{5}}
	for _, opt := range []model.SGD{
		{LR: 0.1, Batch: 16},
		{LR: 0.05, Momentum: 0.9, Batch: 7, WeightDecay: 0.01, ProxMu: 0.1},
	} {
		plain := Trainer{Model: spec, Optimizer: opt, Epochs: 2}
		sc := plain
		sc.Scaffold = true
		x, _ := plain.Initial(rand.New(rand.NewPCG(1, 1)))
		state, _ := sc.Initial(rand.New(rand.NewPCG(1, 1)))
		want, err := plain.Train(set, x, nil, rand.New(rand.NewPCG(5, 5)))
		if err != nil {
			t.Fatal(err)
		}
		got, err := sc.Train(set, state, make(fl.Vector, len(x)), rand.New(rand.NewPCG(5, 5)))
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got.Loss-want.Loss) > 1e-12 || got.Examples != 100 {
			t.Errorf("%+v: loss %v, SGD's %v; %d examples", opt, got.Loss, want.Loss, got.Examples)
		}
		dy, dc := got.Delta[:len(x)], got.Delta[len(x):]
		for i := range want.Delta {
			if math.Abs(dy[i]-want.Delta[i]) > 1e-12 {
				t.Fatalf("%+v: Δy[%d] = %v, SGD's Δ = %v", opt, i, dy[i], want.Delta[i])
			}
		}
		// Option II: cᵢ⁺ = (x − y)/(K·η_eff), K = 2 epochs × ⌈100/batch⌉ steps.
		k := 2 * ((100 + opt.Batch - 1) / opt.Batch)
		eta := opt.LR / (1 - opt.Momentum)
		for i := range dc {
			if w := -dy[i] / (float64(k) * eta); math.Abs(dc[i]-w) > 1e-12*(1+math.Abs(w)) || got.Control[i] != dc[i] {
				t.Fatalf("%+v: Δc[%d] = %v, want %v (next %v)", opt, i, dc[i], w, got.Control[i])
			}
		}
	}
}

func TestWeigh(t *testing.T) {
	u := &Update{Delta: fl.Vector{4, -2}, Examples: 2048}
	if err := u.Weigh(false, 0, 3); err != nil || u.Weight != 2 || u.Capped || u.Delta[0] != 8 {
		t.Errorf("examples: %v, %+v", err, u)
	}
	// Three members, range 48: w ≤ 48/(2·3·4) = 2 per site, here capped from 4.
	u = &Update{Delta: fl.Vector{4, -2}, Examples: 4096}
	if err := u.Weigh(false, 48, 3); err != nil || u.Weight != 2 || !u.Capped {
		t.Errorf("capped: %v, %+v", err, u)
	}
	u = &Update{Delta: fl.Vector{0.5}, Examples: 4096}
	if err := u.Weigh(true, 2048, 3); err != nil || u.Weight != 1 || u.Delta[0] != 0.5 {
		t.Errorf("uniform: %v, %+v", err, u)
	}
	u = &Update{Delta: fl.Vector{math.NaN()}, Examples: 1}
	if err := u.Weigh(false, 0, 1); !errors.Is(err, ErrNonFinite) {
		t.Errorf("NaN: %v", err)
	}
}

// Policy.Apply clips, then noises from the given reader: the same reader
// state gives the same update.
func TestPolicy(t *testing.T) {
	share, err := dp.NewNoise(0.1, dp.DefaultBits)
	if err != nil {
		t.Fatal(err)
	}
	p := Policy{Clip: 1, Noise: share, MaxAbs: 2048, Members: 2}
	apply := func() *Update {
		u := &Update{Delta: fl.Vector{3, 4}, Examples: 10, Scale: 1}
		if err := p.Apply(u, rand.NewChaCha8([32]byte{1})); err != nil {
			t.Fatal(err)
		}
		return u
	}
	a, b := apply(), apply()
	if a.Scale != 0.2 || a.Weight != 1 || a.Delta[0] != b.Delta[0] || a.Delta[1] != b.Delta[1] || a.Delta[0] == 0.6 {
		t.Errorf("%+v, %+v", a, b)
	}
}

func TestValidate(t *testing.T) {
	ok := Trainer{Model: model.Spec{Kind: model.Softmax, Inputs: 4, Classes: 2}, Optimizer: model.SGD{LR: 0.1, Batch: 4}, Epochs: 1}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*Trainer){
		"epochs":          func(t *Trainer) { t.Epochs = 0 },
		"lr":              func(t *Trainer) { t.Optimizer.LR = 0 },
		"scaffold cosine": func(t *Trainer) { t.Scaffold, t.Optimizer.Cosine = true, true },
	} {
		tr := ok
		mutate(&tr)
		if err := tr.Validate(); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if ok.Dim() != 10 {
		t.Errorf("dim %d", ok.Dim())
	}
}
