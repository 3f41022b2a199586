package node

import (
	"context"
	"errors"
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/attack"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
)

// attackManifest is a manifest without DP (so that updates are not
// clipped or noised) that allows attacks, with models of 16 inputs (a 4×4
// image, for the backdoor's trigger) and 2 classes.
func attackManifest(allow bool) *federation.Manifest {
	return &federation.Manifest{Members: []federation.Principal{{Name: "node-1"}, {Name: "node-2"}, {Name: "node-3"}, {Name: "node-4"}, {Name: "node-5"}},
		MinCohort: 3, InsecureAttacks: allow,
		Model:    federation.ModelSpec{Kind: "softmax", Inputs: 16, Classes: 2},
		Training: federation.Training{Rounds: 3, LocalEpochs: 1, Batch: 8, LearningRate: 0.1}}
}

func imageSet(n int) *dataset.Set {
	s := &dataset.Set{Name: "images", Features: 16, Classes: 2}
	rng := mrand.New(mrand.NewPCG(3, 4))
	for i := range n {
		for range 16 {
			s.X = append(s.X, rng.Float64()*0.5+float64(i%2)*0.5)
		}
		s.Y = append(s.Y, i%2)
	}
	return s
}

// trained returns node-1's update for round 1 from the zero model, with the
// attack spec ("" for none) under manifest m.
func trained(t *testing.T, m *federation.Manifest, spec string) (fl.Vector, *trainer) {
	t.Helper()
	data := imageSet(64)
	tr, err := newTrainer(m, "node-1", data, data, testLimits, 1)
	if err != nil {
		t.Fatal(err)
	}
	if spec != "" {
		if tr.byz, err = newByzantine(m, tr, spec, 0); err != nil {
			t.Fatal(err)
		}
	}
	res, err := tr.trainTask(context.Background(), 1, make(fl.Vector, 34))
	if err != nil {
		t.Fatal(err)
	}
	if (res.Attack != "") != (spec != "") {
		t.Errorf("attack %q reported as %q", spec, res.Attack)
	}
	return res.Update.Delta, tr
}

func TestAttackRefused(t *testing.T) {
	data := imageSet(16)
	tr, err := newTrainer(attackManifest(false), "node-1", data, data, testLimits, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newByzantine(attackManifest(false), tr, "sign-flip", 0); !errors.Is(err, ErrAttackNotAllowed) {
		t.Errorf("an attack under a manifest without insecure_attacks: got %v, want ErrAttackNotAllowed", err)
	}
	for spec, want := range map[string]error{"sybil": attack.ErrSpec, "sign-flip:scale=-1": attack.ErrSpec} {
		if _, err := newByzantine(attackManifest(true), tr, spec, 0); !errors.Is(err, want) {
			t.Errorf("attack %q: got %v, want %v", spec, err, want)
		}
	}
	if _, err := newByzantine(attackManifest(true), tr, "alie", 6); err == nil {
		t.Error("6 colluders of 5 members accepted")
	}
	odd := &dataset.Set{Name: "odd", Features: 6, Classes: 2, X: make([]float64, 12), Y: []int{0, 1}}
	m := attackManifest(true)
	m.Model.Inputs = 6
	tr6, err := newTrainer(m, "node-1", odd, odd, testLimits, 1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := newByzantine(m, tr6, "backdoor", 0); !errors.Is(err, attack.ErrData) {
		t.Errorf("a backdoor on 6 features (no square image): got %v, want ErrData", err)
	}
}

// TestAttackForges checks what each attack does to the node's update
// against the honest update of the same round, seed and data.
func TestAttackForges(t *testing.T) {
	m := attackManifest(true)
	honest, _ := trained(t, m, "")
	dot := func(a, b fl.Vector) float64 {
		var s float64
		for i := range a {
			s += a[i] * b[i]
		}
		return s
	}
	near := func(a, b fl.Vector, scale float64) bool {
		for i := range a {
			if math.Abs(a[i]-scale*b[i]) > 1e-9*(1+math.Abs(b[i])) {
				return false
			}
		}
		return true
	}
	if got, _ := trained(t, m, "sign-flip"); !near(got, honest, -4) {
		t.Errorf("sign-flip: %v, want −4 × the honest %v", got[:3], honest[:3])
	}
	if got, _ := trained(t, m, "scale:factor=3"); !near(got, honest, 3) {
		t.Errorf("scale:factor=3: %v, want 3 × the honest %v", got[:3], honest[:3])
	}
	if got, _ := trained(t, m, "gaussian"); math.Abs(got.Norm()-honest.Norm()) > 1e-9*honest.Norm() || near(got, honest, 1) {
		t.Errorf("gaussian: norm %v, want a random direction with the honest norm %v", got.Norm(), honest.Norm())
	}
	if got, _ := trained(t, m, "ipm"); dot(got, honest) >= 0 {
		t.Errorf("ipm: %v points along the honest update %v", got[:3], honest[:3])
	}
	// ALIE with 2 colluders of 5 (z = Φ⁻¹(0.6)) moves the update from the
	// mean of the shards' updates by z standard deviations.
	data := imageSet(64)
	tr, err := newTrainer(m, "node-1", data, data, testLimits, 1)
	if err != nil {
		t.Fatal(err)
	}
	if tr.byz, err = newByzantine(m, tr, "alie", 2); err != nil {
		t.Fatal(err)
	}
	res, err := tr.trainTask(context.Background(), 1, make(fl.Vector, 34))
	if err != nil {
		t.Fatal(err)
	}
	if near(res.Update.Delta, honest, 1) || !res.Update.Delta.Finite() {
		t.Errorf("alie: the update is the honest one")
	}
	// Label flip and backdoor poison the data: the backdoor's trigger
	// pixel (bottom-right corner, value 1) is set on a share of it, and the
	// update is the boosted one.
	_, bd := trained(t, m, "backdoor:target=0,size=1,boost=5")
	stamped := 0
	for i := range bd.local.(*builtin).trainSet.Len() {
		if bd.local.(*builtin).trainSet.Row(i)[15] == 1 && bd.local.(*builtin).trainSet.Y[i] == 0 {
			stamped++
		}
	}
	if stamped == 0 {
		t.Error("backdoor: no training example carries the trigger")
	}
	_, lf := trained(t, m, "label-flip")
	flipped := 0
	for i, y := range lf.local.(*builtin).trainSet.Y {
		if y != i%2 {
			flipped++
		}
	}
	if flipped != lf.local.(*builtin).trainSet.Len() {
		t.Errorf("label-flip: %d of %d labels flipped, want all (2 classes)", flipped, lf.local.(*builtin).trainSet.Len())
	}
}
