package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
)

// federation is a test federation made by pki in a temporary directory.
type federation struct {
	coordinator *tls.Config
	nodes       map[fl.NodeID]*tls.Config
}

var fedCache = map[int]*federation{}

// newFederation returns the mTLS configurations of a federation with n
// nodes (node-1 … node-n), made with pki.InitFederation in a temporary
// directory and loaded from the kits.
func newFederation(t testing.TB, n int) *federation {
	t.Helper()
	if f := fedCache[n]; f != nil {
		return f
	}
	dir := filepath.Join(t.TempDir(), "fed")
	if err := pki.InitFederation(dir, pki.InitOptions{Nodes: n, Threshold: 1}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	f := &federation{nodes: map[fl.NodeID]*tls.Config{}}
	load := func(name string) *tls.Config {
		k, err := pki.LoadKit(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		c, err := k.TLSConfig(pki.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	f.coordinator = load("coordinator")
	for i := 1; i <= n; i++ {
		id := fl.NodeID(fmt.Sprintf("node-%d", i))
		f.nodes[id] = load(string(id))
	}
	fedCache[n] = f
	return f
}

// startServer runs a server on 127.0.0.1:0 until the test ends.
func startServer(t testing.TB, cfg ServerConfig) (*Server, string) {
	t.Helper()
	s, err := NewServer(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-served; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
	return s, l.Addr().String()
}

func dial(t testing.TB, addr string, cfg ClientConfig) *Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, addr, cfg)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// next returns the server's next event, failing after a timeout.
func next(t testing.TB, s *Server) Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	e, err := s.Recv(ctx)
	if err != nil {
		t.Fatalf("Server.Recv: %v", err)
	}
	return e
}

func expect(t testing.TB, s *Server, kind EventKind, node fl.NodeID) Event {
	t.Helper()
	e := next(t, s)
	if e.Kind != kind || e.Node != node {
		t.Fatalf("event %s from %s (msg %v, err %v), want %s from %s", e.Kind, e.Node, e.Msg, e.Err, kind, node)
	}
	return e
}

// ended waits for c's stream to end and returns its error.
func ended(t testing.TB, c *Conn) error {
	t.Helper()
	select {
	case <-c.Done():
		return c.Err()
	case <-time.After(20 * time.Second):
		t.Fatal("the stream did not end")
		return nil
	}
}

func listen(t testing.TB) (net.Listener, string) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return l, l.Addr().String()
}

// eventually waits until cond holds.
func eventually(t testing.TB, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
	}
}
