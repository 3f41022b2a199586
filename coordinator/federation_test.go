package coordinator_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/strategy"
)

// The daemon tests run a federation of in-process daemons on fedtest's
// in-memory network, inside testing/synctest's bubble: deadlines, join
// windows, re-attestation periods and the waits below run on the bubble's
// fake clock, so no test sleeps or depends on the machine's load.

// fed is a fedtest federation with the coordinator tests' own helpers.
type fed struct{ *fedtest.Fed }

func TestFederationPlain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 3, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
		f.StartCoordinator()
		f.StartNodes(3)
		f.WaitDone(3, 2*time.Minute)
		f.checkNotLimited()
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.History {
			t.Logf("round %d %s leader %s included %v phases %v up %d down %d accuracy %v", r.Round, r.Outcome, r.Leader, r.Included, r.Phases, r.BytesUp, r.BytesDown, deref(r.Accuracy))
		}
		last := h.History[len(h.History)-1]
		if last.Accuracy == nil || *last.Accuracy < 0.9 {
			t.Errorf("final accuracy %v, want ≥ 0.9 on separable blobs", last.Accuracy)
		}
		f.StopCoordinator()
		// Every committed record of the coordinator's log carries its
		// leader's cosignature (VerifyAudit requires it, as audit verify does).
		cosigned := 0
		for _, r := range f.VerifyAudit(3, 4) {
			if r.Summary.State.Actor != "coordinator" {
				continue
			}
			for rd, c := range r.Summary.State.Commits {
				t.Logf("round %d committed by leader %s, cosigned by %s", rd, c.Leader, c.Cosigner)
				if c.Cosigner != "" && c.Cosigner == c.Leader {
					cosigned++
				}
			}
		}
		if cosigned != 3 {
			t.Errorf("%d commits cosigned by their leader in the coordinator's log, want 3", cosigned)
		}
	})
}

func deref(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

func TestFederationMHE(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		preset := "Agg128"
		if testing.Short() {
			preset = "InsecureTest"
		}
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModeMHE, Preset: preset, DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 2, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
		f.StartCoordinator()
		f.StartNodes(3)
		f.WaitDone(2, 3*time.Minute)
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.History {
			t.Logf("round %d %s leader %s included %v phases %v up %d down %d accuracy %v", r.Round, r.Outcome, r.Leader, r.Included, r.Phases, r.BytesUp, r.BytesDown, deref(r.Accuracy))
		}
		if a := h.History[len(h.History)-1].Accuracy; a == nil || *a < 0.9 {
			t.Errorf("final accuracy %v, want ≥ 0.9", a)
		}
		f.checkLimits()
		f.StopCoordinator()
		f.VerifyAudit(2, 4)
	})
}

// checkLimits checks that the coordinator's message limit is the one the
// manifest implies, that every message of the session fitted it (so the
// bounds hold for the real engine), and logs how close they came.
func (f fed) checkLimits() {
	f.T.Helper()
	s, err := federation.MessageSizes(f.Kits["coordinator"].Manifest, nil)
	if err != nil {
		f.T.Fatal(err)
	}
	limit := f.Metric("cloister_coordinator_max_message_bytes")
	in := f.Metric(`cloister_coordinator_largest_message_bytes{direction="in"}`)
	out := f.Metric(`cloister_coordinator_largest_message_bytes{direction="out"}`)
	f.T.Logf("message limit %v B (largest bound %d B, %s); largest message in %v B, out %v B", limit, s.Need, s.Largest, in, out)
	if limit != float64(s.MaxMessage) {
		f.T.Errorf("the coordinator's limit is %v, the manifest implies %d", limit, s.MaxMessage)
	}
	if in == 0 || out == 0 || in > float64(s.Need) || out > float64(s.Need) {
		f.T.Errorf("largest messages in %v and out %v B: want positive and within the computed need %d", in, out, s.Need)
	}
}

// TestFederationFedAdam runs the networked runtime with the server optimizer
// FedAdam from the manifest: every round's leader (they rotate) restores
// the optimizer state sealed with the previous model, applies FedAdam and
// seals the new state, and the last model's state has counted every round.
func TestFederationFedAdam(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		preset := "Agg128"
		if testing.Short() {
			preset = "InsecureTest"
		}
		const rounds = 3
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModeMHE, Preset: preset, DP: &federation.DP{},
			Model:    federation.ModelSpec{Kind: "softmax"},
			Training: federation.Training{Rounds: rounds, LocalEpochs: 1, Batch: 16, LearningRate: 0.1, Strategy: "fedadam:lr=0.05"}})}
		man := f.Kits["coordinator"].Manifest
		if want := "fedadam:lr=0.05,b1=0.9,b2=0.99,tau=0.001"; man.Training.Strategy != want {
			t.Fatalf("manifest strategy %q, want %q", man.Training.Strategy, want)
		}
		f.StartCoordinator()
		f.StartNodes(3)
		f.WaitDone(rounds, 3*time.Minute)
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		leaders := map[fl.NodeID]bool{}
		for _, r := range h.History {
			t.Logf("round %d %s leader %s accuracy %v", r.Round, r.Outcome, r.Leader, deref(r.Accuracy))
			leaders[r.Leader] = true
		}
		if len(leaders) < 2 {
			t.Errorf("leaders %v: want the state to cross between leaders", leaders)
		}
		if a := h.History[len(h.History)-1].Accuracy; a == nil || *a < 0.9 {
			t.Errorf("final accuracy %v, want ≥ 0.9", a)
		}
		f.checkLimits()
		f.StopCoordinator()
		// The last model's optimizer state, opened with a node's group key: the
		// manifest's FedAdam, which has applied every round, with moments of the
		// model's length.
		sealed, model := f.lastModel("node-2")
		opt, err := man.Training.Optimizer()
		if err != nil {
			t.Fatal(err)
		}
		if err := opt.UnmarshalBinary(sealed.state); err != nil {
			t.Fatalf("the sealed optimizer state does not restore the manifest's FedAdam: %v", err)
		}
		adam := opt.(*strategy.Adaptive)
		m, v := adam.Moments()
		if adam.Rounds() != rounds || len(m) != len(model) || len(v) != len(model) {
			t.Errorf("FedAdam state: %d rounds, moments of %d and %d values, want %d rounds and %d values",
				adam.Rounds(), len(m), len(v), rounds, len(model))
		}
		f.VerifyAudit(rounds, 4)
	})
}

// sealedModel is a node's newest model and the optimizer state sealed with it.
type sealedModel struct {
	round fl.Round
	state []byte
}

// lastModel opens the newest model in a node's state directory, as
// `cloister model export` does.
func (f fed) lastModel(name string) (sealedModel, fl.Vector) {
	f.T.Helper()
	ex := f.Export(name)
	return sealedModel{round: ex.Round, state: ex.OptimizerState}, ex.Model
}

// TestFederationScaffold runs SCAFFOLD in the networked runtime: the global
// vector joins the model and the server control, every node uploads
// Join(Δy, Δc) through the same protection (one vector, twice the model's
// length), the leader applies SCAFFOLD's server step, and each node keeps
// its control variate sealed in its state directory.
func TestFederationScaffold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rounds = 3
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModeMHE, Preset: "InsecureTest", DP: &federation.DP{},
			Model:    federation.ModelSpec{Kind: "softmax"},
			Training: federation.Training{Rounds: rounds, LocalEpochs: 1, Batch: 16, LearningRate: 0.1, Strategy: "scaffold"}})}
		man := f.Kits["coordinator"].Manifest
		if man.Training.Strategy != "scaffold:lr=1,frac=1" {
			t.Fatalf("manifest strategy %q", man.Training.Strategy)
		}
		f.StartCoordinator()
		f.StartNodes(3)
		f.WaitDone(rounds, 3*time.Minute)
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.History {
			t.Logf("round %d %s leader %s included %v up %d accuracy %v", r.Round, r.Outcome, r.Leader, r.Included, r.BytesUp, deref(r.Accuracy))
		}
		if a := h.History[len(h.History)-1].Accuracy; a == nil || *a < 0.9 {
			t.Errorf("final accuracy %v, want ≥ 0.9", a)
		}
		f.checkLimits()
		f.StopCoordinator()
		d := man.Model.Spec().NumParams()
		if got := federation.VectorLen(man); got != 2*d {
			t.Errorf("VectorLen %d, want 2×%d", got, d)
		}
		_, model := f.lastModel("node-1")
		if len(model) != d {
			t.Errorf("exported model of %d values, want the %d parameters without the control", len(model), d)
		}
		for _, name := range fedtest.NodeNames(3) {
			fi, err := os.Stat(filepath.Join(f.Dir, name+"-state", node.ControlFile))
			if err != nil {
				t.Errorf("%s keeps no control variate: %v", name, err)
			} else if fi.Size() < int64(8*d) || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: control file of %d bytes, mode %v, want ≥ %d and 0600", name, fi.Size(), fi.Mode().Perm(), 8*d)
			}
		}
		f.VerifyAudit(rounds, 4)
	})
}
