package trainer_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/trainer"
)

// python returns the interpreter with Cloister's Python client's
// dependencies (grpc, protobuf, numpy): $CLOISTER_PYTHON, or Debian's
// /usr/bin/python3, or python3. Without them the test is skipped, unless
// CLOISTER_REQUIRE_PYTHON=1 (make test and CI), which fails it.
func python(t testing.TB) string {
	t.Helper()
	py := os.Getenv("CLOISTER_PYTHON")
	if py == "" {
		py = "python3"
		if _, err := os.Stat("/usr/bin/python3"); err == nil {
			py = "/usr/bin/python3"
		}
	}
	out, err := exec.Command(py, "-c", "import grpc, google.protobuf, numpy").CombinedOutput()
	if err != nil {
		msg := "the Python client's dependencies are missing (apt-get install python3-grpcio python3-protobuf python3-numpy): " + strings.TrimSpace(string(out))
		if os.Getenv("CLOISTER_REQUIRE_PYTHON") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return py
}

// pythonTrainer runs testdata/trainer.py under a Host with the tiny
// layout, with the faults given, and returns the Host and the Process.
func pythonTrainer(t *testing.T, faults string, cfg trainer.HostConfig) (*trainer.Host, *trainer.Process) {
	t.Helper()
	py := python(t)
	client, err := filepath.Abs("../python")
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "cloister-trainer-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	socket := filepath.Join(dir, "trainer.sock")
	l, err := trainer.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(socket); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %v, %v: want mode 0600", fi.Mode(), err)
	}
	out := &syncBuffer{}
	p, err := trainer.NewProcess(trainer.ProcessConfig{
		Args:    []string{py, "testdata/trainer.py"},
		Env:     []string{"CLOISTER_TRAINER_SOCKET=" + socket, "PYTHONPATH=" + client, "CLOISTER_TEST_FAULTS=" + faults},
		Backoff: trainer.Backoff{Min: 20 * time.Millisecond, Max: 100 * time.Millisecond}, Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Layout == "" {
		cfg.Layout = digest(t, layout)
	}
	cfg.Process = p
	h := trainer.NewHost(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	served, ran := make(chan error, 1), make(chan error, 1)
	go func() { served <- h.Serve(l) }()
	go func() { ran <- p.Run(ctx) }()
	t.Cleanup(func() {
		h.Close()
		cancel()
		if err := <-ran; err != nil {
			t.Errorf("Process.Run: %v", err)
		}
		if err := <-served; err != nil {
			t.Errorf("Host.Serve: %v", err)
		}
		if t.Failed() {
			t.Logf("trainer output:\n%s", out.String())
		}
	})
	return h, p
}

// TestPythonBadTrainer drives a real Python trainer (the cloister client)
// through each bad case, one per round: each is a clear error naming the
// problem, the trainer is restarted, and the next round trains.
func TestPythonBadTrainer(t *testing.T) {
	h, p := pythonTrainer(t, "2:crash,3:hang,4:nan,5:inf,6:shape,7:examples,8:failure", trainer.HostConfig{TrainExamples: 100})
	ctx := func(d time.Duration) context.Context {
		c, cancel := context.WithTimeout(context.Background(), d)
		t.Cleanup(cancel)
		return c
	}
	init, err := h.Init(ctx(time.Minute), 20)
	if err != nil {
		t.Fatal(err)
	}
	for i, x := range init {
		if x != 2 { // the seed 20, over 10
			t.Fatalf("initial weight %d is %v, want 2", i, x)
		}
	}
	cases := []struct {
		round   fl.Round
		timeout time.Duration
		is      error
		want    []string
	}{
		{1, time.Minute, nil, nil},
		{2, time.Minute, trainer.ErrExited, []string{"exit status 3", "trainer.py: boom in round 2"}},
		{3, 3 * time.Second, trainer.ErrTimeout, []string{"no reply within 3s"}},
		{4, time.Minute, trainer.ErrReply, []string{"tensor b: NaN at [2]"}},
		{5, time.Minute, trainer.ErrReply, []string{"tensor w: +Inf at [1 0]"}},
		{6, time.Minute, trainer.ErrReply, []string{"tensor 2 (b): shape [2 2], want [4]"}},
		{7, time.Minute, trainer.ErrReply, []string{"99 training examples, but its share has 100"}},
		{8, time.Minute, trainer.ErrFailed, []string{"no data for round 8"}},
		{9, time.Minute, nil, nil},
	}
	global := make(fl.Vector, layout.Len())
	for _, c := range cases {
		// The restarted trainer is back before the round (its start is
		// not the round's to wait for).
		if _, err := h.Layout(ctx(time.Minute)); err != nil {
			t.Fatalf("round %d: waiting for the trainer: %v", c.round, err)
		}
		res, err := h.Train(ctx(c.timeout), trainer.TrainTask{Round: c.round, Global: global, Config: trainer.Config{Epochs: 1}})
		if c.is == nil {
			if err != nil {
				t.Fatalf("round %d: %v", c.round, err)
			}
			if res.Examples != 100 || res.Delta[0] != 1 || res.Delta[10] != 1 || res.Metrics["loss"] != 0.25 {
				t.Errorf("round %d: %d examples, Δ %v, metrics %v", c.round, res.Examples, res.Delta, res.Metrics)
			}
			continue
		}
		if !errors.Is(err, c.is) {
			t.Fatalf("round %d: %v, want %v", c.round, err, c.is)
		}
		for _, w := range c.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("round %d: %q does not say %q", c.round, err, w)
			}
		}
		t.Logf("round %d: %v", c.round, err)
	}
	// Every fault but the trainer's own failure restarted it.
	if n := p.Restarts(); n != 6 {
		t.Errorf("%d restarts, want 6", n)
	}
	if st := h.Stats(); st.Faults.Load() != 6 || st.Failures.Load() != 1 || st.Sessions.Load() != 7 {
		t.Errorf("%d faults, %d failures, %d sessions; want 6, 1, 7", st.Faults.Load(), st.Failures.Load(), st.Sessions.Load())
	}
	ev, err := h.Evaluate(ctx(time.Minute), trainer.EvalTask{Round: 9, Global: global})
	if err != nil || ev.Metrics.Accuracy != 0.5 || ev.Metrics.Examples != 20 {
		t.Errorf("Evaluate: %+v, %v", ev, err)
	}
}

// TestPythonLayoutMismatch: a trainer that describes another layout than
// the manifest's is refused, and the node's first task says so at once.
func TestPythonLayoutMismatch(t *testing.T) {
	h, _ := pythonTrainer(t, "0:layout", trainer.HostConfig{Params: layout.Len()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := h.Init(ctx, 1)
	if !errors.Is(err, trainer.ErrLayoutMismatch) || !strings.Contains(err.Error(), "3 tensors, 12 values") {
		t.Fatalf("Init: %v, want ErrLayoutMismatch", err)
	}
}
