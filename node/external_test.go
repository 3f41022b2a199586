package node

import (
	"context"
	"errors"
	"log/slog"
	"math"
	mrand "math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	trainerapi "github.com/cloisterfl/cloister/trainer"
)

// fakeTrainer is an in-process external trainer: it returns delta and
// records the tasks it got.
type fakeTrainer struct {
	delta fl.Vector
	tasks []trainerapi.TrainTask
}

func (f *fakeTrainer) Init(context.Context, uint64) (fl.Vector, error) {
	return make(fl.Vector, len(f.delta)), nil
}

func (f *fakeTrainer) Train(_ context.Context, t trainerapi.TrainTask) (trainerapi.Result, error) {
	f.tasks = append(f.tasks, t)
	return trainerapi.Result{Delta: f.delta.Clone(), Examples: 2048, Metrics: map[string]float64{"loss": 0.5}, Compute: time.Second}, nil
}

func (f *fakeTrainer) Evaluate(context.Context, trainerapi.EvalTask) (trainerapi.Evaluation, error) {
	return trainerapi.Evaluation{Metrics: fl.Metrics{Accuracy: 0.9, Loss: 0.3, Examples: 10}}, nil
}

func externalManifest(dp federation.DP) *federation.Manifest {
	return &federation.Manifest{Members: []federation.Principal{{Name: "node-1"}, {Name: "node-2"}, {Name: "node-3"}}, MinCohort: 2, DP: dp,
		Model:    federation.ModelSpec{Kind: federation.ModelExternal, Params: 4, Layout: strings.Repeat("ab", 32)},
		Training: federation.Training{Rounds: 3, LocalEpochs: 2, Batch: 8, LearningRate: 0.1, Momentum: 0.9, ProxMu: 0.01, Strategy: "fedyogi:lr=0.01,b1=0.9,b2=0.99,tau=0.001"}}
}

var discard = slog.New(slog.DiscardHandler)

// The node applies its policy to an external trainer's update, as to the
// built-in models': clipping and the noise share with DP (weight 1), the
// example weight without; the trainer gets the manifest's schedule,
// FedProx's μ among it, and a seed per round.
func TestExternalPolicy(t *testing.T) {
	ctx := context.Background()
	fake := &fakeTrainer{delta: fl.Vector{3, 4, 0, 0}} // norm 5
	tr, err := newExternal(externalManifest(federation.DP{Clip: 1}), "node-1", fake, nil, nil, time.Minute, testLimits, 7, discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.local.prepare(ctx); err != nil {
		t.Fatal(err)
	}
	if v := tr.initial(); len(v) != 4 {
		t.Fatalf("initial weights %v", v)
	}
	res, err := tr.trainTask(ctx, 1, make(fl.Vector, 4))
	if err != nil {
		t.Fatal(err)
	}
	if d := res.Update.Delta; math.Abs(d[0]-0.6) > 1e-12 || math.Abs(d[1]-0.8) > 1e-12 || res.Update.Weight != 1 || res.Clip != 0.2 {
		t.Errorf("clipped update %v, weight %v, clip %v: want Δ/5, weight 1", d, res.Update.Weight, res.Clip)
	}
	if res.Compute != 1 || res.Loss != 0.5 || res.Examples != 2048 {
		t.Errorf("compute %v, loss %v, examples %d", res.Compute, res.Loss, res.Examples)
	}
	if _, err := tr.trainTask(ctx, 2, make(fl.Vector, 4)); err != nil {
		t.Fatal(err)
	}
	c := fake.tasks[0].Config
	if c.Epochs != 2 || c.Batch != 8 || c.LearningRate != 0.1 || c.Momentum != 0.9 || c.ProxMu != 0.01 || c.Rounds != 3 || !strings.HasPrefix(c.Strategy, "fedyogi") {
		t.Errorf("the trainer's schedule %+v is not the manifest's", c)
	}
	if fake.tasks[0].Seed == fake.tasks[1].Seed {
		t.Error("two rounds with one seed")
	}

	// DP: clipped and noised, weight 1.
	dp := federation.DP{NoiseMultiplier: 1, Clip: 1, Epsilon: 8, Delta: 1e-5}
	tr, err = newExternal(externalManifest(dp), "node-1", fake, nil, nil, time.Minute, testLimits, 7, discard)
	if err != nil {
		t.Fatal(err)
	}
	tr.noise = mrand.NewChaCha8([32]byte{1})
	res, err = tr.trainTask(ctx, 1, make(fl.Vector, 4))
	if err != nil {
		t.Fatal(err)
	}
	if res.Update.Weight != 1 || res.Update.Delta[2] == 0 || res.Clip != 0.2 {
		t.Errorf("with DP: weight %v, Δ %v, clip %v: want weight 1 and noise in every coordinate", res.Update.Weight, res.Update.Delta, res.Clip)
	}

	// No DP: the example weight.
	tr, err = newExternal(externalManifest(federation.DP{}), "node-1", fake, nil, nil, time.Minute, testLimits, 7, discard)
	if err != nil {
		t.Fatal(err)
	}
	if res, err = tr.trainTask(ctx, 1, make(fl.Vector, 4)); err != nil || res.Update.Weight != 2 {
		t.Errorf("without DP: weight %v (%v), want 2048/1024", res.Update.Weight, err)
	}
	ev, err := tr.evaluate(ctx, 1, make(fl.Vector, 4))
	if err != nil || ev.Accuracy != 0.9 {
		t.Errorf("evaluate: %+v, %v", ev, err)
	}
}

func TestExternalRefuses(t *testing.T) {
	fake := &fakeTrainer{delta: make(fl.Vector, 4)}
	if _, err := newExternal(dpManifest, "node-1", fake, nil, nil, 0, testLimits, 1, discard); !errors.Is(err, ErrNotExternal) {
		t.Errorf("a built-in model's manifest: %v, want ErrNotExternal", err)
	}
	m := externalManifest(federation.DP{})
	if _, err := newExternal(m, "node-1", fake, tinySet(2, 2), tinySet(2, 2), 0, testLimits, 1, discard); err == nil {
		t.Error("local data with an external trainer: no error")
	}
	if _, err := newTrainer(m, "node-1", tinySet(2, 2), tinySet(2, 2), testLimits, 1); err == nil || !strings.Contains(err.Error(), "external trainer") {
		t.Errorf("built-in trainer for an external manifest: %v", err)
	}
	fake.delta = make(fl.Vector, 3) // not the manifest's 4 parameters
	tr, err := newExternal(m, "node-1", fake, nil, nil, 0, testLimits, 1, discard)
	if err != nil {
		t.Fatal(err)
	}
	if err := tr.local.prepare(context.Background()); err == nil || !strings.Contains(err.Error(), "3 values (finite: true), the manifest's model has 4") {
		t.Errorf("prepare with initial weights of the wrong size: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (&external{t: fake, timeout: time.Second, log: discard}).prepare(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("prepare after the node stopped: %v", err)
	}
}
