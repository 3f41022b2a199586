package relaynet_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/relay"
	"github.com/cloisterfl/cloister/relay/relaynet"
)

func kits(t *testing.T, n int) map[string]*pki.Kit {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "fed")
	if err := pki.InitFederation(dir, pki.InitOptions{Nodes: n, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{}}, time.Now(), nil); err != nil {
		t.Fatal(err)
	}
	out := map[string]*pki.Kit{}
	for _, name := range []string{pki.CoordinatorDir, "node-1", "node-2", "node-3"}[:n+1] {
		k, err := pki.LoadKit(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		out[name] = k
	}
	return out
}

// Two members open a relay session through the server over mutual TLS;
// a third member, not of the session, is refused; the server counts what
// it forwarded and sees only sealed bytes.
func TestRelayOverTLS(t *testing.T) {
	ks := kits(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	stls, err := ks[pki.CoordinatorDir].TLSConfig(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	srv, err := relaynet.NewServer(relaynet.ServerConfig{TLS: stls, Members: []fl.NodeID{"node-1", "node-2"}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		srv.Shutdown(context.Background())
		<-done
	}()

	names := []string{"node-1", "node-2"}
	keys := map[string]ed25519.PublicKey{}
	for _, n := range names {
		keys[n] = ks[n].AuditKey.Public().(ed25519.PublicKey)
	}
	digest := sha256.Sum256([]byte("test session"))
	sessions := map[string]*relay.Session{}
	carriers := map[string]*relaynet.Carrier{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	// node-2 connects late: node-1's hello waits at the server.
	for i, n := range names {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 200 * time.Millisecond)
			ctls, err := ks[n].TLSConfig(pki.Options{})
			if err != nil {
				t.Error(err)
				return
			}
			c, err := relaynet.Dial(ctx, l.Addr().String(), relaynet.ClientConfig{TLS: ctls})
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(func() { c.Close() })
			if c.Self() != fl.NodeID(n) {
				t.Errorf("carrier of %s says %s", n, c.Self())
			}
			s, err := relay.Open(ctx, c, relay.Config{Self: n, Parties: names, Digest: digest, Key: ks[n].AuditKey, Keys: keys})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			sessions[n], carriers[n] = s, c
			mu.Unlock()
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	secret := []byte(strings.Repeat("per-sample partial predictor ", 100))
	if err := sessions["node-1"].Send(ctx, "node-2", "x", 7, secret); err != nil {
		t.Fatal(err)
	}
	got, err := sessions["node-2"].Recv(ctx, "node-1", "x", 7)
	if err != nil || string(got) != string(secret) {
		t.Fatalf("node-2 got %d bytes, %v", len(got), err)
	}

	// node-3 is a member of the federation but not of the relay's session.
	ctls, err := ks["node-3"].TLSConfig(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := relaynet.Dial(ctx, l.Addr().String(), relaynet.ClientConfig{TLS: ctls}); err == nil {
		rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
		_, _, err := c.Recv(rctx)
		rcancel()
		c.Close()
		if err == nil || !strings.Contains(err.Error(), "not a member of this relay's session") {
			t.Fatalf("node-3's stream: %v", err)
		}
	}

	// node-2's process ends: node-1 hears it at once, not at its timeout.
	sessions["node-2"].Close()
	carriers["node-2"].Close()
	start := time.Now()
	if _, err := sessions["node-1"].Recv(ctx, "node-2", "x", 8); !errors.Is(err, relay.ErrGone) || time.Since(start) > 5*time.Second {
		t.Fatalf("after node-2 left: %v (%s)", err, time.Since(start))
	}

	var total int64
	for _, p := range srv.Stats() {
		total += p.Bytes
	}
	if total < int64(len(secret)) {
		t.Fatalf("the server counted %d bytes", total)
	}
}
