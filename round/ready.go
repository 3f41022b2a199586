package round

import "github.com/cloisterfl/cloister/fl"

// Ready is the coordinator's pending output. The application handles the
// fields in the order they are declared, then calls [Coordinator.Advance].
type Ready struct {
	// State, if not nil, is the coordinator's new persistent state. It must
	// be durable (written and synced) before any message below is sent: a
	// restarted coordinator resumes from it and never commits a round twice.
	State *CoordinatorState
	// Audit events must be appended to the audit log, durably, before any
	// message below is sent.
	Audit []Event
	// Messages are sent after State and Audit are durable, each to its To,
	// in order.
	Messages []Message
}

// Empty reports whether r holds nothing to do.
func (r Ready) Empty() bool {
	return r.State == nil && len(r.Audit) == 0 && len(r.Messages) == 0
}

// NodeReady is a node's pending output. The application handles the fields
// in the order they are declared, then calls [Node.Advance].
type NodeReady struct {
	// State, if not nil, is the node's new persistent state. It holds key
	// shares and the group key: seal it at rest (TEE sealing) and make it
	// durable before anything below is sent or run.
	State *NodeState
	// Audit events must be appended to the node's audit log, durably, before
	// any message below is sent.
	Audit []Event
	// Messages go to the coordinator, in order, after State and Audit are
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
	return r.State == nil && len(r.Audit) == 0 && len(r.Messages) == 0 && len(r.Tasks) == 0 && !r.Done
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
)

func (k TaskKind) String() string {
	switch k {
	case TaskTrain:
		return "train"
	case TaskEvaluate:
		return "evaluate"
	}
	return "unknown"
}

// Task is local work for the application.
type Task struct {
	Kind   TaskKind
	Round  fl.Round
	Model  fl.Vector // the global model, plaintext: it never leaves the node
	Config []byte    // TaskTrain: Config.TrainConfig as the coordinator sent it
}

// outbox accumulates output between Ready and Advance.
type outbox struct {
	audit    []Event
	messages []Message
	tasks    []Task
	dirty    uint64 // incremented when the state changes; 0 is clean
	done     bool

	// what the last Ready handed out
	nAudit, nMessages, nTasks int
	handed                    uint64
	doneHanded                bool
}

func (o *outbox) hand() {
	o.nAudit, o.nMessages, o.nTasks = len(o.audit), len(o.messages), len(o.tasks)
	o.handed = o.dirty
	o.doneHanded = o.done
}

func (o *outbox) advance() {
	o.audit = append(o.audit[:0:0], o.audit[o.nAudit:]...)
	o.messages = append(o.messages[:0:0], o.messages[o.nMessages:]...)
	o.tasks = append(o.tasks[:0:0], o.tasks[o.nTasks:]...)
	if o.dirty == o.handed {
		o.dirty = 0
	}
	if o.doneHanded {
		o.done = false
	}
	o.nAudit, o.nMessages, o.nTasks, o.handed = 0, 0, 0, 0
	o.doneHanded = false
}

func (o *outbox) changed() { o.dirty++ }

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
