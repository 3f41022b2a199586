package round

import "github.com/cloisterfl/cloister/fl"

// CoordinatorReady is the coordinator's pending output. The application
// handles the fields in the order they are declared, then calls
// [Coordinator.Advance].
//
// Everything the application must do is here, in order: it need not look
// at message kinds or inside State.
type CoordinatorReady struct {
	// State, if not nil, is the coordinator's new small state. It must be
	// durable (written and synced), together with Model, GroupKey and
	// Commits, before any message below is sent: a restarted coordinator
	// resumes from them and never commits a round twice.
	State *CoordinatorState
	// Terms, if not nil, are new terms in force (an amendment, at a round
	// boundary; State holds them too). The application adopts their
	// manifest (Terms.Manifest: members' certificates and audit keys, the
	// privacy budget) before it sends the messages below.
	Terms *Terms
	// Model, if not nil, is the newest sealed model (the current one),
	// handed out only when it changes. Restart with the last one.
	Model *SealedModel
	// GroupKey, if not nil, is the group key of the current key setup,
	// handed out only when it changes. Restart with the last one.
	GroupKey *GroupKey
	// Commits are the rounds committed, with the sealed model each
	// produced, for the application's history. Persist them with State.
	// Each carries its leader's cosignature (Commit.Cosign) of the
	// committed audit record that the EventCommitted below becomes.
	Commits []Commit
	// Audit events must be appended to the audit log, durably, before any
	// message below is sent.
	Audit []Event
	// Messages are sent after State and Audit are durable, each to its To,
	// in order.
	Messages []Message
}

// Empty reports whether r holds nothing to do.
func (r CoordinatorReady) Empty() bool {
	return r.State == nil && r.Terms == nil && r.Model == nil && r.GroupKey == nil && len(r.Commits) == 0 && len(r.Audit) == 0 &&
		len(r.Messages) == 0
}

// NodeReady is a node's pending output: everything the application must
// persist, record, send and run, in the order the fields are declared. The
// application handles them in that order, then calls [Node.Advance]. It
// needs to look at nothing else: not at message kinds, not inside State.
type NodeReady struct {
	// State, if not nil, is the node's new small state. It is secret (seal
	// it at rest) and must be durable, together with Keys and Model, before
	// anything below is recorded, sent or run. It holds the reveal-once
	// fact (NodeState.Revealed) of a share in Messages, and the verdicts
	// (NodeState.Distrusted) of the peer-distrusted events in Audit.
	State *NodeState
	// Terms, if not nil, are new terms in force (an amendment the node
	// checked with NodeConfig.Amend; State holds them too). The
	// application adopts their manifest (members' keys, the privacy
	// budget, its own renewed certificate) before anything below.
	Terms *Terms
	// Keys, if not nil, is the node's new key material (key share and
	// group key), handed out only when it changes. Secret: seal it at rest.
	// Persist it in the same transaction as State.
	Keys *NodeKeys
	// Model, if not nil, is the newest sealed model the node keeps,
	// handed out only when it changes. Persist it in the same transaction
	// as State.
	Model *SealedModel
	// Audit events must be appended to the node's audit log, durably,
	// before any message below is sent.
	Audit []Event
	// Commits are the rounds whose signed round record this node verified
	// (in round order): every node records each commit, so that every log
	// of the session agrees on each committed round. Record them after
	// Audit, durably, before any message below is sent.
	Commits []Commit
	// Messages go to the coordinator, in order, after all of the above is
	// durable.
	Messages []Message
	// Tasks are the work the engine does not do inside Step (training and
	// evaluation take seconds). Run each after State is durable and feed the
	// result back with Step(self, m): a KindTrained message for a training
	// task, a KindEvaluated message for an evaluation task.
	Tasks []Task
	// Done is set, in one Ready, when the coordinator has closed the session.
	Done bool
}

// Empty reports whether r holds nothing to do.
func (r NodeReady) Empty() bool {
	return r.State == nil && r.Terms == nil && r.Keys == nil && r.Model == nil && len(r.Audit) == 0 && len(r.Commits) == 0 &&
		len(r.Messages) == 0 && len(r.Tasks) == 0 && !r.Done
}

// TaskKind says what a Task asks for.
type TaskKind uint8

const (
	// TaskTrain: train on local data starting from Model, then step a
	// KindTrained message with Update{Round, Delta = local − global (clipped,
	// noised and scaled by the weight), Weight}.
	TaskTrain TaskKind = iota + 1
	// TaskEvaluate: evaluate Model on local validation data, then step a
	// KindEvaluated message with Round and Metrics.
	TaskEvaluate
	// TaskPrecompute: call Precompute (it touches only the party, which
	// is safe alongside the engine) while the round's reveal request is on
	// its way; nothing is stepped back. Made after this node's pledge, if
	// its scheme's party is a protect.Precomputer and the node is likely a
	// revealer of the round (the leader or the next t−1 cohort members in
	// rotation).
	TaskPrecompute
)

func (k TaskKind) String() string {
	switch k {
	case TaskTrain:
		return "train"
	case TaskEvaluate:
		return "evaluate"
	case TaskPrecompute:
		return "precompute"
	}
	return "unknown"
}

// Task is local work for the application.
type Task struct {
	Kind   TaskKind
	Round  fl.Round
	Model  fl.Vector // the global model, plaintext: it never leaves the node
	Config []byte    // TaskTrain: Config.TrainConfig as the coordinator sent it
	// Precompute prepares the party's reveal share of Round (TaskPrecompute).
	Precompute func() error
}

// outbox accumulates output between Ready and Advance.
type outbox struct {
	audit    []Event
	commits  []Commit
	messages []Message
	tasks    []Task
	dirty    uint64 // incremented when the state changes; 0 is clean
	done     bool
	// Large pieces, handed out when they change: a change counter each,
	// like dirty.
	keys, model, groupKey, terms uint64

	// what the last Ready handed out
	nAudit, nCommits, nMessages, nTasks int
	handed                              uint64
	handedKeys, handedModel, handedGK   uint64
	handedTerms                         uint64
	doneHanded                          bool
}

func (o *outbox) hand() {
	o.nAudit, o.nCommits, o.nMessages, o.nTasks = len(o.audit), len(o.commits), len(o.messages), len(o.tasks)
	o.handed, o.handedKeys, o.handedModel, o.handedGK = o.dirty, o.keys, o.model, o.groupKey
	o.handedTerms = o.terms
	o.doneHanded = o.done
}

func (o *outbox) advance() {
	o.audit = append(o.audit[:0:0], o.audit[o.nAudit:]...)
	o.commits = append(o.commits[:0:0], o.commits[o.nCommits:]...)
	o.messages = append(o.messages[:0:0], o.messages[o.nMessages:]...)
	o.tasks = append(o.tasks[:0:0], o.tasks[o.nTasks:]...)
	clean := func(c *uint64, handed uint64) {
		if *c == handed {
			*c = 0
		}
	}
	clean(&o.dirty, o.handed)
	clean(&o.keys, o.handedKeys)
	clean(&o.model, o.handedModel)
	clean(&o.groupKey, o.handedGK)
	clean(&o.terms, o.handedTerms)
	if o.doneHanded {
		o.done = false
	}
	o.nAudit, o.nCommits, o.nMessages, o.nTasks = 0, 0, 0, 0
	o.handed, o.handedKeys, o.handedModel, o.handedGK, o.handedTerms = 0, 0, 0, 0, 0
	o.doneHanded = false
}

// changed notes a change of the small state; keysChanged, modelChanged and
// groupKeyChanged a change of a large piece (which changes the small state
// too: it says what the large piece is).
func (o *outbox) changed()         { o.dirty++ }
func (o *outbox) keysChanged()     { o.keys++; o.dirty++ }
func (o *outbox) modelChanged()    { o.model++; o.dirty++ }
func (o *outbox) groupKeyChanged() { o.groupKey++; o.dirty++ }
func (o *outbox) termsChanged()    { o.terms++; o.dirty++ }

// pending reports whether anything is left to hand out.
func (o *outbox) pending() bool {
	return o.dirty != 0 || o.keys != 0 || o.model != 0 || o.groupKey != 0 || o.terms != 0 || len(o.audit) != 0 ||
		len(o.commits) != 0 || len(o.messages) != 0 || len(o.tasks) != 0 || o.done
}

// drop removes the messages to id that no Ready has handed out yet.
func (o *outbox) drop(id fl.NodeID) {
	keep := o.messages[:o.nMessages:o.nMessages]
	for _, m := range o.messages[o.nMessages:] {
		if m.To != id {
			keep = append(keep, m)
		}
	}
	o.messages = keep
}
