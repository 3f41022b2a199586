package node

import (
	"context"
	"errors"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/round"
)

var dpManifest = &federation.Manifest{Members: []federation.Principal{{Name: "node-1"}, {Name: "node-2"}, {Name: "node-3"}}, MinCohort: 2,
	DP:    federation.DP{NoiseMultiplier: 1, Clip: 1, Epsilon: 8, Delta: 1e-5},
	Model: federation.ModelSpec{Kind: "softmax", Inputs: 4, Classes: 2}, Training: federation.Training{Rounds: 3, LocalEpochs: 1, Batch: 8, LearningRate: 0.1}}

var testLimits = protect.Capacity{MaxDim: 1 << 24, MaxAbs: 1 << 53, MaxParties: 100}

// testBudget is the node's budget for the manifest m under testLimits,
// with the local limit local, as node.New resolves it.
func testBudget(m *federation.Manifest, local float64, log *slog.Logger) (*budget, error) {
	fb, err := federation.NewBudget(m, round.Config{}, testLimits, local)
	if err != nil {
		return nil, err
	}
	return newBudget(fb, log)
}

// --max-epsilon refuses the first round whose ε passes it, with the
// figures; commits are recorded once each, adding up.
func TestNodeBudget(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	b, err := testBudget(dpManifest, 6, log)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), "max_epsilon=6 epsilon_budget=8") || !strings.Contains(logs.String(), "rounds_local=1 rounds_budget=2") {
		t.Errorf("no warning with both limits at start: %s", logs.String())
	}
	e1, _ := b.Rule.After(1)
	e2, _ := b.Rule.After(2)
	if err := b.policy()(1); err != nil {
		t.Errorf("round 1 (ε %v) refused under 6: %v", e1.Epsilon, err)
	}
	err = b.policy()(2)
	if !errors.Is(err, ErrLocalLimit) || !strings.Contains(err.Error(), "round 2 would take the federation's ε from 4.74964 to 7.11027") ||
		!strings.Contains(err.Error(), "max epsilon 6") {
		t.Errorf("round 2 (ε %v): %v", e2.Epsilon, err)
	}
	if !strings.Contains(logs.String(), "refusing to train") {
		t.Error("the refusal is not logged")
	}
	var sum int64
	for r := fl.Round(1); r <= 2; r++ {
		got := b.spend(r)
		if len(got) != 1 {
			t.Fatalf("round %d: %v", r, got)
		}
		d := got[0].data
		sum += d.MicroEpsilon
		c, _ := b.Rule.After(int(r))
		want, _ := c.Micro()
		if d.Round != r || d.TotalMicroEpsilon != want || d.TotalMicroEpsilon != sum || d.Delta != 1e-5 {
			t.Errorf("round %d: %+v, want total %d", r, d, want)
		}
	}
	if again := b.spend(2); len(again) != 0 {
		t.Errorf("a commit heard twice is charged twice: %v", again)
	}

	// Without a local limit the manifest's budget still holds: a
	// coordinator that starts round 3 (past ε 8, its own cap) is refused.
	// Without DP a limit is refused.
	fed, err := testBudget(dpManifest, 0, log)
	if err != nil {
		t.Fatal(err)
	}
	if err := fed.policy()(2); err != nil {
		t.Errorf("no local limit, round 2 (ε %v ≤ 8): %v", e2.Epsilon, err)
	}
	if err := fed.policy()(3); !errors.Is(err, ErrBudget) || !strings.Contains(err.Error(), "covers rounds up to 2") {
		t.Errorf("no local limit, round 3 past the budget: %v, want ErrBudget", err)
	}
	if err := b.policy()(3); !errors.Is(err, ErrBudget) {
		t.Errorf("local limit, round 3 past the budget: %v, want ErrBudget", err)
	}
	off := *dpManifest
	off.DP = federation.DP{}
	if b, err := testBudget(&off, 0, log); b != nil || err != nil {
		t.Errorf("no DP, no limit: %v, %v", b, err)
	}
	if _, err := testBudget(&off, 3, log); err == nil || !strings.Contains(err.Error(), "no differential privacy") {
		t.Errorf("a limit without DP: %v", err)
	}
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1)} {
		if _, err := testBudget(dpManifest, bad, log); err == nil {
			t.Errorf("max epsilon %v accepted", bad)
		}
	}
}

// With the same seeded noise source two trainers produce the same noised
// update (what --insecure-dp-seed relies on); with crypto/rand they do not.
func TestTrainerNoiseSource(t *testing.T) {
	data := &dataset.Set{Name: "tiny", Features: 4, Classes: 2}
	rng := mrand.New(mrand.NewPCG(1, 2))
	for i := range 32 {
		for range 4 {
			data.X = append(data.X, rng.NormFloat64()+float64(i%2))
		}
		data.Y = append(data.Y, i%2)
	}
	update := func(noise func() *mrand.ChaCha8) fl.Vector {
		tr, err := newTrainer(dpManifest, "node-1", data, data, testLimits, 1)
		if err != nil {
			t.Fatal(err)
		}
		if noise != nil {
			tr.noise = noise()
		}
		res, err := tr.trainTask(context.Background(), 1, make(fl.Vector, 10))
		if err != nil {
			t.Fatal(err)
		}
		return res.Update.Delta
	}
	seeded := func() *mrand.ChaCha8 { return mrand.NewChaCha8([32]byte{7}) }
	a, b := update(seeded), update(seeded)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different updates: %v, %v", a, b)
	}
	if c, d := update(nil), update(nil); slices.Equal(c, d) || slices.Equal(a, c) {
		t.Errorf("crypto/rand noise repeats: %v, %v", c, d)
	}
}
