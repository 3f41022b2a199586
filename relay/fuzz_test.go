package relay_test

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/relay"
)

// fuzzParties has fixed keys, so that the fuzzer's corpus replays.
func fuzzParties() (map[string]ed25519.PrivateKey, map[string]ed25519.PublicKey) {
	privs, pubs := map[string]ed25519.PrivateKey{}, map[string]ed25519.PublicKey{}
	for i, n := range []string{"a", "b"} {
		seed := make([]byte, ed25519.SeedSize)
		seed[0] = byte(i + 1)
		privs[n] = ed25519.NewKeyFromSeed(seed)
		pubs[n] = privs[n].Public().(ed25519.PublicKey)
	}
	return privs, pubs
}

// FuzzOpen hands b's Open whatever bytes as a's hello: an error, never a
// panic or a session.
func FuzzOpen(f *testing.F) {
	f.Add([]byte("CLRL\x01\x01"))
	f.Add(make([]byte, 6+32+32+2+1+2+1+32+64))
	f.Fuzz(func(t *testing.T, hello []byte) {
		if len(hello) == 0 {
			return // the relay's notice of a departure: Open waits on
		}
		privs, pubs := fuzzParties()
		cs := relay.Pipe("a", "b")
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := cs["a"].Send(ctx, "b", hello); err != nil {
			t.Fatal(err)
		}
		s, err := relay.Open(ctx, cs["b"], relay.Config{Self: "b", Parties: []string{"a", "b"}, Digest: sha256.Sum256([]byte("f")), Key: privs["b"], Keys: pubs})
		if err == nil {
			s.Close()
			t.Fatal("a session opened on bytes no party signed")
		}
	})
}

// FuzzRecv hands an open session whatever bytes as a's next message: an
// error, never a panic or a body.
func FuzzRecv(f *testing.F) {
	f.Add([]byte("CLRL\x01\x02\x00\x00\x00\x00\x00\x00\x00\x01\x00\x01x\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Add([]byte{})
	privs, pubs := fuzzParties()
	f.Fuzz(func(t *testing.T, msg []byte) {
		cs := relay.Pipe("a", "b")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		digest := sha256.Sum256([]byte("f"))
		done := make(chan *relay.Session, 1)
		go func() {
			s, err := relay.Open(ctx, cs["a"], relay.Config{Self: "a", Parties: []string{"a", "b"}, Digest: digest, Key: privs["a"], Keys: pubs})
			if err != nil {
				t.Error(err)
			}
			done <- s
		}()
		sb, err := relay.Open(ctx, cs["b"], relay.Config{Self: "b", Parties: []string{"a", "b"}, Digest: digest, Key: privs["b"], Keys: pubs})
		if err != nil {
			t.Fatal(err)
		}
		defer sb.Close()
		if sa := <-done; sa != nil {
			defer sa.Close()
		}
		// The raw carrier: bytes a's session never sealed.
		if err := cs["a"].Send(ctx, "b", msg); err != nil {
			t.Fatal(err)
		}
		if body, err := sb.Recv(ctx, "a", "x", 0); err == nil {
			t.Fatalf("a body from bytes a never sealed: %q", body)
		}
	})
}
