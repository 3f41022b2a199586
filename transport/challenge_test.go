package transport

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport/internal/pb"
)

// The coordinator's nonces reach the node in stream order: the first with
// the stream's acceptance, later ones on request, each reported as an event
// before the node has it. Both ends export the same keying material.
func TestChallenge(t *testing.T) {
	fed := newFederation(t, 2)
	issued := 0
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator, Nonce: func() ([]byte, error) {
		issued++
		return fmt.Appendf(nil, "nonce-%d", issued), nil
	}})
	c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-1"]})
	e := expect(t, s, EventConnect, "node-1")
	if !bytes.Equal(e.Nonce, []byte("nonce-1")) || !bytes.Equal(c.Nonce(), e.Nonce) {
		t.Fatalf("first nonce: server %q, node %q", e.Nonce, c.Nonce())
	}
	const label = "EXPORTER-test"
	cs := c.TLS()
	mine, err1 := cs.ExportKeyingMaterial(label, nil, 32)
	theirs, err2 := e.TLS.ExportKeyingMaterial(label, nil, 32)
	if err1 != nil || err2 != nil || !bytes.Equal(mine, theirs) {
		t.Fatalf("keying material: node %x (%v), coordinator %x (%v)", mine, err1, theirs, err2)
	}
	for i := 2; i <= 3; i++ {
		n, err := c.Challenge(bg())
		if err != nil {
			t.Fatal(err)
		}
		e := expect(t, s, EventChallenge, "node-1")
		want := fmt.Appendf(nil, "nonce-%d", i)
		if !bytes.Equal(n, want) || !bytes.Equal(e.Nonce, want) {
			t.Fatalf("challenge %d: node got %q, event %q", i, n, e.Nonce)
		}
	}
	// Messages still flow after challenges.
	if err := c.Send(bg(), round.Message{Kind: round.KindHello, Evidence: []byte("e")}); err != nil {
		t.Fatal(err)
	}
	expect(t, s, EventMessage, "node-1")
}

// A server without nonces ends the stream of a node that asks for one.
func TestChallengeWithoutNonces(t *testing.T) {
	fed := newFederation(t, 2)
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator})
	c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-2"]})
	if e := expect(t, s, EventConnect, "node-2"); e.Nonce != nil || c.Nonce() != nil {
		t.Fatalf("nonce without ServerConfig.Nonce: %x, %x", e.Nonce, c.Nonce())
	}
	if _, err := c.Challenge(bg()); !errors.Is(err, ErrFrame) {
		t.Errorf("Challenge: %v, want ErrFrame", err)
	}
	if e := expect(t, s, EventDisconnect, "node-2"); !errors.Is(e.Err, ErrFrame) {
		t.Errorf("Disconnect: %v, want ErrFrame", e.Err)
	}
}

// A node that asks for nonces in a loop while none can be sent to it (it
// does not read, or a large message is in the way) gets one: the server
// issues no other nonce and starts no other sender until that one goes out,
// then answers the next request.
func TestChallengeFlood(t *testing.T) {
	fed := newFederation(t, 2)
	issued := 0
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator, Nonce: func() ([]byte, error) {
		issued++
		return fmt.Appendf(nil, "nonce-%d", issued), nil
	}})
	c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-1"]})
	expect(t, s, EventConnect, "node-1")
	s.mu.Lock()
	ss := s.streams["node-1"]
	s.mu.Unlock()
	ss.ep.sem <- struct{}{} // nothing can be sent to node-1
	const asks = 200
	for range asks {
		rawSend(t, c, &pb.Frame{Body: &pb.Frame_Challenge{Challenge: &pb.Challenge{}}})
	}
	if err := c.Send(bg(), round.Message{Kind: round.KindHello, Evidence: []byte("e")}); err != nil {
		t.Fatal(err)
	}
	challenges := 0
	for {
		e := next(t, s)
		if e.Kind == EventMessage {
			break // read after every request
		}
		if e.Kind != EventChallenge {
			t.Fatalf("event %v", e)
		}
		challenges++
	}
	if challenges != 1 {
		t.Fatalf("%d requests while no nonce could be sent issued %d nonces, want 1", asks, challenges)
	}
	// Once the nonce can go out, a request is answered: by it (if the
	// request came while it still waited) or by a fresh one.
	<-ss.ep.sem
	if n, err := c.Challenge(bg()); err != nil || string(n) != "nonce-2" && string(n) != "nonce-3" {
		t.Fatalf("the next request: %q, %v", n, err)
	}
}
