package round

import (
	"fmt"
	"strings"

	"github.com/cloisterfl/cloister/fl"
)

// EventKind says what an audit [Event] records.
type EventKind uint8

// Audit event kinds. C: emitted by the coordinator, N: by a node.
const (
	EventUnknown          EventKind = iota
	EventRejected                   // C, N: a message was rejected; Node is the sender, Detail the error
	EventAdmitted                   // C: a member said Hello; Digest is its evidence's digest
	EventDown                       // C: a member missed a deadline or is unreachable; Detail says which
	EventSetupStarted               // C: a key setup attempt started (Epoch); Nodes are its participants, Detail why (a re-key names the member)
	EventRelayed                    // C: sealed payloads relayed; Node is the dealer, Nodes the recipients, Digest of the payloads
	EventSetupDone                  // C: the collective key and the group key are in place; Nodes are the participants, Digest of the group key's public part
	EventRoundStarted               // C: Nodes is the cohort, Detail names the leader
	EventUploaded                   // C, N: an upload; Node its sender, Digest its digest
	EventAggregated                 // C: Nodes is the included set, Digest the aggregate's
	EventRevealRequested            // C: Nodes are the revealers, Digest the aggregate's
	EventRevealed                   // C: a share arrived; N: this node revealed (its ledger recorded it). Digest of the aggregate
	EventOpened                     // C: Helper.Open succeeded; Digest of the result; Node the leader it goes to
	EventLeaderFailed               // C: the leader did not commit in time; Node the next leader
	EventCommitted                  // C, N: a round record was signed (N) or recorded (C); Digest of the record, Node the leader
	EventMetrics                    // C: a node's evaluation metrics
	EventAborted                    // C: the round was aborted; Detail says why
	EventDone                       // C, N: the session is over
	EventRestarted                  // C, N: the machine was restored from its persisted state
	EventKeyed                      // N: Party.Accept succeeded (Epoch) or the group key was opened (Digest of its public part)
	EventPeerDistrusted             // N: a member's evidence failed VerifyPeer, or Node.Distrust; Node is the member
	EventRefused                    // N: this node refused a request; Detail says why
	EventExcluded                   // C: Coordinator.Exclude; Node is the member, Detail the reason
	EventReadmitted                 // C: Coordinator.Readmit; Node is the member
	EventPeerVerified               // N: VerifyPeer accepted a member's evidence; Node is the member, Digest the evidence's
	EventPeerFailed                 // N: VerifyPeer refused a member's evidence; Node is the member, Digest the evidence's, Detail the error
	EventAttested                   // C: Coordinator.Attested; Node is the member, Digest its evidence's, Detail the format
	EventAmendmentPending           // C: Coordinator.Amend scheduled new terms; Digest of the signed manifest, Detail the change
	EventAmended                    // C, N: new terms in force; Nodes the members, Digest of the signed manifest, Detail the change
	EventPledged                    // C: the round's pledge set is closed; Nodes the pledged members, Digest the set's. N: this node protected its update and pledged it; Node itself, Digest the upload's
	eventEnd
)

var eventNames = [...]string{
	EventUnknown: "unknown", EventRejected: "rejected", EventAdmitted: "admitted", EventDown: "down",
	EventSetupStarted: "setup-started", EventRelayed: "relayed", EventSetupDone: "setup-done",
	EventRoundStarted: "round-started", EventUploaded: "uploaded", EventAggregated: "aggregated",
	EventRevealRequested: "reveal-requested", EventRevealed: "revealed", EventOpened: "opened",
	EventLeaderFailed: "leader-failed", EventCommitted: "committed", EventMetrics: "metrics",
	EventAborted: "aborted", EventDone: "done", EventRestarted: "restarted", EventKeyed: "keyed",
	EventPeerDistrusted: "peer-distrusted", EventRefused: "refused", EventExcluded: "excluded",
	EventReadmitted: "readmitted", EventPeerVerified: "peer-verified", EventPeerFailed: "peer-failed",
	EventAttested: "attested", EventAmendmentPending: "amendment-pending", EventAmended: "amended",
	EventPledged: "pledged",
}

func (k EventKind) String() string {
	if k < eventEnd {
		return eventNames[k]
	}
	return fmt.Sprintf("EventKind(%d)", uint8(k))
}

// Event is an audit record. The application appends each to the audit log,
// durably, before it sends the messages of the same [CoordinatorReady] or
// [NodeReady].
type Event struct {
	Kind    EventKind
	Epoch   uint64
	Round   fl.Round
	Node    fl.NodeID   // the node the event is about (sender, leader, dealer)
	Nodes   []fl.NodeID // a set: cohort, included set, revealers, recipients of sealed payloads
	Digest  Digest      // the digest of the payload concerned, if any
	Metrics *fl.Metrics // EventMetrics
	// MicroEpsilon is the differential-privacy cost charged by this event, in
	// millionths of ε. The engine leaves it 0: the coordinator daemon prices
	// EventCommitted with the federation's accounting rule (federation.Privacy).
	MicroEpsilon uint64
	Detail       string
}

func (e Event) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", e.Kind)
	if e.Round != 0 {
		fmt.Fprintf(&b, " round=%d", e.Round)
	} else {
		fmt.Fprintf(&b, " epoch=%d", e.Epoch)
	}
	if e.Node != "" {
		fmt.Fprintf(&b, " node=%s", e.Node)
	}
	if e.Nodes != nil {
		fmt.Fprintf(&b, " nodes=%v", e.Nodes)
	}
	if e.Digest != (Digest{}) {
		fmt.Fprintf(&b, " digest=%s", e.Digest)
	}
	if e.Metrics != nil {
		fmt.Fprintf(&b, " acc=%g loss=%g n=%d", e.Metrics.Accuracy, e.Metrics.Loss, e.Metrics.Examples)
	}
	if e.Detail != "" {
		fmt.Fprintf(&b, " (%s)", e.Detail)
	}
	return b.String()
}
