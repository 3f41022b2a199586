package round

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/lenprefix"
)

// Kind says what a [Message] is, and so which phase it belongs to.
type Kind uint8

// Message kinds. The arrow gives the direction: N→C from a node to the
// coordinator, C→N from the coordinator to a node, and "local" for results the
// application feeds back into its own [Node] with Step(self, m).
const (
	KindUnknown Kind = iota

	// Admission.
	KindHello   // N→C: Evidence; Epoch is the key epoch the node holds (0: none); Round the round it is training (0: none)
	KindWelcome // C→N: Epoch, Round; Evidences of the other members; the sealed group key (Dealer, Sealed, Target) when there is one
	KindPeer    // C→N: Evidences of members that (re)joined

	// Key setup.
	KindSetupStart    // C→N: Epoch, Participants, their Evidences: start (or restart) a key setup among the participants
	KindAnnounce      // N→C: Epoch, Payload = Party.Announce()
	KindAnnouncements // C→N: Epoch, Payloads = every participant's announcement
	KindDeal          // N→C: Epoch, Payload = Dealing.Public, Payloads = private dealings sealed to each recipient
	KindSetup         // C→N: Epoch, Payload = Helper.Setup(), Payloads = the private dealings sealed to the recipient, by dealer
	KindAccept        // N→C: Epoch: Party.Accept succeeded and the party is durable
	KindKeyRequest    // C→N: Epoch: the dealer of the group model key makes it; at a re-key, Model and Base: the newest model, to carry over
	KindGroupKey      // N→C: Epoch, Payloads = group key sealed to each participant, Target, Model (the initial model, or the carried-over one re-sealed), Base
	KindKeyDelivery   // C→N: Epoch, Dealer, Sealed (the group key sealed to the recipient), Target
	KindKeyAck        // N→C: Epoch: the group key is open and durable

	// A round.
	KindTrain         // C→N: Round, Base, Model, Config, Cohort, Leader
	KindUpload        // N→C: Round, Payload = Party.Protect(), Signature over (session, epoch, round, digest)
	KindRevealRequest // C→N: Round, Aggregate, Revealers, Target, Included, Payloads = the included uploads, by sender
	KindShare         // N→C: Round, Payload = reveal share
	KindDecrypt       // C→N: Round, Base, Model (the round's base), Payload = Helper.Open result, Included, Pledges, Record.Aggregate
	KindCommit        // N→C: Round, Model (new sealed model), Record, Signature over Record, Cosign over CommitStatement
	KindModel         // C→N: Round, Model, Record, Signature, Leader
	KindMetrics       // N→C: Round, Metrics
	KindRefuse        // N→C: Epoch, Round, Reason: the node refuses the current request
	KindDone          // C→N: the session is over

	// Local inputs (Step(self, m) on a Node).
	KindTrained   // local: Update, the result of a training Task; or Round and Reason, no Delta: the training failed, the node declines the round
	KindEvaluated // local: Round, Metrics, the result of an evaluation Task

	// Amendments (after the local inputs, so that older kinds keep their numbers).
	KindAmend // C→N: Serial, Manifest: the federation's amended manifest, in force from now

	// Pledges (commit before upload).
	KindPledge  // N→C: Round, Included = this node's pledge: the digest of its protected update, signed
	KindPledges // C→N: Round, Included = every cohort member's pledge: the set the round's uploads must match

	// Relay (vertical sessions: the coordinator carries messages between
	// members and reads none; see package relay). Never a round engine's.
	KindRelay // N→C: To, Payload (sealed for To); C→N: To, Dealer = the sender the coordinator authenticated, Payload

	kindEnd
)

var kindNames = [...]string{
	KindUnknown: "unknown", KindHello: "Hello", KindWelcome: "Welcome", KindPeer: "Peer",
	KindSetupStart: "SetupStart", KindAnnounce: "Announce", KindAnnouncements: "Announcements",
	KindDeal: "Deal", KindSetup: "Setup", KindAccept: "Accept", KindKeyRequest: "KeyRequest",
	KindGroupKey: "GroupKey", KindKeyDelivery: "KeyDelivery", KindKeyAck: "KeyAck",
	KindTrain: "Train", KindUpload: "Upload", KindRevealRequest: "RevealRequest", KindShare: "Share",
	KindDecrypt: "Decrypt", KindCommit: "Commit", KindModel: "Model", KindMetrics: "Metrics",
	KindRefuse: "Refuse", KindDone: "Done", KindTrained: "Trained", KindEvaluated: "Evaluated",
	KindAmend: "Amend", KindPledge: "Pledge", KindPledges: "Pledges", KindRelay: "Relay",
}

func (k Kind) String() string {
	if k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// ParseKind returns the kind with the given name.
func ParseKind(s string) (Kind, error) {
	for k, n := range kindNames {
		if Kind(k) != KindUnknown && strings.EqualFold(n, s) {
			return Kind(k), nil
		}
	}
	return KindUnknown, fmt.Errorf("%w: %q", ErrUnknownKind, s)
}

// toCoordinator reports whether nodes send k to the coordinator.
func (k Kind) toCoordinator() bool {
	switch k {
	case KindHello, KindAnnounce, KindDeal, KindAccept, KindGroupKey, KindKeyAck,
		KindUpload, KindShare, KindCommit, KindMetrics, KindRefuse, KindPledge:
		return true
	}
	return false
}

// toNode reports whether the coordinator sends k to nodes.
func (k Kind) toNode() bool {
	switch k {
	case KindWelcome, KindPeer, KindSetupStart, KindAnnouncements, KindSetup, KindKeyRequest,
		KindKeyDelivery, KindTrain, KindRevealRequest, KindDecrypt, KindModel, KindDone, KindAmend, KindPledges:
		return true
	}
	return false
}

func (k Kind) local() bool { return k == KindTrained || k == KindEvaluated }

// setup reports whether k belongs to the key setup (checked by epoch, not round).
func (k Kind) setup() bool {
	switch k {
	case KindSetupStart, KindAnnounce, KindAnnouncements, KindDeal, KindSetup, KindAccept,
		KindKeyRequest, KindGroupKey, KindKeyDelivery, KindKeyAck:
		return true
	}
	return false
}

// Message is the unit the engine exchanges. It is a plain Go value: the
// transport maps it to its wire format. Which fields are set depends on the
// Kind (see the Kind constants).
//
// A Message carries no sender: Step takes the sender's NodeID from the
// transport, which authenticated it. NodeIDs inside a message (Cohort,
// Revealers, Included, Dealer, Leader) are claims the receiver checks.
type Message struct {
	Kind Kind
	// To is the recipient of a message the coordinator emits. Step ignores it.
	To fl.NodeID

	Session []byte   // the federation session (Config.Session)
	Epoch   uint64   // the key epoch: one per key setup attempt
	Round   fl.Round // the round, for round messages

	Evidence  []byte               // Hello: the sender's attestation evidence
	Evidences map[fl.NodeID][]byte // Welcome, Peer, SetupStart: members' evidence, relayed
	Payload   []byte               // the protect payload of the kind (see the constants)
	Payloads  map[fl.NodeID][]byte // announcements, or sealed payloads keyed by recipient or dealer
	Dealer    fl.NodeID            // Welcome, KeyDelivery: who sealed the group key
	Sealed    []byte               // Welcome, KeyDelivery: the group key sealed to the recipient
	Target    []byte               // the group key's public part (Target.Public)
	Model     []byte               // a sealed model (model box)
	Base      fl.Round             // Train, Decrypt, KeyRequest, GroupKey: the round whose model Model is (0: the initial model)
	Config    []byte               // Train: opaque training configuration
	Cohort    []fl.NodeID          // Train
	Leader    fl.NodeID            // Train, Model
	Revealers []fl.NodeID          // RevealRequest
	Included  []Contribution       // RevealRequest, Decrypt
	Aggregate []byte               // RevealRequest: Helper.Aggregate's output
	Record    Record               // Decrypt (Aggregate only), Commit, Model
	Signature []byte               // Upload: over the upload digest; Commit, Model: over Record
	Cosign    []byte               // Commit: the leader's signature over CommitStatement (the coordinator's committed audit record)
	Update    fl.Update            // Trained
	Metrics   fl.Metrics           // Evaluated, Metrics
	Reason    string               // Refuse
	// Hello: the manifest serial the node runs under; Amend: the serial of
	// Manifest.
	Serial   uint64
	Manifest []byte // Amend: the signed manifest (opaque to the engine; Config.Manifest)

	// SetupStart: the members taking part in the key setup, sorted. The
	// epoch's protect.Group has exactly these members.
	Participants []fl.NodeID
	// Decrypt: the round's pledge set, for a leader that did not upload in
	// the round (the included uploads were signed under it).
	Pledges []Contribution
}

// Contribution is one included upload: who sent it, its digest and the
// sender's signature over (session, epoch, round, digest).
type Contribution struct {
	Node      fl.NodeID
	Digest    Digest
	Signature []byte
}

// Record is the round record the leader signs: it binds the committed model
// to the round, the included set and the aggregate.
type Record struct {
	Epoch     uint64
	Round     fl.Round
	Base      fl.Round    // the round whose model the update was applied to
	Included  []fl.NodeID // sorted
	Aggregate Digest      // digest of Helper.Aggregate's output
	Model     Digest      // digest of the new sealed model
}

// Signed returns the bytes the leader signs.
func (r Record) Signed(session []byte) []byte {
	var e lenprefix.Writer
	e.String(labelRecord)
	e.Bytes(session)
	e.U64(r.Epoch)
	e.U64(uint64(r.Round))
	e.U64(uint64(r.Base))
	putNodes(&e, r.Included)
	e.Raw(r.Aggregate[:])
	e.Raw(r.Model[:])
	return e.B
}

// Digest returns the digest of the signed bytes.
func (r Record) Digest(session []byte) Digest { return DigestOf(r.Signed(session)) }

func (r Record) clone() Record {
	r.Included = slices.Clone(r.Included)
	return r
}

func (r Record) equal(o Record) bool {
	return r.Epoch == o.Epoch && r.Round == o.Round && r.Base == o.Base &&
		slices.Equal(r.Included, o.Included) && r.Aggregate == o.Aggregate && r.Model == o.Model
}

func (m Message) String() string {
	var b strings.Builder
	b.WriteString(m.Kind.String())
	if m.To != "" {
		fmt.Fprintf(&b, " to=%s", m.To)
	}
	if m.Kind.setup() || m.Kind == KindHello || m.Kind == KindWelcome {
		fmt.Fprintf(&b, " epoch=%d", m.Epoch)
	} else {
		fmt.Fprintf(&b, " round=%d", m.Round)
	}
	return b.String()
}

func nodesOf(cs []Contribution) []fl.NodeID {
	ns := make([]fl.NodeID, len(cs))
	for i, c := range cs {
		ns[i] = c.Node
	}
	return ns
}
