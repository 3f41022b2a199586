package round

import (
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Config is the part of the federation manifest the engine needs. The
// coordinator and every node use the same values.
type Config struct {
	// Session identifies the federation session (e.g. the hash of the signed
	// manifest). Every message carries it. 1 to 64 bytes.
	Session []byte
	// Serial is the manifest serial of the terms below, and Manifest the
	// signed manifest they come from (opaque to the engine: relayed to
	// members when it amends earlier terms). See [Terms].
	Serial   uint64
	Manifest []byte
	// Members lists the federation's members, distinct.
	Members []fl.NodeID
	// Threshold t: the number of revealers of each aggregate.
	Threshold int
	// MinCohort is the smallest included set a round may reveal.
	MinCohort int
	// Rounds is the number of rounds to commit; the session is then done.
	Rounds int
	// MaxRound, if not 0, is the last round number that may start, counting
	// aborted rounds; the session is then done even if fewer rounds committed.
	MaxRound fl.Round
	// Fraction, if in (0, 1), samples that fraction of the live members for
	// each cohort (at least MinCohort). 0 or 1 takes every live member.
	Fraction float64
	// Mode is the aggregation mode, the Scheme's Name().
	Mode string
	// TrainConfig is passed as is to every training task (e.g. epochs, learning rate).
	TrainConfig []byte
	// Deadlines, in ticks from the start of the step. 0 takes the default.
	Deadlines Deadlines
}

// Deadlines bound each step, in ticks.
type Deadlines struct {
	Setup   int // each key setup step (announce, deal, accept, group key); default 20
	Collect int // collecting uploads; default 10
	Reveal  int // collecting reveal shares; default 5
	Commit  int // each leader's commit; default 5
	Eval    int // collecting metrics; default 5
	// Gather: a coordinator waiting for members (after a restart, or after
	// too many dropped) starts the next round at once when every member is
	// back, or this many ticks after enough are; default 3.
	Gather int
	// Join: a key setup starts at once when every member that is not
	// excluded is live, or this many ticks after the first Hello of the
	// attempt if at least max(Threshold, MinCohort) of them are; default 60.
	Join int
	// Idle: a node that hears nothing from the coordinator for this many
	// ticks says Hello again (the coordinator may have marked it down);
	// default 100.
	Idle int
}

func (d Deadlines) withDefaults() Deadlines {
	def := func(v *int, x int) {
		if *v <= 0 {
			*v = x
		}
	}
	def(&d.Setup, 20)
	def(&d.Collect, 10)
	def(&d.Reveal, 5)
	def(&d.Commit, 5)
	def(&d.Eval, 5)
	def(&d.Idle, 100)
	def(&d.Gather, 3)
	def(&d.Join, 60)
	return d
}

// Validate checks the configuration.
func (c Config) Validate() error {
	if len(c.Session) == 0 || len(c.Session) > 64 {
		return fmt.Errorf("round: session must have 1 to 64 bytes, has %d", len(c.Session))
	}
	s := protect.Group{ID: c.Session, Members: c.Members, Threshold: c.Threshold}
	if err := s.Validate(); err != nil {
		return fmt.Errorf("round: %w", err)
	}
	if c.MinCohort < 1 || c.MinCohort > len(c.Members) {
		return fmt.Errorf("round: minimum cohort %d outside 1..%d", c.MinCohort, len(c.Members))
	}
	if c.Rounds < 1 {
		return fmt.Errorf("round: %d rounds", c.Rounds)
	}
	if math.IsNaN(c.Fraction) || c.Fraction < 0 || c.Fraction > 1 {
		return fmt.Errorf("round: cohort fraction %v outside [0, 1]", c.Fraction)
	}
	if c.Mode == "" {
		return errors.New("round: no aggregation mode")
	}
	return nil
}

// sorted returns the members in ascending order.
func (c Config) sorted() []fl.NodeID {
	m := slices.Clone(c.Members)
	slices.Sort(m)
	return m
}

// Sealer seals payloads end to end between members (HPKE with the members'
// certified keys in production). The coordinator only relays what it seals.
type Sealer interface {
	// Seal encrypts plaintext so that only member to can open it, and
	// authenticates this member as the sender.
	Seal(to fl.NodeID, plaintext []byte) ([]byte, error)
	// Open decrypts a payload member from sealed to this member. It fails if
	// the payload was not sealed by from, or not to this member.
	Open(from fl.NodeID, ciphertext []byte) ([]byte, error)
}

// ModelBox seals models with the group's symmetric model key (an AEAD in
// production). The coordinator stores sealed models and cannot open them.
type ModelBox interface {
	// Seal encrypts and authenticates plaintext and ad under key.
	Seal(key, plaintext, ad []byte) ([]byte, error)
	// Open decrypts ciphertext, checking ad. It fails on any change.
	Open(key, ciphertext, ad []byte) ([]byte, error)
	// KeySize is the length of the keys Seal and Open take.
	KeySize() int
}

// Signer signs with this member's certified key (ed25519 in production).
type Signer interface {
	Sign(msg []byte) ([]byte, error)
}

// Verifier checks a member's signature against its certified key.
type Verifier interface {
	Verify(signer fl.NodeID, msg, sig []byte) error
}

// Optimizer is the server optimizer the round's leader applies (FedAvg,
// FedAdam, …). package strategy's Strategy satisfies it. Its state travels
// sealed with the model: the leader restores it with UnmarshalBinary before
// Apply and seals MarshalBinary's output with the new model.
type Optimizer interface {
	Apply(global, meanDelta fl.Vector) (fl.Vector, error)
	MarshalBinary() ([]byte, error)
	UnmarshalBinary([]byte) error
}

// CoordinatorConfig configures a [Coordinator].
type CoordinatorConfig struct {
	Config
	// Scheme is the aggregation mode; its Name must be Config.Mode.
	Scheme protect.Scheme
	// Verifier checks upload and round-record signatures.
	Verifier Verifier
	// Rand samples cohorts. It is not a secret source.
	Rand *rand.Rand
	// Aggregator, if set, is mode tee's attested aggregator (package
	// protect/tee): not a member, in no cohort, never a revealer or a
	// leader. The coordinator's helper cannot open a round then; instead
	// the coordinator sends the aggregator each key epoch's setup
	// (KindSetup: Epoch, Participants, Payload), and, once the t reveal
	// shares are in, a KindRevealRequest whose Payloads are the shares, by
	// revealer. The aggregator answers with KindShare (Payload: the result,
	// sealed to the group key), which the coordinator takes as Open's
	// result, or KindRefuse (Reason), which aborts the round; the reveal
	// deadline covers the wait. Its evidence comes in its Hellos, which the
	// application verified; see [Aggregator] and
	// [Coordinator.AggregatorExpired].
	Aggregator fl.NodeID
}

func (c CoordinatorConfig) validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	switch {
	case c.Scheme == nil:
		return errors.New("round: coordinator has no scheme")
	case c.Scheme.Name() != c.Mode:
		return fmt.Errorf("round: scheme %q does not implement mode %q", c.Scheme.Name(), c.Mode)
	case c.Verifier == nil:
		return errors.New("round: coordinator has no verifier")
	case c.Rand == nil:
		return errors.New("round: coordinator has no random source")
	case c.Aggregator != "" && slices.Contains(c.Members, c.Aggregator):
		return fmt.Errorf("round: the aggregator %q is a member", c.Aggregator)
	}
	return nil
}

// NodeConfig configures a [Node].
type NodeConfig struct {
	Config
	// Self is this member's NodeID.
	Self fl.NodeID
	// Coordinator is the coordinator's authenticated identity: Step accepts
	// network messages from it only.
	Coordinator fl.NodeID
	// Scheme is the aggregation mode; its Name must be Config.Mode.
	Scheme   protect.Scheme
	Sealer   Sealer
	Box      ModelBox
	Signer   Signer
	Verifier Verifier
	// Ledger is the durable reveal-once record Party.Reveal writes.
	Ledger protect.Ledger
	// Optimizer is applied when this node leads a round.
	Optimizer Optimizer
	// Init returns the initial model. It is called only on the member that
	// makes the first group key (the first participant of the first key
	// setup, in sorted order), which may be any member.
	Init func() fl.Vector
	// Rand is the source of every secret this node makes (key shares, the
	// group key, the model key): crypto/rand.Reader in production.
	Rand io.Reader
	// Evidence is this node's attestation evidence, sent in Hello.
	Evidence []byte
	// VerifyPeer, if set, checks another member's relayed evidence. A member
	// whose evidence fails is distrusted: the node refuses a key setup with it
	// and refuses to reveal an aggregate that includes it.
	VerifyPeer func(id fl.NodeID, evidence []byte) error
	// Aggregator, if set, is mode tee's aggregator (not a member): its
	// relayed evidence goes to VerifyPeer under this name too (audited as
	// EventPeerVerified or EventPeerFailed), and a key setup whose
	// SetupStart relays aggregator evidence that fails is refused with the
	// reason. The scheme reads the verified key when it makes the party.
	Aggregator fl.NodeID
	// MayTrain, if set, is asked before each training task with the round
	// number: a non-nil error makes the node refuse the round (a KindRefuse
	// answer and an EventRefused whose Detail is the error). It is site
	// policy, such as a local privacy limit. Step calls it: it must be
	// quick and must not block.
	MayTrain func(r fl.Round) error
	// Amend, if set, checks an amended manifest the coordinator relays
	// (KindAmend) against the one in force, current (Config.Manifest):
	// signed by the federation CA, of this session, a higher serial,
	// amending only what may be amended, within this node's own policy. It
	// returns the new terms. An error wrapping ErrRefused is this node's
	// policy refusing valid terms: the node leaves the session. Any other
	// error rejects the message. Nil: the node refuses every amendment.
	Amend func(current, next []byte) (Terms, error)

	// insecureNoSumCheck turns off the revealer's check that the aggregate
	// is the sum of the included uploads, or under a SetBound scheme that
	// it is of the included set. Tests only (the positive control of the
	// attack the check stops); nothing outside package round can set it.
	insecureNoSumCheck bool
	// insecureNoPledgeCheck turns off the revealer's check that each
	// included upload is the one its sender pledged. Tests only (the
	// positive control of the cancellation attack it stops).
	insecureNoPledgeCheck bool
}

func (c NodeConfig) validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	switch {
	case !slices.Contains(c.Members, c.Self):
		return fmt.Errorf("round: %q is not a member: %w", c.Self, ErrNotMember)
	case c.Coordinator == "" || slices.Contains(c.Members, c.Coordinator):
		return fmt.Errorf("round: coordinator identity %q is empty or a member", c.Coordinator)
	case c.Scheme == nil:
		return errors.New("round: node has no scheme")
	case c.Scheme.Name() != c.Mode:
		return fmt.Errorf("round: scheme %q does not implement mode %q", c.Scheme.Name(), c.Mode)
	case c.Sealer == nil || c.Box == nil || c.Signer == nil || c.Verifier == nil:
		return errors.New("round: node needs a sealer, a model box, a signer and a verifier")
	case c.Ledger == nil:
		return errors.New("round: node has no reveal ledger")
	case c.Optimizer == nil:
		return errors.New("round: node has no optimizer")
	case c.Rand == nil:
		return errors.New("round: node has no random source")
	case c.Box.KeySize() < 16:
		return fmt.Errorf("round: model box key size %d is too small", c.Box.KeySize())
	case c.Init == nil:
		return fmt.Errorf("round: %s has no Init for the initial model (any member may make the first group key)", c.Self)
	}
	return nil
}
