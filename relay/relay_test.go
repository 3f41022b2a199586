package relay_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/relay"
	"github.com/cloisterfl/cloister/relay/relaytest"
)

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return c
}

func TestRoundTrip(t *testing.T) {
	ss := relaytest.Sessions(t, "a", "b", "c")
	c := ctx(t)
	// Each sender's messages are read in its order; senders interleave.
	for i := range uint64(3) {
		for _, from := range []string{"a", "b"} {
			if err := ss[from].Send(c, "c", "step", i, []byte(fmt.Sprintf("%s%d", from, i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, from := range []string{"b", "a"} {
		for i := range uint64(3) {
			got, err := ss["c"].Recv(c, from, "step", i)
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("%s%d", from, i); string(got) != want {
				t.Fatalf("got %q, want %q", got, want)
			}
		}
	}
	sent, _ := ss["a"].Bytes()
	_, recvd := ss["c"].Bytes()
	if sent == 0 || recvd < sent {
		t.Fatalf("bytes: a sent %d, c received %d", sent, recvd)
	}
	// Out of step: an authentic message that is not the one due.
	if err := ss["a"].Send(c, "b", "x", 1, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := ss["b"].Recv(c, "a", "y", 1); !errors.Is(err, relay.ErrOrder) || !strings.Contains(err.Error(), "a sent x[1] where y[1] was due") {
		t.Fatalf("out of step: %v", err)
	}
}

// tamper is a carrier between a party and the others that lets a test
// change what the relay delivers.
type tamper struct {
	relay.Carrier
	mu     sync.Mutex
	change func(from string, msg []byte) (string, []byte, bool) // false: drop
}

func (t *tamper) Recv(ctx context.Context) (string, []byte, error) {
	for {
		from, msg, err := t.Carrier.Recv(ctx)
		if err != nil {
			return from, msg, err
		}
		t.mu.Lock()
		f := t.change
		t.mu.Unlock()
		if f == nil {
			return from, msg, nil
		}
		if from, msg, ok := f(from, msg); ok {
			return from, msg, nil
		}
	}
}

type parties struct {
	names []string
	privs map[string]ed25519.PrivateKey
	keys  map[string]ed25519.PublicKey
}

func newParties(t *testing.T, names ...string) parties {
	p := parties{names: names, privs: map[string]ed25519.PrivateKey{}, keys: map[string]ed25519.PublicKey{}}
	for _, n := range names {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		p.keys[n], p.privs[n] = pub, priv
	}
	return p
}

func (p parties) config(self, digest string) relay.Config {
	return relay.Config{Self: self, Parties: p.names, Digest: sha256.Sum256([]byte(digest)), Key: p.privs[self], Keys: p.keys}
}

// open opens a and b over carriers, b's behind a tamper.
func open(t *testing.T, p parties, cb func(relay.Config) relay.Config) (*relay.Session, *relay.Session, *tamper, error) {
	cs := relay.Pipe("a", "b")
	tb := &tamper{Carrier: cs["b"]}
	var sa *relay.Session
	var errA error
	var wg sync.WaitGroup
	wg.Go(func() { sa, errA = relay.Open(ctx(t), cs["a"], p.config("a", "d")) })
	cfg := p.config("b", "d")
	if cb != nil {
		cfg = cb(cfg)
	}
	sb, err := relay.Open(ctx(t), tb, cfg)
	wg.Wait()
	if sa != nil {
		t.Cleanup(func() { sa.Close() })
	}
	if sb != nil {
		t.Cleanup(func() { sb.Close() })
	}
	if err == nil {
		err = errA
	}
	return sa, sb, tb, err
}

func TestMismatch(t *testing.T) {
	p := newParties(t, "a", "b")
	_, _, _, err := open(t, p, func(c relay.Config) relay.Config { c.Digest[0] ^= 1; return c })
	if !errors.Is(err, relay.ErrMismatch) {
		t.Fatalf("another digest: %v", err)
	}
	_, _, _, err = open(t, p, func(c relay.Config) relay.Config { c.Parties = []string{"b", "a"}; return c })
	if !errors.Is(err, relay.ErrMismatch) || !strings.Contains(err.Error(), "other parties") {
		t.Fatalf("another order: %v", err)
	}
	// a's hello checked against another key for a: forged.
	other := newParties(t, "a")
	_, _, _, err = open(t, p, func(c relay.Config) relay.Config {
		keys := map[string]ed25519.PublicKey{"a": other.keys["a"], "b": c.Keys["b"]}
		c.Keys = keys
		return c
	})
	if !errors.Is(err, relay.ErrForged) {
		t.Fatalf("hello under another key: %v", err)
	}
	if _, err := relay.Open(ctx(t), relay.Pipe("a")["a"], relay.Config{Self: "a", Parties: []string{"a", "b"}, Key: p.privs["b"], Keys: p.keys}); err == nil || !strings.Contains(err.Error(), "not party \"a\"'s") {
		t.Fatalf("the wrong signing key: %v", err)
	}
}

func TestRelayCannotForge(t *testing.T) {
	p := newParties(t, "a", "b")
	for _, tc := range []struct {
		name   string
		change func(n *int) func(string, []byte) (string, []byte, bool)
		want   error
		text   string
	}{
		{"flipped bit", func(n *int) func(string, []byte) (string, []byte, bool) {
			return func(f string, m []byte) (string, []byte, bool) {
				m = bytes.Clone(m)
				m[len(m)-1] ^= 1
				return f, m, true
			}
		}, relay.ErrForged, "does not authenticate"},
		{"dropped", func(n *int) func(string, []byte) (string, []byte, bool) {
			return func(f string, m []byte) (string, []byte, bool) { *n++; return f, m, *n != 1 }
		}, relay.ErrForged, "message 2 from a where 1 was due"}, // 0 is the key confirmation
		{"replayed", func(n *int) func(string, []byte) (string, []byte, bool) {
			var first []byte
			return func(f string, m []byte) (string, []byte, bool) {
				*n++
				if *n == 1 {
					first = m
				}
				if *n == 2 {
					return f, first, true
				}
				return f, m, true
			}
		}, relay.ErrForged, "message 1 from a where 2 was due"},
		{"relabelled tag", func(n *int) func(string, []byte) (string, []byte, bool) {
			return func(f string, m []byte) (string, []byte, bool) {
				m = bytes.Clone(m)
				m[6+8+2] ^= 'x' ^ 'y' // the tag's first byte
				return f, m, true
			}
		}, relay.ErrForged, "does not authenticate"},
		{"garbage", func(n *int) func(string, []byte) (string, []byte, bool) {
			return func(f string, m []byte) (string, []byte, bool) { return f, []byte("CLRL\x01"), true }
		}, relay.ErrMalformed, "not a relay message"},
		{"from a stranger", func(n *int) func(string, []byte) (string, []byte, bool) {
			return func(f string, m []byte) (string, []byte, bool) { return "mallory", m, true }
		}, relay.ErrForged, "not a party"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sa, sb, tb, err := open(t, p, nil)
			if err != nil {
				t.Fatal(err)
			}
			var n int
			tb.mu.Lock()
			tb.change = tc.change(&n)
			tb.mu.Unlock()
			c := ctx(t)
			for i := range uint64(2) {
				if err := sa.Send(c, "b", "x", i, []byte("secret")); err != nil {
					t.Fatal(err)
				}
			}
			var got error
			for i := range uint64(2) {
				if _, err := sb.Recv(c, "a", "x", i); err != nil {
					got = err
					break
				}
			}
			if !errors.Is(got, tc.want) || !strings.Contains(got.Error(), tc.text) {
				t.Fatalf("got %v, want %v with %q", got, tc.want, tc.text)
			}
		})
	}
}

// The relay sees no plaintext.
func TestSealed(t *testing.T) {
	p := newParties(t, "a", "b")
	sa, sb, tb, err := open(t, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen [][]byte
	tb.mu.Lock()
	tb.change = func(f string, m []byte) (string, []byte, bool) { seen = append(seen, m); return f, m, true }
	tb.mu.Unlock()
	c := ctx(t)
	secret := []byte("the label of patient 17 is positive")
	if err := sa.Send(c, "b", "x", 0, secret); err != nil {
		t.Fatal(err)
	}
	if got, err := sb.Recv(c, "a", "x", 0); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("%q %v", got, err)
	}
	if len(seen) != 1 || bytes.Contains(seen[0], []byte("patient")) {
		t.Fatalf("the relay saw %q", seen)
	}
	sb.Close()
	if _, err := sb.Recv(c, "a", "x", 1); !errors.Is(err, relay.ErrClosed) {
		t.Fatalf("after Close: %v", err)
	}
}

func TestAbort(t *testing.T) {
	ss := relaytest.Sessions(t, "a", "b", "c")
	c := ctx(t)
	if err := ss["a"].Abort(c, "the CSV on line 17 is broken"); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"b", "c"} {
		_, err := ss[n].Recv(c, "a", "step", 3)
		if !errors.Is(err, relay.ErrAborted) || !strings.Contains(err.Error(), `a: "the CSV on line 17 is broken"`) {
			t.Fatalf("%s: %v", n, err)
		}
	}
}

// A peer that sends faster than its messages are read fails the session
// once the bound is passed, naming it, instead of filling the memory.
func TestQueueBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := newParties(t, "a", "b")
		sa, sb, _, err := open(t, p, func(c relay.Config) relay.Config { c.MaxBody = 1024; return c })
		if err != nil {
			t.Fatal(err)
		}
		c := ctx(t)
		body := make([]byte, 1024)
		for i := range uint64(1100) { // 1.1 MB > 8·1024 + 1 MiB
			if err := sa.Send(c, "b", "x", i, body); err != nil {
				t.Fatal(err)
			}
		}
		// b's reader takes in the flood before b reads: reading while it
		// arrives would drain the queue as it fills, and it might never
		// exceed the bound.
		synctest.Wait()
		var err2 error
		for i := range uint64(1100) {
			if _, err2 = sb.Recv(c, "a", "x", i); err2 != nil {
				break
			}
		}
		if !errors.Is(err2, relay.ErrMalformed) || !strings.Contains(err2.Error(), "a has more than") {
			t.Fatalf("flooded: %v", err2)
		}
	})
}

// A body above the receiver's MaxBody is refused before it is opened.
func TestMaxBody(t *testing.T) {
	p := newParties(t, "a", "b")
	sa, sb, _, err := open(t, p, func(c relay.Config) relay.Config { c.MaxBody = 1024; return c })
	if err != nil {
		t.Fatal(err)
	}
	c := ctx(t)
	if err := sa.Send(c, "b", "x", 0, make([]byte, 2000)); err != nil {
		t.Fatal(err)
	}
	if _, err := sb.Recv(c, "a", "x", 0); !errors.Is(err, relay.ErrMalformed) || !strings.Contains(err.Error(), "at most 1024") {
		t.Fatalf("a body of 2000 bytes: %v", err)
	}
	// The session with a is over: later calls fail the same way.
	if _, err := sb.Recv(c, "a", "x", 1); !errors.Is(err, relay.ErrMalformed) {
		t.Fatalf("after the failure: %v", err)
	}
}

type failOnce struct {
	relay.Carrier
	fail  bool
	sends int
}

func (f *failOnce) Send(ctx context.Context, to string, msg []byte) error {
	f.sends++
	if f.fail {
		f.fail = false
		return errors.New("the stream broke")
	}
	return f.Carrier.Send(ctx, to, msg)
}

// After a failed send, nothing more goes to that peer: a carrier that
// failed after the bytes left must not make the next message reuse the
// nonce.
func TestSendFailureSticks(t *testing.T) {
	p := newParties(t, "a", "b")
	cs := relay.Pipe("a", "b")
	fa := &failOnce{Carrier: cs["a"]}
	var sb *relay.Session
	done := make(chan error, 1)
	go func() {
		var err error
		sb, err = relay.Open(ctx(t), cs["b"], p.config("b", "d"))
		done <- err
	}()
	sa, err := relay.Open(ctx(t), fa, p.config("a", "d"))
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	defer sb.Close()
	fa.fail = true
	c := ctx(t)
	if err := sa.Send(c, "b", "x", 0, []byte("one")); err == nil {
		t.Fatal("the failed send succeeded")
	}
	n := fa.sends
	if err := sa.Send(c, "b", "x", 1, []byte("two")); err == nil || !strings.Contains(err.Error(), "the stream broke") || fa.sends != n {
		t.Fatalf("after a failure: %v, %d sends", err, fa.sends-n)
	}
}
