package coordinator_test

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
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

func newFed(t *testing.T, opts pki.InitOptions) *fed {
	t.Helper()
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
	c, err := coordinator.New(coordinator.Config{
		Kit: f.kits["coordinator"], StateDir: filepath.Join(f.dir, "coordinator-state"), Logger: f.logger.With("who", "coordinator"),
		Tick: 50 * time.Millisecond, Seed: 1,
		Deadlines: coordinator.Deadlines{Setup: 20 * time.Second, Collect: 20 * time.Second, Reveal: 10 * time.Second,
			Commit: 10 * time.Second, Eval: 10 * time.Second, Gather: 500 * time.Millisecond},
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
		Logger: f.logger.With("who", name), Tick: 50 * time.Millisecond, Seed: 7, Momentum: 0.5,
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
	f := newFed(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: pki.ModePlain, DP: &pki.DP{},
		Model: pki.ModelSpec{Kind: "softmax"}, Training: pki.Training{Rounds: 3, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})
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
	f := newFed(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: pki.ModeMHE, Preset: preset, DP: &pki.DP{},
		Model: pki.ModelSpec{Kind: "softmax"}, Training: pki.Training{Rounds: 2, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})
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
	f.stopCoordinator()
	f.verifyAudit(2)
}
