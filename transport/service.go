package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport/internal/pb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// service implements the generated interface, so that its methods stay
// off Server.
type service struct {
	pb.UnimplementedFederationServer
	s *Server
}

// Connect serves one node's stream.
func (sv service) Connect(stream pb.Federation_ConnectServer) error {
	s := sv.s
	ctx := stream.Context()
	addr := "?"
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		addr = p.Addr.String()
	}
	id, cs, err := nodeOf(ctx)
	if err == nil && s.verify != nil {
		// A new stream on a connection made earlier: check its peer again
		// (a certificate revoked since the handshake is refused here).
		if verr := s.verify(*cs); verr != nil {
			err = fmt.Errorf("%w: connection from %s: %w", ErrUnauthenticated, addr, verr)
		}
	}
	if err != nil {
		s.metrics.reject(ReasonIdentity)
		s.log.Warn("transport: stream refused", "remote", addr, "reason", ReasonIdentity, "err", err)
		stream.SetTrailer(metadata.Pairs(mdReason, ReasonIdentity.String()))
		return status.Error(codes.Unauthenticated, err.Error())
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ss := &serverStream{node: id, addr: addr, ctx: ctx, cancel: cancel, readerDone: make(chan struct{}), accepted: make(chan struct{})}
	ss.ep = newEndpoint(stream, s.lim, s.metrics, "", ctx, cancel)
	if err := s.register(ss); err != nil {
		return s.endStatus(stream, id, err)
	}
	md := metadata.Pairs(mdNode, string(id))
	var nonce []byte
	if s.nonce != nil {
		if nonce, err = s.nonce(); err != nil {
			cancel(err)
		} else {
			md.Append(mdNonce, string(nonce))
		}
	}
	// The header accepts the stream: it goes out before any message (Send
	// waits for accepted) and before the Connect event.
	if err := stream.SendHeader(md); err != nil {
		cancel(err)
	}
	close(ss.accepted)
	s.metrics.Connects.Add(1)
	s.log.Info("transport: node connected", "node", id, "remote", addr)
	s.push(Event{Kind: EventConnect, Node: id, Nonce: nonce, TLS: cs})
	go s.read(ss)
	<-ctx.Done()
	return s.endStatus(stream, id, context.Cause(ctx))
}

// nodeOf returns the NodeID of the stream's peer certificate, which the
// TLS configuration verified during the handshake, and the connection's
// TLS state.
func nodeOf(ctx context.Context) (fl.NodeID, *tls.ConnectionState, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", nil, fmt.Errorf("%w: no peer information", ErrUnauthenticated)
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		return "", nil, fmt.Errorf("%w: connection from %s is not TLS", ErrUnauthenticated, p.Addr)
	}
	cs := ti.State
	if !cs.HandshakeComplete || cs.Version < tls.VersionTLS13 || len(cs.PeerCertificates) == 0 {
		return "", nil, fmt.Errorf("%w: connection from %s has no verified TLS 1.3 client certificate", ErrUnauthenticated, p.Addr)
	}
	id, err := pki.NodeID(cs.PeerCertificates[0])
	if err != nil {
		return "", nil, fmt.Errorf("%w: connection from %s: %w", ErrUnauthenticated, p.Addr, err)
	}
	return id, &cs, nil
}

// register makes ss the node's stream. An existing stream of the node is
// ended first, and register waits until its Disconnect event is queued.
func (s *Server) register(ss *serverStream) error {
	for {
		s.mu.Lock()
		if s.isClosing() {
			s.mu.Unlock()
			return ErrServerClosed
		}
		old := s.streams[ss.node]
		if old == nil {
			s.streams[ss.node] = ss
			s.readers.Add(1)
			s.mu.Unlock()
			return nil
		}
		s.mu.Unlock()
		if old.ctx.Err() == nil {
			s.metrics.Replaced.Add(1)
			s.log.Warn("transport: replacing stream", "node", ss.node, "old", old.addr, "new", ss.addr)
			old.cancel(fmt.Errorf("%w (new stream from %s)", ErrReplaced, ss.addr))
		}
		select {
		case <-old.readerDone:
		case <-ss.ctx.Done():
			return context.Cause(ss.ctx)
		case <-s.closing:
			return ErrServerClosed
		}
	}
}

// read receives the stream's messages until it ends, then unregisters it
// and queues its Disconnect event.
func (s *Server) read(ss *serverStream) {
	defer s.readers.Done()
	defer close(ss.readerDone)
	ss.cancel(s.readLoop(ss))
	cause := context.Cause(ss.ctx)

	s.mu.Lock()
	if s.streams[ss.node] == ss {
		delete(s.streams, ss.node)
	}
	s.mu.Unlock()
	s.metrics.Disconnects.Add(1)

	var err error
	if !errors.Is(cause, io.EOF) {
		err = fmt.Errorf("stream of %s: %w", ss.node, cause)
	}
	s.log.Info("transport: node disconnected", "node", ss.node, "remote", ss.addr, "err", err)
	s.push(Event{Kind: EventDisconnect, Node: ss.node, Err: err})
}

func (s *Server) readLoop(ss *serverStream) error {
	for {
		rv, err := ss.ep.recv()
		if err == nil && rv.challenge != nil {
			if err = s.challenge(ss, rv.challenge.Nonce); err == nil {
				continue
			}
		}
		if err == nil && rv.claim != "" && rv.claim != string(ss.node) {
			err = &ClaimError{Peer: ss.node, Claimed: rv.claim}
		}
		var m round.Message
		if err == nil {
			m, err = unmarshalMessage(rv.msg)
		}
		if err != nil {
			if r := reasonOf(err); r != 0 {
				s.metrics.reject(r)
				s.log.Warn("transport: rejected a message; dropping the stream", "node", ss.node, "remote", ss.addr, "reason", r, "err", err)
			}
			return err
		}
		s.metrics.MessagesIn.Add(1)
		if !s.push(Event{Kind: EventMessage, Node: ss.node, Msg: m}) {
			return ErrServerClosed
		}
	}
}

// challenge answers a node's request for a fresh attestation nonce: it
// reports the nonce (EventChallenge), then sends it. While a nonce waits to
// be sent (behind a large message, or to a node that does not read),
// further requests get that nonce: they issue none, so that a node asking
// in a loop holds at most two goroutines (one sending, one waiting) and
// makes one event per nonce sent. A request that arrives once the waiting
// nonce is being written gets a nonce of its own.
func (s *Server) challenge(ss *serverStream, got []byte) error {
	switch {
	case len(got) != 0:
		return fmt.Errorf("%w: a node sent a challenge with a nonce (nodes only ask for one)", ErrFrame)
	case s.nonce == nil:
		return fmt.Errorf("%w: a node asked for an attestation nonce, and this server issues none", ErrFrame)
	case !ss.challenging.CompareAndSwap(false, true):
		return nil
	}
	sent := false
	defer func() {
		if !sent {
			ss.challenging.Store(false)
		}
	}()
	nonce, err := s.nonce()
	if err != nil {
		return fmt.Errorf("issuing a nonce: %w", err)
	}
	if len(nonce) == 0 || len(nonce) > MaxNonce {
		return fmt.Errorf("%w: ServerConfig.Nonce returned %d bytes, want 1 to %d", ErrConfig, len(nonce), MaxNonce)
	}
	if !s.push(Event{Kind: EventChallenge, Node: ss.node, Nonce: nonce}) {
		return ErrServerClosed
	}
	// Sent by its own goroutine: the reader must not wait behind a large
	// message to the same node (the node may be waiting for the reader).
	sent = true
	go func() {
		sctx, cancel := context.WithTimeout(ss.ctx, sendChallengeTimeout)
		defer cancel()
		err := ss.ep.sendChallenge(sctx, nonce, func() { ss.challenging.Store(false) })
		if err != nil {
			ss.challenging.Store(false)
			ss.cancel(fmt.Errorf("sending a nonce to %s: %w", ss.node, err))
		}
	}()
	return nil
}

// sendChallengeTimeout bounds the wait to send a challenge behind a large
// message to the same node.
const sendChallengeTimeout = time.Minute

// endStatus is the status a stream handler returns for the cause that
// ended the stream. The trailer tells the node why.
func (s *Server) endStatus(stream grpc.ServerStream, id fl.NodeID, cause error) error {
	var reason string
	var code codes.Code
	switch r := reasonOf(cause); {
	case errors.Is(cause, io.EOF):
		return nil
	case errors.Is(cause, ErrReplaced):
		reason, code = reasonReplaced, codes.Aborted
	case errors.Is(cause, ErrServerClosed):
		reason, code = reasonShutdown, codes.Unavailable
	case r == ReasonImpersonation:
		reason, code = r.String(), codes.PermissionDenied
	case r == ReasonTooLarge:
		reason, code = r.String(), codes.ResourceExhausted
	case r != 0:
		reason, code = r.String(), codes.InvalidArgument
	default:
		return status.FromContextError(cause).Err()
	}
	stream.SetTrailer(metadata.Pairs(mdReason, reason))
	return status.Error(code, fmt.Sprintf("stream of %s: %v", id, cause))
}
