package fedtest_test

import (
	"context"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/trainer"
)

// goLayout is the model of the Go trainers below: a float32 matrix and a
// float64 bias.
var goLayout = trainer.Layout{Version: 1, Tensors: []trainer.Tensor{
	{Name: "w", Shape: []int{3, 2}, DType: trainer.Float32},
	{Name: "b", Shape: []int{2}, DType: trainer.Float64},
}}

// goTrainer is an external trainer written in Go: each round it moves
// every weight a tenth of the way to 1. fault(round) may make it hang,
// return a NaN or die in a round.
type goTrainer struct {
	fault func(r fl.Round) string // "", "hang", "nan", "crash"
	conn  net.Conn
	mu    sync.Mutex
	prox  atomic.Uint64 // math.Float64bits of the FedProx μ of the last training task
}

func (g *goTrainer) handle(ctx context.Context, r *trainer.Request) (*trainer.Reply, error) {
	weights := func(f func(x float64) float64) []trainer.Array {
		var out []trainer.Array
		for i, t := range goLayout.Tensors {
			v := make([]float64, t.Len())
			if i < len(r.Weights) {
				v, _ = r.Weights[i].Values()
			}
			for k := range v {
				v[k] = f(v[k])
			}
			a, _ := trainer.NewArray(t, v)
			out = append(out, a)
		}
		return out
	}
	switch r.Kind {
	case trainer.Describe, trainer.Init:
		return &trainer.Reply{Weights: weights(func(float64) float64 { return 0 })}, nil
	case trainer.Evaluate:
		v, _ := r.Weights[0].Values()
		return &trainer.Reply{Examples: 40, Metrics: map[string]float64{"accuracy": math.Min(1, math.Abs(v[0])), "loss": math.Abs(1 - v[0])}}, nil
	}
	g.prox.Store(math.Float64bits(r.Config.ProxMu))
	time.Sleep(time.Second) // the trainer's work, on the fake clock
	switch g.fault(r.Round) {
	case "hang":
		<-ctx.Done() // until the node gives up and ends the stream
		return nil, ctx.Err()
	case "crash":
		g.mu.Lock()
		g.conn.Close()
		g.mu.Unlock()
		<-ctx.Done()
		return nil, ctx.Err()
	case "nan":
		rep := &trainer.Reply{Weights: weights(func(x float64) float64 { return x + (1-x)/10 }), Examples: 50}
		rep.Weights[1], _ = trainer.NewArray(goLayout.Tensors[1], []float64{0.5, math.NaN()})
		return rep, nil
	}
	return &trainer.Reply{Weights: weights(func(x float64) float64 { return x + (1-x)/10 }), Examples: 50,
		Metrics: map[string]float64{"loss": 0.3}}, nil
}

// supervise attaches g to the socket again whenever its stream ends, as
// a trainer.Process restarts a trainer process.
func (g *goTrainer) supervise(ctx context.Context, sock *fedtest.Network, restarts *atomic.Int32) {
	for ctx.Err() == nil {
		dial := func(ctx context.Context) (net.Conn, error) {
			c, err := sock.Dial(ctx, "")
			g.mu.Lock()
			g.conn = c
			g.mu.Unlock()
			return c, err
		}
		trainer.Attach(ctx, trainer.AttachConfig{Dial: dial, Client: "go test trainer"}, g.handle)
		restarts.Add(1)
		time.Sleep(100 * time.Millisecond)
	}
}

// TestExternalTrainerFaults runs a federation of external trainers (the
// real trainer API on in-memory sockets, on the fake clock) in which one
// trainer hangs past the node's deadline, one returns a NaN and one dies,
// each in its own round: the node at fault sends no update that round,
// names the problem in its log, gets its trainer back and joins the next
// round; every round commits.
func TestExternalTrainerFaults(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		digest, err := goLayout.Digest()
		if err != nil {
			t.Fatal(err)
		}
		f := fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{},
			Model:    federation.ModelSpec{Kind: federation.ModelExternal, Params: goLayout.Len(), Layout: digest},
			Training: federation.Training{Rounds: 5, LocalEpochs: 2, Batch: 8, LearningRate: 0.1, Strategy: "fedadam"}})
		faults := map[string]map[fl.Round]string{"node-1": {4: "crash"}, "node-2": {2: "hang"}, "node-3": {3: "nan"}}
		run := runExternal(t, f, digest, 5, faults)
		hosts, restarts := run.hosts, run.restarts
		logs := f.Logs.String()
		for name, want := range map[string]string{
			"node-1": "trainer: the trainer went away",
			"node-2": "(round 2): trainer: no reply before the deadline: no reply within 5s",
			"node-3": "(round 3): trainer: bad reply: tensor b: NaN at [1]",
		} {
			if !strings.Contains(logs, want) {
				t.Errorf("%s's log does not say %q", name, want)
			}
			r, err := node.ReadReport(f.StateDir(name))
			if err != nil {
				t.Fatal(err)
			}
			// One round without this node's update; every other round with it.
			if r.Train.Count != 4 || r.Protect.Count != 4 || r.Evaluate.Count != 5 {
				t.Errorf("%s trained %d, protected %d, evaluated %d times: want 4, 4, 5", name, r.Train.Count, r.Protect.Count, r.Evaluate.Count)
			}
			if r.Trainer == nil || r.Trainer.Count != 4 || r.Trainer.MeanSeconds != 1 {
				t.Errorf("%s's report of its trainer's time: %+v, want 4 trainings of 1s", name, r.Trainer)
			}
			st := hosts[name].Stats()
			if st.Faults.Load() != 1 || st.Sessions.Load() != 2 || restarts[name].Load() < 1 {
				t.Errorf("%s: %d faults, %d sessions, %d restarts: want 1 fault and the trainer back", name, st.Faults.Load(), st.Sessions.Load(), restarts[name].Load())
			}
		}
		if n := strings.Count(logs, "training failed; this node sends no update this round"); n != 3 {
			t.Errorf("%d failed trainings logged, want 3", n)
		}
		// Each declined its round: the coordinator closed the round without
		// waiting for its collect deadline (20s) and counted nobody down.
		if n := strings.Count(logs, "msg=declined"); n != 3 {
			t.Errorf("%d rounds declined, want 3", n)
		}
		if strings.Contains(logs, "no upload by the deadline") {
			t.Error("a node was counted down at the collect deadline")
		}
		f.VerifyAudit(5, 4)
		// The exported model is in the trainer's layout.
		exp := f.Export("node-1")
		if exp.Kind != federation.ModelExternal || exp.Params != goLayout.Len() || !strings.Contains(exp.Layout, digest) {
			t.Errorf("exported %s model of %d parameters, layout %q", exp.Kind, exp.Params, exp.Layout)
		}
	})
}

// runExternal runs f, a federation of len(NodeNames(3)) external trainers
// (goTrainer, each on an in-memory socket, restarted when its stream ends),
// until rounds commits, and stops it; faults[node][round] makes a trainer
// fail in a round.
func runExternal(t *testing.T, f *fedtest.Fed, digest string, rounds int, faults map[string]map[fl.Round]string) externalRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	hosts := map[string]*trainer.Host{}
	restarts := map[string]*atomic.Int32{}
	trainers := map[string]*goTrainer{}
	f.NodeConfig = func(name string, c *node.Config) {
		c.Trainer = hosts[name]
		c.TrainerTimeout = 5 * time.Second
	}
	f.StartCoordinator()
	for _, name := range fedtest.NodeNames(3) {
		sock := new(fedtest.Network)
		h := trainer.NewHost(trainer.HostConfig{Layout: digest, Params: goLayout.Len(), Logger: f.Log.With("who", name+"/trainer-api")})
		hosts[name], restarts[name] = h, new(atomic.Int32)
		l := sock.Listen()
		g := &goTrainer{fault: func(r fl.Round) string { return faults[name][r] }}
		trainers[name] = g
		wg.Add(2)
		go func() { defer wg.Done(); h.Serve(l) }()
		go func() { defer wg.Done(); g.supervise(ctx, sock, restarts[name]) }()
		f.StartNode(name, nil, nil)
	}
	f.WaitDone(rounds, 10*time.Minute)
	f.StopCoordinator()
	cancel()
	for _, h := range hosts {
		h.Close()
	}
	wg.Wait()
	return externalRun{hosts: hosts, restarts: restarts, trainers: trainers}
}

// externalRun is what runExternal ran: each node's trainer host, how many
// times its trainer attached again, and the trainer.
type externalRun struct {
	hosts    map[string]*trainer.Host
	restarts map[string]*atomic.Int32
	trainers map[string]*goTrainer
}

// TestExternalTrainerModes runs the same federation of external trainers
// in every aggregation mode, with FedProx (mu goes to the trainer in its
// configuration) and each update clipped by the node: every mode commits
// every round and ends on the model of mode plain (to secagg's fixed point
// and mhe's approximate arithmetic), so the trainer path does not depend on
// the mode.
func TestExternalTrainerModes(t *testing.T) {
	digest, err := goLayout.Digest()
	if err != nil {
		t.Fatal(err)
	}
	const rounds = 3
	models := map[string]fl.Vector{}
	for _, mode := range []string{federation.ModePlain, federation.ModeSecAgg, federation.ModeMHE} {
		t.Run(mode, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				opts := pki.InitOptions{Nodes: 3, Threshold: 2, Mode: mode, DP: &federation.DP{Clip: 10},
					Model:    federation.ModelSpec{Kind: federation.ModelExternal, Params: goLayout.Len(), Layout: digest},
					Training: federation.Training{Rounds: rounds, LocalEpochs: 1, Batch: 8, LearningRate: 0.1, ProxMu: 0.01}}
				if mode == federation.ModeMHE {
					opts.Preset = "InsecureTest"
				}
				f := fedtest.New(t, opts)
				run := runExternal(t, f, digest, rounds, nil)
				f.VerifyAudit(rounds, 4)
				for name, g := range run.trainers {
					if mu := math.Float64frombits(g.prox.Load()); mu != 0.01 {
						t.Errorf("%s's trainer was given FedProx μ %v, want 0.01", name, mu)
					}
				}
				exp := f.Export("node-1")
				if exp.Round != rounds || exp.Kind != federation.ModelExternal {
					t.Fatalf("exported the %s model of round %d, want the external model of round %d", exp.Kind, exp.Round, rounds)
				}
				models[mode] = exp.Model
			})
		})
	}
	want := models[federation.ModePlain]
	// Each trainer moves every weight a tenth of the way to 1 from the
	// global model, which starts at 0: 1 − 0.9^rounds after FedAvg.
	for i, x := range want {
		if math.Abs(x-(1-math.Pow(0.9, rounds))) > 1e-6 {
			t.Fatalf("plain: weight %d is %v, want %v", i, x, 1-math.Pow(0.9, rounds))
		}
	}
	for mode, tol := range map[string]float64{federation.ModeSecAgg: 1e-4, federation.ModeMHE: 1e-3} {
		got := models[mode]
		if len(got) != len(want) {
			t.Fatalf("%s: %d weights, want %d", mode, len(got), len(want))
		}
		for i := range want {
			if math.Abs(got[i]-want[i]) > tol {
				t.Errorf("%s: weight %d is %v, plain's %v (tolerance %g)", mode, i, got[i], want[i], tol)
			}
		}
	}
}
