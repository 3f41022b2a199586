package coordinator_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
	"github.com/cloisterfl/cloister/strategy"
)

// blobs makes a small classification set: classes Gaussian blobs around
// distinct centres in `features` dimensions.
func blobs(n, features, classes int, seed uint64) *dataset.Set {
	rng := rand.New(rand.NewPCG(seed, 1))
	s := &dataset.Set{Name: "blobs", Features: features, Classes: classes}
	for i := range n {
		y := i % classes
		for j := range features {
			c := 0.0
			if j%classes == y {
				c = 2
			}
			s.X = append(s.X, c+rng.NormFloat64()*0.5)
		}
		s.Y = append(s.Y, y)
	}
	return s
}

// fed is a federation of in-process daemons over real mTLS on 127.0.0.1.
type fed struct {
	t      *testing.T
	dir    string
	kits   map[string]*pki.Kit
	addr   string
	coord  *coordinator.Coordinator
	nodes  map[fl.NodeID]*runningNode
	logs   *syncBuffer
	logger *slog.Logger
	// onUpdate, if set, sees every node's plaintext update.
	onUpdate func(fl.Update)
	// nodeConfig, if set, adjusts each node's configuration.
	nodeConfig func(name string, c *node.Config)
	// deadlines, if set, adjusts the coordinator's deadlines.
	deadlines func(d *coordinator.Deadlines)
}

type runningNode struct {
	n      *node.Node
	cancel context.CancelFunc
	done   chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newFed provisions a federation. The nodes of these tests train on blobs
// (6 features, 3 classes, see startNode's callers): a model that leaves
// its inputs and classes 0 gets those, and zero momentum becomes 0.5.
func newFed(t *testing.T, opts pki.InitOptions) *fed {
	t.Helper()
	if opts.Model.Inputs == 0 && opts.Model.Classes == 0 {
		opts.Model.Inputs, opts.Model.Classes = 6, 3
	}
	if opts.Training.Momentum == 0 {
		opts.Training.Momentum = 0.5
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	opts.Address = l.Addr().String()
	l.Close()
	if err := pki.InitFederation(filepath.Join(dir, "fed"), opts, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	f := &fed{t: t, dir: dir, kits: map[string]*pki.Kit{}, addr: opts.Address, nodes: map[fl.NodeID]*runningNode{}, logs: new(syncBuffer)}
	f.logger = slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("logs:\n%s", f.logs.String())
		}
	})
	for _, name := range append([]string{"coordinator"}, nodeNames(opts.Nodes)...) {
		k, err := pki.LoadKit(filepath.Join(dir, "fed", name))
		if err != nil {
			t.Fatal(err)
		}
		f.kits[name] = k
	}
	return f
}

func nodeNames(n int) []string {
	var s []string
	for i := 1; i <= n; i++ {
		s = append(s, fmt.Sprintf("node-%d", i))
	}
	return s
}

func (f *fed) startCoordinator() {
	f.t.Helper()
	dl := coordinator.Deadlines{Setup: 20 * time.Second, Collect: 20 * time.Second, Reveal: 10 * time.Second,
		Commit: 10 * time.Second, Eval: 10 * time.Second, Gather: 500 * time.Millisecond}
	if f.deadlines != nil {
		f.deadlines(&dl)
	}
	c, err := coordinator.New(coordinator.Config{
		Kit: f.kits["coordinator"], StateDir: filepath.Join(f.dir, "coordinator-state"), Logger: f.logger.With("who", "coordinator"),
		Tick: 50 * time.Millisecond, Seed: 1, Deadlines: dl,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	var l net.Listener
	for i := 0; ; i++ {
		if l, err = net.Listen("tcp", f.addr); err == nil || i > 50 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		f.t.Fatal(err)
	}
	go c.Serve(l)
	f.coord = c
}

func (f *fed) stopCoordinator() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.coord.Shutdown(ctx); err != nil {
		f.t.Errorf("coordinator shutdown: %v", err)
	}
}

func (f *fed) startNode(name string, train, test *dataset.Set) {
	f.t.Helper()
	key, err := store.NewKey(make([]byte, 32))
	if err != nil {
		f.t.Fatal(err)
	}
	cfg := node.Config{
		Kit: f.kits[name], StateDir: filepath.Join(f.dir, name+"-state"), AtRest: key, Train: train, Test: test,
		Logger: f.logger.With("who", name), Tick: 50 * time.Millisecond, Seed: 7,
		Backoff:  struct{ Min, Max time.Duration }{50 * time.Millisecond, 500 * time.Millisecond},
		OnUpdate: f.onUpdate,
	}
	if f.nodeConfig != nil {
		f.nodeConfig(name, &cfg)
	}
	n, err := node.New(cfg)
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rn := &runningNode{n: n, cancel: cancel, done: make(chan error, 1)}
	go func() { rn.done <- n.Run(ctx, f.addr) }()
	f.nodes[fl.NodeID(name)] = rn
}

func (f *fed) waitNodes(timeout time.Duration) {
	f.t.Helper()
	deadline := time.After(timeout)
	for id, rn := range f.nodes {
		select {
		case err := <-rn.done:
			if err != nil {
				f.t.Fatalf("%s: %v", id, err)
			}
		case <-deadline:
			f.t.Fatalf("%s did not finish in %v; coordinator status %+v", id, timeout, f.coord.Status())
		}
	}
}

func TestFederationPlain(t *testing.T) {
	f := newFed(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{},
		Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 3, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})
	f.startCoordinator()
	test := blobs(90, 6, 3, 99)
	for i, name := range nodeNames(3) {
		f.startNode(name, blobs(120, 6, 3, uint64(i)), test)
	}
	f.waitNodes(2 * time.Minute)
	st := f.coord.Status()
	if st.Phase != round.PhaseDone || st.Commits != 3 {
		t.Fatalf("coordinator status %+v, want done after 3 commits", st)
	}
	h, err := f.coord.History(context.Background())
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
	f.stopCoordinator()
	f.verifyAudit(3)
}

// verifyAudit checks every log of the federation and that each agrees on
// the commits.
func (f *fed) verifyAudit(commits int) {
	f.t.Helper()
	keys := audit.Keys(f.kits["coordinator"].Manifest.AuditKeys())
	res, err := audit.VerifyDir(f.dir, keys)
	if err != nil {
		f.t.Fatalf("audit verify: %v", err)
	}
	for _, r := range res {
		if strings.Contains(r.Path, "coordinator") && r.Summary.Rounds != commits {
			f.t.Errorf("%s: %d rounds committed, want %d", r.Path, r.Summary.Rounds, commits)
		}
	}
	if len(res) != len(f.nodes)+1 {
		f.t.Errorf("%d logs, want %d", len(res), len(f.nodes)+1)
	}
}

func deref(p *float64) float64 {
	if p == nil {
		return -1
	}
	return *p
}

func TestFederationMHE(t *testing.T) {
	preset := "Agg128"
	if testing.Short() {
		preset = "InsecureTest"
	}
	f := newFed(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModeMHE, Preset: preset, DP: &federation.DP{},
		Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 2, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})
	f.startCoordinator()
	test := blobs(90, 6, 3, 99)
	for i, name := range nodeNames(3) {
		f.startNode(name, blobs(120, 6, 3, uint64(i)), test)
	}
	f.waitNodes(3 * time.Minute)
	st := f.coord.Status()
	if st.Phase != round.PhaseDone || st.Commits != 2 {
		t.Fatalf("coordinator status %+v, want done after 2 commits", st)
	}
	h, err := f.coord.History(context.Background())
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
	f.stopCoordinator()
	f.verifyAudit(2)
}

// checkLimits checks that the coordinator's message limit is the one the
// manifest implies, that every message of the session fitted it (so the
// bounds hold for the real engine), and logs how close they came.
func (f *fed) checkLimits() {
	f.t.Helper()
	s, err := federation.MessageSizes(f.kits["coordinator"].Manifest, nil)
	if err != nil {
		f.t.Fatal(err)
	}
	limit := f.metric("cloister_coordinator_max_message_bytes")
	in := f.metric(`cloister_coordinator_largest_message_bytes{direction="in"}`)
	out := f.metric(`cloister_coordinator_largest_message_bytes{direction="out"}`)
	f.t.Logf("message limit %v B (largest bound %d B, %s); largest message in %v B, out %v B", limit, s.Need, s.Largest, in, out)
	if limit != float64(s.MaxMessage) {
		f.t.Errorf("the coordinator's limit is %v, the manifest implies %d", limit, s.MaxMessage)
	}
	if in == 0 || out == 0 || in > float64(s.Need) || out > float64(s.Need) {
		f.t.Errorf("largest messages in %v and out %v B: want positive and within the computed need %d", in, out, s.Need)
	}
}

// TestFederationFedAdam runs the networked runtime with the server optimizer
// FedAdam from the manifest: every round's leader (they rotate) restores
// the optimizer state sealed with the previous model, applies FedAdam and
// seals the new state, and the last model's state has counted every round.
func TestFederationFedAdam(t *testing.T) {
	preset := "Agg128"
	if testing.Short() {
		preset = "InsecureTest"
	}
	const rounds = 3
	f := newFed(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModeMHE, Preset: preset, DP: &federation.DP{},
		Model:    federation.ModelSpec{Kind: "softmax"},
		Training: federation.Training{Rounds: rounds, LocalEpochs: 1, Batch: 16, LearningRate: 0.1, Strategy: "fedadam:lr=0.05"}})
	man := f.kits["coordinator"].Manifest
	if want := "fedadam:lr=0.05,b1=0.9,b2=0.99,tau=0.001"; man.Training.Strategy != want {
		t.Fatalf("manifest strategy %q, want %q", man.Training.Strategy, want)
	}
	f.startCoordinator()
	test := blobs(90, 6, 3, 99)
	for i, name := range nodeNames(3) {
		f.startNode(name, blobs(120, 6, 3, uint64(i)), test)
	}
	f.waitNodes(3 * time.Minute)
	st := f.coord.Status()
	if st.Phase != round.PhaseDone || st.Commits != rounds {
		t.Fatalf("coordinator status %+v, want done after %d commits", st, rounds)
	}
	h, err := f.coord.History(context.Background())
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
	f.stopCoordinator()
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
	f.verifyAudit(rounds)
}

// sealedModel is a node's newest model and the optimizer state sealed with it.
type sealedModel struct {
	round fl.Round
	state []byte
}

// lastModel opens the newest model in a node's state directory, as
// `cloister model export` does.
func (f *fed) lastModel(name string) (sealedModel, fl.Vector) {
	f.t.Helper()
	ex := f.export(name)
	return sealedModel{round: ex.Round, state: ex.OptimizerState}, ex.Model
}

// export runs node.Export on a node's state directory, as `cloister model
// export` does (the node may be running).
func (f *fed) export(name string) *node.Exported {
	f.t.Helper()
	key, err := store.NewKey(make([]byte, 32)) // startNode's at-rest key
	if err != nil {
		f.t.Fatal(err)
	}
	ex, err := node.Export(context.Background(), f.kits[name], "", filepath.Join(f.dir, name+"-state"), key)
	if err != nil {
		f.t.Fatalf("exporting %s's model: %v", name, err)
	}
	return ex
}

// TestFederationScaffold runs SCAFFOLD in the networked runtime: the global
// vector joins the model and the server control, every node uploads
// Join(Δy, Δc) through the same protection (one vector, twice the model's
// length), the leader applies SCAFFOLD's server step, and each node keeps
// its control variate sealed in its state directory.
func TestFederationScaffold(t *testing.T) {
	const rounds = 3
	f := newFed(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModeMHE, Preset: "InsecureTest", DP: &federation.DP{},
		Model:    federation.ModelSpec{Kind: "softmax"},
		Training: federation.Training{Rounds: rounds, LocalEpochs: 1, Batch: 16, LearningRate: 0.1, Strategy: "scaffold"}})
	man := f.kits["coordinator"].Manifest
	if man.Training.Strategy != "scaffold:lr=1,frac=1" {
		t.Fatalf("manifest strategy %q", man.Training.Strategy)
	}
	f.startCoordinator()
	test := blobs(90, 6, 3, 99)
	for i, name := range nodeNames(3) {
		f.startNode(name, blobs(120, 6, 3, uint64(i)), test)
	}
	f.waitNodes(3 * time.Minute)
	st := f.coord.Status()
	if st.Phase != round.PhaseDone || st.Commits != rounds {
		t.Fatalf("coordinator status %+v, want done after %d commits", st, rounds)
	}
	h, err := f.coord.History(context.Background())
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
	f.stopCoordinator()
	d := man.Model.Spec().NumParams()
	if got := federation.VectorLen(man); got != 2*d {
		t.Errorf("VectorLen %d, want 2×%d", got, d)
	}
	_, model := f.lastModel("node-1")
	if len(model) != d {
		t.Errorf("exported model of %d values, want the %d parameters without the control", len(model), d)
	}
	for _, name := range nodeNames(3) {
		fi, err := os.Stat(filepath.Join(f.dir, name+"-state", node.ControlFile))
		if err != nil {
			t.Errorf("%s keeps no control variate: %v", name, err)
		} else if fi.Size() < int64(8*d) || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: control file of %d bytes, mode %v, want ≥ %d and 0600", name, fi.Size(), fi.Mode().Perm(), 8*d)
		}
	}
	f.verifyAudit(rounds)
}
