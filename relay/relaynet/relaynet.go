// Package relaynet carries relay sessions over Cloister's transport: the
// coordinator runs a [Server] that forwards each member's sealed messages
// to the member they are for, and each member holds a [Carrier] (from
// [Dial]) under its [relay.Session].
//
// The server reads nothing it forwards: the bodies are sealed end to end
// (package relay). It authenticates each sender by its certificate, as the
// transport does for the round engine, writes the sender's name into the
// message it forwards (round.Message.Dealer), and keeps what a member
// not yet connected will need, up to a bound. When a member's stream ends,
// what was queued for it is dropped: it belonged to the session that
// ended with that process, and a session does not survive a lost message.
package relaynet

import (
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// DefaultMaxMessage bounds a relayed message: a PSI batch of 65,536
// points is 2 MiB, a million aligned rows 4 MB.
const DefaultMaxMessage = 64 << 20

// DefaultMaxPending bounds what the server keeps for one member that is
// not connected, or slow to read.
const DefaultMaxPending = 256 << 20

// ServerConfig configures a [Server].
type ServerConfig struct {
	// TLS is the coordinator's mutual-TLS configuration (Kit.TLSConfig).
	TLS *tls.Config
	// Members may send and receive; anyone else the TLS configuration
	// admits is refused.
	Members []fl.NodeID
	// MaxMessage bounds a message (0: DefaultMaxMessage).
	MaxMessage int64
	// MaxPending bounds the bytes kept for one member that is not
	// connected (0: DefaultMaxPending).
	MaxPending int64
	Logger     *slog.Logger
}

// Server forwards relay messages among the members.
type Server struct {
	cfg     ServerConfig
	srv     *transport.Server
	log     *slog.Logger
	members map[fl.NodeID]bool

	mu      sync.Mutex
	online  map[fl.NodeID]bool
	pending map[fl.NodeID]*outbox
	stats   map[[2]fl.NodeID]*Pair
}

// Pair counts what one member sent another.
type Pair struct {
	From, To fl.NodeID
	Messages int64
	Bytes    int64
	Dropped  int64 // messages dropped: too much was kept for the recipient
}

// outbox sends one member's messages in order, from its own goroutine,
// so that a slow member does not hold up the others.
type outbox struct {
	q     []round.Message
	bytes int64
	gen   uint64 // counts the streams that ended: a send of an older one pops nothing
	wake  chan struct{}
}

// NewServer makes a server; it does not listen ([Server.Serve]).
func NewServer(cfg ServerConfig) (*Server, error) {
	if len(cfg.Members) < 2 {
		return nil, fmt.Errorf("relaynet: %d members, want at least 2", len(cfg.Members))
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = DefaultMaxPending
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	srv, err := transport.NewServer(transport.ServerConfig{TLS: cfg.TLS, Limits: transport.Limits{MaxMessage: cfg.MaxMessage}, Logger: log})
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, srv: srv, log: log, members: map[fl.NodeID]bool{}, online: map[fl.NodeID]bool{},
		pending: map[fl.NodeID]*outbox{}, stats: map[[2]fl.NodeID]*Pair{}}
	for _, m := range cfg.Members {
		s.members[m] = true
	}
	return s, nil
}

// Serve accepts the members' connections on l until Shutdown.
func (s *Server) Serve(l net.Listener) error { return s.srv.Serve(l) }

// Shutdown stops the server.
func (s *Server) Shutdown(ctx context.Context) error { return s.srv.Shutdown(ctx) }

// Run forwards messages until ctx ends or the server shuts down.
func (s *Server) Run(ctx context.Context) error {
	for {
		ev, err := s.srv.Recv(ctx)
		if err != nil {
			if errors.Is(err, transport.ErrServerClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		switch ev.Kind {
		case transport.EventConnect:
			if !s.members[ev.Node] {
				s.log.Warn("relay: refused a party that is not a member of the session", "node", ev.Node)
				s.srv.Drop(ev.Node, fmt.Errorf("%s is not a member of this relay's session", ev.Node))
				continue
			}
			s.mu.Lock()
			s.online[ev.Node] = true
			s.mu.Unlock()
			s.log.Info("relay: member connected", "node", ev.Node)
			s.outbox(ctx, ev.Node).notify()
		case transport.EventDisconnect:
			s.mu.Lock()
			delete(s.online, ev.Node)
			ob := s.pending[ev.Node]
			var dropped int
			if ob != nil {
				dropped = len(ob.q)
				ob.q, ob.bytes = nil, 0
				ob.gen++
			}
			// Tell the members online that ev.Node is gone, behind what it
			// sent them: an empty message from it (see relay.Carrier).
			for m := range s.online {
				if !s.members[ev.Node] {
					break
				}
				o := s.outboxLocked(ctx, m)
				o.q = append(o.q, round.Message{Kind: round.KindRelay, To: m, Dealer: ev.Node})
				o.notify()
			}
			s.mu.Unlock()
			s.log.Info("relay: member disconnected", "node", ev.Node, "dropped", dropped, "why", ev.Err)
		case transport.EventMessage:
			s.forward(ctx, ev.Node, ev.Msg)
		}
	}
}

func (s *Server) forward(ctx context.Context, from fl.NodeID, m round.Message) {
	to := m.To
	switch {
	case !s.members[from]:
		return
	case m.Kind != round.KindRelay:
		s.log.Warn("relay: dropped a message that is not a relay message", "from", from, "kind", m.Kind)
		return
	case len(m.Payload) == 0:
		s.log.Warn("relay: dropped an empty message (only the relay sends those)", "from", from, "to", to)
		return
	case !s.members[to] || to == from:
		s.log.Warn("relay: dropped a message for a party that is not another member", "from", from, "to", to)
		return
	}
	out := round.Message{Kind: round.KindRelay, To: to, Dealer: from, Payload: m.Payload}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats[[2]fl.NodeID{from, to}]
	if st == nil {
		st = &Pair{From: from, To: to}
		s.stats[[2]fl.NodeID{from, to}] = st
	}
	ob := s.outboxLocked(ctx, to)
	if ob.bytes+int64(len(m.Payload)) > s.cfg.MaxPending {
		st.Dropped++
		s.log.Warn("relay: dropped a message: too much kept for a member", "from", from, "to", to, "pending", ob.bytes)
		return
	}
	st.Messages++
	st.Bytes += int64(len(m.Payload))
	ob.q = append(ob.q, out)
	ob.bytes += int64(len(m.Payload))
	ob.notify()
}

func (s *Server) outbox(ctx context.Context, to fl.NodeID) *outbox {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.outboxLocked(ctx, to)
}

func (s *Server) outboxLocked(ctx context.Context, to fl.NodeID) *outbox {
	ob := s.pending[to]
	if ob == nil {
		ob = &outbox{wake: make(chan struct{}, 1)}
		s.pending[to] = ob
		go s.send(ctx, to, ob)
	}
	return ob
}

func (ob *outbox) notify() {
	select {
	case ob.wake <- struct{}{}:
	default:
	}
}

// send delivers to's messages in order while it is connected.
func (s *Server) send(ctx context.Context, to fl.NodeID, ob *outbox) {
	for {
		s.mu.Lock()
		var m round.Message
		ok := s.online[to] && len(ob.q) > 0
		gen := ob.gen
		if ok {
			m = ob.q[0]
		}
		s.mu.Unlock()
		if !ok {
			select {
			case <-ob.wake:
				continue
			case <-ctx.Done():
				return
			}
		}
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		err := s.srv.Send(sctx, to, m)
		cancel()
		s.mu.Lock()
		if err == nil && ob.gen == gen && len(ob.q) > 0 {
			ob.q[0] = round.Message{}
			ob.q = ob.q[1:]
			ob.bytes -= int64(len(m.Payload))
		}
		s.mu.Unlock()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// Not connected after all, or the stream broke: the
			// Disconnect event drops the queue; wait for the next event.
			select {
			case <-ob.wake:
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
}

// Stats returns what each member sent each other member so far, by
// sender and recipient.
func (s *Server) Stats() []Pair {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Pair
	for _, p := range s.stats {
		out = append(out, *p)
	}
	slices.SortFunc(out, func(a, b Pair) int {
		return cmp.Or(cmp.Compare(a.From, b.From), cmp.Compare(a.To, b.To))
	})
	return out
}

// Carrier is a member's end: a relay.Carrier over its transport
// connection to the coordinator.
type Carrier struct {
	conn *transport.Conn
}

// ClientConfig configures [Dial].
type ClientConfig struct {
	TLS        *tls.Config
	MaxMessage int64 // 0: DefaultMaxMessage
	Logger     *slog.Logger
	Dial       func(ctx context.Context, addr string) (net.Conn, error)
}

// Dial connects to the coordinator's relay at addr.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Carrier, error) {
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = DefaultMaxMessage
	}
	conn, err := transport.Dial(ctx, addr, transport.ClientConfig{TLS: cfg.TLS, Limits: transport.Limits{MaxMessage: cfg.MaxMessage}, Logger: cfg.Logger, Dial: cfg.Dial})
	if err != nil {
		return nil, err
	}
	return &Carrier{conn: conn}, nil
}

// Self returns this member's name, from its certificate.
func (c *Carrier) Self() fl.NodeID { return c.conn.Self() }

// Send sends msg to member to.
func (c *Carrier) Send(ctx context.Context, to string, msg []byte) error {
	return c.conn.Send(ctx, round.Message{Kind: round.KindRelay, To: fl.NodeID(to), Payload: msg})
}

// Recv returns the next relayed message and its sender; an empty message
// is the server's notice that the sender's connection ended.
func (c *Carrier) Recv(ctx context.Context) (string, []byte, error) {
	for {
		m, err := c.conn.Recv(ctx)
		if err != nil {
			return "", nil, err
		}
		if m.Kind != round.KindRelay || m.Dealer == "" {
			return "", nil, fmt.Errorf("relaynet: the coordinator sent a %s message, not a relayed one (is it running a relay?)", m.Kind)
		}
		return string(m.Dealer), m.Payload, nil
	}
}

// Close closes the connection.
func (c *Carrier) Close() error { return c.conn.Close() }
