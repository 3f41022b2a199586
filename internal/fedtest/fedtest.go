// Package fedtest is the one test harness for the two daemons: a
// federation of a coordinator and nodes, provisioned with real kits, in one
// process, speaking real gRPC over mutual TLS on an in-memory [Network].
//
// Run it inside testing/synctest's bubble (synctest.Test): the daemons'
// tickers, deadlines, backoffs, evidence ages and the harness's own waits
// then run on the bubble's fake clock, which moves only when every
// goroutine is blocked. Timing scenarios (join windows, deadlines,
// expiry, re-attestation) take no wall-clock time and cannot flake on a
// loaded machine; the real-process tests live in cmd/cloister. Computation
// takes no fake time: a scenario that needs time to pass while rounds run
// sets Fed.TrainTime.
//
//	synctest.Test(t, func(t *testing.T) {
//		f := fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, ...})
//		f.StartCoordinator()
//		for i, name := range fedtest.NodeNames(3) {
//			f.StartNode(name, fedtest.Blobs(120, 6, 3, uint64(i)), test)
//		}
//		f.WaitNodes(time.Minute)
//		f.StopCoordinator()
//		f.VerifyAudit(3, 4)
//	})
//
// Every daemon a test starts must stop before the bubble ends: a test stops
// the coordinator itself (StopCoordinator); nodes stop at the session's
// end, and Cleanup stops any still running.
package fedtest

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/aggregator"
	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
	"github.com/cloisterfl/cloister/transport"
)

// Address is the coordinator's address in every kit the harness makes.
// Nothing listens there: nodes reach the coordinator through the Network.
const Address = "127.0.0.1:7000"

// Fed is a federation under test.
type Fed struct {
	T     testing.TB
	Dir   string              // the federation's kits under Dir/fed, state directories under Dir
	Kits  map[string]*pki.Kit // by name: "coordinator", "node-1", …
	Net   *Network
	Coord *coordinator.Coordinator // the running coordinator, nil if none
	Nodes map[fl.NodeID]*Running
	Logs  *Buffer // every daemon's records, text, at debug level
	Log   *slog.Logger

	// OnUpdate, if set, sees every node's plaintext update.
	OnUpdate func(fl.Update)
	// NodeConfig, if set, adjusts each node's configuration.
	NodeConfig func(name string, c *node.Config)
	// Deadlines, if set, adjusts the coordinator's deadlines.
	Deadlines func(d *coordinator.Deadlines)
	// CoordinatorConfig, if set, adjusts the coordinator's configuration.
	CoordinatorConfig func(c *coordinator.Config)
	// NodeAddrs, if set, are the coordinator addresses nodes are given
	// (node.Node.Run) in place of Address; NodeConfig's Dial decides where
	// each leads.
	NodeAddrs []string
	// TrainTime, if set, is how long each training takes on the fake clock
	// (a sleep before the node's update leaves, after OnUpdate). In the
	// bubble computation takes no time, and the clock moves only when every
	// goroutine waits: a federation whose members always answer runs all
	// its rounds at one instant, and neither its timers (re-attestation,
	// evidence age) nor the harness's waits get a turn. A test that needs
	// time to pass while rounds go on sets it.
	TrainTime time.Duration
	// AggregatorConfig, if set, adjusts mode tee's aggregator's
	// configuration (StartAggregator).
	AggregatorConfig func(c *aggregator.Config)
	// AggregatorDone receives the aggregator's Run result (StartAggregator).
	AggregatorDone <-chan error
	stopAggregator context.CancelFunc
}

// Running is a node the harness started.
type Running struct {
	Node   *node.Node
	cancel context.CancelFunc
	done   chan error
	err    error
	ended  bool
}

// Tick is the daemons' engine tick in the harness.
const Tick = 50 * time.Millisecond

// New provisions a federation with `cloister init`'s code (pki.InitFederation)
// in a temporary directory. The nodes of these tests train on Blobs (6
// features, 3 classes): a model that leaves its inputs and classes 0 gets
// those, and zero momentum becomes 0.5.
func New(t testing.TB, opts pki.InitOptions) *Fed {
	t.Helper()
	if opts.Model.Inputs == 0 && opts.Model.Classes == 0 && !opts.Model.External() {
		opts.Model.Inputs, opts.Model.Classes = 6, 3
	}
	if opts.Training.Momentum == 0 {
		opts.Training.Momentum = 0.5
	}
	opts.Address = Address
	dir := t.TempDir()
	if err := pki.InitFederation(filepath.Join(dir, "fed"), opts, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	f := &Fed{T: t, Dir: dir, Kits: map[string]*pki.Kit{}, Net: new(Network), Nodes: map[fl.NodeID]*Running{}, Logs: new(Buffer)}
	f.Log = slog.New(slog.NewTextHandler(f.Logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	t.Cleanup(func() {
		f.stopAll()
		if t.Failed() {
			t.Logf("logs:\n%s", f.Logs.String())
		}
	})
	names := append([]string{"coordinator"}, NodeNames(opts.Nodes)...)
	if opts.AggregatorAttestation != nil {
		names = append(names, pki.DefaultAggregator)
	}
	for _, name := range names {
		k, err := pki.LoadKit(filepath.Join(dir, "fed", name))
		if err != nil {
			t.Fatal(err)
		}
		f.Kits[name] = k
	}
	return f
}

// NodeNames returns node-1 … node-n.
func NodeNames(n int) []string {
	var s []string
	for i := 1; i <= n; i++ {
		s = append(s, fmt.Sprintf("node-%d", i))
	}
	return s
}

// StateDir is the state directory of a daemon ("coordinator", a node or
// mode tee's aggregator).
func (f *Fed) StateDir(name string) string { return filepath.Join(f.Dir, name+"-state") }

// StartCoordinator starts the coordinator on the Network (resuming from its
// state directory if it ran before).
func (f *Fed) StartCoordinator() {
	f.T.Helper()
	c, err := coordinator.New(f.CoordinatorSettings("coordinator"))
	if err != nil {
		f.T.Fatal(err)
	}
	f.Serve(c)
}

// CoordinatorSettings returns the configuration StartCoordinator uses,
// for a coordinator whose state directory is StateDir(name) and whose log
// records say who=name (a standby has its own).
func (f *Fed) CoordinatorSettings(name string) coordinator.Config {
	dl := coordinator.Deadlines{Setup: 20 * time.Second, Collect: 20 * time.Second, Reveal: 10 * time.Second,
		Commit: 10 * time.Second, Eval: 10 * time.Second, Gather: 500 * time.Millisecond}
	if f.Deadlines != nil {
		f.Deadlines(&dl)
	}
	cfg := coordinator.Config{Kit: f.Kits["coordinator"], StateDir: f.StateDir(name),
		Logger: f.Log.With("who", name), Tick: Tick, Seed: 1, Deadlines: dl}
	if f.CoordinatorConfig != nil {
		f.CoordinatorConfig(&cfg)
	}
	return cfg
}

// Serve serves c on the Network (taking the address over from any other
// listener) and makes it f.Coord.
func (f *Fed) Serve(c *coordinator.Coordinator) {
	go c.Serve(f.Net.Listen())
	f.Coord = c
}

// StopCoordinator shuts the coordinator down.
func (f *Fed) StopCoordinator() {
	f.T.Helper()
	if f.Coord == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := f.Coord.Shutdown(ctx); err != nil {
		f.T.Errorf("coordinator shutdown: %v", err)
	}
	f.Coord = nil
}

// AtRest is the at-rest key of every node the harness starts.
func AtRest(t testing.TB) *store.Key {
	key, err := store.NewKey(make([]byte, 32))
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// StartNode starts a member on its local data; it dials the coordinator
// through the Network.
func (f *Fed) StartNode(name string, train, test *dataset.Set) {
	f.T.Helper()
	cfg := node.Config{
		Kit: f.Kits[name], StateDir: f.StateDir(name), AtRest: AtRest(f.T), Train: train, Test: test,
		Logger: f.Log.With("who", name), Tick: Tick, Seed: 7,
		Backoff:  struct{ Min, Max time.Duration }{50 * time.Millisecond, 500 * time.Millisecond},
		OnUpdate: f.OnUpdate, Dial: f.Net.Dial,
	}
	if f.NodeConfig != nil {
		f.NodeConfig(name, &cfg)
	}
	if d := f.TrainTime; d > 0 {
		hook := cfg.OnUpdate
		cfg.OnUpdate = func(u fl.Update) {
			if hook != nil {
				hook(u)
			}
			time.Sleep(d)
		}
	}
	n, err := node.New(cfg)
	if err != nil {
		f.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rn := &Running{Node: n, cancel: cancel, done: make(chan error, 1)}
	addrs := f.NodeAddrs
	if len(addrs) == 0 {
		addrs = []string{Address}
	}
	go func() { rn.done <- n.Run(ctx, addrs...) }()
	f.Nodes[fl.NodeID(name)] = rn
}

// StartNodes starts node-1 … node-n on the harness's standard data: each
// trains on Blobs(120, 6, 3, i) (i from 0) and evaluates on a common
// Blobs(90, 6, 3, 99).
func (f *Fed) StartNodes(n int) {
	f.T.Helper()
	test := Blobs(90, 6, 3, 99)
	for i, name := range NodeNames(n) {
		f.StartNode(name, Blobs(120, 6, 3, uint64(i)), test)
	}
}

// WaitDone waits for the running nodes to finish their session (WaitNodes)
// and fails the test unless the coordinator is done after commits commits.
// It returns the coordinator's status.
func (f *Fed) WaitDone(commits int, timeout time.Duration) round.Status {
	f.T.Helper()
	f.WaitNodes(timeout)
	st := f.Coord.Status()
	if st.Phase != round.PhaseDone || st.Commits != commits {
		f.T.Fatalf("coordinator status %+v, want done after %d commits", st, commits)
	}
	return st
}

// StopNode stops a running node (as a crash would: its state stays) and
// returns what Run returned.
func (f *Fed) StopNode(name string) error {
	rn := f.Nodes[fl.NodeID(name)]
	if rn == nil {
		return nil
	}
	rn.cancel()
	err := rn.wait()
	delete(f.Nodes, fl.NodeID(name))
	return err
}

// Cancel ends the node's context without waiting for Run to return
// (StopNode waits): to stop several nodes at once, or a node held in a hook
// such as OnUpdate, which must return before Run does.
func (rn *Running) Cancel() { rn.cancel() }

func (rn *Running) wait() error {
	if !rn.ended {
		rn.err, rn.ended = <-rn.done, true
	}
	return rn.err
}

// WaitNodes waits until every running node has finished its session and
// fails the test if one returned an error or did not finish in timeout
// (fake time, in a bubble).
func (f *Fed) WaitNodes(timeout time.Duration) {
	f.T.Helper()
	deadline := time.After(timeout)
	for id, rn := range f.Nodes {
		if rn.ended {
			continue
		}
		select {
		case err := <-rn.done:
			rn.err, rn.ended = err, true
			if err != nil {
				f.T.Fatalf("%s: %v", id, err)
			}
		case <-deadline:
			f.T.Fatalf("%s did not finish in %v; coordinator status %+v", id, timeout, f.status())
		}
	}
}

func (f *Fed) status() any {
	if f.Coord == nil {
		return "no coordinator"
	}
	return f.Coord.Status()
}

// StartAggregator starts mode tee's aggregator on its TEE; it dials the
// coordinator through the Network. AggregatorDone has Run's result.
func (f *Fed) StartAggregator(tee attest.Attester) *aggregator.Aggregator {
	f.T.Helper()
	state := f.StateDir(pki.DefaultAggregator)
	if err := os.MkdirAll(state, 0o700); err != nil {
		f.T.Fatal(err)
	}
	cfg := aggregator.Config{Kit: f.Kits[pki.DefaultAggregator], TEE: tee, Logger: f.Log.With("who", pki.DefaultAggregator),
		Backoff: struct{ Min, Max time.Duration }{50 * time.Millisecond, 500 * time.Millisecond}, Dial: f.Net.Dial, StateDir: state}
	if f.AggregatorConfig != nil {
		f.AggregatorConfig(&cfg)
	}
	a, err := aggregator.New(cfg)
	if err != nil {
		f.T.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	f.AggregatorDone, f.stopAggregator = done, cancel
	go func() { done <- a.Run(ctx, Address) }()
	return a
}

// stopAll stops what a test left running, so that the bubble can end.
func (f *Fed) stopAll() {
	if f.stopAggregator != nil {
		f.stopAggregator()
		select { // Run's result, unless the test took it
		case <-f.AggregatorDone:
		case <-time.After(10 * time.Second):
		}
		f.stopAggregator = nil
	}
	for name := range f.Nodes {
		f.StopNode(string(name))
	}
	if f.Coord != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		f.Coord.Shutdown(ctx)
		f.Coord = nil
	}
}

// WaitStatus polls the coordinator's status until ok holds, for at most a
// minute (fake time, in a bubble).
func (f *Fed) WaitStatus(what string, ok func(round.Status) bool) round.Status {
	f.T.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		s := f.Coord.Status()
		if ok(s) {
			return s
		}
		if time.Now().After(deadline) {
			f.T.Fatalf("waiting for %s: status %+v", what, s)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Metric returns the value of a Prometheus sample line of the
// coordinator's /metrics (name with its labels, as printed), 0 if absent.
func (f *Fed) Metric(name string) float64 {
	rec := httptest.NewRecorder()
	f.Coord.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") {
			v, _ := strconv.ParseFloat(strings.TrimPrefix(line, name+" "), 64)
			return v
		}
	}
	return 0
}

// WaitMetric waits until the metric reaches at least want, for at most 30
// seconds (fake time, in a bubble).
func (f *Fed) WaitMetric(name string, want float64) {
	f.T.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for f.Metric(name) < want {
		if time.Now().After(deadline) {
			f.T.Fatalf("%s = %v, want ≥ %v", name, f.Metric(name), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// VerifyAudit checks every log of the federation (audit.VerifyDir, with
// the manifest's keys and coordinator, so every committed record of the
// coordinator's log must carry its leader's cosignature) and that the
// coordinator's records commits committed rounds, each cosigned by its
// leader; logs is the number of logs there must be (0: not checked).
func (f *Fed) VerifyAudit(commits, logs int) []audit.FileResult {
	f.T.Helper()
	man := f.Kits["coordinator"].Manifest
	fed := audit.Federation{Keys: audit.Keys(man.LogKeys()), Coordinator: man.Coordinator.Name, Aggregator: man.AggregatorName()}
	res, err := audit.VerifyDir(f.Dir, fed)
	if err != nil {
		f.T.Fatalf("audit verify: %v", err)
	}
	for _, r := range res {
		if r.Summary.State.Actor != man.Coordinator.Name {
			continue
		}
		if r.Summary.Rounds != commits {
			f.T.Errorf("%s: %d rounds committed, want %d", r.Path, r.Summary.Rounds, commits)
		}
		for rd, c := range r.Summary.State.Commits {
			if c.Leader == "" || c.Cosigner != c.Leader {
				f.T.Errorf("%s: round %d committed with leader %q, cosigned by %q", r.Path, rd, c.Leader, c.Cosigner)
			}
		}
	}
	if logs != 0 && len(res) != logs {
		f.T.Errorf("%d logs, want %d", len(res), logs)
	}
	return res
}

// DialAs opens a transport connection to the coordinator over the Network
// with the certificate of kit name ("node-3"): a rogue client that holds a
// member's credentials. It sets cfg's TLS and Dial, fails the test if the
// connection does not open, and closes it at Cleanup (a test may close it
// before).
func (f *Fed) DialAs(name string, cfg transport.ClientConfig) *transport.Conn {
	f.T.Helper()
	tc, err := f.Kits[name].TLSConfig(pki.Options{})
	if err != nil {
		f.T.Fatal(err)
	}
	cfg.TLS, cfg.Dial = tc, f.Net.Dial
	c, err := transport.Dial(context.Background(), Address, cfg)
	if err != nil {
		f.T.Fatalf("dialing as %s: %v", name, err)
	}
	f.T.Cleanup(func() { c.Close() })
	return c
}

// Drain receives and drops what the coordinator sends on c until the
// stream ends, so that a rogue client that only sends does not hold the
// coordinator's sends up.
func Drain(c *transport.Conn) {
	go func() {
		for {
			if _, err := c.Recv(context.Background()); err != nil {
				return
			}
		}
	}()
}

// Export runs node.Export on a node's state directory, as `cloister model
// export` does (the node may be running).
func (f *Fed) Export(name string) *node.Exported {
	f.T.Helper()
	ex, err := node.Export(context.Background(), f.Kits[name], "", f.StateDir(name), AtRest(f.T))
	if err != nil {
		f.T.Fatalf("exporting %s's model: %v", name, err)
	}
	return ex
}

// EngineState reads the engine state a stopped node persisted (unsealed
// with the harness's at-rest key): what the node would restart from.
func (f *Fed) EngineState(name string) round.NodeState {
	f.T.Helper()
	sess, err := f.Kits[name].Manifest.Hash()
	if err != nil {
		f.T.Fatal(err)
	}
	db, err := store.Open(filepath.Join(f.StateDir(name), node.DBFile))
	if err != nil {
		f.T.Fatal(err)
	}
	defer db.Close()
	b, err := db.Node(sess[:], AtRest(f.T)).Load(context.Background())
	if err != nil {
		f.T.Fatalf("%s's stored state: %v", name, err)
	}
	var st round.NodeState
	if err := st.UnmarshalBinary(b.State); err != nil {
		f.T.Fatalf("%s's stored state: %v", name, err)
	}
	return st
}

// Blobs makes a small classification set: classes Gaussian blobs around
// distinct centres in `features` dimensions.
func Blobs(n, features, classes int, seed uint64) *dataset.Set {
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

// Buffer is a strings.Builder safe for concurrent writers.
type Buffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
