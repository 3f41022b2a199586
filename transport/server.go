package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport/internal/pb"
)

// Metadata keys. The server accepts a stream by sending a header with
// mdNode (the NodeID it authenticated) and ends it with a trailer whose
// mdReason says why.
const (
	mdNode   = "cloister-node"
	mdReason = "cloister-reason"
	mdNonce  = "cloister-nonce-bin" // the stream's first attestation nonce (binary metadata)

	reasonReplaced = "replaced"
	reasonShutdown = "shutdown"
)

// Defaults.
const (
	DefaultKeepalive = 30 * time.Second
	DefaultQueue     = 64

	// keepaliveMinTime is the most often the server lets clients ping;
	// below gRPC's client minimum of 10s, so no client is ever refused.
	keepaliveMinTime = 5 * time.Second
	// handshakeTimeout bounds a connection's TLS handshake.
	handshakeTimeout = 20 * time.Second
	// maxStreamsPerConn bounds concurrent streams on one connection. A node
	// needs one; a few more let a reconnecting node replace its stream on
	// the same connection.
	maxStreamsPerConn = 4
)

// ServerConfig configures a [Server].
type ServerConfig struct {
	// TLS is the coordinator's mutual-TLS configuration, from
	// pki.ServerConfig or Kit.TLSConfig. It must require and verify client
	// certificates. The server uses a copy restricted to TLS 1.3 without
	// session tickets.
	TLS *tls.Config
	// Limits bound the messages the server accepts and sends.
	Limits Limits
	// Logger receives connection, replacement and rejection records. nil
	// discards them.
	Logger *slog.Logger
	// Metrics, if set, accumulates the server's counters (so that they
	// survive a restart of the server in the same process); nil means a new
	// Metrics, which [Server.Metrics] returns.
	Metrics *Metrics
	// Queue is the number of events buffered for Recv; when it is full,
	// streams stop reading (and their nodes stop sending) until Recv
	// catches up. 0 means DefaultQueue.
	Queue int
	// Keepalive is the idle time after which the server pings a node, and
	// how long it waits for the answer before dropping the connection. 0
	// means DefaultKeepalive.
	Keepalive time.Duration
	// Nonce, if set, issues attestation nonces (attest.NewNonce): one for
	// every stream, sent with its acceptance before the node can send
	// anything, and one for every challenge a node asks for (to re-attest).
	// Each is reported as an event (EventConnect's or EventChallenge's
	// Nonce) before the node gets it. nil: no nonces, and a node asking
	// for one breaks the protocol (ErrFrame).
	Nonce func() ([]byte, error)
}

// EventKind says what an [Event] reports.
type EventKind uint8

// Event kinds.
const (
	// EventConnect: a node opened its stream. Messages from it follow.
	EventConnect EventKind = iota + 1
	// EventMessage: a message from the node, Msg.
	EventMessage
	// EventDisconnect: the node's stream ended, for the reason in Err. No
	// message of that stream follows; the node may connect again.
	EventDisconnect
	// EventChallenge: the node asked for a fresh attestation nonce; Nonce
	// is the one the server sends it (ServerConfig.Nonce).
	EventChallenge
)

func (k EventKind) String() string {
	switch k {
	case EventConnect:
		return "connect"
	case EventMessage:
		return "message"
	case EventDisconnect:
		return "disconnect"
	case EventChallenge:
		return "challenge"
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is what [Server.Recv] returns: a node connected, sent a message,
// or disconnected. The events of one node come in order: Connect, its
// messages, Disconnect, then the next stream's Connect.
type Event struct {
	Kind EventKind
	// Node is the sender, authenticated by its certificate. Pass it to
	// round's Step as the sender.
	Node fl.NodeID
	// Msg is the message (EventMessage).
	Msg round.Message
	// Err is why the stream ended (EventDisconnect): nil when the node
	// closed it, an error wrapping ErrReplaced, ErrServerClosed, a
	// protocol violation (ErrImpersonation, ErrTooLarge, ErrFrame,
	// ErrMalformed) or a network error otherwise.
	Err error
	// Nonce is the attestation nonce issued to the node's stream
	// (EventConnect) or at its request (EventChallenge), when
	// ServerConfig.Nonce is set. Evidence in the stream's later messages
	// answers it.
	Nonce []byte
	// TLS is the state of the stream's TLS connection (EventConnect): its
	// ExportKeyingMaterial gives the session's keying material, which
	// attestation evidence binds (attest.SessionEKM).
	TLS *tls.ConnectionState
}

// String returns "connect node-1", "message node-1: Hello epoch=0" or
// "disconnect node-1: <err>".
func (e Event) String() string {
	switch {
	case e.Kind == EventMessage:
		return fmt.Sprintf("%s %s: %s", e.Kind, e.Node, e.Msg)
	case e.Err != nil:
		return fmt.Sprintf("%s %s: %v", e.Kind, e.Node, e.Err)
	}
	return fmt.Sprintf("%s %s", e.Kind, e.Node)
}

// Server is the coordinator's end of the federation: it accepts one stream
// per node, authenticates each by its certificate, and turns the streams
// into a single ordered sequence of events ([Server.Recv]) and per-node
// sends ([Server.Send]). Create it with [NewServer].
type Server struct {
	nonce   func() ([]byte, error)
	verify  func(tls.ConnectionState) error // the TLS configuration's VerifyConnection, re-run at every stream
	lim     Limits
	log     *slog.Logger
	metrics *Metrics
	grpc    *grpc.Server
	events  chan Event

	closing   chan struct{} // closed by Shutdown
	closeOnce sync.Once

	mu      sync.Mutex
	streams map[fl.NodeID]*serverStream
	readers sync.WaitGroup // one per registered stream; Add under mu before closing
}

type serverStream struct {
	node       fl.NodeID
	addr       string
	ctx        context.Context
	cancel     context.CancelCauseFunc
	ep         *endpoint
	readerDone chan struct{} // closed after the stream's Disconnect event is queued
	accepted   chan struct{} // closed once the header went out (or failed): Send may write
	// challenging is set while a nonce is on its way to the node: a
	// request that arrives meanwhile is answered by that nonce.
	challenging atomic.Bool
}

// NewServer returns a server for cfg. It does not listen: call
// [Server.Serve] with a listener.
func NewServer(cfg ServerConfig) (*Server, error) {
	lim, err := cfg.Limits.normalize()
	if err != nil {
		return nil, err
	}
	tc, err := serverTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.Queue < 0 || cfg.Keepalive < 0 {
		return nil, fmt.Errorf("%w: negative Queue %d or Keepalive %v", ErrConfig, cfg.Queue, cfg.Keepalive)
	}
	s := &Server{
		nonce:   cfg.Nonce,
		verify:  tc.VerifyConnection,
		lim:     lim,
		log:     cfg.Logger,
		metrics: cfg.Metrics,
		events:  make(chan Event, orDefault(cfg.Queue, DefaultQueue)),
		closing: make(chan struct{}),
		streams: make(map[fl.NodeID]*serverStream),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.metrics == nil {
		s.metrics = new(Metrics)
	}
	ka := orDefault(cfg.Keepalive, DefaultKeepalive)
	s.grpc = grpc.NewServer(
		grpc.Creds(countingCreds{credentials.NewTLS(tc), s.metrics, s.log}),
		grpc.MaxRecvMsgSize(lim.frameLimit()),
		grpc.MaxSendMsgSize(lim.frameLimit()),
		grpc.MaxConcurrentStreams(maxStreamsPerConn),
		grpc.ConnectionTimeout(handshakeTimeout),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: ka, Timeout: ka}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: keepaliveMinTime, PermitWithoutStream: true}),
	)
	pb.RegisterFederationServer(s.grpc, service{s: s})
	return s, nil
}

// orDefault returns v, or def if v is zero.
func orDefault[T comparable](v, def T) T {
	var zero T
	if v == zero {
		return def
	}
	return v
}

// Serve accepts connections on l until [Server.Shutdown], which closes l.
// It returns ErrServerClosed after Shutdown, or the error that stopped
// accepting. Serve may be called with several listeners.
func (s *Server) Serve(l net.Listener) error {
	err := s.grpc.Serve(l)
	if err == nil || errors.Is(err, grpc.ErrServerStopped) || s.isClosing() {
		return ErrServerClosed
	}
	return fmt.Errorf("serving on %s: %w", l.Addr(), err)
}

func (s *Server) isClosing() bool {
	select {
	case <-s.closing:
		return true
	default:
		return false
	}
}

// Metrics returns the server's counters.
func (s *Server) Metrics() *Metrics { return s.metrics }

// Recv returns the next event. It blocks until there is one, ctx ends
// (ctx.Err()) or the server shuts down (ErrServerClosed).
func (s *Server) Recv(ctx context.Context) (Event, error) {
	if s.isClosing() {
		return Event{}, ErrServerClosed
	}
	select {
	case e := <-s.events:
		return e, nil
	case <-ctx.Done():
		return Event{}, ctx.Err()
	case <-s.closing:
		return Event{}, ErrServerClosed
	}
}

// Connected returns the nodes that have an open stream, sorted.
func (s *Server) Connected() []fl.NodeID {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]fl.NodeID, 0, len(s.streams))
	for id := range s.streams {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Send sends m to node to. m.To must be empty or to. It returns an error
// wrapping ErrNotConnected if the node has no open stream, ErrTooLarge or
// ErrMalformed if m cannot be sent, or the stream's error.
//
// Sends to one node go out one message at a time, in the order of the
// calls; sends to different nodes run in parallel. Send returns once the
// message is handed to gRPC, not when the node has it.
//
// Give ctx a deadline: a node that stops reading holds Send back through
// flow control. If ctx ends while the message is partly written, the
// node's stream ends (the node will reconnect), since the rest of the
// message can no longer be sent.
func (s *Server) Send(ctx context.Context, to fl.NodeID, m round.Message) error {
	if m.To != "" && m.To != to {
		return fmt.Errorf("%w: %s for %s given to Send to %s", ErrMisaddressed, m.Kind, m.To, to)
	}
	b, err := marshalMessage(m)
	if err != nil {
		return fmt.Errorf("sending %s to %s: %w", m.Kind, to, err)
	}
	if int64(len(b)) > s.lim.MaxMessage {
		return fmt.Errorf("sending %s to %s: %w: %d bytes, the limit is %d", m.Kind, to, ErrTooLarge, len(b), s.lim.MaxMessage)
	}
	if s.isClosing() {
		return ErrServerClosed
	}
	s.mu.Lock()
	ss := s.streams[to]
	s.mu.Unlock()
	if ss == nil {
		return fmt.Errorf("sending %s to %s: %w", m.Kind, to, ErrNotConnected)
	}
	// A frame ahead of the header would make the node refuse the stream.
	select {
	case <-ss.accepted:
	case <-ctx.Done():
		return fmt.Errorf("sending %s to %s: %w", m.Kind, to, context.Cause(ctx))
	}
	if err := ss.ep.send(ctx, b); err != nil {
		if errors.Is(err, errStreamEnded) {
			err = context.Cause(ss.ctx)
		}
		return fmt.Errorf("sending %s to %s: %w", m.Kind, to, err)
	}
	return nil
}

// Drop ends node id's stream, if it has one, with cause (the node sees it
// in the stream's status), and reports whether it had one. The daemon drops
// a member it no longer serves, such as one whose certificate was revoked;
// a new stream of it must pass the TLS configuration's checks again.
func (s *Server) Drop(id fl.NodeID, cause error) bool {
	s.mu.Lock()
	ss := s.streams[id]
	s.mu.Unlock()
	if ss == nil {
		return false
	}
	ss.cancel(cause)
	return true
}

// Shutdown ends every stream (nodes see ErrServerClosed), stops accepting
// connections, closes the listeners and waits until the streams are gone
// or ctx ends, in which case it closes the connections and returns
// ctx.Err(). Recv returns ErrServerClosed from now on; events not yet
// received are dropped.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closeOnce.Do(func() { close(s.closing) })
	for _, ss := range s.streams {
		ss.cancel(ErrServerClosed)
	}
	s.mu.Unlock()

	stopped := make(chan struct{})
	go func() {
		s.grpc.GracefulStop()
		close(stopped)
	}()
	var err error
	select {
	case <-stopped:
	case <-ctx.Done():
		err = ctx.Err()
		s.grpc.Stop()
		<-stopped
	}
	s.readers.Wait()
	return err
}

// push queues an event; it gives up when the server shuts down.
func (s *Server) push(e Event) bool {
	select {
	case s.events <- e:
		return true
	case <-s.closing:
		return false
	}
}
