// Package aggregator is the daemon of mode tee's aggregator, `cloister
// aggregator`: the process that opens the members' sealed updates inside
// its TEE, applies the manifest's robust rule and seals the result to the
// group key (package protect/tee).
//
// It connects to the coordinator like a member, over mutual TLS with the
// node certificate its kit holds (the manifest lists it as its
// aggregator, not as a member), and says Hello with evidence that binds
// its process keys to that TLS session: its HPKE key, which every member
// seals to, is made when the process starts and never leaves it. The
// coordinator checks the evidence against the manifest's aggregator
// policy and relays it to the members, each of which verifies it itself
// before sealing anything to that key. The protocol is round.Aggregator's:
// the aggregator answers each round once, keeps only the newest key
// epoch's setup, and keeps no plaintext beyond one Open.
//
// A new process has new keys: the coordinator then re-keys the members at
// the next round boundary. This build does not re-attest a running
// aggregator: its evidence must stay younger than the policy's max_age
// for the session (members refuse to make parties sealing to older
// evidence); restart it to attest again.
package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"time"

	"github.com/cloisterfl/cloister/attest"
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
}

// Aggregator is mode tee's aggregator daemon.
type Aggregator struct {
	cfg     Config
	log     *slog.Logger
	self    fl.NodeID
	session []byte
	keys    *keyring.Keys
	issued  time.Time
	engine  *round.Aggregator
	coord   fl.NodeID
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
	a := &Aggregator{cfg: cfg, self: fl.NodeID(cfg.Kit.Config.Name), coord: fl.NodeID(m.Coordinator.Name), log: cfg.Logger}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	a.log = a.log.With("aggregator", a.self)
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
	scheme.Identity = a.keys.PrivateHPKE()
	a.engine, err = round.NewAggregator(round.AggregatorConfig{Session: a.session, Threshold: m.Threshold, Coordinator: a.coord, Scheme: scheme})
	if err != nil {
		return nil, err
	}
	return a, nil
}

func containsFormat(formats []string, f string) bool {
	for _, x := range formats {
		if x == f {
			return true
		}
	}
	return false
}

// Key returns the aggregator's HPKE public key: what the members seal to.
func (a *Aggregator) Key() []byte { return a.keys.PrivateHPKE().PublicKey().Bytes() }

// Run dials the coordinator at addr and serves until the session is over
// (nil) or ctx ends. It reconnects with backoff, attesting on every new
// connection.
func (a *Aggregator) Run(ctx context.Context, addr string) error {
	tc, err := a.cfg.Kit.TLSConfig(pki.Options{})
	if err != nil {
		return err
	}
	m := a.cfg.Kit.Manifest
	a.log.Info("aggregator starting", "federation", m.Federation, "rule", ruleName(m.Rule), "tee", a.cfg.TEE.Format(), "coordinator", addr)
	rng := mrand.New(mrand.NewPCG(uint64(a.cfg.Now().UnixNano()), 11))
	metrics := new(transport.Metrics)
	for attempt := 0; ctx.Err() == nil; {
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
		done, err := a.serve(ctx, conn)
		conn.Close()
		if done {
			a.log.Info("the session is over")
			return nil
		}
		if errors.Is(err, transport.ErrReplaced) {
			return fmt.Errorf("aggregator: another process connected as %s: %w", a.self, err)
		}
		if ctx.Err() != nil {
			break
		}
		a.log.Warn("lost the coordinator; reconnecting", "err", err)
		sleep(ctx, a.cfg.Backoff.Delay(0, rng))
	}
	return ctx.Err()
}

// serve attests on conn, then feeds the engine until the stream ends.
func (a *Aggregator) serve(ctx context.Context, conn *transport.Conn) (done bool, err error) {
	ev, err := a.evidence(conn)
	if err != nil {
		return false, err
	}
	a.engine.Hello(ev)
	if err := a.drain(ctx, conn); err != nil {
		return false, err
	}
	for {
		m, err := conn.Recv(ctx)
		if err != nil {
			return false, err
		}
		start := time.Now()
		if err := a.engine.Step(conn.Coordinator(), m); err != nil {
			a.log.Warn("rejected a message", "kind", m.Kind.String(), "round", m.Round, "err", err)
		} else {
			a.log.Debug("step", "kind", m.Kind.String(), "round", m.Round, "step_s", time.Since(start).Seconds())
		}
		if err := a.drain(ctx, conn); err != nil {
			return false, err
		}
		if a.engine.Done() {
			return true, nil
		}
	}
}

// evidence makes the Hello evidence of the aggregator's keys on conn: TEE
// evidence bound to the stream's nonce and TLS keying material.
func (a *Aggregator) evidence(conn *transport.Conn) ([]byte, error) {
	nonce := conn.Nonce()
	if len(nonce) == 0 {
		return nil, errors.New("aggregator: the coordinator issued no attestation nonce")
	}
	ekm, err := attest.SessionEKM(conn.TLS())
	if err != nil {
		return nil, err
	}
	start := time.Now()
	te, err := attest.Attest(a.cfg.TEE, a.keys.Binding(nonce, ekm), a.cfg.Now())
	if err != nil {
		return nil, fmt.Errorf("aggregator: attesting: %w", err)
	}
	a.log.Info("attested", "format", a.cfg.TEE.Format(), "evidence_bytes", len(te), "attest_s", time.Since(start).Seconds())
	return a.keys.Evidence(a.session, a.self, a.cfg.Kit.AuditKey, a.issued, te), nil
}

// drain logs the engine's audit events, then sends its messages.
func (a *Aggregator) drain(ctx context.Context, conn *transport.Conn) error {
	for a.engine.HasReady() {
		rd := a.engine.Ready()
		for _, e := range rd.Audit {
			lvl := slog.LevelInfo
			if e.Kind == round.EventRefused || e.Kind == round.EventRejected {
				lvl = slog.LevelWarn
			}
			a.log.Log(ctx, lvl, "audit", "event", e.Kind.String(), "epoch", e.Epoch, "round", e.Round, "digest", e.Digest.String(), "detail", e.Detail)
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
