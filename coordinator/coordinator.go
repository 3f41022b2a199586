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
//	STATE/coordinator.db  store: engine state, current model and group
//	                      key, rounds, committed models, commit records,
//	                      metrics (or a PostgreSQL database: Config.Store)
//	STATE/audit.log       the coordinator's signed, hash-chained audit log
//
// For each Ready of the engine the loop writes what it says, in its field
// order (loop.go): the state, the current model, the group key, the
// commits and the round records in one transaction, then the audit
// records (fsynced), then the messages. What the daemon learns itself
// (attestation verdicts on its own connections, transport violations) it
// tells the engine, whose next Ready records and relays it. A restarted
// coordinator resumes from the stored state (round.RestartCoordinator); a
// round is never committed twice.
//
// # Lead and failover
//
// A coordinator takes the lead of its session in its store before it
// reads the engine's state, writes only under the lease's fencing token
// (store.Coordinator.Fenced), renews the lease every quarter of
// Config.Lease, and releases it when it shuts down. Two coordinators with
// the same kit on one PostgreSQL store (Config.Store) are a leader and a
// standby ([Standby]): the standby takes the lead once the leader's lease
// expires (or is released), resumes from the stored state as a restarted
// coordinator does, and only then listens; the nodes, given both
// addresses, follow. The old leader's writes are refused from then on
// (store.ErrFenced): it stops acting, and two coordinators never both
// commit a round. Each keeps its own audit log, in its own state
// directory; together they record each commit once. See lease.go.
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
// two documents as one HTML page (no script), with inline SVG charts of
// accuracy, loss and ε per round. Serve it on a separate listener
// (`--metrics`).
//
// The log (Config.Logger) has one INFO line per round outcome: "round
// committed" when a committed round's evaluation ends (leader, included
// count, seconds, bytes up and down, the nodes' example-weighted accuracy
// and loss, and with DP the round's ε and the total), "round aborted"
// (reason, seconds, bytes), and "session over".
package coordinator

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
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
	// StateDir holds audit.log, and coordinator.db unless Store says
	// otherwise; created (0700) if missing.
	StateDir string
	// Store is where the coordinator keeps its state (store.Open): empty
	// for the SQLite file StateDir/coordinator.db, else a path, a sqlite:
	// URL or a postgres:// URL. A store that cannot be opened (a server
	// that cannot be reached) fails New before anything is written.
	Store string
	// Lease is how long the coordinator's lead in its store lasts without
	// renewal (lease.go); 0 means DefaultLease. Coordinators sharing a
	// store must use the same.
	Lease time.Duration
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
	// Rates bound what one member can make the coordinator verify, relay
	// and record per minute (ratelimit.go); the zero value means the
	// defaults.
	Rates Rates
	// CRL, if set, is the federation CA's revocation list in force
	// (pki.OpenRevocations of the --crl file): every handshake is checked
	// against it, and the loop re-reads its file every CRLPoll (see
	// revocation.go).
	CRL *pki.Revocations
	// ManifestFile, if set, is the file the coordinator takes manifest
	// amendments from (the kit's manifest.json): the loop re-reads it
	// every CRLPoll (see amend.go).
	ManifestFile string
}

// Coordinator is the coordinator daemon. Create it with New, call Serve
// with a listener, and Shutdown to stop.
type Coordinator struct {
	cfg Config
	log *slog.Logger
	// man is the manifest in force, pending one scheduled by an
	// amendment (nil: none): read by TLS callbacks and HTTP handlers,
	// swapped by the loop (amend.go).
	man     atomic.Pointer[federation.Manifest]
	pending atomic.Pointer[federation.Manifest]
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
	lead    *lead   // the lease c.sc is fenced with (lease.go)

	// Owned by the loop goroutine.
	hist   *history
	leader fl.NodeID
	tee    *attest.Verifier // nil: the manifest requires no attestation
	aggTEE *attest.Verifier // mode tee: the aggregator's policy; nil in other modes
	att    map[fl.NodeID]*attestation
	lim    *limiter
	rev    revocation
	amend  amendWatch
	// removed are the members an amendment in force removed, whose streams
	// are dropped once the amendment has been sent to them.
	removed []fl.NodeID
	// aggAttested is when the TEE evidence of the aggregator's newest
	// Hello that passed was made; zero once it expired (aggregator.go).
	aggAttested time.Time

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

// New opens (or creates) the coordinator's state, takes the lead of its
// session in the store, and returns a coordinator ready to Serve. With
// persisted state it resumes the session. If another coordinator holds the
// lead (a shared store), New fails with an error wrapping
// store.ErrLeaseHeld and writes nothing; [Standby] waits for it instead.
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
	if cfg.Lease < 0 {
		return nil, fmt.Errorf("coordinator: lease %v is negative", cfg.Lease)
	}
	if cfg.Lease == 0 {
		cfg.Lease = DefaultLease
	}
	c := &Coordinator{cfg: cfg, name: cfg.Kit.Config.Name, loopDone: make(chan struct{}),
		att: make(map[fl.NodeID]*attestation), lim: newLimiter(cfg.Rates)}
	c.man.Store(cfg.Kit.Manifest)
	c.log = cfg.Logger
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	fed, err := federation.Resolve(c.manifest(), federation.Overrides{Scheme: cfg.Scheme, MaxMessage: cfg.Limits.MaxMessage})
	if err != nil {
		return nil, err
	}
	c.rcfg, c.scheme = fed.Round, fed.Scheme // under DP, rcfg.MaxRound is the budget's cap
	c.rcfg.Manifest = cfg.Kit.SignedManifest
	c.rcfg.Deadlines = cfg.Deadlines.ticks(cfg.Tick)
	c.session = c.rcfg.Session
	if c.scheme.Name() == plain.Name {
		c.log.Warn(plain.Warning)
	}
	if c.manifest().InsecureAttacks {
		c.log.Warn(federation.WarnInsecureAttacks)
	}
	if c.budget, err = newBudget(fed.Budget, c.manifest()); err != nil {
		return nil, err
	}
	sizes := fed.Sizes
	c.cfg.Limits.MaxMessage = fed.MaxMessage
	c.log.Info("message limit", "max_message", fed.MaxMessage, "need", sizes.Need, "largest", sizes.Largest.String(),
		"params", sizes.Params, "members", sizes.Members)
	tlsOpts := pki.Options{Manifests: c.admissible}
	if cfg.CRL != nil {
		tlsOpts.Revoked = c.revokedHandshake
		c.log.Info("revocation list in force", "file", cfg.CRL.Path(), "crl", cfg.CRL.List().String())
	}
	tlsCfg, err := cfg.Kit.TLSConfig(tlsOpts)
	if err != nil {
		return nil, err
	}
	var nonce func() ([]byte, error)
	if agg := c.manifest().Aggregator; agg != nil {
		// Mode tee: the aggregator attests under its own policy, on every
		// stream, whether or not the members do.
		if c.aggTEE, err = attest.NewVerifier(c.manifest().AggregatorAttestation, cfg.Roots); err != nil {
			return nil, fmt.Errorf("coordinator: the manifest's aggregator attestation policy: %w", err)
		}
		for _, w := range c.manifest().AggregatorAttestation.Warnings() {
			c.log.Warn("aggregator: " + w)
		}
		nonce = c.issueNonce
	}
	if c.manifest().AttestationRequired() {
		if c.tee, err = attest.NewVerifier(c.manifest().Attestation, cfg.Roots); err != nil {
			return nil, fmt.Errorf("coordinator: the manifest's attestation policy: %w", err)
		}
		for _, w := range c.manifest().Attestation.Warnings() {
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

// Store names the store the coordinator keeps its state in: the SQLite
// file's path, or the PostgreSQL URL without its password.
func (c *Coordinator) Store() string { return c.db.String() }

func (c *Coordinator) closeFiles() {
	c.closeOnce.Do(func() {
		c.releaseLead()
		if c.alog != nil {
			c.alog.Close()
		}
		if c.db != nil {
			c.closeStore()
		}
	})
}

// storeCloseWait bounds how long closing the store may wait for the queries
// in flight: database/sql's Close waits for them, and a query on a
// connection to a store that was cut off (a blackhole, not a reset) never
// ends on its own (TestFailoverStoreCut).
const storeCloseWait = 5 * time.Second

// closeStore closes the store, abandoning it after storeCloseWait.
func (c *Coordinator) closeStore() {
	done := make(chan struct{})
	go func() { defer close(done); c.db.Close() }()
	select {
	case <-done:
	case <-time.After(storeCloseWait):
		c.log.Warn("the store did not close: abandoning the queries in flight", "store", c.db.String(), "after_s", storeCloseWait.Seconds())
	}
}
