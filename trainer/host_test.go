package trainer_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/trainer"
)

// pipes is an in-memory listener: connections are net.Pipe pairs, so the
// Host and the trainers run on synctest's fake clock.
type pipes struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipes() *pipes { return &pipes{conns: make(chan net.Conn), done: make(chan struct{})} }

func (p *pipes) Accept() (net.Conn, error) {
	select {
	case c := <-p.conns:
		return c, nil
	case <-p.done:
		return nil, net.ErrClosed
	}
}
func (p *pipes) Close() error   { p.once.Do(func() { close(p.done) }); return nil }
func (p *pipes) Addr() net.Addr { return &net.UnixAddr{Name: "pipe", Net: "unix"} }

func (p *pipes) dial(ctx context.Context) (net.Conn, error) {
	a, b := net.Pipe()
	select {
	case p.conns <- b:
		return a, nil
	case <-p.done:
	case <-ctx.Done():
	}
	a.Close()
	b.Close()
	return nil, net.ErrClosed
}

// The layout of the tests: a float32 matrix, a float64 vector, a float32
// scalar.
var layout = trainer.Layout{Version: 1, Tensors: []trainer.Tensor{
	{Name: "w", Shape: []int{2, 3}, DType: trainer.Float32},
	{Name: "b", Shape: []int{4}, DType: trainer.Float64},
	{Name: "s", Shape: []int{}, DType: trainer.Float32},
}}

func digest(t testing.TB, l trainer.Layout) string {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// fake is a Go trainer whose behaviour a test sets per task.
type fake struct {
	layout trainer.Layout
	// train, if set, replaces the default training (every weight + 1).
	train    func(ctx context.Context, r *trainer.Request) (*trainer.Reply, error)
	evaluate func(ctx context.Context, r *trainer.Request) (*trainer.Reply, error)
}

func arrays(t trainer.Layout, fill func(i int) float64) []trainer.Array {
	var out []trainer.Array
	k := 0
	for _, ts := range t.Tensors {
		v := make([]float64, ts.Len())
		for i := range v {
			v[i] = fill(k)
			k++
		}
		a, err := trainer.NewArray(ts, v)
		if err != nil {
			panic(err)
		}
		out = append(out, a)
	}
	return out
}

func (f *fake) handle(ctx context.Context, r *trainer.Request) (*trainer.Reply, error) {
	switch r.Kind {
	case trainer.Describe:
		return &trainer.Reply{Weights: arrays(f.layout, func(int) float64 { return 0 })}, nil
	case trainer.Init:
		return &trainer.Reply{Weights: arrays(f.layout, func(i int) float64 { return float64(r.Seed) + float64(i)/4 })}, nil
	case trainer.Train:
		if f.train != nil {
			return f.train(ctx, r)
		}
		return addOne(r, 10), nil
	case trainer.Evaluate:
		if f.evaluate != nil {
			return f.evaluate(ctx, r)
		}
		return &trainer.Reply{Examples: 5, Metrics: map[string]float64{"accuracy": 0.6, "loss": 0.9}}, nil
	}
	return nil, fmt.Errorf("unknown task %v", r.Kind)
}

// addOne trains by adding 1 to every weight.
func addOne(r *trainer.Request, examples int) *trainer.Reply {
	var out []trainer.Array
	for _, a := range r.Weights {
		v, err := a.Values()
		if err != nil {
			panic(err)
		}
		for i := range v {
			v[i]++
		}
		b, _ := trainer.NewArray(a.Tensor, v)
		out = append(out, b)
	}
	return &trainer.Reply{Weights: out, Examples: examples, Metrics: map[string]float64{"loss": 0.5, "epochs": float64(r.Config.Epochs)}}
}

// harness runs a Host on pipes.
type harness struct {
	t    *testing.T
	host *trainer.Host
	l    *pipes
	wg   sync.WaitGroup
}

func newHarness(t *testing.T, cfg trainer.HostConfig) *harness {
	h := &harness{t: t, host: trainer.NewHost(cfg), l: newPipes()}
	h.wg.Add(1)
	go func() { defer h.wg.Done(); h.host.Serve(h.l) }()
	t.Cleanup(func() {
		h.host.Close()
		h.l.Close()
		h.wg.Wait()
	})
	return h
}

// attach runs f as an attached trainer; the returned channel gets
// Attach's result.
func (h *harness) attach(f *fake) <-chan error {
	done := make(chan error, 1)
	go func() {
		done <- trainer.Attach(context.Background(), trainer.AttachConfig{Dial: h.l.dial, Client: "fake"}, f.handle)
	}()
	return done
}

func within(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestHostTasks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, trainer.HostConfig{Layout: digest(t, layout), Params: layout.Len(), TrainExamples: 10})
		ended := h.attach(&fake{layout: layout})
		ctx := within(t, time.Minute)
		got, err := h.host.Layout(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if d := got.Diff(layout); d != "" {
			t.Fatalf("layout: %s", d)
		}
		init, err := h.host.Init(ctx, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(init) != 11 || init[0] != 3 || init[10] != 3+10.0/4 {
			t.Fatalf("initial weights %v", init)
		}
		// 0.1 is not a float32: the trainer receives float32(0.1), and Δ
		// is taken from what it received.
		global := fl.Vector{0.1, 0.25, 0.5, -1, 2, 3, 0.1, 0.2, 0.3, 0.4, 7}
		res, err := h.host.Train(ctx, trainer.TrainTask{Round: 2, Seed: 9, Global: global,
			Config: trainer.Config{Epochs: 3, Batch: 8, LearningRate: 0.1, Rounds: 5}})
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range res.Delta {
			x := global[i]
			want := x + 1 - x // the float64 tensor
			if i < 6 || i == 10 {
				sent := float64(float32(x))
				want = float64(float32(sent+1)) - sent
			}
			if d != want || math.Abs(d-1) > 1e-6 {
				t.Errorf("Δ[%d] = %v, want %v", i, d, want)
			}
		}
		if res.Examples != 10 || res.Metrics["loss"] != 0.5 || res.Metrics["epochs"] != 3 {
			t.Errorf("result %d examples, metrics %v", res.Examples, res.Metrics)
		}
		if res.Compute > res.Elapsed {
			t.Errorf("compute %v > elapsed %v", res.Compute, res.Elapsed)
		}
		ev, err := h.host.Evaluate(ctx, trainer.EvalTask{Round: 2, Global: global})
		if err != nil {
			t.Fatal(err)
		}
		if ev.Metrics != (fl.Metrics{Accuracy: 0.6, Loss: 0.9, Examples: 5}) {
			t.Errorf("evaluation %+v", ev.Metrics)
		}
		st := h.host.Stats()
		if st.Sessions.Load() != 1 || st.Tasks.Load() != 3 || st.Faults.Load() != 0 {
			t.Errorf("stats: %d sessions, %d tasks, %d faults", st.Sessions.Load(), st.Tasks.Load(), st.Faults.Load())
		}
		h.host.Close()
		if err := <-ended; err != nil {
			t.Errorf("Attach after the node closed the API: %v, want nil", err)
		}
	})
}

// TestHostChunks sends a layout of several chunks each way.
func TestHostChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		big := trainer.Layout{Version: 1, Tensors: []trainer.Tensor{
			{Name: "a", Shape: []int{3, trainer.ChunkSize / 8}, DType: trainer.Float32},
			{Name: "b", Shape: []int{trainer.ChunkSize/8 + 3}, DType: trainer.Float64},
		}}
		h := newHarness(t, trainer.HostConfig{Layout: digest(t, big)})
		h.attach(&fake{layout: big})
		global := make(fl.Vector, big.Len())
		for i := range global {
			global[i] = float64(i % 1000)
		}
		res, err := h.host.Train(within(t, time.Minute), trainer.TrainTask{Round: 1, Global: global})
		if err != nil {
			t.Fatal(err)
		}
		for i, d := range res.Delta {
			if d != 1 {
				t.Fatalf("Δ[%d] = %v, want 1", i, d)
			}
		}
		if in, out := h.host.Stats().BytesIn.Load(), h.host.Stats().BytesOut.Load(); in != uint64(big.Bytes()) || out != uint64(big.Bytes()) {
			t.Errorf("bytes in %d, out %d, want %d each way", in, out, big.Bytes())
		}
	})
}

func TestHostRefusesOtherLayout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		other := trainer.Layout{Version: 1, Tensors: []trainer.Tensor{{Name: "w", Shape: []int{3, 2}, DType: trainer.Float32}}}
		h := newHarness(t, trainer.HostConfig{Layout: digest(t, layout), Params: layout.Len()})
		ended := h.attach(&fake{layout: other})
		_, err := h.host.Init(within(t, time.Hour), 1)
		if !errors.Is(err, trainer.ErrLayoutMismatch) {
			t.Fatalf("Init: %v, want ErrLayoutMismatch", err)
		}
		for _, want := range []string{digest(t, other), digest(t, layout), "1 tensors, 6 values", "(11 values)"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		if err := <-ended; err == nil || !strings.Contains(err.Error(), "manifest pins") {
			t.Errorf("the refused trainer's Attach: %v, want the refusal", err)
		}
		if h.host.Stats().Refused.Load() != 1 {
			t.Errorf("refused %d", h.host.Stats().Refused.Load())
		}
		// A trainer with the right layout is accepted afterwards.
		h.attach(&fake{layout: layout})
		synctest.Wait()
		if _, err := h.host.Init(within(t, time.Minute), 1); err != nil {
			t.Fatalf("Init with the right trainer: %v", err)
		}
	})
}

// TestHostBadReplies: each bad reply is an ErrReply naming the tensor and
// the problem; the stream ends (a fault) and the next trainer works.
func TestHostBadReplies(t *testing.T) {
	nan := func(k int) func(context.Context, *trainer.Request) (*trainer.Reply, error) {
		return func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			rep := addOne(r, 10)
			v, _ := rep.Weights[k].Values()
			v[len(v)-1] = math.NaN()
			if k == 0 {
				v[4] = math.Inf(1)
			}
			rep.Weights[k], _ = trainer.NewArray(rep.Weights[k].Tensor, v)
			return rep, nil
		}
	}
	cases := []struct {
		name  string
		train func(context.Context, *trainer.Request) (*trainer.Reply, error)
		eval  func(context.Context, *trainer.Request) (*trainer.Reply, error)
		want  string
	}{
		{name: "shape", train: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			rep := addOne(r, 10)
			rep.Weights[1].Shape = []int{2, 2}
			return rep, nil
		}, want: "tensor 2 (b): shape [2 2], want [4]"},
		{name: "dtype", train: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			rep := addOne(r, 10)
			v, _ := rep.Weights[0].Values()
			rep.Weights[0], _ = trainer.NewArray(trainer.Tensor{Name: "w", Shape: []int{2, 3}, DType: trainer.Float64}, v)
			return rep, nil
		}, want: "tensor 1 (w): dtype float64, want float32"},
		{name: "missing", train: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			rep := addOne(r, 10)
			rep.Weights = rep.Weights[:2]
			return rep, nil
		}, want: "tensor 3 (s) is missing"},
		{name: "renamed", train: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			rep := addOne(r, 10)
			rep.Weights[2].Name = "scale"
			return rep, nil
		}, want: `tensor 3 (scale): name "scale", want "s"`},
		{name: "inf", train: nan(0), want: "tensor w: +Inf at [1 1]"},
		{name: "nan", train: nan(1), want: "tensor b: NaN at [3]"},
		{name: "nan-scalar", train: nan(2), want: "tensor s: NaN at []"},
		{name: "no-examples", train: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			return addOne(r, 0), nil
		}, want: "0 training examples"},
		{name: "wrong-examples", train: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			return addOne(r, 11), nil
		}, want: "11 training examples, but its share has 10"},
		{name: "nan-metric", train: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			rep := addOne(r, 10)
			rep.Metrics["loss"] = math.NaN()
			return rep, nil
		}, want: `metric "loss" is NaN`},
		{name: "no-accuracy", eval: func(context.Context, *trainer.Request) (*trainer.Reply, error) {
			return &trainer.Reply{Examples: 5, Metrics: map[string]float64{"loss": 1}}, nil
		}, want: `metric "accuracy" is missing`},
		{name: "accuracy-above-1", eval: func(context.Context, *trainer.Request) (*trainer.Reply, error) {
			return &trainer.Reply{Examples: 5, Metrics: map[string]float64{"accuracy": 1.5, "loss": 1}}, nil
		}, want: `metric "accuracy" is 1.5`},
		{name: "eval-tensors", eval: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			return &trainer.Reply{Weights: r.Weights, Examples: 5, Metrics: map[string]float64{"accuracy": 1, "loss": 1}}, nil
		}, want: "an evaluation reply with 3 tensors"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, trainer.HostConfig{Layout: digest(t, layout), TrainExamples: 10})
				ended := h.attach(&fake{layout: layout, train: c.train, evaluate: c.eval})
				ctx := within(t, time.Minute)
				global := make(fl.Vector, layout.Len())
				var err error
				if c.eval != nil {
					_, err = h.host.Evaluate(ctx, trainer.EvalTask{Round: 4, Global: global})
				} else {
					_, err = h.host.Train(ctx, trainer.TrainTask{Round: 4, Global: global})
				}
				if !errors.Is(err, trainer.ErrReply) || !strings.Contains(err.Error(), c.want) {
					t.Fatalf("got %v, want ErrReply saying %q", err, c.want)
				}
				if !strings.Contains(err.Error(), "task 2 (round 4)") {
					t.Errorf("error %q does not name the task and round", err)
				}
				if err := <-ended; err == nil || !strings.Contains(err.Error(), c.want) {
					t.Errorf("the trainer's Attach: %v, want the fault", err)
				}
				if f := h.host.Stats().Faults.Load(); f != 1 {
					t.Errorf("%d faults, want 1", f)
				}
				h.attach(&fake{layout: layout})
				if _, err := h.host.Train(ctx, trainer.TrainTask{Round: 5, Global: global}); err != nil {
					t.Errorf("the next trainer: %v", err)
				}
			})
		})
	}
}

// TestHostDeadline: a trainer that hangs past the deadline is cut off
// with ErrTimeout, on the fake clock.
func TestHostDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, trainer.HostConfig{Layout: digest(t, layout)})
		timeout := make(chan time.Duration, 1)
		ended := h.attach(&fake{layout: layout, train: func(ctx context.Context, r *trainer.Request) (*trainer.Reply, error) {
			timeout <- r.Timeout
			<-ctx.Done() // hangs until its stream ends
			return nil, ctx.Err()
		}})
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		_, err := h.host.Train(ctx, trainer.TrainTask{Round: 1, Global: make(fl.Vector, layout.Len())})
		if !errors.Is(err, trainer.ErrTimeout) || !strings.Contains(err.Error(), "no reply within 1m30s") {
			t.Fatalf("got %v, want ErrTimeout after 1m30s", err)
		}
		if d := time.Since(start); d != 90*time.Second {
			t.Errorf("gave up after %v", d)
		}
		if d := <-timeout; d != 90*time.Second {
			t.Errorf("the task said its timeout was %v", d)
		}
		if err := <-ended; err == nil {
			t.Error("the hung trainer's stream did not end")
		}
	})
}

func TestHostNoTrainer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, trainer.HostConfig{Layout: digest(t, layout)})
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := h.host.Train(ctx, trainer.TrainTask{Round: 1, Global: make(fl.Vector, layout.Len())})
		if !errors.Is(err, trainer.ErrNoTrainer) {
			t.Fatalf("got %v, want ErrNoTrainer", err)
		}
	})
}

// TestHostFailure: a trainer's own Failure fails the task but keeps the
// stream.
func TestHostFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, trainer.HostConfig{Layout: digest(t, layout)})
		calls := 0
		h.attach(&fake{layout: layout, train: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			calls++
			if calls == 1 {
				return nil, errors.New("CUDA out of memory")
			}
			return addOne(r, 3), nil
		}})
		ctx := within(t, time.Minute)
		global := make(fl.Vector, layout.Len())
		_, err := h.host.Train(ctx, trainer.TrainTask{Round: 1, Global: global})
		if !errors.Is(err, trainer.ErrFailed) || !strings.Contains(err.Error(), "CUDA out of memory") {
			t.Fatalf("got %v, want ErrFailed with the trainer's message", err)
		}
		if _, err := h.host.Train(ctx, trainer.TrainTask{Round: 2, Global: global}); err != nil {
			t.Fatalf("the next task on the same stream: %v", err)
		}
		if st := h.host.Stats(); st.Sessions.Load() != 1 || st.Failures.Load() != 1 || st.Faults.Load() != 0 {
			t.Errorf("%d sessions, %d failures, %d faults", st.Sessions.Load(), st.Failures.Load(), st.Faults.Load())
		}
	})
}

// TestHostExit: a trainer whose stream ends mid-task gives ErrExited.
func TestHostExit(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, trainer.HostConfig{Layout: digest(t, layout)})
		done := make(chan error, 1)
		go func() {
			var conn net.Conn
			dial := func(ctx context.Context) (net.Conn, error) {
				c, err := h.l.dial(ctx)
				conn = c
				return c, err
			}
			f := &fake{layout: layout, train: func(ctx context.Context, _ *trainer.Request) (*trainer.Reply, error) {
				conn.Close() // the trainer dies
				<-ctx.Done()
				return nil, ctx.Err()
			}}
			done <- trainer.Attach(context.Background(), trainer.AttachConfig{Dial: dial}, f.handle)
		}()
		_, err := h.host.Train(within(t, time.Minute), trainer.TrainTask{Round: 1, Global: make(fl.Vector, layout.Len())})
		if !errors.Is(err, trainer.ErrExited) {
			t.Fatalf("got %v, want ErrExited", err)
		}
		<-done
	})
}

// TestHostReplace: a second trainer replaces the first.
func TestHostReplace(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, trainer.HostConfig{Layout: digest(t, layout)})
		first := h.attach(&fake{layout: layout})
		ctx := within(t, time.Minute)
		if _, err := h.host.Layout(ctx); err != nil {
			t.Fatal(err)
		}
		h.attach(&fake{layout: layout, train: func(_ context.Context, r *trainer.Request) (*trainer.Reply, error) {
			return addOne(r, 77), nil
		}})
		if err := <-first; err == nil || !strings.Contains(err.Error(), "another trainer attached") {
			t.Fatalf("the first trainer: %v", err)
		}
		res, err := h.host.Train(ctx, trainer.TrainTask{Round: 1, Global: make(fl.Vector, layout.Len())})
		if err != nil || res.Examples != 77 {
			t.Fatalf("Train on the second trainer: %v, %d examples", err, res.Examples)
		}
	})
}
