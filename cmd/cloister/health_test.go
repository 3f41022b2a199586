package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/pki"
)

// TestHealthHandler: /healthz answers 200 "ok" while up, 503 with the
// reason once not, only to GET and HEAD, and serves no other path.
func TestHealthHandler(t *testing.T) {
	var down error
	h := healthHandler(func() error { return down })
	for _, tc := range []struct {
		method, path string
		down         error
		code         int
		body         string
	}{
		{"GET", "/healthz", nil, 200, "ok\n"},
		{"HEAD", "/healthz", nil, 200, ""},
		{"GET", "/healthz", errors.New("stopped"), 503, "stopped\n"},
		{"POST", "/healthz", nil, 405, ""},
		{"GET", "/status", nil, 404, ""},
		{"GET", "/metrics", nil, 404, ""},
	} {
		down = tc.down
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code || tc.body != "" && rec.Body.String() != tc.body {
			t.Errorf("%s %s (down: %v): %d %q, want %d %q", tc.method, tc.path, tc.down, rec.Code, rec.Body.String(), tc.code, tc.body)
		}
	}
}

// TestCoordinatorHealth runs a coordinator process with --health: /healthz
// answers ok while it runs, and nothing answers once it has stopped. A
// --health address it cannot bind is refused, naming the flag.
func TestCoordinatorHealth(t *testing.T) {
	f, err := newLocalFed(filepath.Join(t.TempDir(), "fed"), pki.InitOptions{Nodes: 2, Threshold: 2, Federation: "test",
		Mode: federation.ModePlain, DP: &federation.DP{}, Model: federation.ModelSpec{Kind: "softmax", Inputs: 4, Classes: 2},
		Training: federation.Training{Rounds: 1, LocalEpochs: 1, Batch: 8, LearningRate: 0.1}})
	if err != nil {
		t.Fatal(err)
	}
	health, err := freeAddr()
	if err != nil {
		t.Fatal(err)
	}
	f.coordArgs = []string{"--health", health}
	t.Cleanup(f.stopAll)
	if err := f.startCoordinator(); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + health + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != "ok\n" {
		t.Errorf("GET /healthz: %s %q, want 200 ok", resp.Status, b)
	}

	// Another coordinator cannot take the same --health address.
	err = run([]string{"coordinator", "--kit", f.kit(pki.CoordinatorDir), "--listen", "127.0.0.1:0", "--state", t.TempDir(),
		"--health", health}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--health: ") || !strings.Contains(err.Error(), "address already in use") {
		t.Errorf("a second coordinator on --health %s: %v, want --health: … address already in use", health, err)
	}

	if err := f.signal("coordinator", syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-f.proc("coordinator").done
	if resp, err := c.Get("http://" + health + "/healthz"); err == nil {
		resp.Body.Close()
		t.Errorf("GET /healthz after the coordinator stopped: %s", resp.Status)
	}
}
