package relay

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"sync/atomic"
)

// Errors a session reports; each wraps context naming the party.
var (
	// ErrMalformed: a message that does not parse.
	ErrMalformed = errors.New("relay: malformed message")
	// ErrForged: a message its claimed sender did not send, or not in
	// the order it sent it (changed, replayed, reordered, dropped or made
	// up by the relay).
	ErrForged = errors.New("relay: message not from its sender")
	// ErrMismatch: a party opened the session with other parameters.
	ErrMismatch = errors.New("relay: session parameters differ")
	// ErrOrder: an authentic message that is not the one the protocol
	// expects next from its sender.
	ErrOrder = errors.New("relay: message out of step")
	// ErrClosed: the session was closed.
	ErrClosed = errors.New("relay: session closed")
	// ErrAborted: another party gave up (Abort) and said why.
	ErrAborted = errors.New("relay: another party gave up")
	// ErrGone: the relay says a party's connection ended (its process
	// stopped, or its network): the session cannot finish. A relay can
	// say so falsely, as it can drop messages.
	ErrGone = errors.New("relay: a party left the relay")
)

// Carrier moves opaque messages between named parties: the transport to
// the coordinator, or memory in tests ([Pipe]). Messages from one sender
// to one recipient arrive in the order sent, or not at all. Recv is
// called by one goroutine at a time. An empty message from a party is the
// carrier's notice that the party's connection ended (no party sends an
// empty one): after that party's hello, [Session.Recv] fails with
// [ErrGone]; before it, the notice is about an earlier connection and is
// skipped.
type Carrier interface {
	Send(ctx context.Context, to string, msg []byte) error
	Recv(ctx context.Context) (from string, msg []byte, err error)
}

// Link is what a party's protocol needs of a session: Send a message to a
// party, Recv the next one from a party. [*Session] is one.
type Link interface {
	Send(ctx context.Context, to, tag string, index uint64, body []byte) error
	Recv(ctx context.Context, from, tag string, index uint64) ([]byte, error)
}

// Config is one party's view of a session.
type Config struct {
	// Self is this party's name, one of Parties.
	Self string
	// Parties names every party of the session, Self included. Every
	// party must give the same list in the same order (it is part of what
	// the hellos bind).
	Parties []string
	// Digest binds the session: a hash of everything the parties must
	// agree on (the protocol, its parameters). Parties with different
	// digests do not talk.
	Digest [32]byte
	// Key signs this party's hellos; Keys holds every party's public key.
	Key  ed25519.PrivateKey
	Keys map[string]ed25519.PublicKey
	// MaxBody bounds a message's body (0: 256 MiB).
	MaxBody int
	// Rand is the source of the X25519 keys (nil: crypto/rand).
	Rand io.Reader
}

const (
	magic       = "CLRL"
	version     = 1
	kindHello   = 1
	kindSealed  = 2
	maxName     = 255
	maxTag      = 255
	helloDomain = "cloister/relay/hello/v1"
	abortTag    = "relay/abort"
	confirmTag  = "relay/confirm"
	maxReason   = 1 << 10
	keyDomain   = "cloister/relay/key/v1"
)

// Session is one party's end of an open session. Its methods are safe for
// concurrent use; Recv for one sender should be called by one goroutine
// at a time.
type Session struct {
	cfg    Config
	c      Carrier
	peers  map[string]*peer
	cancel context.CancelFunc
	done   chan struct{}

	mu  sync.Mutex
	err error // the carrier's failure, after the queued messages

	sent, received atomic.Int64
}

type peer struct {
	name    string
	seal    cipher.AEAD
	open    cipher.AEAD
	sendMu  sync.Mutex
	sendSeq uint64
	sendErr error // the first failed send: a nonce may have gone out
	recvSeq uint64
	recvErr error // the first failed Recv: the peer's stream is out of step
	mu      sync.Mutex
	q       [][]byte
	queued  int // bytes in q
	wake    chan struct{}
	// recvLock serializes Recv calls for this peer.
	recvLock sync.Mutex
}

// Open starts a session over c: it sends every other party a signed hello,
// waits for theirs (until ctx ends), checks them and derives the keys.
// Close the session when done.
func Open(ctx context.Context, c Carrier, cfg Config) (*Session, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if cfg.MaxBody <= 0 {
		cfg.MaxBody = 256 << 20
	}
	rnd := cfg.Rand
	if rnd == nil {
		rnd = rand.Reader
	}
	priv, err := ecdh.X25519().GenerateKey(rnd)
	if err != nil {
		return nil, fmt.Errorf("relay: X25519 key: %w", err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	s := &Session{cfg: cfg, c: c, peers: map[string]*peer{}, cancel: cancel, done: make(chan struct{})}
	for _, p := range cfg.Parties {
		if p != cfg.Self {
			s.peers[p] = &peer{name: p, wake: make(chan struct{}, 1)}
		}
	}
	go s.read(rctx)
	ok := false
	defer func() {
		if !ok {
			s.Close()
		}
	}()
	sent := map[string][]byte{}
	for _, p := range cfg.Parties {
		if p == cfg.Self {
			continue
		}
		h := s.hello(p, priv.PublicKey().Bytes())
		sent[p] = h
		if err := c.Send(ctx, p, h); err != nil {
			return nil, fmt.Errorf("relay: sending the hello to %s: %w", p, err)
		}
		s.sent.Add(int64(len(h)))
	}
	for _, p := range cfg.Parties {
		if p == cfg.Self {
			continue
		}
		pr := s.peers[p]
		var msg []byte
		for len(msg) == 0 {
			// An empty message is the relay's word that p's stream ended:
			// before p's hello, it is about an earlier process of p.
			if msg, err = s.next(ctx, pr); err != nil {
				return nil, fmt.Errorf("relay: waiting for the hello of %s: %w", p, err)
			}
		}
		pub, err := s.checkHello(p, msg)
		if err != nil {
			return nil, err
		}
		theirs, err := ecdh.X25519().NewPublicKey(pub)
		if err != nil {
			return nil, fmt.Errorf("%w: hello of %s: X25519 key: %v", ErrMalformed, p, err)
		}
		shared, err := priv.ECDH(theirs)
		if err != nil {
			return nil, fmt.Errorf("%w: hello of %s: X25519: %v", ErrMalformed, p, err)
		}
		if pr.seal, err = direction(shared, cfg.Digest, cfg.Self, p, sent[p], msg); err != nil {
			return nil, err
		}
		if pr.open, err = direction(shared, cfg.Digest, p, cfg.Self, msg, sent[p]); err != nil {
			return nil, err
		}
		clear(shared)
	}
	// Key confirmation: each party proves it holds its key of this run
	// (a hello replayed from an earlier run with the same digest gets no
	// answer that authenticates).
	for _, p := range cfg.Parties {
		if p != cfg.Self {
			if err := s.Send(ctx, p, confirmTag, 0, nil); err != nil {
				return nil, err
			}
		}
	}
	for _, p := range cfg.Parties {
		if p != cfg.Self {
			if _, err := s.Recv(ctx, p, confirmTag, 0); err != nil {
				return nil, fmt.Errorf("relay: confirming the keys with %s: %w", p, err)
			}
		}
	}
	ok = true
	return s, nil
}

func (cfg *Config) check() error {
	if len(cfg.Parties) < 2 {
		return fmt.Errorf("relay: a session of %d parties, want at least 2", len(cfg.Parties))
	}
	seen := map[string]bool{}
	for _, p := range cfg.Parties {
		switch {
		case p == "" || len(p) > maxName:
			return fmt.Errorf("relay: party name %q: want 1 to %d bytes", p, maxName)
		case seen[p]:
			return fmt.Errorf("relay: party %q listed twice", p)
		case len(cfg.Keys[p]) != ed25519.PublicKeySize:
			return fmt.Errorf("relay: no Ed25519 key for party %q", p)
		}
		seen[p] = true
	}
	if !seen[cfg.Self] {
		return fmt.Errorf("relay: %q is not one of the parties %q", cfg.Self, cfg.Parties)
	}
	if len(cfg.Key) != ed25519.PrivateKeySize || !cfg.Keys[cfg.Self].Equal(cfg.Key.Public()) {
		return fmt.Errorf("relay: the signing key is not party %q's", cfg.Self)
	}
	return nil
}

// partiesHash binds the party list and its order.
func (cfg *Config) partiesHash() []byte {
	h := sha256.New()
	for _, p := range cfg.Parties {
		h.Write([]byte{byte(len(p))})
		h.Write([]byte(p))
	}
	return h.Sum(nil)
}

func appendName(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(s)))
	return append(b, s...)
}

func (s *Session) hello(to string, pub []byte) []byte {
	b := append([]byte(magic), version, kindHello)
	b = append(b, s.cfg.Digest[:]...)
	b = append(b, s.cfg.partiesHash()...)
	b = appendName(b, s.cfg.Self)
	b = appendName(b, to)
	b = append(b, pub...)
	sig := ed25519.Sign(s.cfg.Key, append([]byte(helloDomain), b...))
	return append(b, sig...)
}

// checkHello verifies p's hello to us and returns its X25519 key.
func (s *Session) checkHello(p string, msg []byte) ([]byte, error) {
	r := reader{b: msg}
	if err := r.header(kindHello); err != nil {
		return nil, fmt.Errorf("hello of %s: %w", p, err)
	}
	digest, parties := r.take(32), r.take(32)
	from, to := r.name(), r.name()
	pub := r.take(32)
	body := len(msg) - len(r.b)
	sig := r.take(ed25519.SignatureSize)
	if r.err != nil || len(r.b) != 0 {
		return nil, fmt.Errorf("%w: hello of %s: %d bytes", ErrMalformed, p, len(msg))
	}
	if !ed25519.Verify(s.cfg.Keys[p], append([]byte(helloDomain), msg[:body]...), sig) || from != p || to != s.cfg.Self {
		return nil, fmt.Errorf("%w: the hello said to come from %s to %s is not signed by %s's key", ErrForged, from, to, p)
	}
	if string(digest) != string(s.cfg.Digest[:]) {
		return nil, fmt.Errorf("%w: %s opened session %x, this party %x (another protocol, data or setting)", ErrMismatch, p, digest[:8], s.cfg.Digest[:8])
	}
	if string(parties) != string(s.cfg.partiesHash()) {
		return nil, fmt.Errorf("%w: %s lists other parties, or in another order, than %q", ErrMismatch, p, s.cfg.Parties)
	}
	return pub, nil
}

// direction is the AEAD of messages from → to.
func direction(shared []byte, digest [32]byte, from, to string, helloFrom, helloTo []byte) (cipher.AEAD, error) {
	info := []byte(keyDomain)
	info = appendName(info, from)
	info = appendName(info, to)
	hf, ht := sha256.Sum256(helloFrom), sha256.Sum256(helloTo)
	info = append(append(info, hf[:]...), ht[:]...)
	key, err := hkdf.Key(sha256.New, shared, digest[:], string(info), 32)
	if err != nil {
		return nil, err
	}
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(blk)
}

func nonce(seq uint64) []byte {
	var n [12]byte
	binary.BigEndian.PutUint64(n[4:], seq)
	return n[:]
}

func (s *Session) aad(header []byte, from, to string) []byte {
	a := slices.Clip(header)
	a = appendName(a, from)
	return appendName(a, to)
}

// Send seals body and sends it to party to, under tag and index.
func (s *Session) Send(ctx context.Context, to, tag string, index uint64, body []byte) error {
	pr, ok := s.peers[to]
	switch {
	case !ok:
		return fmt.Errorf("relay: %q is not another party of this session", to)
	case len(tag) > maxTag:
		return fmt.Errorf("relay: tag of %d bytes, at most %d", len(tag), maxTag)
	case len(body) > s.cfg.MaxBody:
		return fmt.Errorf("relay: a message of %d bytes to %s, at most %d", len(body), to, s.cfg.MaxBody)
	}
	pr.sendMu.Lock()
	defer pr.sendMu.Unlock()
	if pr.sendErr != nil {
		return pr.sendErr
	}
	// The counter moves before the message leaves: a carrier that fails
	// after sending must not make the next message reuse its nonce.
	seq := pr.sendSeq
	pr.sendSeq++
	h := append([]byte(magic), version, kindSealed)
	h = binary.BigEndian.AppendUint64(h, seq)
	h = appendName(h, tag)
	h = binary.BigEndian.AppendUint64(h, index)
	msg := pr.seal.Seal(h, nonce(seq), body, s.aad(h, s.cfg.Self, to))
	if err := s.c.Send(ctx, to, msg); err != nil {
		// The peer will miss this message: nothing more can reach it in
		// this session.
		pr.sendErr = fmt.Errorf("relay: sending %s[%d] to %s: %w", tag, index, to, err)
		return pr.sendErr
	}
	s.sent.Add(int64(len(msg)))
	return nil
}

// Recv returns the body of the next message from party from, which must
// be tag[index] (see the package documentation).
func (s *Session) Recv(ctx context.Context, from, tag string, index uint64) ([]byte, error) {
	pr, ok := s.peers[from]
	if !ok {
		return nil, fmt.Errorf("relay: %q is not another party of this session", from)
	}
	pr.recvLock.Lock()
	defer pr.recvLock.Unlock()
	if pr.recvErr != nil {
		return nil, pr.recvErr
	}
	body, err := s.recv(ctx, pr, tag, index)
	if err != nil && ctx.Err() == nil {
		pr.recvErr = err
	}
	return body, err
}

func (s *Session) recv(ctx context.Context, pr *peer, tag string, index uint64) ([]byte, error) {
	from := pr.name
	msg, err := s.next(ctx, pr)
	if err != nil {
		return nil, fmt.Errorf("relay: waiting for %s[%d] from %s: %w", tag, index, from, err)
	}
	if len(msg) == 0 {
		return nil, fmt.Errorf("%w: %s, while this party waited for its %s[%d]", ErrGone, from, tag, index)
	}
	r := reader{b: msg}
	if err := r.header(kindSealed); err != nil {
		return nil, fmt.Errorf("message from %s: %w", from, err)
	}
	seq := r.u64()
	gotTag := r.name()
	gotIndex := r.u64()
	if r.err != nil || len(gotTag) > maxTag {
		return nil, fmt.Errorf("%w: message from %s: %d bytes", ErrMalformed, from, len(msg))
	}
	h := msg[:len(msg)-len(r.b)]
	if len(r.b) > s.cfg.MaxBody+pr.open.Overhead() {
		return nil, fmt.Errorf("%w: a message of %d bytes from %s, at most %d", ErrMalformed, len(r.b), from, s.cfg.MaxBody)
	}
	if seq != pr.recvSeq {
		return nil, fmt.Errorf("%w: message %d from %s where %d was due (the relay dropped, replayed or reordered messages)", ErrForged, seq, from, pr.recvSeq)
	}
	body, err := pr.open.Open(nil, nonce(seq), r.b, s.aad(h, from, s.cfg.Self))
	if err != nil {
		return nil, fmt.Errorf("%w: message %d said to come from %s does not authenticate", ErrForged, seq, from)
	}
	pr.recvSeq++
	if gotTag == abortTag && gotTag != tag {
		return nil, fmt.Errorf("%w: %s: %q", ErrAborted, from, body[:min(len(body), maxReason)])
	}
	if gotTag != tag || gotIndex != index {
		return nil, fmt.Errorf("%w: %s sent %s[%d] where %s[%d] was due", ErrOrder, from, gotTag, gotIndex, tag, index)
	}
	return body, nil
}

// next waits for pr's next raw message.
func (s *Session) next(ctx context.Context, pr *peer) ([]byte, error) {
	for {
		pr.mu.Lock()
		if len(pr.q) > 0 {
			m := pr.q[0]
			pr.q[0] = nil
			pr.q = pr.q[1:]
			pr.queued -= len(m)
			pr.mu.Unlock()
			return m, nil
		}
		pr.mu.Unlock()
		s.mu.Lock()
		err := s.err
		s.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-pr.wake:
		case <-s.done:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
	}
}

// read moves the carrier's messages into the senders' queues.
func (s *Session) read(ctx context.Context) {
	defer close(s.done)
	for {
		from, msg, err := s.c.Recv(ctx)
		if err == nil {
			if pr, ok := s.peers[from]; ok {
				s.received.Add(int64(len(msg)))
				pr.mu.Lock()
				over := pr.queued+len(msg) > s.maxQueued()
				if !over {
					pr.q = append(pr.q, msg)
					pr.queued += len(msg)
				}
				pr.mu.Unlock()
				if !over {
					select {
					case pr.wake <- struct{}{}:
					default:
					}
					continue
				}
				err = fmt.Errorf("%w: %s has more than %d bytes waiting to be read", ErrMalformed, from, s.maxQueued())
			} else {
				err = fmt.Errorf("%w: a message from %q, who is not a party of this session", ErrForged, from)
			}
		}
		if ctx.Err() != nil {
			err = ErrClosed
		}
		s.mu.Lock()
		s.err = err
		s.mu.Unlock()
		return
	}
}

// Abort tells every other party that this one gives up, and why: their
// next Recv from it fails with [ErrAborted] and the reason, instead of
// waiting. It returns the first failure to send; the session stays open
// until Close.
func (s *Session) Abort(ctx context.Context, reason string) error {
	if len(reason) > maxReason {
		reason = reason[:maxReason]
	}
	var first error
	for _, p := range s.cfg.Parties {
		if p == s.cfg.Self {
			continue
		}
		if err := s.Send(ctx, p, abortTag, 0, []byte(reason)); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// maxQueued bounds the bytes of one peer's messages waiting for Recv: a
// few of the largest messages (a protocol reads each sender in order, and
// keeps at most a small window in flight).
func (s *Session) maxQueued() int { return 8*s.cfg.MaxBody + 1<<20 }

// Bytes returns the bytes this party sent and received, hellos included.
func (s *Session) Bytes() (sent, received int64) { return s.sent.Load(), s.received.Load() }

// Self returns this party's name.
func (s *Session) Self() string { return s.cfg.Self }

// Parties returns the session's parties, in the session's order.
func (s *Session) Parties() []string { return slices.Clone(s.cfg.Parties) }

// Close ends the session: pending and later Recv calls fail with
// [ErrClosed] once the queued messages are read. It does not close the
// carrier.
func (s *Session) Close() error {
	s.cancel()
	<-s.done
	return nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.err = ErrMalformed
		return make([]byte, n)
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u64() uint64 { return binary.BigEndian.Uint64(r.take(8)) }

func (r *reader) name() string {
	n := binary.BigEndian.Uint16(r.take(2))
	if n > maxName {
		r.err = ErrMalformed
		return ""
	}
	return string(r.take(int(n)))
}

func (r *reader) header(kind byte) error {
	h := r.take(6)
	switch {
	case r.err != nil || string(h[:4]) != magic:
		return fmt.Errorf("%w: not a relay message", ErrMalformed)
	case h[4] != version:
		return fmt.Errorf("%w: relay version %d, this build speaks %d", ErrMalformed, h[4], version)
	case h[5] != kind:
		return fmt.Errorf("%w: a message of kind %d where %d was due", ErrMalformed, h[5], kind)
	}
	return nil
}
