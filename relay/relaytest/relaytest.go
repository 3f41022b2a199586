// Package relaytest opens in-memory relay sessions for tests.
package relaytest

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"sync"
	"testing"

	"github.com/cloisterfl/cloister/relay"
)

// Sessions opens a session among the named parties over [relay.Pipe],
// with fresh signing keys, and closes them when the test ends.
func Sessions(t testing.TB, names ...string) map[string]*relay.Session {
	t.Helper()
	keys := map[string]ed25519.PublicKey{}
	privs := map[string]ed25519.PrivateKey{}
	for _, n := range names {
		pub, priv, err := ed25519.GenerateKey(nil)
		if err != nil {
			t.Fatal(err)
		}
		keys[n], privs[n] = pub, priv
	}
	carriers := relay.Pipe(names...)
	digest := sha256.Sum256([]byte("relaytest " + t.Name()))
	out := map[string]*relay.Session{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, len(names))
	for _, n := range names {
		wg.Go(func() {
			s, err := relay.Open(context.Background(), carriers[n], relay.Config{
				Self: n, Parties: names, Digest: digest, Key: privs[n], Keys: keys,
			})
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			out[n] = s
			mu.Unlock()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, s := range out {
			s.Close()
		}
	})
	return out
}
