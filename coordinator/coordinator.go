// Package coordinator is the coordinator daemon, `cloister coordinator`: it
// accepts the members' mutual-TLS streams (package transport), runs the
// coordinator's round engine (round.Coordinator), persists its state
// (package store) and keeps its audit log (package audit).
//
// The coordinator is trusted with nothing secret. It relays sealed payloads,
// schedules rounds, sums protected updates with the scheme's Helper and
// stores sealed models it cannot open. The only plaintext it sees is the
// evaluation metrics the nodes report, sizes and timings.
//
// # State directory
//
//	STATE/coordinator.db  store: engine state, rounds, sealed models,
//	                      commit records, metrics
//	STATE/audit.log       the coordinator's signed, hash-chained audit log
//
// For each Ready of the engine the loop persists the state and the round
// records in one transaction, then appends the audit records (fsynced),
// then sends the messages. A restarted coordinator resumes from the stored
// state (round.RestartCoordinator); a round is never committed twice.
//
// # Attestation
//
// When the manifest requires TEE evidence, the coordinator checks each
// member's evidence on its own end of the member's TLS connection, against
// the nonce it issued, before the member's Hello reaches the engine; it
// excludes (round.Coordinator.Exclude) a member whose evidence fails or
// expires, and readmits it on fresh valid evidence. See
// [Coordinator.Attestation] and docs/PROTOCOL.md §2.
//
// # Observability
//
// [Coordinator.Handler] serves Prometheus metrics at /metrics, the round
// history with per-phase timings, bytes and the nodes' example-weighted
// metrics at /rounds (JSON), the engine's status, the members and their
// attestation at /status (JSON), and a dashboard at / that renders those
// two documents as one HTML page (no script). Serve it on a separate
// listener (`--metrics`).
package coordinator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
	"github.com/cloisterfl/cloister/transport"
)

// Files in the coordinator's state directory.
const (
	DBFile    = "coordinator.db"
	AuditFile = "audit.log"
)

// DefaultTick is the engine's tick when Config.Tick is 0.
const DefaultTick = 500 * time.Millisecond

// Deadlines bound each step of the protocol in wall-clock time; they are
// turned into ticks of Config.Tick. A member whose connection drops is
// excluded at once (transport disconnect), so deadlines only matter for
// members that are connected but silent.
type Deadlines struct {
	Setup   time.Duration // each key setup step; 0: 2m
	Collect time.Duration // collecting uploads (local training included); 0: 5m
	Reveal  time.Duration // collecting reveal shares; 0: 1m
	Commit  time.Duration // each leader's commit; 0: 1m
	Eval    time.Duration // collecting metrics; 0: 2m
	Gather  time.Duration // waiting for the rest of the members once enough are live; 0: 3s
	// Join: a key setup starts without the members that have not said
	// Hello this long after the first Hello of the attempt, once at least
	// max(t, minimum cohort) are live (and at once when all are); 0: 30s.
	Join time.Duration
}

func (d Deadlines) ticks(tick time.Duration) round.Deadlines {
	t := func(v, def time.Duration) int {
		if v <= 0 {
			v = def
		}
		return max(1, int((v+tick-1)/tick))
	}
	return round.Deadlines{
		Setup: t(d.Setup, 2*time.Minute), Collect: t(d.Collect, 5*time.Minute), Reveal: t(d.Reveal, time.Minute),
		Commit: t(d.Commit, time.Minute), Eval: t(d.Eval, 2*time.Minute), Gather: t(d.Gather, 3*time.Second),
		Join: t(d.Join, 30*time.Second),
	}
}

// Config configures a Coordinator.
type Config struct {
	// Kit is the coordinator's kit (pki.LoadKit).
	Kit *pki.Kit
	// StateDir holds coordinator.db and audit.log; created (0700) if missing.
	StateDir string
	// Logger receives the coordinator's records; nil discards them.
	Logger *slog.Logger
	// Tick is the engine's clock period; 0 means DefaultTick.
	Tick time.Duration
	// Deadlines bound the protocol's steps.
	Deadlines Deadlines
	// Limits bound transport messages. A zero MaxMessage means the limit
	// computed from the manifest (federation.MessageSizes), which every node
	// computes too; a MaxMessage below what the federation's largest
	// message needs is refused (federation.ErrLimitTooSmall). A zero ChunkSize
	// means the transport's 1 MiB.
	Limits transport.Limits
	// Keepalive is the transport's keepalive; 0 means its default.
	Keepalive time.Duration
	// Scheme overrides the scheme the manifest names (tests).
	Scheme protect.Scheme
	// Seed seeds cohort sampling (not a secret); 0 picks one at random.
	Seed uint64
	// Now is the clock for records, timings and evidence ages; nil means
	// time.Now.
	Now func() time.Time
	// Roots are the TEE vendor roots evidence is verified against; the zero
	// value means the real vendors' (and sim's).
	Roots attest.Roots
}

// Coordinator is the coordinator daemon. Create it with New, call Serve
// with a listener, and Shutdown to stop.
type Coordinator struct {
	cfg     Config
	log     *slog.Logger
	man     *federation.Manifest
	name    string
	session []byte
	rcfg    round.Config
	scheme  protect.Scheme
	srv     *transport.Server
	tm      *transport.Metrics
	db      *store.DB
	sc      *store.Coordinator
	alog    *audit.Log
	rc      *round.Coordinator
	met     *metrics
	budget  *budget // nil without DP

	// Owned by the loop goroutine.
	hist   *history
	leader fl.NodeID
	tee    *attest.Verifier // nil: the manifest requires no attestation
	att    map[fl.NodeID]*attestation

	startOnce sync.Once
	loopDone  chan struct{}
	stop      context.CancelFunc
	ctx       context.Context
	loopErr   error
	closeOnce sync.Once

	mu        sync.Mutex // guards status and attStatus
	status    round.Status
	attStatus map[fl.NodeID]AttestationStatus
}

// New opens (or creates) the coordinator's state and returns a coordinator
// ready to Serve. With persisted state it resumes the session.
func New(cfg Config) (*Coordinator, error) {
	if cfg.Kit == nil || cfg.Kit.Manifest == nil {
		return nil, errors.New("coordinator: no kit")
	}
	if id := cfg.Kit.Identity(); id.Role != pki.RoleCoordinator {
		return nil, fmt.Errorf("coordinator: the kit is the %s's, not the coordinator's", id)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("coordinator: no state directory")
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	c := &Coordinator{cfg: cfg, man: cfg.Kit.Manifest, name: cfg.Kit.Config.Name, loopDone: make(chan struct{}),
		att: make(map[fl.NodeID]*attestation)}
	c.log = cfg.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	fed, err := federation.Resolve(c.man, federation.Overrides{Scheme: cfg.Scheme, MaxMessage: cfg.Limits.MaxMessage})
	if err != nil {
		return nil, err
	}
	c.rcfg, c.scheme = fed.Round, fed.Scheme // under DP, rcfg.MaxRound is the budget's cap
	c.rcfg.Deadlines = cfg.Deadlines.ticks(cfg.Tick)
	c.session = c.rcfg.Session
	if c.scheme.Name() == plain.Name {
		c.log.Warn(plain.Warning)
	}
	if c.budget, err = newBudget(fed.Budget, c.man); err != nil {
		return nil, err
	}
	sizes := fed.Sizes
	c.cfg.Limits.MaxMessage = fed.MaxMessage
	c.log.Info("message limit", "max_message", fed.MaxMessage, "need", sizes.Need, "largest", sizes.Largest.String(),
		"params", sizes.Params, "members", sizes.Members)
	tlsCfg, err := cfg.Kit.TLSConfig(pki.Options{})
	if err != nil {
		return nil, err
	}
	var nonce func() ([]byte, error)
	if c.man.AttestationRequired() {
		if c.tee, err = attest.NewVerifier(c.man.Attestation, cfg.Roots); err != nil {
			return nil, fmt.Errorf("coordinator: the manifest's attestation policy: %w", err)
		}
		for _, w := range c.man.Attestation.Warnings() {
			c.log.Warn(w)
		}
		nonce = c.issueNonce
	} else {
		c.log.Warn("ATTESTATION IS OFF: the manifest requires no TEE evidence; members join on their certificates " +
			"and audit keys alone, and nothing proves what code they run")
	}
	c.tm = new(transport.Metrics)
	if c.srv, err = transport.NewServer(transport.ServerConfig{TLS: tlsCfg, Limits: c.cfg.Limits, Logger: c.log,
		Metrics: c.tm, Keepalive: cfg.Keepalive, Nonce: nonce}); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("coordinator: state directory: %w", err)
	}
	c.met = newMetrics(c)
	if err := c.open(); err != nil {
		c.closeFiles()
		return nil, err
	}
	c.setAttestStatus()
	c.ctx, c.stop = context.WithCancel(context.Background())
	return c, nil
}

func (c *Coordinator) sessionName() string { return hex.EncodeToString(c.session) }

func (c *Coordinator) open() error {
	ctx := context.Background()
	var err error
	if c.db, err = store.Open(filepath.Join(c.cfg.StateDir, DBFile)); err != nil {
		return err
	}
	if _, err := c.db.Session(ctx, c.session); errors.Is(err, store.ErrNotFound) {
		mh, _ := c.man.Hash()
		if err := c.db.CreateSession(ctx, store.Session{ID: c.session, Manifest: mh, Created: c.cfg.Now()}); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	c.sc = c.db.Coordinator(c.session)
	saved, err := c.sc.State(ctx)
	if err != nil {
		return err
	}
	if c.alog, err = audit.Open(filepath.Join(c.cfg.StateDir, AuditFile), c.cfg.Kit.AuditKey, c.name,
		audit.Options{Now: c.cfg.Now, Keys: audit.Keys(c.man.AuditKeys()), RepairTorn: true}); err != nil {
		return err
	}
	if st := c.alog.State(); st.Seq == 0 {
		mh, _ := c.man.Hash()
		if _, err := c.alog.Append(audit.SessionStarted, audit.Data{Session: c.sessionName(), Manifest: mh, Members: c.man.Nodes()}); err != nil {
			return err
		}
	} else if st.Session != c.sessionName() {
		return fmt.Errorf("coordinator: %s belongs to session %s, the manifest is session %s: use a new state directory", c.alog.Path(), st.Session, c.sessionName())
	}
	if c.budget != nil {
		c.budget.spent = c.alog.State().MicroEpsilon
	}

	keys := make(keyring.Verifier)
	for _, p := range c.man.Members {
		keys[fl.NodeID(p.Name)] = p.AuditKey
	}
	seed := c.cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	rc := round.CoordinatorConfig{Config: c.rcfg, Scheme: c.scheme, Verifier: keys, Rand: rand.New(rand.NewPCG(seed, 0x636f6f7264))}
	c.hist = newHistory(c)
	if saved != nil {
		st, model, key, err := c.engineState(ctx, saved)
		if err != nil {
			return err
		}
		if c.rc, err = round.RestartCoordinator(rc, st, model, key); err != nil {
			return err
		}
		if n := len(st.Leaders); n > 0 {
			c.leader = st.Leaders[n-1]
		}
		c.hist.resume(ctx, st)
		c.log.Info("resuming the session", "session", c.sessionName(), "phase", st.Phase, "round", st.Round, "commits", st.Commits)
	} else {
		if c.rc, err = round.NewCoordinator(rc); err != nil {
			return err
		}
		c.log.Info("new session", "session", c.sessionName(), "mode", c.scheme.Name(), "members", len(c.man.Members),
			"threshold", c.man.Threshold, "min_cohort", c.man.MinCohort, "rounds", c.rcfg.Rounds)
	}
	if err := c.budget.logPlan(c.log, c.rcfg.Rounds); err != nil {
		return err
	}
	c.setStatus()
	return nil
}

// Serve accepts the members' connections on l until Shutdown. It returns
// transport.ErrServerClosed after Shutdown. The engine loop starts with the
// first call; Serve may be called with several listeners.
func (c *Coordinator) Serve(l net.Listener) error {
	c.startOnce.Do(func() { go c.run() })
	c.log.Info("listening", "addr", l.Addr().String())
	return c.srv.Serve(l)
}

// Shutdown stops the engine loop (after the Ready in hand is handled),
// ends every stream, and closes the state. It waits until ctx ends at most.
func (c *Coordinator) Shutdown(ctx context.Context) error {
	c.stop()
	err := c.srv.Shutdown(ctx)
	c.startOnce.Do(func() { close(c.loopDone) }) // never served: no loop to wait for
	select {
	case <-c.loopDone:
	case <-ctx.Done():
		return ctx.Err()
	}
	c.closeFiles()
	if errors.Is(err, transport.ErrServerClosed) {
		err = nil
	}
	return errors.Join(err, c.loopErr)
}

// Done is closed when the engine loop has stopped (after Shutdown, or after
// an error that made going on unsafe: see Err).
func (c *Coordinator) Done() <-chan struct{} { return c.loopDone }

// Err returns the error that stopped the loop, if any.
func (c *Coordinator) Err() error {
	select {
	case <-c.loopDone:
		return c.loopErr
	default:
		return nil
	}
}

// Status returns the engine's status as of the last handled input.
func (c *Coordinator) Status() round.Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

func (c *Coordinator) setStatus() {
	st := c.rc.Status()
	c.mu.Lock()
	c.status = st
	c.mu.Unlock()
	c.met.round.Set(float64(st.Round))
	c.met.live.Set(float64(len(st.Live)))
}

func (c *Coordinator) closeFiles() {
	c.closeOnce.Do(func() {
		if c.alog != nil {
			c.alog.Close()
		}
		if c.db != nil {
			c.db.Close()
		}
	})
}

func (c *Coordinator) run() {
	defer close(c.loopDone)
	err := c.loop(c.ctx)
	if err != nil && !errors.Is(err, context.Canceled) {
		c.loopErr = err
		c.log.Error("the coordinator stopped", "err", err)
		go c.srv.Shutdown(context.Background())
	}
}

func (c *Coordinator) loop(ctx context.Context) error {
	events := make(chan transport.Event, 16)
	go func() {
		for {
			ev, err := c.srv.Recv(ctx)
			if err != nil {
				close(events)
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				close(events)
				return
			}
		}
	}()
	ticker := time.NewTicker(c.cfg.Tick)
	defer ticker.Stop()
	var lastExpiry time.Time
	for {
		if err := c.drain(ctx); err != nil {
			return err
		}
		c.setStatus()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return ctx.Err()
			}
			c.handle(ev)
		case <-ticker.C:
			c.rc.Tick()
			if now := c.cfg.Now(); now.Sub(lastExpiry) >= time.Second {
				lastExpiry = now
				c.checkExpiry(now)
			}
		}
	}
}

func (c *Coordinator) handle(ev transport.Event) {
	switch ev.Kind {
	case transport.EventConnect:
		c.log.Info("node connected", "member", ev.Node)
		c.connected(ev)
	case transport.EventChallenge:
		c.log.Debug("issued a nonce for re-attestation", "member", ev.Node)
		c.challenged(ev)
	case transport.EventDisconnect:
		c.log.Info("node disconnected", "member", ev.Node, "err", ev.Err)
		for _, s := range []error{transport.ErrImpersonation, transport.ErrTooLarge, transport.ErrFrame, transport.ErrMalformed} {
			if errors.Is(ev.Err, s) {
				c.met.rejected.WithLabelValues("transport").Inc()
				c.rc.Refuse(ev.Node, ev.Err.Error(), nil)
				break
			}
		}
		c.rc.Unreachable(ev.Node)
	case transport.EventMessage:
		if ev.Msg.Kind == round.KindHello && !c.admit(ev.Node, ev.Msg) {
			return
		}
		if ev.Msg.Kind != round.KindHello && !c.attested(ev.Node) {
			c.met.rejected.WithLabelValues("unattested").Inc()
			c.log.Warn("rejected a message: no attested Hello on this stream", "member", ev.Node, "kind", ev.Msg.Kind.String(), "round", ev.Msg.Round)
			return
		}
		start := time.Now()
		err := c.rc.Step(ev.Node, ev.Msg)
		c.log.Debug("step", "member", ev.Node, "kind", ev.Msg.Kind.String(), "round", ev.Msg.Round, "step_s", time.Since(start).Seconds(), "err", err)
		if err != nil {
			c.met.rejected.WithLabelValues(sentinel(err)).Inc()
			c.log.Warn("rejected a message", "member", ev.Node, "kind", ev.Msg.Kind.String(), "round", ev.Msg.Round, "err", err)
			return
		}
		c.met.stepSeconds.WithLabelValues(ev.Msg.Kind.String()).Observe(time.Since(start).Seconds())
	}
}

// sentinel names the round sentinel err wraps, for the rejection metric.
func sentinel(err error) string {
	for _, s := range []struct {
		err  error
		name string
	}{
		{round.ErrNotMember, "not-member"}, {round.ErrForged, "forged"}, {round.ErrWrongSession, "wrong-session"},
		{round.ErrReplay, "replay"}, {round.ErrFuture, "future"}, {round.ErrWrongPhase, "wrong-phase"},
		{round.ErrNotSelected, "not-selected"}, {round.ErrDuplicate, "duplicate"}, {round.ErrStale, "stale"},
		{round.ErrMalformed, "malformed"}, {round.ErrRefused, "refused"}, {round.ErrUnknownKind, "unknown-kind"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "other"
}

// drain handles every pending Ready, in its field order: persist (state,
// current model, group key, commits, round history and metrics in one
// transaction), record the audit events, send.
func (c *Coordinator) drain(ctx context.Context) error {
	for c.rc.HasReady() {
		rd := c.rc.Ready()
		now := c.cfg.Now()
		b, err := c.batch(rd, now)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := c.sc.Save(context.Background(), b); err != nil {
			return fmt.Errorf("coordinator: persisting state: %w", err)
		}
		entries := c.auditEntries(rd.Audit)
		for _, e := range entries {
			if err := audit.ValidateData(e.kind, e.data); err != nil {
				// A mapping bug, not a storage failure: say so, keep going.
				c.log.Error("cannot record an audit event", "kind", e.kind, "err", err)
				continue
			}
			if _, err := c.alog.Append(e.kind, e.data); err != nil {
				return fmt.Errorf("coordinator: audit log: %w", err)
			}
		}
		c.observe(rd.Audit)
		t1 := time.Now()
		failed := c.send(ctx, rd.Messages)
		c.log.Debug("ready", "state_bytes", len(b.State), "persist_audit_s", t1.Sub(t0).Seconds(), "audit", len(entries),
			"messages", len(rd.Messages), "send_s", time.Since(t1).Seconds())
		c.rc.Advance()
		for _, id := range failed {
			c.rc.Unreachable(id)
		}
	}
	return nil
}

// batch is what a Ready persists: the engine's state and large pieces, the
// commits with their models, the round history and the metrics.
func (c *Coordinator) batch(rd round.Ready, now time.Time) (store.CoordinatorBatch, error) {
	var b store.CoordinatorBatch
	if rd.State != nil {
		var err error
		if b.State, err = rd.State.MarshalBinary(); err != nil {
			return b, err
		}
		b.Epoch = rd.State.Epoch
	}
	if m := rd.Model; m != nil {
		b.Current = &store.Model{Round: m.Round, Sealed: m.Sealed}
	}
	if g := rd.GroupKey; g != nil {
		var err error
		if b.GroupKey, err = g.MarshalBinary(); err != nil {
			return b, err
		}
	}
	for _, cm := range rd.Commits {
		r := cm.Record.Round
		b.Models = append(b.Models, store.Model{Round: r, Sealed: cm.Model})
		b.Commits = append(b.Commits, store.Commit{Round: r, Epoch: cm.Record.Epoch, Leader: cm.Leader,
			Record: cm.Record.Signed(c.session), Signature: cm.Signature, Committed: now})
	}
	if err := c.budget.charge(rd.Audit); err != nil {
		return b, err
	}
	if c.budget != nil {
		c.met.epsilon.Set(dp.EpsilonFromMicro(c.budget.spent))
	}
	b.Rounds = c.hist.apply(rd, now)
	for _, e := range rd.Audit {
		if e.Kind == round.EventMetrics && e.Metrics != nil {
			b.Metrics = append(b.Metrics, store.Metric{Round: e.Round, Node: e.Node, Metrics: *e.Metrics})
		}
	}
	return b, nil
}

// sendTimeout bounds one message's send: a node that stops reading loses
// its stream (and reconnects) rather than stall the loop.
const sendTimeout = 60 * time.Second

func (c *Coordinator) send(ctx context.Context, msgs []round.Message) []fl.NodeID {
	if len(msgs) == 0 {
		return nil
	}
	byNode := make(map[fl.NodeID][]round.Message)
	var order []fl.NodeID
	for _, m := range msgs {
		if _, ok := byNode[m.To]; !ok {
			order = append(order, m.To)
		}
		byNode[m.To] = append(byNode[m.To], m)
	}
	var mu sync.Mutex
	var failed []fl.NodeID
	var wg sync.WaitGroup
	for _, to := range order {
		wg.Go(func() {
			for _, m := range byNode[to] {
				sctx, cancel := context.WithTimeout(ctx, sendTimeout)
				start := time.Now()
				err := c.srv.Send(sctx, to, m)
				cancel()
				c.log.Debug("sent", "member", to, "kind", m.Kind.String(), "round", m.Round, "send_s", time.Since(start).Seconds(), "err", err)
				if err != nil {
					c.log.Info("cannot send", "member", to, "kind", m.Kind.String(), "round", m.Round, "err", err)
					mu.Lock()
					failed = append(failed, to)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(failed)
	return failed
}

// engineState is the engine state, current model and group key the store
// holds.
func (c *Coordinator) engineState(ctx context.Context, saved []byte) (round.CoordinatorState, *round.SealedModel, *round.GroupKey, error) {
	var st round.CoordinatorState
	if err := st.UnmarshalBinary(saved); err != nil {
		return st, nil, nil, fmt.Errorf("coordinator: stored engine state: %w", err)
	}
	m, gk, err := c.sc.Current(ctx)
	if err != nil {
		return st, nil, nil, err
	}
	var model *round.SealedModel
	if m != nil {
		model = &round.SealedModel{Round: m.Round, Sealed: m.Sealed, Replaces: st.Resealed}
	}
	var key *round.GroupKey
	if gk != nil {
		key = new(round.GroupKey)
		if err := key.UnmarshalBinary(gk); err != nil {
			return st, nil, nil, fmt.Errorf("coordinator: stored group key: %w", err)
		}
	}
	return st, model, key, nil
}

type auditEntry struct {
	kind audit.Kind
	data audit.Data
}

// auditEntries maps the engine's coordinator events to audit records.
// Events without a matching record kind (aggregated, reveal requested,
// opened, metrics, done, restarted) are logged only; the store keeps the
// included sets, aggregates and metrics.
func (c *Coordinator) auditEntries(evs []round.Event) []auditEntry {
	var out []auditEntry
	add := func(k audit.Kind, d audit.Data) { out = append(out, auditEntry{k, d}) }
	for _, e := range evs {
		d := audit.Digest(e.Digest)
		switch e.Kind {
		case round.EventRejected:
			add(audit.NodeRefused, audit.Data{Node: nodeOrEmpty(e.Node), Reason: audit.Reason(e.Detail), Digest: d})
		case round.EventAttested:
			add(audit.AttestationOK, audit.Data{Node: e.Node, Format: e.Detail, Digest: d})
		case round.EventAdmitted:
			add(audit.NodeAdmitted, audit.Data{Node: e.Node, Digest: d})
		case round.EventDown:
			add(audit.NodeDropped, audit.Data{Node: e.Node, Round: e.Round, Reason: audit.Reason(e.Detail)})
		case round.EventSetupStarted:
			add(audit.KeyRotated, audit.Data{Epoch: e.Epoch, Members: e.Nodes, Reason: audit.Reason("key setup started " + e.Detail)})
		case round.EventRelayed:
			for _, to := range e.Nodes {
				add(audit.PayloadRelayed, audit.Data{Node: e.Node, Recipient: to, Digest: d, Epoch: e.Epoch})
			}
		case round.EventSetupDone:
			members := e.Nodes
			if len(members) == 0 {
				members = c.man.Nodes()
			}
			add(audit.KeySetup, audit.Data{Epoch: e.Epoch, Members: members, Digest: d})
		case round.EventExcluded:
			add(audit.NodeDropped, audit.Data{Node: e.Node, Round: e.Round, Reason: audit.Reason("excluded: " + e.Detail)})
		case round.EventReadmitted:
			// The daemon readmits a member only on valid evidence (admit).
			add(audit.NodeReadmitted, audit.Data{Node: e.Node, Round: e.Round, Reason: "valid evidence again; re-keyed in at the next round boundary"})
		case round.EventRoundStarted:
			c.leader = e.Node
			add(audit.RoundStarted, audit.Data{Round: e.Round, Members: e.Nodes, Leader: e.Node})
		case round.EventUploaded:
			add(audit.UpdateAccepted, audit.Data{Round: e.Round, Node: e.Node, Digest: d})
		case round.EventRevealed:
			add(audit.Revealed, audit.Data{Round: e.Round, Digest: d, Node: e.Node})
		case round.EventLeaderFailed:
			failed := c.leader
			c.leader = e.Node
			if failed != "" {
				add(audit.NodeDropped, audit.Data{Node: failed, Round: e.Round, Reason: audit.Reason("leader failed (" + e.Detail + "); next leader " + string(e.Node))})
			}
		case round.EventCommitted:
			add(audit.Committed, audit.Data{Round: e.Round, Digest: d, Leader: e.Node, Session: c.sessionName()})
			if ent, ok := c.budget.spentEntry(c.log, e); ok {
				out = append(out, ent)
			}
		case round.EventDone:
			if ent, ok := c.budget.exhaustedEntry(c.log, e.Round, c.rc.Status().Commits, c.rcfg.Rounds); ok {
				out = append(out, ent)
			}
		case round.EventAborted:
			add(audit.Aborted, audit.Data{Round: e.Round, Reason: audit.Reason(e.Detail)})
		}
	}
	return out
}

func nodeOrEmpty(id fl.NodeID) fl.NodeID {
	if pki.ValidateNodeID(id) != nil {
		return ""
	}
	return id
}
