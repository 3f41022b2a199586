package transport

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"math/rand/v2"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport/internal/pb"
)

func bg() context.Context { return context.Background() }

// A message with every field set crosses the network both ways unchanged,
// and the server stamps the authenticated sender.
func TestRoundTrip(t *testing.T) {
	fed := newFederation(t, 2)
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator})
	c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-2"]})
	if c.Self() != "node-2" || c.Coordinator() != "coordinator" {
		t.Fatalf("Self %q, Coordinator %q", c.Self(), c.Coordinator())
	}
	expect(t, s, EventConnect, "node-2")
	if got := s.Connected(); !slices.Equal(got, []fl.NodeID{"node-2"}) {
		t.Fatalf("Connected() = %v", got)
	}

	r := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		m := randMessage(r)
		m.To = ""
		if err := c.Send(bg(), m); err != nil {
			t.Fatal(err)
		}
		e := expect(t, s, EventMessage, "node-2")
		if !sameMessage(e.Msg, m) {
			t.Fatalf("server got\n%+v\nwant\n%+v", e.Msg, m)
		}
		m = randMessage(r)
		m.To = "node-2"
		if err := s.Send(bg(), "node-2", m); err != nil {
			t.Fatal(err)
		}
		got, err := c.Recv(bg())
		if err != nil {
			t.Fatal(err)
		}
		if !sameMessage(got, m) {
			t.Fatalf("node got\n%+v\nwant\n%+v", got, m)
		}
	}
	mt := s.Metrics()
	if mt.MessagesIn.Load() != 20 || mt.MessagesOut.Load() != 20 || mt.BytesIn.Load() == 0 || mt.BytesOut.Load() == 0 || mt.Connects.Load() != 1 {
		t.Errorf("server metrics: in %d out %d, bytes in %d out %d, connects %d", mt.MessagesIn.Load(), mt.MessagesOut.Load(), mt.BytesIn.Load(), mt.BytesOut.Load(), mt.Connects.Load())
	}
	if c.Metrics().MessagesIn.Load() != 20 || c.Metrics().BytesIn.Load() != mt.BytesOut.Load() {
		t.Errorf("client metrics: in %d, bytes in %d (server sent %d)", c.Metrics().MessagesIn.Load(), c.Metrics().BytesIn.Load(), mt.BytesOut.Load())
	}

	// A clean close is a Disconnect without error.
	c.Close()
	if e := expect(t, s, EventDisconnect, "node-2"); e.Err != nil {
		t.Errorf("Disconnect after Close: %v", e.Err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Errorf("Err after Close: %v", c.Err())
	}
	if err := c.Send(bg(), round.Message{Kind: round.KindHello}); !errors.Is(err, ErrClosed) {
		t.Errorf("Send after Close: %v", err)
	}
}

// A 20 MiB payload crosses in 1 MiB chunks both ways, although gRPC's own
// limit is barely above one chunk.
func TestLargePayload(t *testing.T) {
	fed := newFederation(t, 2)
	lim := Limits{MaxMessage: 24 << 20, ChunkSize: 1 << 20}
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator, Limits: lim})
	c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-1"], Limits: lim})
	expect(t, s, EventConnect, "node-1")

	payload := make([]byte, 20<<20)
	rand.NewChaCha8([32]byte{5, 6}).Read(payload)
	m := round.Message{Kind: round.KindUpload, Round: 7, Payload: payload, Signature: []byte("sig")}
	if err := c.Send(bg(), m); err != nil {
		t.Fatal(err)
	}
	e := expect(t, s, EventMessage, "node-1")
	if !bytes.Equal(e.Msg.Payload, payload) || e.Msg.Round != 7 {
		t.Fatalf("payload of %d bytes arrived as %d bytes", len(payload), len(e.Msg.Payload))
	}
	if in := s.Metrics().BytesIn.Load(); in < 20<<20 || in > 20<<20+64<<10 {
		t.Errorf("server counted %d bytes in", in)
	}
	size, err := Size(m)
	if err != nil || size < len(payload) {
		t.Fatalf("Size = %d, %v", size, err)
	}
	if got := s.Metrics().LargestIn.Load(); got != uint64(size) {
		t.Errorf("server's largest message in: %d bytes, Size says %d", got, size)
	}
	if got := c.Metrics().LargestOut.Load(); got != uint64(size) {
		t.Errorf("client's largest message out: %d bytes, Size says %d", got, size)
	}

	back := round.Message{Kind: round.KindModel, Round: 7, Model: payload}
	if err := s.Send(bg(), "node-1", back); err != nil {
		t.Fatal(err)
	}
	got, err := c.Recv(bg())
	if err != nil || !bytes.Equal(got.Model, payload) {
		t.Fatalf("model: %d bytes, %v", len(got.Model), err)
	}

	// Above MaxMessage, Send refuses before anything leaves.
	big := round.Message{Kind: round.KindUpload, Payload: make([]byte, 25<<20)}
	if err := c.Send(bg(), big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("client Send of 25 MiB: %v", err)
	}
	if err := s.Send(bg(), "node-1", big); !errors.Is(err, ErrTooLarge) {
		t.Errorf("server Send of 25 MiB: %v", err)
	}
	if c.Err() != nil {
		t.Errorf("stream ended: %v", c.Err())
	}
}

// A client without a certificate, or with one from another CA, is refused
// in the handshake: Dial fails, the server counts it, nothing connects.
func TestHandshakeRefused(t *testing.T) {
	fed := newFederation(t, 2)
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator})
	good := fed.nodes["node-1"]

	// No certificate at all: Dial refuses the configuration itself.
	none := good.Clone()
	none.Certificates = nil
	if _, err := Dial(bg(), addr, ClientConfig{TLS: none}); !errors.Is(err, ErrConfig) {
		t.Fatalf("Dial without certificate: %v", err)
	}

	other, err := pki.NewCA("Other federation CA", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.IssueNode("node-1", time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i, tc := range []struct {
		name string
		tls  func() *tls.Config
		want string
	}{
		{"no certificate sent", func() *tls.Config {
			c := good.Clone()
			c.Certificates = nil
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &tls.Certificate{}, nil }
			return c
		}, "certificate required"},
		{"another CA", func() *tls.Config {
			c := good.Clone()
			c.Certificates = []tls.Certificate{foreign.TLSCertificate()}
			return c
		}, "bad certificate"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(bg(), 10*time.Second)
			defer cancel()
			c, err := Dial(ctx, addr, ClientConfig{TLS: tc.tls()})
			if err == nil {
				c.Close()
				t.Fatal("Dial succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Dial: %v; want it to mention %q", err, tc.want)
			}
			t.Logf("Dial: %v", err)
			eventually(t, func() bool { return s.Metrics().Rejected[ReasonHandshake].Load() == uint64(i+1) })
		})
	}
	if n := s.Connected(); len(n) != 0 || s.Metrics().Connects.Load() != 0 {
		t.Errorf("connected: %v", n)
	}
}

// rawSend writes frames directly on c's stream, bypassing the encoder.
func rawSend(t *testing.T, c *Conn, fs ...*pb.Frame) {
	t.Helper()
	c.ep.sem <- struct{}{}
	defer func() { <-c.ep.sem }()
	for _, f := range fs {
		if err := c.stream.Send(f); err != nil {
			return // the server may already have dropped the stream
		}
	}
}

func frames(t *testing.T, seq uint64, from string, p *pb.Message) []*pb.Frame {
	b, err := proto.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	return chunkFrames(seq, from, b, DefaultChunkSize)
}

// Every protocol violation ends the stream with a clear error on both
// sides, counts a rejection, and leaves the server serving.
func TestRejected(t *testing.T) {
	fed := newFederation(t, 2)
	lim := Limits{MaxMessage: 1 << 20, ChunkSize: 64 << 10}
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator, Limits: lim})
	hello := &pb.Message{Kind: pb.Kind_KIND_HELLO, Evidence: []byte("evidence")}
	helloBytes, _ := proto.Marshal(hello)
	sum := sha256.Sum256(helloBytes)

	for _, tc := range []struct {
		name   string
		send   func(t *testing.T, c *Conn)
		reason Reason
		want   error
		text   string
	}{
		{"claims another NodeID", func(t *testing.T, c *Conn) {
			c.ep.claim = "node-2" // as a node that lies about itself would
			c.Send(bg(), round.Message{Kind: round.KindHello})
		}, ReasonImpersonation, ErrImpersonation, `node node-1 sent a message claiming to be "node-2"`},
		{"oversized declared length", func(t *testing.T, c *Conn) {
			rawSend(t, c, hdr(1, 1<<40, sum[:], ""))
		}, ReasonTooLarge, ErrTooLarge, "message 1 declares 1099511627776 bytes, the limit is 1048576"},
		{"chunk without header", func(t *testing.T, c *Conn) {
			rawSend(t, c, chunk(0, []byte("garbage")))
		}, ReasonFrame, ErrFrame, "chunk at offset 0 of no message"},
		{"out-of-order chunk", func(t *testing.T, c *Conn) {
			fs := chunkFrames(1, "", bytes.Repeat([]byte{1}, 3*lim.ChunkSize), lim.ChunkSize)
			rawSend(t, c, fs[0], fs[2])
		}, ReasonFrame, ErrFrame, "want offset 0 (out of order)"},
		{"replayed seq", func(t *testing.T, c *Conn) {
			fs := frames(t, 1, "", hello)
			rawSend(t, c, append(fs, fs...)...)
		}, ReasonFrame, ErrFrame, "header of message 1, want message 2"},
		{"digest mismatch", func(t *testing.T, c *Conn) {
			fs := frames(t, 1, "", hello)
			fs[0].GetHeader().Digest = make([]byte, 32)
			rawSend(t, c, fs...)
		}, ReasonFrame, ErrFrame, "digest mismatch"},
		{"empty frame", func(t *testing.T, c *Conn) {
			rawSend(t, c, &pb.Frame{})
		}, ReasonFrame, ErrFrame, "neither header nor chunk"},
		{"garbage message", func(t *testing.T, c *Conn) {
			b := []byte{0xff, 0xff, 0xff, 0xff}
			rawSend(t, c, chunkFrames(1, "", b, lim.ChunkSize)...)
		}, ReasonMalformed, ErrMalformed, "cannot parse invalid wire-format data"},
		{"unknown kind", func(t *testing.T, c *Conn) {
			rawSend(t, c, frames(t, 1, "", &pb.Message{Kind: 77})...)
		}, ReasonMalformed, round.ErrUnknownKind, "kind 77"},
		{"forged NodeID inside", func(t *testing.T, c *Conn) {
			rawSend(t, c, frames(t, 1, "", &pb.Message{Kind: pb.Kind_KIND_TRAIN, Cohort: []string{"node-1", "NODE 2"}})...)
		}, ReasonMalformed, ErrMalformed, "cohort[1]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := s.Metrics().Rejected[tc.reason].Load()
			c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-1"], Limits: lim})
			expect(t, s, EventConnect, "node-1")
			tc.send(t, c)

			e := next(t, s)
			for e.Kind == EventMessage { // what came before the violation
				e = next(t, s)
			}
			if e.Kind != EventDisconnect {
				t.Fatalf("event %s, want disconnect", e.Kind)
			}
			if !errors.Is(e.Err, tc.want) || !strings.Contains(e.Err.Error(), tc.text) {
				t.Errorf("server: %v; want %v mentioning %q", e.Err, tc.want, tc.text)
			}
			err := ended(t, c)
			var rej *RejectError
			if !errors.As(err, &rej) || rej.Reason != tc.reason || !errors.Is(err, ErrRejected) || !strings.Contains(err.Error(), tc.text) {
				t.Errorf("node: %v; want a RejectError (%s) mentioning %q", err, tc.reason, tc.text)
			}
			if tc.reason == ReasonImpersonation {
				var ce *ClaimError
				if !errors.As(e.Err, &ce) || ce.Peer != "node-1" || ce.Claimed != "node-2" {
					t.Errorf("server error %v is not the ClaimError", e.Err)
				}
				if !errors.Is(err, ErrImpersonation) {
					t.Errorf("node error %v does not match ErrImpersonation", err)
				}
			}
			if got := s.Metrics().Rejected[tc.reason].Load(); got != before+1 {
				t.Errorf("Rejected[%s] = %d, want %d", tc.reason, got, before+1)
			}
			if n := s.Connected(); len(n) != 0 {
				t.Errorf("still connected: %v", n)
			}
		})
	}
	// The server still serves.
	c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-2"], Limits: lim})
	expect(t, s, EventConnect, "node-2")
	if err := c.Send(bg(), round.Message{Kind: round.KindHello}); err != nil {
		t.Fatal(err)
	}
	expect(t, s, EventMessage, "node-2")
}

// The node refuses garbage from the coordinator too.
func TestNodeRejects(t *testing.T) {
	fed := newFederation(t, 2)
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator})
	c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-1"]})
	expect(t, s, EventConnect, "node-1")

	// A message addressed to another node is refused by Send…
	if err := s.Send(bg(), "node-1", round.Message{Kind: round.KindKeyDelivery, To: "node-2"}); !errors.Is(err, ErrMisaddressed) {
		t.Fatalf("Send: %v", err)
	}
	// …and by the node, should it arrive.
	s.mu.Lock()
	ss := s.streams["node-1"]
	s.mu.Unlock()
	b, _ := proto.Marshal(&pb.Message{Kind: pb.Kind_KIND_KEY_DELIVERY, To: "node-2"})
	if err := ss.ep.send(bg(), b); err != nil {
		t.Fatal(err)
	}
	err := ended(t, c)
	if !errors.Is(err, ErrMisaddressed) || !strings.Contains(err.Error(), "KeyDelivery for node-2") {
		t.Errorf("node: %v", err)
	}
	if got := c.Metrics().Rejected[ReasonMisaddressed].Load(); got != 1 {
		t.Errorf("Rejected[misaddressed] = %d", got)
	}
	expect(t, s, EventDisconnect, "node-1")
}

// Send to a node without a stream fails with ErrNotConnected.
func TestSendNotConnected(t *testing.T) {
	fed := newFederation(t, 2)
	s, _ := startServer(t, ServerConfig{TLS: fed.coordinator})
	err := s.Send(bg(), "node-1", round.Message{Kind: round.KindDone})
	if !errors.Is(err, ErrNotConnected) || !strings.Contains(err.Error(), "node-1") {
		t.Fatalf("Send: %v", err)
	}
}

// A second stream from the same node replaces the first: the old one ends
// with ErrReplaced after its messages, then the new one connects.
func TestReconnectReplaces(t *testing.T) {
	fed := newFederation(t, 2)
	// A queue of one: the second message waits in the stream's reader when
	// the new stream arrives, and must still come before the Disconnect.
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator, Queue: 1})
	a := dial(t, addr, ClientConfig{TLS: fed.nodes["node-1"]})
	expect(t, s, EventConnect, "node-1")
	for i := range 2 {
		if err := a.Send(bg(), round.Message{Kind: round.KindMetrics, Round: fl.Round(i + 1)}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() bool { return s.Metrics().MessagesIn.Load() == 2 })
	// The new stream is accepted once the old one's events are queued, so
	// the coordinator's loop (here, the test) must keep receiving.
	type result struct {
		c   *Conn
		err error
	}
	dialed := make(chan result)
	go func() {
		c, err := Dial(bg(), addr, ClientConfig{TLS: fed.nodes["node-1"]})
		dialed <- result{c, err}
	}()
	for i := range 2 {
		e := expect(t, s, EventMessage, "node-1")
		if e.Msg.Round != fl.Round(i+1) {
			t.Fatalf("message %d: round %d", i, e.Msg.Round)
		}
	}
	if e := expect(t, s, EventDisconnect, "node-1"); !errors.Is(e.Err, ErrReplaced) {
		t.Errorf("old stream ended with %v", e.Err)
	}
	expect(t, s, EventConnect, "node-1")
	res := <-dialed
	if res.err != nil {
		t.Fatal(res.err)
	}
	b := res.c
	defer b.Close()
	if err := ended(t, a); !errors.Is(err, ErrReplaced) {
		t.Errorf("old Conn: %v", err)
	}
	if err := s.Send(bg(), "node-1", round.Message{Kind: round.KindDone}); err != nil {
		t.Fatal(err)
	}
	if m, err := b.Recv(bg()); err != nil || m.Kind != round.KindDone {
		t.Fatalf("new Conn: %v, %v", m, err)
	}
	if got := s.Connected(); !slices.Equal(got, []fl.NodeID{"node-1"}) {
		t.Errorf("Connected() = %v", got)
	}
	if got := s.Metrics().Replaced.Load(); got != 1 {
		t.Errorf("Replaced = %d", got)
	}
}

// Shutdown with connected nodes ends their streams with ErrServerClosed.
func TestShutdown(t *testing.T) {
	fed := newFederation(t, 3)
	s, err := NewServer(ServerConfig{TLS: fed.coordinator})
	if err != nil {
		t.Fatal(err)
	}
	l, addr := listen(t)
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()
	var conns []*Conn
	for _, id := range []fl.NodeID{"node-1", "node-2", "node-3"} {
		conns = append(conns, dial(t, addr, ClientConfig{TLS: fed.nodes[id]}))
		expect(t, s, EventConnect, id)
	}
	// A node blocked in Recv, and one in the middle of nothing.
	recvErr := make(chan error, 1)
	go func() {
		_, err := conns[0].Recv(bg())
		recvErr <- err
	}()

	ctx, cancel := context.WithTimeout(bg(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	for _, c := range conns {
		if err := ended(t, c); !errors.Is(err, ErrServerClosed) {
			t.Errorf("%s: %v", c.Self(), err)
		}
	}
	if err := <-recvErr; !errors.Is(err, ErrServerClosed) {
		t.Errorf("Recv: %v", err)
	}
	if _, err := s.Recv(bg()); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Server.Recv: %v", err)
	}
	if err := s.Send(bg(), "node-1", round.Message{Kind: round.KindDone}); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Server.Send: %v", err)
	}
	if err := s.Serve(l); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
	if _, err := Dial(ctx, addr, ClientConfig{TLS: fed.nodes["node-1"]}); err == nil {
		t.Error("Dial after Shutdown succeeded")
	}
}

func TestConfigRefused(t *testing.T) {
	fed := newFederation(t, 2)
	loose := fed.coordinator.Clone()
	loose.ClientAuth = tls.RequestClientCert
	blind := fed.coordinator.Clone()
	blind.VerifyConnection = nil
	old := fed.coordinator.Clone()
	old.MaxVersion = tls.VersionTLS12
	for name, cfg := range map[string]ServerConfig{
		"nil TLS":              {},
		"client cert optional": {TLS: loose},
		"unverified":           {TLS: blind},
		"TLS 1.2":              {TLS: old},
		"tiny chunk":           {TLS: fed.coordinator, Limits: Limits{ChunkSize: 100}},
		"negative limit":       {TLS: fed.coordinator, Limits: Limits{MaxMessage: -1}},
	} {
		if _, err := NewServer(cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("%s: %v", name, err)
		}
	}
	insecure := fed.nodes["node-1"].Clone()
	insecure.VerifyConnection = nil
	coordAsNode := fed.coordinator.Clone()
	coordAsNode.VerifyConnection = fed.nodes["node-1"].VerifyConnection
	for name, cfg := range map[string]ClientConfig{
		"nil TLS":          {},
		"unverified":       {TLS: insecure},
		"coordinator cert": {TLS: coordAsNode},
	} {
		if _, err := Dial(bg(), "127.0.0.1:1", cfg); !errors.Is(err, ErrConfig) {
			t.Errorf("client %s: %v", name, err)
		}
	}
}

func TestBackoff(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 1))
	b := Backoff{Min: 100 * time.Millisecond, Max: 2 * time.Second}
	for n, hi := range []time.Duration{100, 200, 400, 800, 1600, 2000, 2000} {
		hi *= time.Millisecond
		if n == 5 || n == 6 {
			hi = 2 * time.Second
		}
		for range 100 {
			if d := b.Delay(n, r); d < hi/2 || d > hi {
				t.Fatalf("attempt %d: %v outside [%v, %v]", n, d, hi/2, hi)
			}
		}
	}
	if d := (Backoff{}).Delay(1000, r); d < 30*time.Second || d > time.Minute {
		t.Errorf("attempt 1000: %v", d)
	}
}

// A node that stops reading holds Send back by flow control; when Send's
// context ends mid-message, the stream is dropped rather than left with
// half a message.
func TestSendAbandoned(t *testing.T) {
	fed := newFederation(t, 2)
	lim := Limits{MaxMessage: 32 << 20}
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator, Limits: lim})
	c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-1"], Limits: lim})
	expect(t, s, EventConnect, "node-1")

	// A context that has already ended sends nothing and keeps the stream.
	done, cancel := context.WithCancel(bg())
	cancel()
	if err := s.Send(done, "node-1", round.Message{Kind: round.KindDone}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Send with a canceled context: %v", err)
	}

	big := round.Message{Kind: round.KindModel, Model: make([]byte, 4<<20)}
	var err error
	for i := 0; i < 40 && err == nil; i++ { // the node never calls Recv
		ctx, cancel := context.WithTimeout(bg(), time.Second)
		err = s.Send(ctx, "node-1", big)
		cancel()
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Send to a node that does not read: %v", err)
	}
	e := expect(t, s, EventDisconnect, "node-1")
	var ab errSendAbandoned
	if !errors.As(e.Err, &ab) {
		t.Errorf("Disconnect: %v", e.Err)
	}
	// The node learns it once it has received what arrived before the end.
	for {
		ctx, cancel := context.WithTimeout(bg(), 20*time.Second)
		_, err := c.Recv(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			t.Fatal("node stream still open")
		}
		if err != nil {
			t.Logf("node: %v", err)
			break
		}
	}
}

// A server configuration that lets any certificate through still gets
// node identities only from node certificates.
func TestNoNodeIdentity(t *testing.T) {
	fed := newFederation(t, 2)
	lax := fed.coordinator.Clone()
	lax.VerifyConnection = func(tls.ConnectionState) error { return nil } // accepts anything
	s, addr := startServer(t, ServerConfig{TLS: lax})

	// A client presenting the coordinator's own certificate.
	cfg := fed.nodes["node-1"].Clone()
	own := fed.coordinator.Certificates[0]
	cfg.Certificates = nil
	cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &own, nil }
	_, err := Dial(bg(), addr, ClientConfig{TLS: cfg})
	var rej *RejectError
	if !errors.As(err, &rej) || rej.Reason != ReasonIdentity || !errors.Is(err, ErrUnauthenticated) || !strings.Contains(err.Error(), "role coordinator, want node") {
		t.Fatalf("Dial: %v", err)
	}
	if got := s.Metrics().Rejected[ReasonIdentity].Load(); got != 1 {
		t.Errorf("Rejected[identity] = %d", got)
	}
}

// Close is a clean end for the coordinator even when messages are waiting
// for a Recv that never comes.
func TestCloseWithUnreadMessages(t *testing.T) {
	fed := newFederation(t, 2)
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator})
	c := dial(t, addr, ClientConfig{TLS: fed.nodes["node-2"]})
	expect(t, s, EventConnect, "node-2")
	for range 3 {
		if err := s.Send(bg(), "node-2", round.Message{Kind: round.KindPeer}); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, func() bool { return c.Metrics().MessagesIn.Load() >= 1 })
	c.Close()
	if e := expect(t, s, EventDisconnect, "node-2"); e.Err != nil {
		t.Errorf("Disconnect: %v", e.Err)
	}
	if _, err := c.Recv(bg()); !errors.Is(err, ErrClosed) {
		t.Errorf("Recv after Close: %v", err)
	}
}

// A message the server sends while a node's stream is being accepted goes
// out after the stream's header, never before it: the relay forwards what
// it kept for a node the moment it connects, and a frame ahead of the
// header made the node's Dial fail ("sent a frame before accepting the
// stream") after the server had counted the message as sent.
func TestSendWhileAccepting(t *testing.T) {
	fed := newFederation(t, 2)
	s, addr := startServer(t, ServerConfig{TLS: fed.coordinator})
	ctx, cancel := context.WithCancel(bg())
	defer cancel()
	var sent atomic.Int64
	go func() {
		for ctx.Err() == nil {
			if s.Send(ctx, "node-1", round.Message{Kind: round.KindDone}) == nil {
				sent.Add(1)
			}
		}
	}()
	go func() {
		for {
			if _, err := s.Recv(ctx); err != nil {
				return
			}
		}
	}()
	for i := range 30 {
		c, err := Dial(bg(), addr, ClientConfig{TLS: fed.nodes["node-1"]})
		if err != nil {
			t.Fatalf("dial %d (%d messages sent so far): %v", i, sent.Load(), err)
		}
		if m, err := c.Recv(bg()); err != nil || m.Kind != round.KindDone {
			t.Fatalf("dial %d: first message %v, %v", i, m, err)
		}
		c.Close()
	}
}
