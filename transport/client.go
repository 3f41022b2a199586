package transport

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport/internal/pb"
)

// closeGrace is how long Close waits for the coordinator to acknowledge
// the end of the stream before it cuts it.
const closeGrace = time.Second

// ClientConfig configures [Dial].
type ClientConfig struct {
	// TLS is the node's mutual-TLS configuration, from pki.ClientConfig or
	// Kit.TLSConfig. It must present a client certificate and verify the
	// server. The connection uses a copy restricted to TLS 1.3 without
	// session resumption.
	TLS *tls.Config
	// Limits bound the messages the connection accepts and sends.
	Limits Limits
	// Logger receives rejection records. nil discards them.
	Logger *slog.Logger
	// Metrics, if set, accumulates the connection's counters; pass the same
	// Metrics to every Dial of a reconnecting node to keep totals. nil
	// means a new Metrics per connection.
	Metrics *Metrics
	// Keepalive is the idle time after which the node pings the
	// coordinator (at least 10s), and how long it waits for the answer. 0
	// means DefaultKeepalive.
	Keepalive time.Duration
	// Dial, if set, opens the connection to addr in place of a TCP dial
	// (tests: in-memory connections); TLS runs over what it returns.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// Conn is a node's stream to the coordinator. Send and Recv may be called
// from different goroutines; concurrent Sends are serialized.
type Conn struct {
	addr        string
	lim         Limits
	log         *slog.Logger
	metrics     *Metrics
	self        fl.NodeID
	coordinator fl.NodeID
	cc          *grpc.ClientConn
	stream      pb.Federation_ConnectClient
	ctx         context.Context
	cancel      context.CancelCauseFunc
	ep          *endpoint
	nonce       []byte              // the stream's first attestation nonce; nil if the coordinator issues none
	tls         tls.ConnectionState // of the connection the stream runs on
	challenges  chan []byte         // nonces the coordinator sent at this node's request

	msgs      chan round.Message
	closing   chan struct{} // closed by Close
	closeOnce sync.Once
	done      chan struct{} // closed when the stream has ended; err is set
	err       error
}

// Dial connects to the coordinator at addr (host:port, or a gRPC target
// such as dns:///host:port) and opens the node's stream. It returns once
// the coordinator has authenticated the node and accepted the stream, or
// with an error: a refused handshake (no or foreign certificate, an
// unlisted or revoked member) comes back from Dial, not from a later Recv.
//
// A stream the coordinator accepts replaces any earlier stream of the same
// node. Dial does not retry; see [Backoff] for reconnecting.
func Dial(ctx context.Context, addr string, cfg ClientConfig) (*Conn, error) {
	lim, err := cfg.Limits.normalize()
	if err != nil {
		return nil, err
	}
	tc, err := clientTLS(cfg.TLS)
	if err != nil {
		return nil, err
	}
	if cfg.Keepalive < 0 {
		return nil, fmt.Errorf("%w: negative Keepalive %v", ErrConfig, cfg.Keepalive)
	}
	claim, err := ownNode(tc)
	if err != nil {
		return nil, err
	}
	c := &Conn{
		addr: addr, lim: lim, log: cfg.Logger, metrics: cfg.Metrics, self: claim,
		msgs: make(chan round.Message), closing: make(chan struct{}), done: make(chan struct{}),
		challenges: make(chan []byte, 1),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.metrics == nil {
		c.metrics = new(Metrics)
	}
	ka := orDefault(cfg.Keepalive, DefaultKeepalive)
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(refusalCreds{credentials.NewTLS(tc)}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(lim.frameLimit()), grpc.MaxCallSendMsgSize(lim.frameLimit())),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: ka, Timeout: ka, PermitWithoutStream: true}),
		grpc.WithDisableRetry(),
		// No service config from DNS TXT records (_grpc_config.HOST): the
		// channel's behaviour is this package's alone, and a resolver that
		// drops TXT queries (Docker's on an internal network) would hold
		// every dial for its timeout, 10 s.
		grpc.WithDisableServiceConfig(),
	}
	if cfg.Dial != nil {
		opts = append(opts, grpc.WithContextDialer(cfg.Dial))
	}
	c.cc, err = grpc.NewClient(addr, opts...)
	if err != nil {
		return nil, fmt.Errorf("%w: dialing %q: %v", ErrConfig, addr, err)
	}
	c.ctx, c.cancel = context.WithCancelCause(context.Background())
	if err := c.open(ctx); err != nil {
		c.cancel(err)
		c.cc.Close()
		return nil, fmt.Errorf("connecting to %s: %w", addr, err)
	}
	c.ep = newEndpoint(c.stream, lim, c.metrics, string(claim), c.ctx, c.cancel)
	c.metrics.Connects.Add(1)
	go c.read()
	return c, nil
}

// ownNode returns the NodeID of the configuration's own certificate, or
// "" if it is chosen at handshake time (GetClientCertificate).
func ownNode(tc *tls.Config) (fl.NodeID, error) {
	if len(tc.Certificates) == 0 || len(tc.Certificates[0].Certificate) == 0 {
		return "", nil
	}
	cert := tc.Certificates[0].Leaf
	if cert == nil {
		var err error
		if cert, err = x509.ParseCertificate(tc.Certificates[0].Certificate[0]); err != nil {
			return "", fmt.Errorf("%w: ClientConfig.TLS certificate: %v", ErrConfig, err)
		}
	}
	id, err := pki.NodeID(cert)
	if err != nil {
		return "", fmt.Errorf("%w: ClientConfig.TLS certificate is not a node certificate: %w", ErrConfig, err)
	}
	return id, nil
}

// open opens the stream and waits for the coordinator to accept it.
func (c *Conn) open(ctx context.Context) error {
	stop := context.AfterFunc(ctx, func() { c.cancel(context.Cause(ctx)) })
	defer stop()
	stream, err := pb.NewFederationClient(c.cc).Connect(c.ctx)
	if err != nil {
		return c.failure(ctx, nil, err)
	}
	md, err := stream.Header()
	if err != nil {
		return c.failure(ctx, stream, err)
	}
	ids := md.Get(mdNode)
	if len(ids) == 0 {
		// Ended without a header: the status says why.
		_, err := stream.Recv()
		if err == nil {
			err = fmt.Errorf("%w: the coordinator sent a frame before accepting the stream", ErrFrame)
		}
		return c.failure(ctx, stream, err)
	}
	if len(ids) != 1 || (c.self != "" && ids[0] != string(c.self)) || pki.ValidateNodeID(fl.NodeID(ids[0])) != nil {
		return fmt.Errorf("coordinator authenticated this node as %q, its certificate says %q", ids, c.self)
	}
	c.self = fl.NodeID(ids[0])
	if n := md.Get(mdNonce); len(n) > 0 {
		if len(n) != 1 || len(n[0]) == 0 || len(n[0]) > MaxNonce {
			return fmt.Errorf("%w: the coordinator sent %d attestation nonces, or one of a bad size", ErrFrame, len(n))
		}
		c.nonce = []byte(n[0])
	}
	if p, ok := peer.FromContext(stream.Context()); ok {
		if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.PeerCertificates) > 0 {
			c.tls = ti.State
			if id, err := pki.Identify(ti.State.PeerCertificates[0]); err == nil && id.Role == pki.RoleCoordinator {
				c.coordinator = fl.NodeID(id.Name)
			}
		}
	}
	if c.coordinator == "" {
		return fmt.Errorf("%w: the server's certificate names no coordinator", ErrUnauthenticated)
	}
	c.stream = stream
	return nil
}

// failure explains why open failed.
func (c *Conn) failure(ctx context.Context, stream pb.Federation_ConnectClient, err error) error {
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if stream != nil {
		return remoteError(stream, err)
	}
	return err
}

// RejectError is the coordinator's reason for ending a node's stream
// because of what the node sent. It matches [ErrRejected] and the reason's
// sentinel ([ErrImpersonation], [ErrTooLarge], [ErrFrame], [ErrMalformed])
// with errors.Is.
type RejectError struct {
	Reason  Reason
	Message string // the coordinator's description
}

func (e *RejectError) Error() string {
	return fmt.Sprintf("transport: rejected by the coordinator (%s): %s", e.Reason, e.Message)
}

// Is matches ErrRejected and the reason's sentinel.
func (e *RejectError) Is(target error) bool {
	return target == ErrRejected || (e.Reason > 0 && e.Reason < reasonEnd && target == reasonErrs[e.Reason])
}

// remoteError maps the error that ended a stream to the coordinator's
// reason, carried in the trailer.
func remoteError(stream pb.Federation_ConnectClient, err error) error {
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("coordinator ended the stream: %w", io.EOF)
	}
	var reason string
	if md := stream.Trailer(); md != nil {
		if v := md.Get(mdReason); len(v) > 0 {
			reason = v[0]
		}
	}
	st := status.Convert(err)
	switch reason {
	case reasonReplaced:
		return ErrReplaced
	case reasonShutdown:
		return ErrServerClosed
	}
	if r := parseReason(reason); r != 0 {
		return &RejectError{Reason: r, Message: st.Message()}
	}
	return err
}

// Self returns this node's NodeID, as the coordinator authenticated it.
func (c *Conn) Self() fl.NodeID { return c.self }

// Coordinator returns the coordinator's name from its certificate: the
// sender to pass to round's Step for every message from Recv.
func (c *Conn) Coordinator() fl.NodeID { return c.coordinator }

// Metrics returns the connection's counters.
func (c *Conn) Metrics() *Metrics { return c.metrics }

// Nonce returns the attestation nonce the coordinator issued with the
// stream, or nil if it issues none (ServerConfig.Nonce).
func (c *Conn) Nonce() []byte { return bytes.Clone(c.nonce) }

// TLS returns the state of the connection's TLS session. Its
// ExportKeyingMaterial gives the keying material that attestation
// evidence binds (attest.SessionEKM); the coordinator computes the same
// from its end.
func (c *Conn) TLS() tls.ConnectionState { return c.tls }

// Challenge asks the coordinator for a fresh attestation nonce (to
// re-attest on this stream) and waits for it. It fails if the coordinator
// issues no nonces (it then ends the stream), or when ctx or the stream
// ends. Do not call it concurrently.
func (c *Conn) Challenge(ctx context.Context) ([]byte, error) {
	select { // drop an unsolicited nonce
	case <-c.challenges:
	default:
	}
	if err := c.ep.sendChallenge(ctx, nil, nil); err != nil {
		if errors.Is(err, errStreamEnded) {
			<-c.done
			err = c.err
		}
		return nil, fmt.Errorf("asking for a nonce: %w", err)
	}
	select {
	case n := <-c.challenges:
		return n, nil
	case <-c.done:
		return nil, fmt.Errorf("asking for a nonce: %w", c.err)
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Done is closed when the stream has ended and Recv has returned every
// message that arrived before the end; [Conn.Err] then says why.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err returns why the stream ended, or nil while it is open: ErrClosed
// after Close, ErrReplaced, ErrServerClosed, a [*RejectError], a protocol
// violation by the coordinator (ErrFrame, ErrTooLarge, ErrMalformed,
// ErrMisaddressed), or a network error.
func (c *Conn) Err() error {
	select {
	case <-c.done:
		return c.err
	default:
		return nil
	}
}

// Send sends m to the coordinator. It returns once the message is handed
// to gRPC. If ctx ends while the message is partly written, the stream
// ends (Err reports it), since the rest can no longer be sent.
func (c *Conn) Send(ctx context.Context, m round.Message) error {
	b, err := marshalMessage(m)
	if err != nil {
		return fmt.Errorf("sending %s: %w", m.Kind, err)
	}
	if int64(len(b)) > c.lim.MaxMessage {
		return fmt.Errorf("sending %s: %w: %d bytes, the limit is %d", m.Kind, ErrTooLarge, len(b), c.lim.MaxMessage)
	}
	if err := c.ep.send(ctx, b); err != nil {
		if errors.Is(err, errStreamEnded) || errors.Is(err, io.EOF) {
			// The stream has ended (or is ending); its reason is better
			// than gRPC's io.EOF.
			select {
			case <-c.done:
				err = c.err
			case <-ctx.Done():
			}
		}
		return fmt.Errorf("sending %s: %w", m.Kind, err)
	}
	return nil
}

// Recv returns the next message from the coordinator. It blocks until one
// arrives, ctx ends, or the stream ends (Err's error).
func (c *Conn) Recv(ctx context.Context) (round.Message, error) {
	select {
	case m := <-c.msgs:
		return m, nil
	case <-c.done:
		return round.Message{}, c.err
	case <-ctx.Done():
		return round.Message{}, ctx.Err()
	}
}

// Close ends the stream and the connection. It tells the coordinator that
// the node is leaving, waits briefly for the acknowledgement, and drops
// messages not yet received. Err returns ErrClosed afterwards.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		close(c.closing)
		select {
		case c.ep.sem <- struct{}{}: // no send in flight: half-close cleanly
			c.stream.CloseSend()
			t := time.NewTimer(closeGrace)
			select {
			case <-c.done:
			case <-t.C:
			}
			t.Stop()
		default:
		}
		c.cancel(ErrClosed)
		<-c.done
		c.cc.Close()
	})
	return nil
}

// read receives messages until the stream ends.
func (c *Conn) read() {
	defer close(c.done)
	err := c.readLoop()
	select {
	case <-c.closing:
		err = ErrClosed
	default:
	}
	c.cancel(err)
	c.err = context.Cause(c.ctx)
	c.metrics.Disconnects.Add(1)
}

func (c *Conn) readLoop() error {
	for {
		rv, err := c.ep.recv()
		if err == nil && rv.challenge != nil {
			if len(rv.challenge.Nonce) == 0 {
				err = fmt.Errorf("%w: the coordinator sent an empty challenge", ErrFrame)
			} else {
				select { // keep the newest
				case <-c.challenges:
				default:
				}
				c.challenges <- rv.challenge.Nonce
				continue
			}
		}
		if err != nil && reasonOf(err) == 0 {
			if cause := context.Cause(c.ctx); cause != nil {
				return cause
			}
			err = remoteError(c.stream, err)
			if reasonOf(err) == 0 && !errors.Is(err, ErrReplaced) && !errors.Is(err, ErrServerClosed) {
				err = fmt.Errorf("stream to the coordinator ended: %w", err)
			}
			return err
		}
		var m round.Message
		if err == nil {
			m, err = unmarshalMessage(rv.msg)
		}
		if err == nil && m.To != "" && m.To != c.self {
			err = fmt.Errorf("%w: %s for %s", ErrMisaddressed, m.Kind, m.To)
		}
		if err != nil {
			r := reasonOf(err)
			c.metrics.reject(r)
			c.log.Warn("transport: rejected a message from the coordinator; dropping the stream", "node", c.self, "coordinator", c.addr, "reason", r, "err", err)
			return fmt.Errorf("from coordinator %s: %w", c.coordinator, err)
		}
		c.metrics.MessagesIn.Add(1)
		select {
		case c.msgs <- m:
		case <-c.closing:
			// Closing: drop the message and read on until the
			// coordinator acknowledges the end of the stream.
		case <-c.ctx.Done():
			return context.Cause(c.ctx)
		}
	}
}

// Backoff computes reconnection delays: doubling from Min up to Max, each
// drawn uniformly from [d/2, d] so that nodes do not reconnect in lockstep
// after a coordinator restart. The zero value means 1s to 1min.
//
// A reconnecting node dials again after any error except ErrReplaced
// (another process holds its identity: stop and report) and ErrConfig.
type Backoff struct {
	Min, Max time.Duration
}

// Delay returns the delay before attempt n (0 for the first retry), drawn
// from r.
func (b Backoff) Delay(n int, r *rand.Rand) time.Duration {
	lo, hi := orDefault(b.Min, time.Second), orDefault(b.Max, time.Minute)
	d := hi
	if n < 32 && lo<<n > 0 && lo<<n < hi {
		d = lo << n
	}
	return d/2 + time.Duration(r.Int64N(int64(d/2)+1))
}
