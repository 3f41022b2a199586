// Package node is the member daemon, `cloister node`: it dials the
// coordinator over mutual TLS, runs a member's round engine (round.Node)
// with its aggregation scheme, trains and evaluates on the site's local
// data, and keeps its secrets sealed at rest.
//
// # What a node owns
//
// A Node owns its goroutines (the engine loop, the connection with its
// reconnect backoff, and one worker for training and evaluation tasks),
// its state directory and its process keys:
//
//	STATE/node.db    store: the engine state (key shares and group key
//	                 sealed with the at-rest key), the reveal-once ledger,
//	                 the newest sealed model
//	STATE/audit.log  this node's signed, hash-chained audit log
//	STATE/stats.json what it did, by task, as of the end of its last Run
//	                 (counts and mean seconds: [Report])
//
// For each Ready of the engine the loop writes what it says, in its field
// order (loop.go): the state, the keys and the kept model in one
// transaction (sealed), then the audit records and the verified commits
// (fsynced), then the messages; then it hands the tasks to the worker,
// whose results come back into the engine as local inputs
// (round.KindTrained, round.KindEvaluated). It never looks at message
// kinds: everything it must do is in the Ready.
//
// # Keys
//
// See [keyring.Keys] and [keyring.Ring]: fresh HPKE and Ed25519 process keys per
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
// With Config.Trainer (a manifest of model kind external), an external
// trainer process trains and evaluates instead, through the trainer API
// (package trainer): the node hands it the global weights and the
// manifest's schedule, takes back its weights, and applies the same
// clipping, noise and weighting to Δ. A trainer that fails, hangs past
// Config.TrainerTimeout or returns a bad reply costs the node that round's
// update only. Run first waits for the trainer and takes its initial
// weights.
//
// # Message limits
//
// The transport's receive limit is computed from the manifest
// (federation.MessageSizes), as the coordinator computes it.
package node

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
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
	"github.com/cloisterfl/cloister/protect/tee"
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

// DefaultAttestEvery is how often a node rotates its process keys and
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
	AtRest store.AtRest
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
	// AttestEvery is how often the node makes new process keys and
	// re-attests them (on a fresh nonce); 0 means DefaultAttestEvery.
	AttestEvery time.Duration
	// Now is the node's clock: evidence times, expiry checks and timings;
	// nil means time.Now.
	Now func() time.Time
	// Dial, if set, opens the connection to the coordinator at addr in
	// place of a TCP dial (tests: in-memory connections). TLS runs over it
	// as over TCP.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Roots are the TEE vendor roots the node verifies its peers' evidence
	// against; the zero value means the real vendors' (and sim's).
	Roots attest.Roots
	// InsecureNoise, if set, replaces crypto/rand as the source of this
	// node's DP noise. TESTING ONLY: a seeded stream makes runs reproducible
	// (mhe against plain with the same noise) and gives no privacy against
	// anyone who knows the seed.
	InsecureNoise io.Reader
	// Trainer, if set, trains and evaluates for this node in place of the
	// built-in models: an external trainer (package trainer's Host), for a
	// manifest of model kind external. Train and Test are then nil: the
	// trainer reads its own data. The node still clips, noises, weighs,
	// protects and audits every update.
	Trainer Trainer
	// TrainerTimeout bounds each task of Trainer; 0 means
	// DefaultTrainerTimeout. A task past it sends no update that round.
	TrainerTimeout time.Duration
	// OnUpdate, if set, is called with every plaintext update (clipped,
	// noised and weighted) before the engine protects it. It exists for
	// tests that check what the coordinator can see; never send what it
	// gets anywhere the coordinator can read.
	OnUpdate func(fl.Update)
	// CRL, if set, is the federation CA's revocation list in force
	// (pki.OpenRevocations of the --crl file), re-read every 2 s: see
	// revocation.go.
	CRL *pki.Revocations
	// KitDir is the kit's directory: a manifest amendment that renews this
	// node's certificate makes the node load the renewed credential from
	// it (amend.go).
	KitDir string
	// MinThreshold, if not 0, is this site's floor under the threshold: the
	// node refuses (and leaves the federation on) an amendment that sets t
	// below it.
	MinThreshold int
	// InsecureAttack, if set, makes this node a Byzantine attacker: a spec
	// of package attack ("sign-flip", "scale:factor=10", "gaussian",
	// "label-flip", "alie", "ipm", "backdoor:target=0"), applied to its
	// training data and to every update before the clip. TESTS AND
	// RESEARCH ONLY: New refuses it (ErrAttackNotAllowed) unless the
	// manifest sets insecure_attacks, and the node logs a warning every
	// round. The omniscient attacks (alie, ipm) estimate the honest updates
	// from shards of this node's own data.
	InsecureAttack string
	// InsecureAttackers is how many members the attacker assumes collude
	// (ALIE's default z); 0 means 1.
	InsecureAttackers int
}

// Node is a member daemon. Create it with New, then call Run once.
type Node struct {
	cfg     Config
	log     *slog.Logger
	man     atomic.Pointer[federation.Manifest] // in force; swapped by the loop (amend.go)
	cred    atomic.Pointer[tls.Certificate]     // this node's TLS credential, renewed by an amendment
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

	atRest    store.AtRest
	stepSecs  float64 // how long the last Step took, for the log lines of its events
	closeOnce sync.Once

	keysIssued time.Time // when the current process keys were made
	// expired maps the members distrusted for expired evidence to the
	// evidence's time, so that checkExpiry tells the engine once per
	// evidence. It is not persisted: the verdict is, in the engine's state
	// (round.NodeState.Distrusted), and after a restart the keyring holds no
	// evidence until the engine checks what the coordinator relays again,
	// where evidence older than max_age fails (a verdict the state keeps).
	expired map[fl.NodeID]time.Time

	crlPolled time.Time // the loop's last read of the CRL file
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
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	n := &Node{cfg: cfg, self: fl.NodeID(cfg.Kit.Config.Name), expired: make(map[fl.NodeID]time.Time)}
	n.man.Store(cfg.Kit.Manifest)
	cred := cfg.Kit.Credential.TLSCertificate()
	n.cred.Store(&cred)
	n.log = cfg.Logger
	if n.log == nil {
		n.log = slog.New(slog.DiscardHandler)
	}
	n.log = n.log.With("node", n.self)
	fed, err := federation.Resolve(n.manifest(), federation.Overrides{Scheme: cfg.Scheme, MaxMessage: cfg.Limits.MaxMessage, MaxEpsilon: cfg.MaxEpsilon})
	if err != nil {
		return nil, err
	}
	n.rcfg, n.scheme = fed.Round, fed.Scheme
	n.rcfg.Manifest = cfg.Kit.SignedManifest
	n.rcfg.Deadlines.Idle = max(1, int(cfg.Idle/cfg.Tick))
	n.session = n.rcfg.Session
	if n.scheme.Name() == plain.Name {
		n.log.Warn(plain.Warning)
	}
	if n.budget, err = newBudget(fed.Budget, n.log); err != nil {
		return nil, err
	}
	n.cfg.Limits.MaxMessage = fed.MaxMessage
	if cfg.Trainer != nil {
		n.tr, err = newExternal(n.manifest(), n.self, cfg.Trainer, cfg.Train, cfg.Test, cfg.TrainerTimeout, n.scheme.Capacity(), cfg.Seed, n.log)
	} else {
		n.tr, err = newTrainer(n.manifest(), n.self, cfg.Train, cfg.Test, n.scheme.Capacity(), cfg.Seed)
	}
	if err != nil {
		return nil, err
	}
	if cfg.InsecureAttack != "" {
		if n.tr.byz, err = newByzantine(n.manifest(), n.tr, cfg.InsecureAttack, cfg.InsecureAttackers); err != nil {
			return nil, err
		}
		n.log.Warn("INSECURE: this node is a Byzantine attacker: every update it sends is forged (tests and research only)", "attack", n.tr.byz.attack.String())
	} else if cfg.InsecureAttackers != 0 {
		return nil, errors.New("node: InsecureAttackers without InsecureAttack")
	}
	if n.manifest().InsecureAttacks {
		n.log.Warn(federation.WarnInsecureAttacks)
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

// open opens the node's store and audit log, makes its process keys and
// starts its engine: restored from the store, or new.
func (n *Node) open() error {
	saved, err := n.openStore()
	if err != nil {
		return err
	}
	var (
		st   round.NodeState
		keys round.NodeKeys
	)
	if saved.State != nil {
		if st, keys, err = engineState(saved); err != nil {
			return err
		}
		if st.Terms != nil && len(st.Terms.Manifest) > 0 {
			// The terms in force, which the kit's manifest may not be.
			if err := n.adopt(st.Terms); err != nil {
				return err
			}
		}
	}
	if err := n.openAudit(); err != nil {
		return err
	}
	rc, err := n.engineConfig()
	if err != nil {
		return err
	}
	if saved.State != nil {
		if n.rn, err = round.RestartNode(rc, st, keys); err != nil {
			return err
		}
		n.log.Info("resuming the session", "round", st.Round, "epoch", st.Epoch, "model_round", st.ModelRound, "done", st.Done)
		return nil
	}
	if n.rn, err = round.NewNode(rc); err != nil {
		return err
	}
	n.log.Info("joining a new session", "session", n.sessionName(), "mode", n.scheme.Name(), "members", len(n.manifest().Members))
	return nil
}

// openStore opens the node's database (creating the session) and returns
// what it holds; it loads SCAFFOLD's control variate too.
func (n *Node) openStore() (store.NodeBatch, error) {
	ctx := context.Background()
	atRest := n.cfg.AtRest
	if atRest == nil {
		k, err := store.LoadOrCreateKey(n.cfg.StateDir)
		if err != nil {
			return store.NodeBatch{}, err
		}
		atRest = k
	}
	var err error
	if n.db, err = store.Open(filepath.Join(n.cfg.StateDir, DBFile)); err != nil {
		return store.NodeBatch{}, err
	}
	if _, err := n.db.Session(ctx, n.session); errors.Is(err, store.ErrNotFound) {
		mh, _ := n.manifest().Hash()
		if err := n.db.CreateSession(ctx, store.Session{ID: n.session, Manifest: mh, Created: n.now()}); err != nil {
			return store.NodeBatch{}, err
		}
	} else if err != nil {
		return store.NodeBatch{}, err
	}
	n.sn = n.db.Node(n.session, atRest)
	n.atRest = atRest
	if n.tr.scaffold {
		if err := n.tr.ctl.load(n.cfg.StateDir, atRest, n.session); err != nil {
			return store.NodeBatch{}, err
		}
	}
	saved, err := n.sn.Load(ctx)
	if err != nil {
		return store.NodeBatch{}, fmt.Errorf("node: loading state: %w", err)
	}
	return saved, nil
}

// openAudit opens the node's audit log (starting it with the session) and
// restores the privacy spent from it.
func (n *Node) openAudit() error {
	var err error
	if n.alog, err = audit.Open(filepath.Join(n.cfg.StateDir, AuditFile), n.cfg.Kit.AuditKey, string(n.self),
		audit.Options{Keys: memberKeys{n}, RepairTorn: true}); err != nil {
		return err
	}
	if st := n.alog.State(); st.Seq == 0 {
		mh, _ := n.manifest().Hash()
		if _, err := n.alog.Append(audit.SessionStarted, audit.Data{Session: n.sessionName(), Manifest: mh, Members: n.manifest().Nodes()}); err != nil {
			return err
		}
	} else if st.Session != n.sessionName() {
		return fmt.Errorf("node: %s belongs to session %s, the manifest is session %s: use a new state directory", n.alog.Path(), st.Session, n.sessionName())
	}
	if n.budget != nil {
		n.budget.spent = n.alog.State().MicroEpsilon
	}
	return nil
}

// engineConfig makes the node's process keys and keyring (with its TEE
// policy) and returns the engine's configuration.
func (n *Node) engineConfig() (round.NodeConfig, error) {
	sk, err := keyring.NewKeys(n.cfg.Random)
	if err != nil {
		return round.NodeConfig{}, err
	}
	n.keys = keyring.New(n.session, n.self, sk, auditKeys(n.manifest()))
	n.keysIssued = n.now()
	if err := n.setupTEE(); err != nil {
		return round.NodeConfig{}, err
	}
	if err := n.setupAggregator(); err != nil {
		return round.NodeConfig{}, err
	}
	var aggregator fl.NodeID
	if agg := n.manifest().Aggregator; agg != nil {
		aggregator = fl.NodeID(agg.Name)
		if s, ok := n.scheme.(tee.Scheme); ok && n.cfg.Scheme == nil {
			n.scheme = teeScheme{Scheme: s, ring: n.keys, now: n.now}
		}
	}
	// Until it is connected (and has a nonce to answer), the node's
	// evidence carries no TEE evidence; it is never sent.
	evidence := sk.Evidence(n.session, n.self, n.cfg.Kit.AuditKey, n.keysIssued, nil)
	opt, err := n.manifest().Training.Optimizer()
	if err != nil {
		return round.NodeConfig{}, fmt.Errorf("node: %w", err)
	}
	return round.NodeConfig{
		Config: n.rcfg, Self: n.self, Coordinator: fl.NodeID(n.manifest().Coordinator.Name), Scheme: n.scheme,
		Sealer: n.keys, Box: keyring.Box{}, Signer: keyring.Signer{Key: n.cfg.Kit.AuditKey}, Verifier: memberKeys{n},
		Ledger: n.sn, Optimizer: opt, Init: n.tr.initial, Rand: n.cfg.Random, Evidence: evidence,
		VerifyPeer: n.verifyPeer, MayTrain: n.mayTrain, Amend: n.checkAmendment, Aggregator: aggregator,
	}, nil
}

func (n *Node) sessionName() string { return hex.EncodeToString(n.session) }

func (n *Node) now() time.Time { return n.cfg.Now() }

// Stats returns the node's counters.
func (n *Node) Stats() *Stats { return &n.stats }

// Run dials the coordinator at addr and runs the node until the session is
// done (nil), ctx ends (ctx.Err()), or an error makes going on unsafe (a
// failed write of state or audit, another process with the same identity).
// It reconnects with backoff after any connection failure. Given several
// addresses (coordinators sharing a store, of which one leads and listens),
// it tries them in turn, starting with the one it last reached. Run closes
// the node's files when it returns; call it once.
func (n *Node) Run(ctx context.Context, addr ...string) error {
	defer n.close()
	if len(addr) == 0 {
		return errors.New("node: no coordinator address")
	}
	if err := n.tr.local.prepare(ctx); err != nil {
		return err
	}
	var tlsOpts pki.Options
	if n.cfg.CRL != nil {
		tlsOpts.Revoked = n.revokedHandshake
		n.log.Info("revocation list in force", "file", n.cfg.CRL.Path(), "crl", n.cfg.CRL.List().String())
	}
	tlsCfg, err := n.cfg.Kit.TLSConfig(tlsOpts)
	if err != nil {
		return err
	}
	// The credential in force, which an amendment may renew.
	tlsCfg.Certificates, tlsCfg.GetClientCertificate = nil, n.clientCertificate
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
	if werr := n.writeReport(); werr != nil {
		n.log.Warn("cannot write the node's task report", "file", StatsFile, "err", werr)
	}
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
