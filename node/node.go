// Package node is the member daemon, `cloister node`: it dials the
// coordinator over mutual TLS, runs a member's round engine (round.Node)
// with its aggregation scheme, trains and evaluates on the site's local
// data, and keeps its secrets sealed at rest.
//
// # What a node owns
//
// A Node owns its goroutines (the engine loop, the connection with its
// reconnect backoff, and one worker for training and evaluation tasks),
// its state directory and its session keys:
//
//	STATE/node.db    store: the engine state (key shares and group key
//	                 sealed with the at-rest key), the reveal-once ledger,
//	                 the newest sealed model
//	STATE/audit.log  this node's signed, hash-chained audit log
//
// For each Ready of the engine the loop persists the state (sealed), then
// appends the audit records (fsynced), then sends the messages, then hands
// the tasks to the worker, whose results come back into the engine as
// local inputs (round.KindTrained, round.KindEvaluated).
//
// # Keys
//
// See [keyring.Keys] and [keyring.Ring]: fresh HPKE and Ed25519 session keys per
// process and per re-attestation (Config.AttestEvery), announced in the
// Hello evidence signed with the audit key from the kit, and verified by
// every peer against the manifest. Uploads and round records are signed
// with the audit key ([keyring.Signer]); models are sealed with AES-256-GCM
// under the group model key ([keyring.Box]).
//
// # Attestation
//
// When the manifest requires attestation, the node runs in a TEE
// (Config.TEE, [attest.Open]; [attest.SimTEE] for development). On every connection it
// binds its current keys to the stream's TLS session and the coordinator's
// nonce (attest.ReportData) and puts the TEE evidence in its Hello
// evidence; every Config.AttestEvery it asks for a fresh nonce, makes new
// keys, attests them and says Hello again, keeping the previous keys to open
// payloads sealed to them in flight. It verifies every peer's relayed TEE
// evidence against the policy, and distrusts a peer whose evidence fails or
// grows older than the policy's maximum age.
//
// # Training
//
// A training task trains the manifest's model with SGD from the manifest's
// settings (learning rate, batch, local epochs, momentum, FedProx μ: every
// site trains alike), computes Δ = local − global, clips it and adds this node's
// share of the distributed DP noise when the manifest has DP, and scales it
// by its weight (see trainer.trainTask for the rule that keeps sums within
// the scheme's range). The node refuses local data whose features or
// classes differ from the manifest's model. When it leads a round, it
// applies the manifest's server optimizer (FedAvg, FedAdam, FedYogi,
// FedAdagrad), whose state travels sealed with the model.
//
// # Message limits
//
// The transport's receive limit is computed from the manifest
// (federation.MessageSizes), as the coordinator computes it.
package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/dataset"
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

// Files in a node's state directory.
const (
	DBFile    = "node.db"
	AuditFile = "audit.log"
)

// DefaultTick is the engine's tick when Config.Tick is 0.
const DefaultTick = 500 * time.Millisecond

// DefaultAttestEvery is how often a node rotates its session keys and
// re-attests when Config.AttestEvery is 0.
const DefaultAttestEvery = time.Hour

// Config configures a Node.
type Config struct {
	// Kit is the node's kit (pki.LoadKit): identity, keys, signed manifest.
	Kit *pki.Kit
	// StateDir holds node.db and audit.log; it is created (0700) if missing.
	StateDir string
	// AtRest seals the node's secrets in its store. nil means
	// store.LoadOrCreateKey(StateDir); `cloister node` passes the key kept
	// in the kit directory instead, so that a copy of the state directory
	// alone does not hold the key.
	AtRest store.Sealer
	// Train and Test are this node's local data.
	Train, Test *dataset.Set
	// Logger receives the node's records; nil discards them.
	Logger *slog.Logger
	// Tick is the engine's clock period; 0 means DefaultTick.
	Tick time.Duration
	// Idle is how long the node waits without hearing from the coordinator
	// before it says Hello again; 0 means 60s.
	Idle time.Duration
	// Seed seeds local training (shuffling) and, on the member that makes
	// the group key, the initial model.
	Seed uint64
	// MaxEpsilon, if not 0, is this site's own privacy limit: the node
	// refuses to train for a round after which the federation's cumulative
	// ε (federation.Privacy's rule) would pass it. The coordinator cannot
	// override it. It needs DP in the manifest.
	MaxEpsilon float64
	// Backoff bounds reconnection delays; the zero value means 250ms to 5s.
	Backoff transport.Backoff
	// Limits bound transport messages. A zero MaxMessage means the limit
	// computed from the manifest (federation.MessageSizes), which the coordinator
	// computes too; a MaxMessage below what the federation's largest
	// message needs is refused (federation.ErrLimitTooSmall).
	Limits transport.Limits
	// Scheme overrides the scheme the manifest names (tests).
	Scheme protect.Scheme
	// Random is the source of the node's secrets; nil means crypto/rand.
	Random io.Reader
	// TEE produces this node's attestation evidence (attest.Open); nil means
	// no TEE, which a manifest that requires attestation refuses.
	TEE attest.Attester
	// AttestEvery is how often the node makes new session keys and
	// re-attests them (on a fresh nonce); 0 means DefaultAttestEvery.
	AttestEvery time.Duration
	// Roots are the TEE vendor roots the node verifies its peers' evidence
	// against; the zero value means the real vendors' (and sim's).
	Roots attest.Roots
	// InsecureNoise, if set, replaces crypto/rand as the source of this
	// node's DP noise. TESTING ONLY: a seeded stream makes runs reproducible
	// (mhe against plain with the same noise) and gives no privacy against
	// anyone who knows the seed.
	InsecureNoise io.Reader
	// OnUpdate, if set, is called with every plaintext update (clipped,
	// noised and weighted) before the engine protects it. It exists for
	// tests that check what the coordinator can see; never send what it
	// gets anywhere the coordinator can read.
	OnUpdate func(fl.Update)
}

// Stats are a node's counters, for logs and tests.
type Stats struct {
	Trained, Evaluated, Revealed, Led atomic.Uint64
	Rejected                          atomic.Uint64 // messages the engine rejected
	Connects                          atomic.Uint64
	// Attestations counts the Hello evidence this node made (on connect
	// and on schedule), Rotations the scheduled key rotations among them.
	Attestations, Rotations atomic.Uint64
	// AttestNanos is the time spent making evidence (keys, TEE report,
	// signature), AttestBytes the bytes of TEE evidence made.
	AttestNanos, AttestBytes atomic.Uint64
	// PeerChecks counts peers' evidence checked, PeerCheckNanos the time
	// spent checking it, PeerFailures those refused.
	PeerChecks, PeerCheckNanos, PeerFailures atomic.Uint64
}

// Node is a member daemon. Create it with New, then call Run once.
type Node struct {
	cfg     Config
	log     *slog.Logger
	man     *federation.Manifest
	self    fl.NodeID
	session []byte
	rcfg    round.Config
	scheme  protect.Scheme
	keys    *keyring.Ring
	db      *store.DB
	sn      *store.Node
	alog    *audit.Log
	rn      *round.Node
	tr      *trainer
	budget  *budget // nil without DP and without a local limit
	stats   Stats

	atRest    store.Sealer
	stepSecs  float64 // how long the last Step took, for the log lines of its events
	closeOnce sync.Once

	keysIssued time.Time               // when the current session keys were made
	expired    map[fl.NodeID]time.Time // members distrusted for expired evidence, by the evidence's time
}

// New opens (or creates) the node's state and returns a node ready to Run.
// A node with persisted state resumes its session (round.RestartNode).
func New(cfg Config) (*Node, error) {
	if cfg.Kit == nil || cfg.Kit.Manifest == nil {
		return nil, errors.New("node: no kit")
	}
	if id := cfg.Kit.Identity(); id.Role != pki.RoleNode {
		return nil, fmt.Errorf("node: the kit is the %s's, not a node's", id)
	}
	if cfg.StateDir == "" {
		return nil, errors.New("node: no state directory")
	}
	if cfg.Tick <= 0 {
		cfg.Tick = DefaultTick
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 60 * time.Second
	}
	if cfg.Backoff == (transport.Backoff{}) {
		cfg.Backoff = transport.Backoff{Min: 250 * time.Millisecond, Max: 5 * time.Second}
	}
	if cfg.Random == nil {
		cfg.Random = rand.Reader
	}
	if cfg.AttestEvery <= 0 {
		cfg.AttestEvery = DefaultAttestEvery
	}
	n := &Node{cfg: cfg, man: cfg.Kit.Manifest, self: fl.NodeID(cfg.Kit.Config.Name), expired: make(map[fl.NodeID]time.Time)}
	n.log = cfg.Logger
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	n.log = n.log.With("node", n.self)
	fed, err := federation.Resolve(n.man, federation.Overrides{Scheme: cfg.Scheme, MaxMessage: cfg.Limits.MaxMessage, MaxEpsilon: cfg.MaxEpsilon})
	if err != nil {
		return nil, err
	}
	n.rcfg, n.scheme = fed.Round, fed.Scheme
	n.rcfg.Deadlines.Idle = max(1, int(cfg.Idle/cfg.Tick))
	n.session = n.rcfg.Session
	if n.scheme.Name() == plain.Name {
		n.log.Warn(plain.Warning)
	}
	if n.budget, err = newBudget(fed.Budget, n.log); err != nil {
		return nil, err
	}
	n.cfg.Limits.MaxMessage = fed.MaxMessage
	if n.tr, err = newTrainer(n.man, n.self, cfg.Train, cfg.Test, n.scheme.Limits(), cfg.Seed); err != nil {
		return nil, err
	}
	if cfg.InsecureNoise != nil {
		n.log.Warn("INSECURE: DP noise from a seeded stream, not crypto/rand: no privacy against anyone who knows the seed (tests only)")
		n.tr.noise = cfg.InsecureNoise
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("node: state directory: %w", err)
	}
	if err := n.open(); err != nil {
		n.close()
		return nil, err
	}
	return n, nil
}

func (n *Node) open() error {
	ctx := context.Background()
	atRest := n.cfg.AtRest
	if atRest == nil {
		k, err := store.LoadOrCreateKey(n.cfg.StateDir)
		if err != nil {
			return err
		}
		atRest = k
	}
	var err error
	if n.db, err = store.Open(filepath.Join(n.cfg.StateDir, DBFile)); err != nil {
		return err
	}
	if _, err := n.db.Session(ctx, n.session); errors.Is(err, store.ErrNotFound) {
		mh, _ := n.man.Hash()
		if err := n.db.CreateSession(ctx, store.Session{ID: n.session, Manifest: mh, Created: time.Now()}); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	n.sn = n.db.Node(n.session, atRest)
	n.atRest = atRest
	if n.tr.scaffold {
		if err := n.tr.ctl.load(n.cfg.StateDir, atRest, n.session); err != nil {
			return err
		}
	}
	saved, err := n.sn.Load(ctx)
	if err != nil {
		return fmt.Errorf("node: loading state: %w", err)
	}

	if n.alog, err = audit.Open(filepath.Join(n.cfg.StateDir, AuditFile), n.cfg.Kit.AuditKey, string(n.self),
		audit.Options{Keys: audit.Keys(n.man.AuditKeys()), RepairTorn: true}); err != nil {
		return err
	}
	if st := n.alog.State(); st.Seq == 0 {
		mh, _ := n.man.Hash()
		if _, err := n.alog.Append(audit.SessionStarted, audit.Data{Session: n.sessionName(), Manifest: mh, Members: n.man.Nodes()}); err != nil {
			return err
		}
	} else if st.Session != n.sessionName() {
		return fmt.Errorf("node: %s belongs to session %s, the manifest is session %s: use a new state directory", n.alog.Path(), st.Session, n.sessionName())
	}
	if n.budget != nil {
		n.budget.spent = n.alog.State().MicroEpsilon
	}

	sk, err := keyring.NewKeys(n.cfg.Random)
	if err != nil {
		return err
	}
	auditKeys := make(map[fl.NodeID]ed25519.PublicKey)
	for _, p := range n.man.Members {
		auditKeys[fl.NodeID(p.Name)] = p.AuditKey
	}
	n.keys = keyring.New(n.session, n.self, sk, auditKeys)
	n.keysIssued = time.Now()
	if err := n.setupTEE(); err != nil {
		return err
	}
	// Until it is connected (and has a nonce to answer), the node's
	// evidence carries no TEE evidence; it is never sent.
	evidence := sk.Evidence(n.session, n.self, n.cfg.Kit.AuditKey, n.keysIssued, nil)

	opt, err := n.man.Training.Optimizer()
	if err != nil {
		return fmt.Errorf("node: %w", err)
	}
	rc := round.NodeConfig{
		Config: n.rcfg, Self: n.self, Coordinator: fl.NodeID(n.man.Coordinator.Name), Scheme: n.scheme,
		Sealer: n.keys, Box: keyring.Box{}, Signer: keyring.Signer{Key: n.cfg.Kit.AuditKey}, Verifier: keyring.Verifier(auditKeys),
		Ledger: n.sn, Optimizer: opt, Init: n.tr.initial, Rand: n.cfg.Random, Evidence: evidence,
		VerifyPeer: n.verifyPeer, MayTrain: n.budget.policy(),
	}
	if saved.State != nil {
		st, keys, err := engineState(saved)
		if err != nil {
			return err
		}
		if n.rn, err = round.RestartNode(rc, st, keys); err != nil {
			return err
		}
		n.log.Info("resuming the session", "round", st.Round, "epoch", st.Epoch, "model_round", st.ModelRound, "done", st.Done)
	} else {
		if n.rn, err = round.NewNode(rc); err != nil {
			return err
		}
		n.log.Info("joining a new session", "session", n.sessionName(), "mode", n.scheme.Name(), "members", len(n.man.Members))
	}
	return nil
}

func (n *Node) sessionName() string { return hex.EncodeToString(n.session) }

// setupTEE checks the node's TEE against the manifest's attestation policy
// and makes the keyring verify the members' TEE evidence.
func (n *Node) setupTEE() error {
	pol := n.man.Attestation
	if !n.man.AttestationRequired() {
		n.log.Warn("ATTESTATION IS OFF: the manifest requires no TEE evidence; members join on their certificates " +
			"and audit keys alone, and nothing proves what code they run")
		if n.cfg.TEE != nil {
			n.log.Warn("the node has a TEE, and the manifest requires no evidence: not attesting", "tee", n.cfg.TEE.Format())
			n.cfg.TEE = nil
		}
		return nil
	}
	v, err := attest.NewVerifier(pol, n.cfg.Roots)
	if err != nil {
		return fmt.Errorf("node: the manifest's attestation policy: %w", err)
	}
	for _, w := range pol.Warnings() {
		n.log.Warn(w)
	}
	if n.cfg.TEE == nil {
		return fmt.Errorf("node: the manifest requires TEE evidence (formats %v): run the node in a TEE (--tee)", pol.Formats)
	}
	if !slices.Contains(pol.Formats, n.cfg.TEE.Format()) {
		return fmt.Errorf("node: the manifest allows TEE formats %v, this node's TEE is %s", pol.Formats, n.cfg.TEE.Format())
	}
	if pol.MaxAge > 0 && n.cfg.AttestEvery >= time.Duration(pol.MaxAge) {
		n.log.Warn("the node re-attests less often than the policy's maximum evidence age: the coordinator and its peers "+
			"will exclude it between re-attestations", "attest_every", n.cfg.AttestEvery, "max_age", pol.MaxAge)
	}
	n.keys.RequireTEE(v, nil)
	return nil
}

// helloEvidence makes this node's Hello evidence for keys, made at issued,
// on conn: with a TEE, evidence bound to nonce and conn's TLS session.
func (n *Node) helloEvidence(conn *transport.Conn, keys *keyring.Keys, issued time.Time, nonce []byte) ([]byte, error) {
	start := time.Now()
	var tee []byte
	var err error
	if n.cfg.TEE != nil {
		tee, err = n.attest(conn, keys, nonce)
	}
	ev := keys.Evidence(n.session, n.self, n.cfg.Kit.AuditKey, issued, tee)
	n.stats.Attestations.Add(1)
	n.stats.AttestNanos.Add(uint64(time.Since(start)))
	n.stats.AttestBytes.Add(uint64(len(tee)))
	return ev, err
}

func (n *Node) attest(conn *transport.Conn, keys *keyring.Keys, nonce []byte) ([]byte, error) {
	if len(nonce) == 0 {
		return nil, errors.New("node: the coordinator issued no attestation nonce (it requires no attestation?)")
	}
	ekm, err := attest.SessionEKM(conn.TLS())
	if err != nil {
		return nil, err
	}
	return attest.Attest(n.cfg.TEE, keys.Binding(nonce, ekm), time.Now())
}

// verifyPeer is round's VerifyPeer hook: it checks a member's session-key
// evidence (and TEE evidence) and records the verdict for the audit log.
func (n *Node) verifyPeer(id fl.NodeID, ev []byte) error {
	start := time.Now()
	err := n.keys.VerifyPeer(id, ev)
	n.stats.PeerChecks.Add(1)
	n.stats.PeerCheckNanos.Add(uint64(time.Since(start)))
	if err != nil {
		n.stats.PeerFailures.Add(1)
		n.log.Warn("a member's evidence failed", "member", id, "err", err)
		return err
	}
	if c, ok := n.keys.PeerClaims(id); ok {
		delete(n.expired, id)
		n.log.Debug("a member's TEE evidence verified", "member", id, "format", c.Format, "measurement", c.Measurement,
			"tcb", c.TCB, "verify_s", time.Since(start).Seconds())
	}
	return nil
}

// peerFormat names the evidence format of a member whose evidence verified,
// for its attestation-ok record.
func (n *Node) peerFormat(id fl.NodeID) string {
	if c, ok := n.keys.PeerClaims(id); ok {
		return c.Format
	}
	return "session-keys"
}

// checkExpiry distrusts the members whose verified TEE evidence is older
// than the policy's maximum age: they did not re-attest in time.
func (n *Node) checkExpiry(now time.Time) {
	for id, err := range n.keys.Expired(now) {
		c, _ := n.keys.PeerClaims(id)
		if t, ok := n.expired[id]; ok && c != nil && t.Equal(c.Time) {
			continue // already distrusted for this evidence
		}
		if c != nil {
			n.expired[id] = c.Time
		}
		n.distrust(id, err)
	}
}

// distrust tells the engine that member id's evidence expired: it keeps
// the member out of key setups and refuses to reveal or decrypt aggregates
// that include it, until the member's fresh evidence verifies. The engine's
// EventPeerDistrusted becomes the attestation-failed audit record.
func (n *Node) distrust(id fl.NodeID, err error) {
	n.log.Warn("distrusting a member", "member", id, "err", err)
	n.rn.Distrust(id, err.Error())
}

// Stats returns the node's counters.
func (n *Node) Stats() *Stats { return &n.stats }

// input is what the connection goroutine hands to the engine loop.
type input struct {
	conn *transport.Conn // on connect (and with each message)
	msg  *round.Message
	down error // on disconnect: why
}

// Run dials the coordinator at addr and runs the node until the session is
// done (nil), ctx ends (ctx.Err()), or an error makes going on unsafe (a
// failed write of state or audit, another process with the same identity).
// It reconnects with backoff after any connection failure. Run closes the
// node's files when it returns; call it once.
func (n *Node) Run(ctx context.Context, addr string) error {
	defer n.close()
	tlsCfg, err := n.cfg.Kit.TLSConfig(pki.Options{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	inputs := make(chan input)
	tasks := make(chan round.Task, 64)
	results := make(chan round.Message, 64)
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); n.connect(ctx, cancel, addr, tlsCfg, inputs) }()
	go func() { defer wg.Done(); n.work(ctx, tasks, results) }()
	err = n.loop(ctx, inputs, tasks, results)
	cancel(err)
	wg.Wait()
	return err
}

func (n *Node) close() {
	n.closeOnce.Do(func() {
		if n.alog != nil {
			n.alog.Close()
		}
		if n.db != nil {
			n.db.Close()
		}
	})
}

// errDone stops the goroutines when the session is over.
var errDone = errors.New("node: session done")

// connect keeps a connection to the coordinator open, with backoff, and
// feeds what arrives to the loop.
func (n *Node) connect(ctx context.Context, cancel context.CancelCauseFunc, addr string, tc *tls.Config, inputs chan<- input) {
	rng := mrand.New(mrand.NewPCG(uint64(time.Now().UnixNano()), 7))
	metrics := new(transport.Metrics)
	for attempt := 0; ctx.Err() == nil; {
		conn, err := transport.Dial(ctx, addr, transport.ClientConfig{TLS: tc, Limits: n.cfg.Limits, Logger: n.log, Metrics: metrics})
		if err != nil {
			if errors.Is(err, transport.ErrConfig) {
				cancel(err)
				return
			}
			if ctx.Err() == nil {
				lvl := slog.LevelInfo
				if attempt > 3 {
					lvl = slog.LevelWarn
				}
				n.log.Log(ctx, lvl, "cannot reach the coordinator", "addr", addr, "attempt", attempt+1, "err", err)
			}
			sleep(ctx, n.cfg.Backoff.Delay(attempt, rng))
			attempt++
			continue
		}
		attempt = 0
		n.stats.Connects.Add(1)
		n.log.Info("connected to the coordinator", "addr", addr, "coordinator", conn.Coordinator())
		select {
		case inputs <- input{conn: conn}:
		case <-ctx.Done():
			conn.Close()
			return
		}
		var why error
		for {
			m, err := conn.Recv(ctx)
			if err != nil {
				why = err
				break
			}
			select {
			case inputs <- input{conn: conn, msg: &m}:
				continue
			case <-ctx.Done():
				why = ctx.Err()
			}
			break
		}
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		select {
		case inputs <- input{conn: conn, down: why}:
		case <-ctx.Done():
			return
		}
		if errors.Is(why, transport.ErrReplaced) {
			cancel(fmt.Errorf("node: another process connected as %s: %w", n.self, why))
			return
		}
		n.log.Warn("lost the coordinator; reconnecting", "err", why)
		sleep(ctx, n.cfg.Backoff.Delay(0, rng))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// work runs tasks one at a time and returns their results. A task for a
// round older than a queued one is skipped.
func (n *Node) work(ctx context.Context, tasks <-chan round.Task, results chan<- round.Message) {
	for {
		var t round.Task
		select {
		case t = <-tasks:
		case <-ctx.Done():
			return
		}
		var res round.Message
		switch t.Kind {
		case round.TaskTrain:
			r, err := n.tr.trainTask(t.Round, t.Model)
			if err != nil {
				n.log.Error("training failed; this node sends no update this round", "round", t.Round, "err", err)
				continue
			}
			n.stats.Trained.Add(1)
			n.log.Info("trained", "round", t.Round, "loss", r.Loss, "examples", r.Examples, "weight", r.Update.Weight,
				"clip", r.Clip, "capped", r.Capped, "train_s", r.Seconds)
			if n.cfg.OnUpdate != nil {
				n.cfg.OnUpdate(fl.Update{Node: r.Update.Node, Round: r.Update.Round, Delta: r.Update.Delta.Clone(), Weight: r.Update.Weight})
			}
			res = round.Message{Kind: round.KindTrained, Round: t.Round, Update: r.Update}
		case round.TaskEvaluate:
			start := time.Now()
			m, err := n.tr.evaluate(t.Model)
			if err != nil {
				n.log.Error("evaluation failed", "round", t.Round, "err", err)
				continue
			}
			n.stats.Evaluated.Add(1)
			n.log.Info("evaluated", "round", t.Round, "accuracy", m.Accuracy, "loss", m.Loss, "examples", m.Examples,
				"eval_s", time.Since(start).Seconds())
			res = round.Message{Kind: round.KindEvaluated, Round: t.Round, Metrics: m}
		default:
			continue
		}
		select {
		case results <- res:
		case <-ctx.Done():
			return
		}
	}
}

// loop is the engine's goroutine: the only one that touches n.rn.
func (n *Node) loop(ctx context.Context, inputs <-chan input, tasks chan<- round.Task, results <-chan round.Message) error {
	ticker := time.NewTicker(n.cfg.Tick)
	defer ticker.Stop()
	reattest := time.NewTicker(n.cfg.AttestEvery)
	defer reattest.Stop()
	nonces := make(chan challenged, 1)
	var conn *transport.Conn
	var asking bool // a Challenge is in flight
	var plan reattestPlan
	lastExpiry := time.Now()
	for {
		done, err := n.drain(ctx, conn, tasks)
		if err != nil {
			return err
		}
		if done {
			n.log.Info("the session is over", "attestations", n.stats.Attestations.Load(), "rotations", n.stats.Rotations.Load(),
				"attest_s", time.Duration(n.stats.AttestNanos.Load()).Seconds(), "peer_checks", n.stats.PeerChecks.Load(),
				"peer_check_s", time.Duration(n.stats.PeerCheckNanos.Load()).Seconds(), "peer_failures", n.stats.PeerFailures.Load())
			if conn != nil {
				conn.Close()
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
				return c
			}
			return ctx.Err()
		case in := <-inputs:
			switch {
			case in.msg != nil:
				n.step(in.conn.Coordinator(), *in.msg)
			case in.down != nil:
				if conn == in.conn {
					conn = nil
				}
			default:
				// A new connection: evidence bound to it, then Hello.
				conn = in.conn
				n.hello(conn, n.keys.Own(), n.keysIssued, conn.Nonce(), false)
			}
		case res := <-results:
			n.step(n.self, res)
		case <-reattest.C:
			// Peers are sealing setup payloads to the current keys: rotate
			// once the setup is over (or at the next period at the latest).
			if plan.due(n.inSetup()) {
				n.reattest(ctx, conn, &asking, nonces)
			}
		case ch := <-nonces:
			asking = false
			switch {
			case ch.err != nil:
				plan.failed()
				n.log.Warn("cannot re-attest: no fresh nonce from the coordinator; retrying at the next schedule or reconnect", "err", ch.err)
			case ch.conn != conn:
			case plan.nonce(n.inSetup()):
				n.rotate(conn, ch.nonce)
			default:
				n.log.Debug("re-attestation deferred: a key setup started while the nonce was on its way")
			}
		case now := <-ticker.C:
			n.rn.Tick()
			if plan.tick(n.inSetup()) {
				n.reattest(ctx, conn, &asking, nonces)
			}
			if now.Sub(lastExpiry) >= time.Second {
				lastExpiry = now
				n.checkExpiry(now)
			}
		}
	}
}

// inSetup reports whether a key setup this node takes part in is under
// way (its payloads are sealed to the node's current keys).
func (n *Node) inSetup() bool {
	st := n.rn.Status()
	return st.SetupEpoch > st.Epoch || st.Keyed && !st.GroupKey
}

// reattest starts a re-attestation: new keys at once if the coordinator
// issues no nonces (or the node is not connected), else a fresh nonce first.
func (n *Node) reattest(ctx context.Context, conn *transport.Conn, asking *bool, nonces chan<- challenged) {
	switch {
	case *asking:
	case conn == nil || conn.Nonce() == nil:
		// Not connected, or a coordinator that issues no nonces: new keys
		// now, announced at once or on the next connect.
		n.rotate(conn, nil)
	default:
		*asking = true
		go func() {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			nonce, err := conn.Challenge(cctx)
			select {
			case nonces <- challenged{conn, nonce, err}:
			case <-ctx.Done():
			}
		}()
	}
}

// challenged is a fresh nonce the coordinator sent on conn.
type challenged struct {
	conn  *transport.Conn
	nonce []byte
	err   error
}

// hello makes the Hello evidence of keys on conn (bound to its TLS session
// and nonce, with a TEE) and says Hello: as a new connection, or, with
// reattest, as a re-attestation on a connection that stays up (the
// coordinator then re-sends nothing, and the engine's idle clock runs on).
func (n *Node) hello(conn *transport.Conn, keys *keyring.Keys, issued time.Time, nonce []byte, reattest bool) {
	ev, err := n.helloEvidence(conn, keys, issued, nonce)
	if err != nil {
		n.log.Error("cannot attest: the Hello carries no TEE evidence, and a coordinator that requires it will refuse this node", "err", err)
	}
	n.rn.SetEvidence(ev)
	if reattest {
		n.rn.Reattest()
	} else {
		n.rn.Reconnect()
	}
}

// rotate makes new session keys, attests them on conn with nonce (if
// connected), announces them in a Hello, and keeps the previous keys to
// open payloads sealed to them in flight.
func (n *Node) rotate(conn *transport.Conn, nonce []byte) {
	start := time.Now()
	keys, err := keyring.NewKeys(n.cfg.Random)
	if err != nil {
		n.log.Error("cannot make new session keys; keeping the current ones", "err", err)
		return
	}
	issued := time.Now()
	n.keys.Rotate(keys)
	n.keysIssued = issued
	n.stats.Rotations.Add(1)
	if conn == nil {
		n.rn.SetEvidence(keys.Evidence(n.session, n.self, n.cfg.Kit.AuditKey, issued, nil))
		n.log.Info("rotated the session keys; they are attested on the next connection")
		return
	}
	before := n.stats.AttestBytes.Load()
	n.hello(conn, keys, issued, nonce, true)
	n.log.Info("re-attested: new session keys, new evidence", "format", n.teeFormat(), "rotate_s", time.Since(start).Seconds(),
		"tee_bytes", n.stats.AttestBytes.Load()-before, "attestations", n.stats.Attestations.Load())
}

func (n *Node) teeFormat() string {
	if n.cfg.TEE == nil {
		return "none"
	}
	return n.cfg.TEE.Format()
}

// step feeds one message to the engine. What follows from it (state to
// persist, records, messages, tasks) comes out of the engine's next Ready.
func (n *Node) step(from fl.NodeID, m round.Message) {
	start := time.Now()
	err := n.rn.Step(from, m)
	n.stepSecs = time.Since(start).Seconds()
	if err != nil {
		n.stats.Rejected.Add(1)
		lvl := slog.LevelWarn
		if errors.Is(err, round.ErrStale) {
			lvl = slog.LevelDebug
		}
		n.log.Log(context.Background(), lvl, "rejected a message", "from", from, "kind", m.Kind.String(), "round", m.Round, "err", err)
	}
}

// drain handles every pending Ready, in its field order: persist (state,
// keys and the sealed model in one transaction), record (audit events, then
// commits), send, start tasks.
func (n *Node) drain(ctx context.Context, conn *transport.Conn, tasks chan<- round.Task) (done bool, err error) {
	for n.rn.HasReady() {
		rd := n.rn.Ready()
		t0 := time.Now()
		b, err := n.persist(rd)
		if err != nil {
			return false, err
		}
		t1 := time.Now()
		entries := slices.Concat(n.auditEntries(rd.Audit), n.commitEntries(rd.Commits))
		for _, e := range entries {
			if err := n.appendAudit(e); err != nil {
				return false, err
			}
		}
		t2 := time.Now()
		n.sendAll(ctx, conn, rd.Messages)
		n.log.Debug("ready", "state_bytes", len(b.State), "persist_s", t1.Sub(t0).Seconds(), "audit", len(entries),
			"audit_s", t2.Sub(t1).Seconds(), "messages", len(rd.Messages), "send_s", time.Since(t2).Seconds())
		for _, t := range rd.Tasks {
			select {
			case tasks <- t:
			default:
				n.log.Error("task queue full: dropping a task", "kind", t.Kind.String(), "round", t.Round)
			}
		}
		done = done || rd.Done
		n.rn.Advance()
	}
	return done || n.rn.Status().Done, nil
}

// persist writes a Ready's state, keys and sealed model in one
// transaction (the store seals the secrets), then the SCAFFOLD control
// variates of its commits.
func (n *Node) persist(rd round.NodeReady) (store.NodeBatch, error) {
	var b store.NodeBatch
	if rd.State != nil {
		var err error
		if b.State, err = rd.State.MarshalBinary(); err != nil {
			return b, err
		}
		b.Epoch = rd.State.Epoch
	}
	if k := rd.Keys; k != nil {
		b.Keys = &store.Keys{Party: k.Party, GroupKey: k.GroupKey, Target: k.Target}
	}
	if m := rd.Model; m != nil {
		b.Model, b.Resealed = &store.Model{Round: m.Round, Sealed: m.Sealed}, m.Replaces
	}
	if b.State != nil || b.Keys != nil || b.Model != nil {
		if err := n.sn.Save(context.Background(), b); err != nil {
			return b, fmt.Errorf("node: persisting state: %w", err)
		}
	}
	for _, c := range rd.Commits {
		if n.tr.scaffold && n.tr.ctl.commit(c.Record.Round, slices.Contains(c.Record.Included, n.self)) {
			// SCAFFOLD: the round included this node's Δc; keep its cᵢ.
			if err := n.tr.ctl.save(n.cfg.StateDir, n.atRest, n.session); err != nil {
				n.log.Error("the control variate of the committed round is not stored; a restart would lose it", "round", c.Record.Round, "err", err)
			}
		}
	}
	return b, nil
}

// sendAll sends a Ready's messages to the coordinator, in order.
func (n *Node) sendAll(ctx context.Context, conn *transport.Conn, msgs []round.Message) {
	for _, m := range msgs {
		if conn == nil {
			n.log.Debug("not connected: dropping a message", "kind", m.Kind.String(), "round", m.Round)
			continue
		}
		// The engine addresses messages to the coordinator by name; the
		// transport sends them there anyway and validates To as a
		// NodeID, which the coordinator's name is not.
		m.To = ""
		if err := conn.Send(ctx, m); err != nil {
			n.log.Warn("sending failed", "kind", m.Kind.String(), "round", m.Round, "err", err)
		}
	}
}

// engineState is the engine state and keys the store holds.
func engineState(saved store.NodeBatch) (round.NodeState, round.NodeKeys, error) {
	var st round.NodeState
	if err := st.UnmarshalBinary(saved.State); err != nil {
		return st, round.NodeKeys{}, fmt.Errorf("node: stored engine state: %w", err)
	}
	var keys round.NodeKeys
	if k := saved.Keys; k != nil {
		keys = round.NodeKeys{Party: k.Party, GroupKey: k.GroupKey, Target: k.Target}
	}
	return st, keys, nil
}

// commitEntries records the commits whose round record this node verified
// (every node does, so that every log of the session agrees on each
// committed round), and the privacy they spent.
func (n *Node) commitEntries(cs []round.Commit) []auditEntry {
	var out []auditEntry
	for _, c := range cs {
		r := c.Record.Round
		n.log.Info("round committed", "round", r, "leader", c.Leader, "included", len(c.Record.Included),
			"this_node_included", slices.Contains(c.Record.Included, n.self))
		out = append(out, auditEntry{audit.Committed, audit.Data{Round: r,
			Digest: audit.Digest(c.Record.Digest(n.session)), Leader: c.Leader, Session: n.sessionName()}})
		out = append(out, n.budget.spend(r)...)
	}
	return out
}

type auditEntry struct {
	kind audit.Kind
	data audit.Data
}

func (n *Node) appendAudit(e auditEntry) error {
	if err := audit.ValidateData(e.kind, e.data); err != nil {
		// A mapping bug, not a storage failure: say so, keep going.
		n.log.Error("cannot record an audit event", "kind", e.kind, "err", err)
		return nil
	}
	_, err := n.alog.Append(e.kind, e.data)
	if e.kind == audit.Committed && errors.Is(err, audit.ErrDuplicateCommit) {
		if c, ok := n.alog.State().Commits[e.data.Round]; ok && c.Model == e.data.Digest {
			return nil // the same commit again (a restarted node hears it twice)
		}
	}
	if err != nil {
		return fmt.Errorf("node: audit log: %w", err)
	}
	return nil
}

// auditEntries maps the engine's node events to audit records. Events
// without a matching record kind (restarts, done) are only logged.
func (n *Node) auditEntries(evs []round.Event) []auditEntry {
	var out []auditEntry
	for _, e := range evs {
		switch e.Kind {
		case round.EventRejected:
			out = append(out, auditEntry{audit.NodeRefused, audit.Data{Reason: audit.Reason("rejected from " + string(e.Node) + ": " + e.Detail)}})
		case round.EventUploaded:
			n.log.Info("protected", "round", e.Round, "protect_s", n.stepSecs, "mode", n.scheme.Name())
			out = append(out, auditEntry{audit.UpdateAccepted, audit.Data{Round: e.Round, Node: e.Node, Digest: audit.Digest(e.Digest)}})
		case round.EventRevealed:
			n.stats.Revealed.Add(1)
			n.log.Info("revealed", "round", e.Round, "reveal_s", n.stepSecs)
			out = append(out, auditEntry{audit.Revealed, audit.Data{Round: e.Round, Digest: audit.Digest(e.Digest)}})
		case round.EventPeerVerified:
			out = append(out, auditEntry{audit.AttestationOK, audit.Data{Node: e.Node, Format: n.peerFormat(e.Node), Digest: audit.Digest(e.Digest)}})
		case round.EventPeerFailed:
			out = append(out, auditEntry{audit.AttestationFailed, audit.Data{Node: e.Node, Reason: audit.Reason(e.Detail), Digest: audit.Digest(e.Digest)}})
		case round.EventKeyed:
			d := audit.Data{Epoch: e.Epoch, Digest: audit.Digest(e.Digest)}
			if d.Epoch == 0 {
				continue
			}
			out = append(out, auditEntry{audit.KeySetup, d})
		case round.EventPeerDistrusted:
			out = append(out, auditEntry{audit.AttestationFailed, audit.Data{Node: e.Node, Reason: audit.Reason(e.Detail)}})
		case round.EventRefused:
			out = append(out, auditEntry{audit.NodeRefused, audit.Data{Reason: audit.Reason("refused: " + e.Detail)}})
		case round.EventCommitted:
			// The leader signed a round record. It is recorded as committed
			// when the coordinator broadcasts it (KindModel), like on every
			// other node: a leader that dies after signing did not commit.
			n.stats.Led.Add(1)
			n.log.Info("led the round: decrypted, applied, sealed and signed", "round", e.Round, "decrypt_s", n.stepSecs, "record", e.Digest)
		default:
			n.log.Debug("engine event", "event", e.String())
		}
	}
	return out
}
