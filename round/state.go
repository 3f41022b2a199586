package round

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"

	"github.com/cloisterfl/cloister/fl"
)

// Phase is where the coordinator is in the session.
type Phase uint8

// Coordinator phases, in protocol order. A round runs Collect, Reveal,
// Commit, Evaluate; an aborted round goes back to Wait (or straight to the
// next round's Collect).
const (
	PhaseJoin     Phase = iota // waiting for the members' Hellos to start a key setup (see Deadlines.Join)
	PhaseAnnounce              // collecting announcements
	PhaseDeal                  // collecting dealings
	PhaseAccept                // collecting acceptances
	PhaseGroupKey              // waiting for the group key, then for every member's acknowledgement
	PhaseWait                  // waiting for enough live members to start a round
	PhaseCollect               // collecting the cohort's uploads
	PhaseReveal                // collecting the revealers' shares
	PhaseCommit                // waiting for the leader's commit
	PhaseEvaluate              // collecting metrics on the committed model
	PhaseDone                  // the session is over
	phaseEnd
)

var phaseNames = [...]string{
	PhaseJoin: "join", PhaseAnnounce: "announce", PhaseDeal: "deal", PhaseAccept: "accept",
	PhaseGroupKey: "group-key", PhaseWait: "wait", PhaseCollect: "collect", PhaseReveal: "reveal",
	PhaseCommit: "commit", PhaseEvaluate: "evaluate", PhaseDone: "done",
}

func (p Phase) String() string {
	if p < phaseEnd {
		return phaseNames[p]
	}
	return fmt.Sprintf("Phase(%d)", uint8(p))
}

// stateVersion is the version of the persisted formats.
const stateVersion = 1

// CoordinatorState is what a coordinator must persist to resume its session.
// It holds nothing secret: sealed blobs, digests and public values.
type CoordinatorState struct {
	Session []byte
	Epoch   uint64 // the current key epoch
	Phase   Phase
	Round   fl.Round // the current (or last) round
	// Commits counts committed rounds; LastCommitted is the newest.
	Commits       int
	LastCommitted fl.Round
	// ModelRound is the round that produced the newest sealed model (0:
	// initial; the model itself is CoordinatorReady.Model), sealed under the
	// group key of KeyEpoch. Resealed says that it is not the sealed model of
	// ModelRound's commit record but that model carried over to a later
	// epoch's group key by a re-key.
	ModelRound fl.Round
	Resealed   bool
	// KeyEpoch is the newest epoch whose key setup completed (0: none), and
	// Keyholders its participants: the members that hold its group key.
	KeyEpoch   uint64
	Keyholders []fl.NodeID
	// Participants are the members taking part in the key setup of Epoch
	// (sorted): its protect.Group's members.
	Participants []fl.NodeID
	// Dealer makes the group key of Epoch (named when the setup starts;
	// the key itself is CoordinatorReady.GroupKey).
	Dealer fl.NodeID
	// Excluded maps the members excluded by [Coordinator.Exclude] to the
	// reason given.
	Excluded map[fl.NodeID]string
	// Rotation is the index (in sorted member order) where the next leader
	// search starts.
	Rotation int

	// The current round, from its start.
	Cohort  []fl.NodeID
	Leaders []fl.NodeID // every leader named this round, the current one last
	// Pledges is the round's pledge set, from the end of the pledges (the
	// first step of collection): every upload must be the one pledged in it.
	Pledges []Contribution
	// From the end of collection.
	Included  []Contribution
	Aggregate Digest
	Revealers []fl.NodeID
	// Result is Helper.Open's output, kept so that a failed leader's
	// successor (or a restarted coordinator) gets the same result.
	Result []byte

	// Terms are the terms in force (nil in a state written before
	// amendments: the configuration's), Pending those scheduled by
	// Coordinator.Amend for the next round boundary.
	Terms   *Terms
	Pending *Terms
}

// NodeState is the small state a node must persist every time it changes
// (NodeReady.State). It is secret (it holds the model keys of earlier
// epochs): seal it at rest. The node's key share and group key are in
// [NodeKeys], handed out only when they change.
type NodeState struct {
	Session []byte
	Epoch   uint64 // the key epoch NodeKeys.Party belongs to (0: none yet)
	// Participants are the members of Epoch's key setup (sorted); empty in
	// a state written before subsets existed, meaning every member.
	Participants []fl.NodeID
	// OldModelKeys are the model keys of group keys this node held in
	// earlier epochs, by epoch: a re-key's dealer opens the model it carries
	// over with one. They are dropped once this node opens a model under
	// the group key of its current epoch.
	OldModelKeys map[uint64][]byte
	// Round is the newest round the node took part in; Protected the newest
	// round whose update it protected (it never protects twice in a round);
	// ModelRound the newest committed model it opened; Led the newest round it
	// committed as leader.
	Round      fl.Round
	Protected  fl.Round
	ModelRound fl.Round
	Led        fl.Round
	// KnownModel is the digest of the model payload (the plaintext the
	// model box seals: model and optimizer state) of round Known that this
	// node knows to be authentic: the model of the newest commit whose
	// signed round record it verified (KindModel), or the model the dealer
	// of its key epoch sealed under the group key (this node's own dealing,
	// or the digest the dealer sealed with the group key to it), whichever
	// is of the later round. The zero digest: none known. A base model of
	// round Known (Train, Decrypt, a re-key's carried model) must have this
	// payload: the payload digest survives re-sealing under a new group key,
	// which the sealed model's digest does not.
	Known      fl.Round
	KnownModel Digest
	// Uploaded is the digest of the update protected (and pledged) in round
	// Protected, so that a restarted node can still reveal that round (once:
	// Revealed decides, and the Party's ledger as a second line). Pledged is
	// the pledge set it uploaded under (nil: not uploaded): a revealer checks
	// that every included upload is the one pledged in it.
	Uploaded Digest
	Pledged  []Contribution
	// Revealed is the newest round whose aggregate this node revealed, and
	// RevealedAggregate that aggregate's digest: the reveal-once fact. The
	// node never reveals a round up to Revealed again. It is set in the
	// Ready that carries the share, so it is durable before the share
	// leaves.
	Revealed          fl.Round
	RevealedAggregate Digest
	// Kept is the round of the newest sealed model this node keeps
	// (NodeReady.Model) and KeptDigest the digest of its sealed bytes; the
	// zero digest: none.
	Kept       fl.Round
	KeptDigest Digest
	Done       bool
	// Distrusted are this node's standing attestation verdicts against its
	// peers, one per distrusted member, sorted by member: a restarted node
	// still distrusts them. Empty (as in a state written before verdicts
	// were kept): it distrusts no one.
	Distrusted []Verdict
	// Terms are the terms in force (nil in a state written before
	// amendments: the configuration's).
	Terms *Terms
}

// Verdict is a node's distrust of a member: its relayed evidence failed
// VerifyPeer, or the node was told to distrust it ([Node.Distrust]). It
// lasts until VerifyPeer accepts evidence of Member other than a pinned
// one.
type Verdict struct {
	Member fl.NodeID
	// Evidence is the digest of the newest evidence of Member that the node
	// checked (the zero digest: none yet).
	Evidence Digest
	// Pinned says that Distrust pinned the evidence whose digest is Pin:
	// that evidence stays distrusted even if it verifies again (an
	// expired or revoked member's evidence relayed once more).
	Pinned bool
	Pin    Digest
	// Reason is why, as the node's peer-distrusted audit event gave it.
	Reason string
}

// NodeKeys is a node's key material: its key share of NodeState.Epoch and
// the group key. It is secret: seal it at rest. It is the bulk of what a
// node persists (about 1.5 MB under mhe's Agg128), so NodeReady hands it
// out only when it changes.
type NodeKeys struct {
	Party    []byte // Party.MarshalBinary; empty: none
	GroupKey []byte // the group key (target secret and model key), opened; empty: none
	Target   []byte // the group key's public part
}

// SealedModel is a model sealed under the group key: the global model after
// Round (0: the initial model).
type SealedModel struct {
	Round  fl.Round
	Sealed []byte
	// Replaces says that it replaces the kept model of the same round: that
	// model sealed again under a new group key (a re-key), which only the
	// new key opens.
	Replaces bool
}

// Commit is a committed round: the record its leader signed and the
// signature, as the engine verified it (node) or recorded it (coordinator).
type Commit struct {
	Leader    fl.NodeID
	Record    Record
	Signature []byte
	// Cosign is the leader's signature over CommitStatement, the
	// statement of the coordinator's committed audit record (coordinator
	// only: the application appends the record with it as the leader's
	// cosignature).
	Cosign []byte
	// Model is the sealed model the round produced (coordinator only; a
	// node hands out the model it keeps in NodeReady.Model).
	Model []byte
}

// GroupKey is the group key of a key epoch as the coordinator holds it:
// sealed to each participant by the dealer, its public part, and the model
// the dealer sealed under it. Nothing in it is secret. It is megabytes
// that change once a key epoch, so Ready hands it out only when it changes.
type GroupKey struct {
	Epoch uint64
	// Sealed[m] is the group key sealed to participant m; Target its
	// public part.
	Sealed map[fl.NodeID][]byte
	Target []byte
	// Model is the model the dealer sealed under the group key (the
	// initial model, or the current model carried over); it becomes the
	// current model when the setup completes.
	Model []byte
}

// MarshalBinary encodes the group key (versioned JSON).
func (g *GroupKey) MarshalBinary() ([]byte, error) {
	return json.Marshal(struct {
		Version int
		GroupKey
	}{stateVersion, *g})
}

// UnmarshalBinary decodes a group key written by MarshalBinary.
func (g *GroupKey) UnmarshalBinary(b []byte) error {
	var f struct {
		Version int
		GroupKey
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("round: group key: %w", err)
	}
	if f.Version != stateVersion {
		return fmt.Errorf("round: group key version %d, want %d", f.Version, stateVersion)
	}
	*g = f.GroupKey
	return nil
}

func (g GroupKey) clone() GroupKey {
	g.Sealed = maps.Clone(g.Sealed)
	g.Target = bytes.Clone(g.Target)
	g.Model = bytes.Clone(g.Model)
	return g
}

type coordinatorFile struct {
	Version int
	CoordinatorState
}

type nodeFile struct {
	Version int
	NodeState
}

// MarshalBinary encodes the state (versioned JSON).
func (s *CoordinatorState) MarshalBinary() ([]byte, error) {
	return json.Marshal(coordinatorFile{stateVersion, *s})
}

// UnmarshalBinary decodes a state written by MarshalBinary.
func (s *CoordinatorState) UnmarshalBinary(b []byte) error {
	var f coordinatorFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("round: coordinator state: %w", err)
	}
	if f.Version != stateVersion {
		return fmt.Errorf("round: coordinator state version %d, want %d", f.Version, stateVersion)
	}
	if f.Phase >= phaseEnd {
		return fmt.Errorf("round: coordinator state has phase %d", f.Phase)
	}
	*s = f.CoordinatorState
	return nil
}

// MarshalBinary encodes the state (versioned JSON).
func (s *NodeState) MarshalBinary() ([]byte, error) {
	return json.Marshal(nodeFile{stateVersion, *s})
}

// UnmarshalBinary decodes a state written by MarshalBinary.
func (s *NodeState) UnmarshalBinary(b []byte) error {
	var f nodeFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("round: node state: %w", err)
	}
	if f.Version != stateVersion {
		return fmt.Errorf("round: node state version %d, want %d", f.Version, stateVersion)
	}
	*s = f.NodeState
	return nil
}
