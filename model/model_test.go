package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
)

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x636c6f6973746572)) }

func mustNew(t testing.TB, spec Spec, seed uint64) Model {
	t.Helper()
	m, err := New(spec, newRand(seed))
	if err != nil {
		t.Fatalf("New(%s): %v", spec, err)
	}
	return m
}

// randomBatch returns rows examples of uniform features in [-1, 1) and
// uniform labels.
func randomBatch(rng *rand.Rand, rows, inputs, classes int) ([]float64, []int) {
	x := make([]float64, rows*inputs)
	for i := range x {
		x[i] = 2*rng.Float64() - 1
	}
	y := make([]int, rows)
	for i := range y {
		y[i] = rng.IntN(classes)
	}
	return x, y
}

// blobs returns a linearly separable problem: one Gaussian blob per class,
// centred on well-separated random points.
func blobs(rng *rand.Rand, n, inputs, classes int) *dataset.Set {
	centres := make([][]float64, classes)
	for c := range centres {
		centres[c] = make([]float64, inputs)
		for j := range centres[c] {
			centres[c][j] = 3 * rng.NormFloat64()
		}
	}
	s := &dataset.Set{Name: "blobs", Features: inputs, Classes: classes}
	for i := 0; i < n; i++ {
		c := rng.IntN(classes)
		for j := 0; j < inputs; j++ {
			s.X = append(s.X, centres[c][j]+0.5*rng.NormFloat64())
		}
		s.Y = append(s.Y, c)
	}
	return s
}

var gradSpecs = []Spec{
	{Kind: Softmax, Inputs: 5, Classes: 3},
	{Kind: MLP, Inputs: 5, Classes: 3, Hidden: []int{4}},
	{Kind: MLP, Inputs: 6, Classes: 4, Hidden: []int{7, 5}},
}

// TestGradientFiniteDifference checks the hand-written backward pass, and
// the weight decay and FedProx terms added by the trainer, against central
// finite differences of the objective.
func TestGradientFiniteDifference(t *testing.T) {
	regs := []struct {
		name       string
		wd, proxMu float64
	}{
		{"plain", 0, 0},
		{"weight-decay", 0.03, 0},
		{"fedprox", 0, 0.2},
		{"weight-decay+fedprox", 0.03, 0.2},
	}
	for si, spec := range gradSpecs {
		for _, reg := range regs {
			t.Run(fmt.Sprintf("%s/%s", spec, reg.name), func(t *testing.T) {
				rng := newRand(uint64(si + 1))
				m := mustNew(t, spec, uint64(si+10))
				x, y := randomBatch(rng, 9, spec.Inputs, spec.Classes)
				anchor := m.Params()
				for i := range anchor {
					anchor[i] += 0.3 * rng.NormFloat64()
				}
				o := SGD{LR: 0.1, Batch: 9, WeightDecay: reg.wd, ProxMu: reg.proxMu}
				tr, err := o.newTrainer(m, anchor, 9)
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := tr.gradient(x, y); err != nil {
					t.Fatal(err)
				}
				analytic := tr.grad.Clone()
				objective := func() float64 {
					_, f, err := tr.gradient(x, y)
					if err != nil {
						t.Fatal(err)
					}
					return f
				}
				const h = 1e-6
				w := m.live()
				var worst float64
				for i := range w {
					orig := w[i]
					w[i] = orig + h
					fp := objective()
					w[i] = orig - h
					fm := objective()
					w[i] = orig
					numeric := (fp - fm) / (2 * h)
					diff := math.Abs(numeric - analytic[i])
					rel := diff / math.Max(1e-3, math.Abs(numeric)+math.Abs(analytic[i]))
					worst = math.Max(worst, rel)
					if rel > 1e-5 {
						t.Errorf("param %d: analytic %.10g, numeric %.10g", i, analytic[i], numeric)
					}
				}
				t.Logf("%d parameters, worst relative error %.2g", len(w), worst)
			})
		}
	}
}

func TestSpec(t *testing.T) {
	good := []struct {
		spec   Spec
		params int
		str    string
	}{
		{Spec{Kind: Softmax, Inputs: 784, Classes: 10}, 785 * 10, "softmax 784-10"},
		{Spec{Kind: MLP, Inputs: 784, Classes: 10, Hidden: []int{128}}, 785*128 + 129*10, "mlp 784-128-10"},
		{Spec{Kind: MLP, Inputs: 2, Classes: 2, Hidden: []int{3, 4}}, 3*3 + 4*4 + 5*2, "mlp 2-3-4-2"},
	}
	for _, c := range good {
		if err := c.spec.Validate(); err != nil {
			t.Errorf("%s: %v", c.str, err)
		}
		if got := c.spec.NumParams(); got != c.params {
			t.Errorf("%s: NumParams = %d, want %d", c.str, got, c.params)
		}
		if got := c.spec.String(); got != c.str {
			t.Errorf("String = %q, want %q", got, c.str)
		}
		m := mustNew(t, c.spec, 1)
		if m.NumParams() != c.params || len(m.Params()) != c.params {
			t.Errorf("%s: model has %d params, want %d", c.str, m.NumParams(), c.params)
		}
		if !m.Spec().Equal(c.spec) {
			t.Errorf("%s: Spec() = %s", c.str, m.Spec())
		}
	}
	bad := []Spec{
		{},
		{Kind: "cnn", Inputs: 4, Classes: 2},
		{Kind: Softmax, Inputs: 0, Classes: 2},
		{Kind: Softmax, Inputs: 4, Classes: 1},
		{Kind: Softmax, Inputs: 4, Classes: 2, Hidden: []int{3}},
		{Kind: MLP, Inputs: 4, Classes: 2},
		{Kind: MLP, Inputs: 4, Classes: 2, Hidden: []int{3, 0}},
		{Kind: MLP, Inputs: 4, Classes: 2, Hidden: []int{-1}},
		{Kind: Softmax, Inputs: math.MaxInt, Classes: math.MaxInt},
		{Kind: MLP, Inputs: 1 << 20, Classes: 2, Hidden: []int{1 << 20}},
		{Kind: MLP, Inputs: 1, Classes: 2, Hidden: []int{1 << 40, 1 << 40}},
	}
	for _, s := range bad {
		err := s.Validate()
		if !errors.Is(err, ErrSpec) {
			t.Errorf("%s: Validate() = %v, want ErrSpec", s, err)
		}
		if s.NumParams() != 0 {
			t.Errorf("%s: NumParams() = %d for an invalid spec", s, s.NumParams())
		}
		if _, err := New(s, newRand(1)); !errors.Is(err, ErrSpec) {
			t.Errorf("New(%s) = %v, want ErrSpec", s, err)
		}
	}
	if _, err := New(gradSpecs[0], nil); err == nil {
		t.Error("New with nil rng: no error")
	}
}

func TestNewDeterministic(t *testing.T) {
	spec := Spec{Kind: MLP, Inputs: 10, Classes: 3, Hidden: []int{8}}
	a, b := mustNew(t, spec, 7).Params(), mustNew(t, spec, 7).Params()
	c := mustNew(t, spec, 8).Params()
	if !bitsEqual(a, b) {
		t.Error("same seed gave different initial parameters")
	}
	if bitsEqual(a, c) {
		t.Error("different seeds gave the same initial parameters")
	}
}

func TestSetParams(t *testing.T) {
	m := mustNew(t, gradSpecs[2], 1)
	before := m.Params()
	cases := map[string]fl.Vector{
		"short": make(fl.Vector, m.NumParams()-1),
		"long":  make(fl.Vector, m.NumParams()+1),
		"nil":   nil,
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		p := before.Clone()
		p[len(p)/2] = bad
		cases[fmt.Sprint(bad)] = p
	}
	for name, p := range cases {
		if err := m.SetParams(p); !errors.Is(err, ErrParams) {
			t.Errorf("%s: SetParams = %v, want ErrParams", name, err)
		}
		if !bitsEqual(m.Params(), before) {
			t.Errorf("%s: failed SetParams changed the model", name)
		}
	}
	p := before.Clone()
	p[0] = 42
	if err := m.SetParams(p); err != nil {
		t.Fatal(err)
	}
	p[1] = 43 // the model must hold a copy
	if got := m.Params(); got[0] != 42 || got[1] == 43 {
		t.Errorf("SetParams/Params do not copy: %v", got[:2])
	}
	got := m.Params()
	got[0] = -1
	if m.Params()[0] != 42 {
		t.Error("Params returned a view, not a copy")
	}
	if _, err := NewFromParams(gradSpecs[2], before[:3]); !errors.Is(err, ErrParams) {
		t.Errorf("NewFromParams(short) = %v, want ErrParams", err)
	}
	n, err := NewFromParams(gradSpecs[2], before)
	if err != nil || !bitsEqual(n.Params(), before) {
		t.Errorf("NewFromParams: %v", err)
	}
}

func TestClone(t *testing.T) {
	m := mustNew(t, gradSpecs[1], 1)
	c := m.Clone()
	if !bitsEqual(m.Params(), c.Params()) {
		t.Fatal("clone differs")
	}
	p := c.Params()
	p[0] += 1
	if err := c.SetParams(p); err != nil {
		t.Fatal(err)
	}
	if m.Params()[0] == p[0] {
		t.Error("changing the clone changed the original")
	}
}

func TestBadInput(t *testing.T) {
	spec := gradSpecs[1]
	m := mustNew(t, spec, 1)
	x, y := randomBatch(newRand(2), 4, spec.Inputs, spec.Classes)
	grad := make(fl.Vector, m.NumParams())
	cases := []struct {
		name string
		x    []float64
		y    []int
		grad fl.Vector
		want error
	}{
		{"label = classes", x, []int{0, 1, spec.Classes, 0}, grad, ErrLabel},
		{"negative label", x, []int{0, -1, 2, 0}, grad, ErrLabel},
		{"short x", x[:len(x)-1], y, grad, ErrInput},
		{"x for more rows", x, y[:3], grad, ErrInput},
		{"empty batch", nil, nil, grad, ErrInput},
		{"short grad", x, y, grad[:5], ErrInput},
		{"nil grad", x, y, nil, ErrInput},
	}
	for _, c := range cases {
		if _, err := m.Gradient(c.x, c.y, c.grad); !errors.Is(err, c.want) {
			t.Errorf("Gradient, %s: %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := m.Predict(x[:len(x)-1]); !errors.Is(err, ErrInput) {
		t.Errorf("Predict(short x) = %v, want ErrInput", err)
	}

	sets := []struct {
		name string
		set  *dataset.Set
		want error
	}{
		{"nil", nil, ErrInput},
		{"empty", &dataset.Set{Name: "empty", Features: spec.Inputs, Classes: spec.Classes}, ErrInput},
		{"wrong features", &dataset.Set{Name: "w", X: x, Y: y[:2], Features: 2 * spec.Inputs, Classes: spec.Classes}, ErrInput},
		{"ragged", &dataset.Set{Name: "r", X: x[:len(x)-1], Y: y, Features: spec.Inputs, Classes: spec.Classes}, ErrInput},
		{"bad label", &dataset.Set{Name: "b", X: x, Y: []int{0, 1, 9, 0}, Features: spec.Inputs, Classes: 10}, ErrLabel},
	}
	for _, c := range sets {
		if _, err := m.Evaluate(c.set); !errors.Is(err, c.want) {
			t.Errorf("Evaluate, %s: %v, want %v", c.name, err, c.want)
		}
		if _, err := DefaultSGD().Train(m, c.set, 1, nil, newRand(1)); !errors.Is(err, c.want) {
			t.Errorf("Train, %s: %v, want %v", c.name, err, c.want)
		}
	}
}

func TestStableLogSoftmax(t *testing.T) {
	// Logits near ±1e6 overflow a naive exp; the loss must stay finite and
	// the gradient well defined.
	spec := Spec{Kind: Softmax, Inputs: 2, Classes: 3}
	m := mustNew(t, spec, 1)
	p := fl.Vector{1e6, 0, -1e6, 0, 0, 1e6, 0, 0, 0} // W (3×2), b (3)
	if err := m.SetParams(p); err != nil {
		t.Fatal(err)
	}
	x := []float64{1, 0, 0, 1, 1, 1}
	y := []int{0, 1, 2}
	grad := make(fl.Vector, m.NumParams())
	loss, err := m.Gradient(x, y, grad)
	if err != nil {
		t.Fatal(err)
	}
	// Example 0: logits (1e6, 0, 0) → loss ≈ 0. Example 1: (0, 0, 1e6),
	// label 1 → 1e6. Example 2: (1e6, -1e6, 1e6), label 2 → log 2.
	want := (0 + 1e6 + math.Ln2) / 3
	if math.Abs(loss-want) > 1e-6*want || !grad.Finite() {
		t.Errorf("loss %v, want %v; gradient finite: %v", loss, want, grad.Finite())
	}
	set := &dataset.Set{Name: "s", X: x, Y: y, Features: 2, Classes: 3}
	met, err := m.Evaluate(set)
	if err != nil || math.Abs(met.Loss-want) > 1e-6*want {
		t.Errorf("Evaluate = %+v, %v; want loss %v", met, err, want)
	}
}

func TestSGDValidate(t *testing.T) {
	if err := DefaultSGD().Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []SGD{
		{LR: 0, Batch: 1},
		{LR: -0.1, Batch: 1},
		{LR: math.NaN(), Batch: 1},
		{LR: math.Inf(1), Batch: 1},
		{LR: 0.1, Batch: 0},
		{LR: 0.1, Batch: 1, Momentum: 1},
		{LR: 0.1, Batch: 1, Momentum: -0.5},
		{LR: 0.1, Batch: 1, WeightDecay: -1},
		{LR: 0.1, Batch: 1, WeightDecay: math.NaN()},
		{LR: 0.1, Batch: 1, ProxMu: -1},
		{LR: 0.1, Batch: 1, ProxMu: math.Inf(1)},
	}
	set := blobs(newRand(1), 20, 5, 3)
	for _, o := range bad {
		if err := o.Validate(); !errors.Is(err, ErrHyperparameter) {
			t.Errorf("%+v: Validate = %v, want ErrHyperparameter", o, err)
		}
		m := mustNew(t, gradSpecs[0], 1)
		if _, err := o.Train(m, set, 1, nil, newRand(1)); !errors.Is(err, ErrHyperparameter) {
			t.Errorf("%+v: Train = %v, want ErrHyperparameter", o, err)
		}
	}
}

func TestTrainErrors(t *testing.T) {
	spec := gradSpecs[1]
	set := blobs(newRand(1), 20, spec.Inputs, spec.Classes)
	m := mustNew(t, spec, 1)
	before := m.Params()
	o := DefaultSGD()
	prox := o
	prox.ProxMu = 0.1
	nanAnchor := before.Clone()
	nanAnchor[0] = math.NaN()
	cases := []struct {
		name string
		err  func() error
		want error
	}{
		{"zero epochs", func() error { _, err := o.Train(m, set, 0, nil, newRand(1)); return err }, ErrHyperparameter},
		{"prox without anchor", func() error { _, err := prox.Train(m, set, 1, nil, newRand(1)); return err }, ErrHyperparameter},
		{"short anchor", func() error { _, err := prox.Train(m, set, 1, before[:2], newRand(1)); return err }, ErrParams},
		{"NaN anchor", func() error { _, err := prox.Train(m, set, 1, nanAnchor, newRand(1)); return err }, ErrParams},
		{"nil model", func() error { _, err := o.Train(nil, set, 1, nil, newRand(1)); return err }, ErrInput},
		{"nil rng", func() error { _, err := o.Train(m, set, 1, nil, nil); return err }, nil},
		{"diverges", func() error {
			_, err := SGD{LR: 1e300, Batch: 4}.Train(m, set, 3, nil, newRand(1))
			return err
		}, ErrDiverged},
	}
	for _, c := range cases {
		err := c.err()
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) {
			t.Errorf("%s: %v, want %v", c.name, err, c.want)
		}
		if !bitsEqual(m.Params(), before) {
			t.Errorf("%s: failed Train changed the model", c.name)
		}
	}
}

func TestTrainSeparable(t *testing.T) {
	specs := []Spec{
		{Kind: Softmax, Inputs: 20, Classes: 4},
		{Kind: MLP, Inputs: 20, Classes: 4, Hidden: []int{16}},
		{Kind: MLP, Inputs: 20, Classes: 4, Hidden: []int{16, 8}},
	}
	train := blobs(newRand(3), 600, 20, 4)
	test := blobs(newRand(3), 800, 20, 4)
	test = test.Subset(seq(600, 800)) // same centres, unseen examples
	for _, spec := range specs {
		m := mustNew(t, spec, 5)
		before, err := m.Evaluate(test)
		if err != nil {
			t.Fatal(err)
		}
		loss, err := DefaultSGD().Train(m, train, 5, nil, newRand(6))
		if err != nil {
			t.Fatal(err)
		}
		after, err := m.Evaluate(test)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: train loss %.4f, test %+v (before %+v)", spec, loss, after, before)
		if after.Accuracy < 0.97 || after.Loss >= before.Loss || after.Examples != 200 {
			t.Errorf("%s: after training %+v, before %+v", spec, after, before)
		}
		pred, err := m.Predict(test.X)
		if err != nil {
			t.Fatal(err)
		}
		correct := 0
		for i, p := range pred {
			if p == test.Y[i] {
				correct++
			}
		}
		if acc := float64(correct) / float64(len(pred)); acc != after.Accuracy {
			t.Errorf("Predict accuracy %v, Evaluate %v", acc, after.Accuracy)
		}
	}
}

func seq(from, to int) []int {
	out := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func TestFedProxPullsTowardsAnchor(t *testing.T) {
	spec := Spec{Kind: MLP, Inputs: 20, Classes: 4, Hidden: []int{16}}
	set := blobs(newRand(3), 300, 20, 4)
	anchor := mustNew(t, spec, 5).Params()
	dist := func(mu float64) float64 {
		m, err := NewFromParams(spec, anchor)
		if err != nil {
			t.Fatal(err)
		}
		o := DefaultSGD()
		o.ProxMu = mu
		if _, err := o.Train(m, set, 3, anchor, newRand(6)); err != nil {
			t.Fatal(err)
		}
		d := m.Params()
		if err := d.Add(-1, anchor); err != nil {
			t.Fatal(err)
		}
		return d.Norm()
	}
	free, prox := dist(0), dist(1)
	t.Logf("‖w − w_g‖: μ=0 %.4f, μ=1 %.4f", free, prox)
	if prox >= free/2 {
		t.Errorf("FedProx μ=1 moved %.4f from the anchor, plain SGD %.4f", prox, free)
	}
}

func TestTrainDeterministic(t *testing.T) {
	// Large enough that gonum's Dgemm runs blocks concurrently.
	spec := Spec{Kind: MLP, Inputs: 200, Classes: 10, Hidden: []int{256, 64}}
	set := blobs(newRand(1), 500, 200, 10)
	o := SGD{LR: 0.02, Momentum: 0.9, WeightDecay: 1e-4, ProxMu: 0.01, Batch: 64}
	run := func() (fl.Vector, float64) {
		m := mustNew(t, spec, 2)
		anchor := m.Params()
		loss, err := o.Train(m, set, 2, anchor, newRand(3))
		if err != nil {
			t.Fatal(err)
		}
		return m.Params(), loss
	}
	p1, l1 := run()
	p2, l2 := run()
	prev := runtime.GOMAXPROCS(1)
	p3, l3 := run()
	runtime.GOMAXPROCS(prev)
	if !bitsEqual(p1, p2) || math.Float64bits(l1) != math.Float64bits(l2) {
		t.Error("two runs with the same seed differ")
	}
	if !bitsEqual(p1, p3) || math.Float64bits(l1) != math.Float64bits(l3) {
		t.Errorf("GOMAXPROCS=1 and GOMAXPROCS=%d differ", prev)
	}
	m := mustNew(t, spec, 2)
	if _, err := o.Train(m, set, 2, m.Params(), newRand(4)); err != nil {
		t.Fatal(err)
	}
	if bitsEqual(p1, m.Params()) {
		t.Error("a different shuffling seed gave the same parameters")
	}
}

func bitsEqual(a, b fl.Vector) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return false
		}
	}
	return true
}
