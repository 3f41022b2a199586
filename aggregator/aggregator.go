// Package aggregator is the daemon of mode tee's aggregator, `cloister
// aggregator`: the process that opens the members' sealed updates inside
// its TEE, applies the manifest's robust rule and seals the result to the
// group key (package protect/tee).
//
// It connects to the coordinator like a member, over mutual TLS with the
// node certificate its kit holds (the manifest lists it as its
// aggregator, not as a member), and says Hello with evidence that binds
// its process keys to that TLS session: its HPKE key, which every member
// seals to, is made in the process and never leaves it. The coordinator
// checks the evidence against the manifest's aggregator policy and relays
// it to the members, each of which verifies it itself before sealing
// anything to that key. The protocol is round.Aggregator's: the
// aggregator answers each round once, keeps only the newest key epoch's
// setup, and keeps no plaintext beyond one Open. With Config.StateDir it
// keeps a signed audit log of its own (AuditFile): each key setup it took,
// each round it opened and each refusal, on disk before its answer leaves.
//
// # Re-attestation
//
// Every Config.AttestEvery the aggregator makes new process keys (a new
// HPKE identity) and attests them with fresh evidence, bound to a fresh
// nonce from the coordinator and to the TLS session, as a member does
// (package node): it asks for the nonce on the live stream
// (transport.Conn.Challenge), rotates its engine to the new identity
// (round.Aggregator.Rotate: the previous private key, and the epoch's
// helper that held it, are dropped) and says Hello again on the same
// stream. The coordinator checks the evidence as at the start, relays it
// to the members, and, since the aggregator's evidence changed, re-keys
// them at its next round boundary: the rounds after that are sealed to
// the new key, and the previous one opens none of them. A new connection
// attests too (the same keys, fresh evidence), and a new process has new
// keys.
//
// The members seal every round of a key epoch to the key they verified
// when its setup began, so a rotation in the middle of a round would cost
// that round: the aggregator could no longer open it, and would refuse it
// with the reason. So a rotation that falls due waits for a round
// boundary. The aggregator asks for its nonce at once, and rotates right
// before it sends its answer to a round: its Hello is on the stream right
// behind the answer, ahead of the leader's commit of that round, so the
// coordinator has it when it would start the next round, and re-keys
// first. It rotates at once if it holds
// no key epoch (nothing sealed to its key can be opened then), and at the
// latest half a period late, so that a session in which no round ends
// still gets fresh evidence. This is the simplest sound mechanism: the
// engines and the coordinator already take a re-Hello on a live stream
// (members re-attest the same way), nothing sealed to a key is opened
// after the key is dropped, and in the usual case no round is lost. A
// rotation at once may still cost a round, or a key setup, that was under
// way. Evidence is thus at most 1.5 × AttestEvery old, which must stay
// below the aggregator policy's max_age (New warns): past it the
// coordinator starts no round and no key setup until the next
// re-attestation, and members make no party sealing to the key.
package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect/tee"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// Config configures an [Aggregator].
type Config struct {
	// Kit is the aggregator's kit (cloister init --mode tee writes it).
	Kit *pki.Kit
	// TEE produces the aggregator's attestation evidence (attest.Open;
	// attest.SimTEE for development). Required: members seal only to an
	// attested aggregator.
	TEE attest.Attester
	// Logger receives the aggregator's records, its audit events
	// included; nil discards them.
	Logger *slog.Logger
	// Limits bound transport messages; a zero MaxMessage means the limit
	// the manifest implies.
	Limits transport.Limits
	// Backoff bounds reconnection delays; the zero value means 250ms to 5s.
	Backoff transport.Backoff
	// Dial, if set, replaces the TCP dial (tests).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Now is the clock of its evidence; nil means time.Now.
	Now func() time.Time
	// AttestEvery is how often the aggregator makes new process keys and
	// attests them (see Re-attestation); 0 means DefaultAttestEvery.
	AttestEvery time.Duration
	// StateDir, if set, holds the aggregator's audit log (AuditFile),
	// signed with its kit's audit key: the key setups it took, the rounds
	// it opened and what it refused. Empty: those events go to the
	// process log only.
	StateDir string
}

// DefaultAttestEvery is how often the aggregator rotates its process keys
// and re-attests when Config.AttestEvery is 0: as often as a member
// (node.DefaultAttestEvery).
const DefaultAttestEvery = time.Hour

// Aggregator is mode tee's aggregator daemon.
type Aggregator struct {
	cfg     Config
	log     *slog.Logger
	self    fl.NodeID
	session []byte
	scheme  tee.Scheme // the manifest's, without an identity
	issued  time.Time
	engine  *round.Aggregator
	coord   fl.NodeID
	sched   schedule
	rotated int // rotations of the process keys

	mu   sync.Mutex // guards keys, which Key reads
	keys *keyring.Keys

	alog *audit.Log // nil without Config.StateDir
}

// New checks the kit and makes the aggregator's process keys.
func New(cfg Config) (*Aggregator, error) {
	if cfg.Kit == nil || cfg.Kit.Manifest == nil {
		return nil, errors.New("aggregator: no kit")
	}
	m := cfg.Kit.Manifest
	if m.Mode != federation.ModeTEE || m.Aggregator == nil || m.Aggregator.Name != cfg.Kit.Config.Name {
		return nil, fmt.Errorf("aggregator: the kit is %s's, and manifest %s (mode %s) names no such aggregator", cfg.Kit.Identity(), m.Federation, m.Mode)
	}
	if cfg.TEE == nil {
		return nil, fmt.Errorf("aggregator: no TEE: the manifest's aggregator policy requires evidence (formats %v): run it in a TEE (--tee)", m.AggregatorAttestation.Formats)
	}
	if !containsFormat(m.AggregatorAttestation.Formats, cfg.TEE.Format()) {
		return nil, fmt.Errorf("aggregator: the manifest allows the aggregator TEE formats %v, this TEE is %s", m.AggregatorAttestation.Formats, cfg.TEE.Format())
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Backoff == (transport.Backoff{}) {
		cfg.Backoff = transport.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	}
	switch {
	case cfg.AttestEvery < 0:
		return nil, fmt.Errorf("aggregator: attest every %v: must not be negative", cfg.AttestEvery)
	case cfg.AttestEvery == 0:
		cfg.AttestEvery = DefaultAttestEvery
	}
	a := &Aggregator{cfg: cfg, self: fl.NodeID(cfg.Kit.Config.Name), coord: fl.NodeID(m.Coordinator.Name), log: cfg.Logger,
		sched: schedule{every: cfg.AttestEvery}}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("aggregator", a.self)
	if maxAge := time.Duration(m.AggregatorAttestation.MaxAge); a.sched.latest() >= maxAge {
		a.log.Warn("the aggregator re-attests less often than its policy's maximum evidence age: the coordinator will hold "+
			"rounds back, and members refuse key setups, between re-attestations", "attest_every", cfg.AttestEvery,
			"latest", a.sched.latest(), "max_age", maxAge)
	}
	fed, err := federation.Resolve(m, federation.Overrides{MaxMessage: cfg.Limits.MaxMessage})
	if err != nil {
		return nil, err
	}
	a.cfg.Limits.MaxMessage = fed.MaxMessage
	a.session = fed.Round.Session
	if a.keys, err = keyring.NewKeys(nil); err != nil {
		return nil, err
	}
	a.issued = cfg.Now()
	scheme, ok := fed.Scheme.(tee.Scheme) // with the manifest's rule and compression
	if !ok {
		return nil, fmt.Errorf("aggregator: manifest %s's scheme is %s, not %s", m.Federation, fed.Scheme.Name(), tee.Name)
	}
	a.scheme = scheme
	a.engine, err = round.NewAggregator(round.AggregatorConfig{Session: a.session, Threshold: m.Threshold, Coordinator: a.coord,
		Scheme: a.schemeOf(a.keys)})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// schemeOf is the engine's scheme: the manifest's, with keys' identity.
func (a *Aggregator) schemeOf(keys *keyring.Keys) tee.Scheme {
	s := a.scheme
	s.Identity = keys.PrivateHPKE()
	return s
}

func containsFormat(formats []string, f string) bool {
	for _, x := range formats {
		if x == f {
			return true
		}
	}
	return false
}

// Key returns the aggregator's current HPKE public key: what the members
// seal to, until its next re-attestation.
func (a *Aggregator) Key() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.keys.PrivateHPKE().PublicKey().Bytes()
}

// Run dials the coordinator at addr and serves until the session is over
// (nil) or ctx ends. It reconnects with backoff, attesting on every new
// connection, and re-attests with new keys every Config.AttestEvery.
func (a *Aggregator) Run(ctx context.Context, addr string) error {
	tc, err := a.cfg.Kit.TLSConfig(pki.Options{})
	if err != nil {
		return err
	}
	m := a.cfg.Kit.Manifest
	a.log.Info("aggregator starting", "federation", m.Federation, "rule", ruleName(m.Rule), "tee", a.cfg.TEE.Format(), "coordinator", addr,
		"attest_every", a.cfg.AttestEvery)
	if err := a.openAudit(); err != nil {
		return err
	}
	if a.alog != nil {
		defer a.alog.Close()
	}
	rng := mrand.New(mrand.NewPCG(uint64(a.cfg.Now().UnixNano()), 11))
	metrics := new(transport.Metrics)
	timer := time.NewTimer(a.sched.every)
	defer timer.Stop()
	for attempt := 0; ctx.Err() == nil; {
		select {
		case <-timer.C: // not connected
			if wait := a.sched.fired(a.engine.Keyed()); wait > 0 {
				timer.Reset(wait)
			} else if err := a.rotate(timer); err != nil {
				a.log.Error("cannot make new process keys; keeping the current ones", "err", err)
			} else {
				a.log.Info("rotated the process keys; they are attested on the next connection", "rotations", a.rotated)
			}
		default:
		}
		conn, err := transport.Dial(ctx, addr, transport.ClientConfig{TLS: tc, Limits: a.cfg.Limits, Logger: a.log, Metrics: metrics, Dial: a.cfg.Dial})
		if err != nil {
			if errors.Is(err, transport.ErrConfig) {
				return err
			}
			a.log.Info("cannot reach the coordinator", "addr", addr, "attempt", attempt+1, "err", err)
			sleep(ctx, a.cfg.Backoff.Delay(attempt, rng))
			attempt++
			continue
		}
		attempt = 0
		done, err := a.serve(ctx, conn, timer)
		conn.Close()
		if done {
			a.log.Info("the session is over")
			return nil
		}
		if errors.Is(err, transport.ErrReplaced) {
			return fmt.Errorf("aggregator: another process connected as %s: %w", a.self, err)
		}
		if errors.Is(err, errAudit) {
			return err
		}
		if ctx.Err() != nil {
			break
		}
		a.log.Warn("lost the coordinator; reconnecting", "err", err)
		sleep(ctx, a.cfg.Backoff.Delay(0, rng))
	}
	return ctx.Err()
}

// serve attests on conn, then feeds the engine until the stream ends,
// re-attesting with new keys when timer (AttestEvery) and the schedule say.
func (a *Aggregator) serve(ctx context.Context, conn *transport.Conn, timer *time.Timer) (done bool, err error) {
	ev, err := a.evidence(conn, conn.Nonce())
	if err != nil {
		return false, err
	}
	a.engine.Hello(ev)
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs, ended := make(chan round.Message), make(chan error, 1)
	go func() {
		for {
			m, err := conn.Recv(rctx)
			if err != nil {
				ended <- err
				return
			}
			select {
			case msgs <- m:
			case <-rctx.Done():
				ended <- rctx.Err()
				return
			}
		}
	}()
	nonces := make(chan challenged, 1)
	var nonce []byte // a fresh nonce for the rotation that is due
	asking := false  // a Challenge is in flight
	for {
		// A rotation that is due asks for its nonce at once, and happens
		// once it is in hand: at once, or right before an answer to a
		// round leaves, so that the Hello follows the answer on the stream
		// and reaches the coordinator before it starts the next round.
		if a.sched.wants() {
			switch {
			case nonce == nil && !asking:
				asking = true
				go challenge(rctx, conn, nonces)
			case nonce != nil && a.sched.rotateNow(a.answering()):
				if err := a.reattest(conn, nonce, timer); err != nil {
					return false, err
				}
				nonce = nil
			}
		}
		if err := a.drain(ctx, conn); err != nil {
			return false, err
		}
		if a.engine.Done() {
			return true, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case err := <-ended:
			return false, err
		case <-timer.C:
			if wait := a.sched.fired(a.engine.Keyed()); wait > 0 {
				a.log.Debug("re-attestation due: at the next round boundary", "at_most", wait)
				timer.Reset(wait)
			}
		case ch := <-nonces:
			asking = false
			if ch.err != nil {
				a.log.Warn("cannot re-attest: no fresh nonce from the coordinator; retrying", "err", ch.err)
				timer.Reset(a.sched.failed())
				continue
			}
			nonce = ch.nonce
		case m := <-msgs:
			start := time.Now()
			if err := a.engine.Step(conn.Coordinator(), m); err != nil {
				a.log.Warn("rejected a message", "kind", m.Kind.String(), "round", m.Round, "err", err)
			} else {
				a.log.Debug("step", "kind", m.Kind.String(), "round", m.Round, "step_s", time.Since(start).Seconds())
			}
		}
	}
}

// challengeTimeout bounds the wait for a fresh nonce.
const challengeTimeout = time.Minute

// challenged is a fresh nonce the coordinator sent, or why none came.
type challenged struct {
	nonce []byte
	err   error
}

// challenge asks the coordinator for a fresh nonce on conn.
func challenge(ctx context.Context, conn *transport.Conn, out chan<- challenged) {
	cctx, cancel := context.WithTimeout(ctx, challengeTimeout)
	defer cancel()
	nonce, err := conn.Challenge(cctx)
	out <- challenged{nonce, err} // buffered; one Challenge at a time
}

// answering reports whether the engine's pending output answers a round
// (a result or a refusal).
func (a *Aggregator) answering() bool {
	for _, m := range a.engine.Ready().Messages {
		if m.Kind == round.KindShare || m.Kind == round.KindRefuse {
			return true
		}
	}
	return false
}

// reattest makes new process keys, rotates the engine to them, and says
// Hello with their evidence, bound to nonce (fresh from the coordinator)
// and conn's TLS session; the next drain sends it. An error ends the
// stream: the aggregator reconnects and attests its new keys there.
func (a *Aggregator) reattest(conn *transport.Conn, nonce []byte, timer *time.Timer) error {
	start := time.Now()
	if err := a.rotate(timer); err != nil {
		a.log.Error("cannot make new process keys; keeping the current ones", "err", err)
		return nil
	}
	ev, err := a.evidence(conn, nonce)
	if err != nil {
		return err
	}
	a.engine.Hello(ev)
	key := tee.KeyDigest(a.Key())
	a.log.Info("re-attested: new process keys, new evidence", "format", a.cfg.TEE.Format(), "key", fmt.Sprintf("%x", key[:6]),
		"rotations", a.rotated, "reattest_s", time.Since(start).Seconds())
	return nil
}

// rotate makes new process keys and rotates the engine to them: the
// previous identity is dropped. The schedule starts a new period, also
// when it fails (the current keys stay until the next).
func (a *Aggregator) rotate(timer *time.Timer) error {
	timer.Reset(a.sched.rotated())
	keys, err := keyring.NewKeys(nil)
	if err != nil {
		return err
	}
	if err := a.engine.Rotate(a.schemeOf(keys)); err != nil {
		return err
	}
	a.mu.Lock()
	a.keys = keys
	a.mu.Unlock()
	a.issued = a.cfg.Now()
	a.rotated++
	return nil
}

// evidence makes the Hello evidence of the aggregator's keys on conn: TEE
// evidence bound to nonce (the stream's, or a fresh one) and the stream's
// TLS keying material.
func (a *Aggregator) evidence(conn *transport.Conn, nonce []byte) ([]byte, error) {
	if len(nonce) == 0 {
		return nil, errors.New("aggregator: the coordinator issued no attestation nonce")
	}
	ekm, err := attest.SessionEKM(conn.TLS())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	a.mu.Lock()
	keys := a.keys
	a.mu.Unlock()
	te, err := attest.Attest(a.cfg.TEE, keys.Binding(nonce, ekm), a.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("aggregator: attesting: %w", err)
	}
	a.log.Info("attested", "format", a.cfg.TEE.Format(), "evidence_bytes", len(te), "attest_s", time.Since(start).Seconds())
	return keys.Evidence(a.session, a.self, a.cfg.Kit.AuditKey, a.issued, te), nil
}

// drain logs and audits the engine's events (the audit log on disk
// first), then sends its messages.
func (a *Aggregator) drain(ctx context.Context, conn *transport.Conn) error {
	for a.engine.HasReady() {
		rd := a.engine.Ready()
		for _, e := range rd.Audit {
			lvl := slog.LevelInfo
			if e.Kind == round.EventRefused || e.Kind == round.EventRejected {
				lvl = slog.LevelWarn
			}
			a.log.Log(ctx, lvl, "audit", "event", e.Kind.String(), "epoch", e.Epoch, "round", e.Round, "digest", e.Digest.String(), "detail", e.Detail)
			if err := a.record(e); err != nil {
				return err
			}
		}
		for _, m := range rd.Messages {
			m.To = "" // to the coordinator, whose name is not a NodeID
			if err := conn.Send(ctx, m); err != nil {
				return err
			}
		}
		a.engine.Advance()
	}
	return nil
}

func ruleName(r string) string {
	if r == "" {
		return "mean"
	}
	return r
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
