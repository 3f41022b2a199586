package trainer_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/trainer"
)

func TestBackoff(t *testing.T) {
	var zero trainer.Backoff
	var got []time.Duration
	for n := range 9 {
		got = append(got, zero.Delay(n))
	}
	want := []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second,
		16 * time.Second, 30 * time.Second, 30 * time.Second, 30 * time.Second}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("zero Backoff delays %v, want %v", got, want)
		}
	}
	b := trainer.Backoff{Min: 10 * time.Millisecond, Max: 25 * time.Millisecond}
	if b.Delay(0) != 10*time.Millisecond || b.Delay(1) != 20*time.Millisecond || b.Delay(2) != 25*time.Millisecond || b.Delay(1000) != 25*time.Millisecond {
		t.Errorf("delays %v %v %v %v", b.Delay(0), b.Delay(1), b.Delay(2), b.Delay(1000))
	}
}

func writeScript(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "trainer.sh")
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestScript(t *testing.T) {
	path := writeScript(t, "exit 0\n")
	if got, err := trainer.Script([]string{"sh", "-e", path, "--epochs", "3"}); err != nil || got != path {
		t.Errorf("Script = %q, %v, want %s", got, err, path)
	}
	if got, err := trainer.Script([]string{"sh", "-c", "exit 0"}); err != nil || filepath.Base(got) != "sh" {
		t.Errorf("Script without a file argument = %q, %v, want the program", got, err)
	}
	if _, err := trainer.NewProcess(trainer.ProcessConfig{Args: []string{"no-such-trainer-program"}}); err == nil {
		t.Error("NewProcess of a missing program: no error")
	}
}

func TestProcessDigest(t *testing.T) {
	path := writeScript(t, "exit 0\n")
	d, err := trainer.FileDigest(path)
	if err != nil {
		t.Fatal(err)
	}
	wrong := strings.Repeat("0", 64)
	_, err = trainer.NewProcess(trainer.ProcessConfig{Args: []string{"sh", path}, Digest: wrong})
	if !errors.Is(err, trainer.ErrDigest) || !strings.Contains(err.Error(), d) || !strings.Contains(err.Error(), wrong) {
		t.Fatalf("wrong digest: %v", err)
	}
	if _, err := trainer.NewProcess(trainer.ProcessConfig{Args: []string{"sh", path}, Digest: "ABC"}); err == nil {
		t.Error("malformed digest: no error")
	}
	// The script changes while the node runs: the next start is refused.
	p, err := trainer.NewProcess(trainer.ProcessConfig{Args: []string{"sh", path}, Digest: d,
		Backoff: trainer.Backoff{Min: time.Millisecond, Max: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("echo tampered\nexit 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := p.Run(ctx); !errors.Is(err, trainer.ErrDigest) {
		t.Errorf("Run after the script changed: %v, want ErrDigest", err)
	}
}

// waitFor polls cond for up to a minute (real processes).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestProcessRestarts(t *testing.T) {
	out := &syncBuffer{}
	p, err := trainer.NewProcess(trainer.ProcessConfig{
		Args:    []string{"sh", "-c", `echo "run $CLOISTER_TEST_VAR"; exit 3`},
		Env:     []string{"CLOISTER_TEST_VAR=x7"},
		Backoff: trainer.Backoff{Min: time.Millisecond, Max: 4 * time.Millisecond}, Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "two restarts", func() bool { return p.Restarts() >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if !strings.Contains(p.Tail(), "run x7") || !strings.Contains(out.String(), "run x7\nrun x7\n") {
		t.Errorf("output %q, tail %q", out.String(), p.Tail())
	}
}

func TestProcessRestartKills(t *testing.T) {
	out := &syncBuffer{}
	p, err := trainer.NewProcess(trainer.ProcessConfig{
		Args:    []string{"sh", "-c", `echo up; sleep 600`},
		Backoff: trainer.Backoff{Min: time.Millisecond}, Output: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	waitFor(t, "the trainer", func() bool { return strings.Contains(out.String(), "up") })
	p.Restart(errors.New("test: hung"))
	waitFor(t, "the restart", func() bool { return p.Restarts() == 1 && strings.Count(out.String(), "up") == 2 })
	start := time.Now()
	cancel() // SIGTERM ends sh and its sleep (the whole process group)
	if err := <-done; err != nil {
		t.Errorf("Run: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("stopping took %v: SIGTERM did not reach the process group", d)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
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
