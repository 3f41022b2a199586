// Package round is Cloister's protocol engine: the pure [Coordinator] and
// [Node] state machines that run a federation session (admission, key setup,
// the group model key, and rounds of train → protect → aggregate → reveal →
// decrypt → commit → evaluate), for any aggregation mode behind
// [protect.Scheme].
//
// The package does no I/O. It imports no network, disk, clock or global
// randomness, no cryptography library and no wire format: messages are plain
// Go values ([Message]), time arrives as Tick, cohort sampling uses an
// injected *rand.Rand, secrets come from an injected io.Reader, and every
// operation that needs keys or the system's randomness (end-to-end sealing,
// the model box, signatures) is behind a small interface ([Sealer],
// [ModelBox], [Signer], [Verifier]). The design follows etcd's raft.
//
// # Driving a machine: Step, Tick, Ready, Advance
//
// The application owns goroutines, sockets and disks. For each machine it
// runs one loop:
//
//	for {
//		select {
//		case in := <-network:          // from the authenticated transport
//			err := m.Step(in.From, in.Msg) // a *StepError if rejected; nothing changed
//		case <-ticker.C:
//			m.Tick()
//		case res := <-taskResults:      // node only: results of its tasks
//			m.Step(self, res)
//		}
//		for m.HasReady() {
//			rd := m.Ready()
//			persist(rd.State, rd.Keys or rd.GroupKey, rd.Model, rd.Commits)
//			                        // 1. one transaction (sealed at rest on a node)
//			appendAudit(rd.Audit)   // 2. durable, BEFORE anything is sent
//			                        //    (a node also records rd.Commits)
//			send(rd.Messages)       // 3. only now
//			startTasks(rd.Tasks)    // node: training and evaluation, outside the loop
//			m.Advance()
//		}
//	}
//
// The ordering is the contract: state and audit events are durable before
// any message of the same Ready leaves. That is what makes a reveal happen
// at most once per round (its State records it, NodeState.Revealed, before
// its share is sent, and the [protect.Ledger] inside the Party as a second
// line) and a round commit at most once (the coordinator's State records it
// before the new model is broadcast).
//
// A Ready says everything the application must do: it never looks at
// message kinds. The small state comes every time it changes; the large
// pieces (a node's key share and group key, the sealed model, the
// coordinator's group key) only when they change; commits come as explicit
// entries.
//
// Step takes the sender's NodeID from the transport, which authenticated
// it (mutual TLS); a NodeID inside a message is never trusted. A node steps
// its own task results with from = its own NodeID; the transport must never
// deliver a network message under that identity.
//
// # Restarting
//
// [RestartCoordinator] and [RestartNode] resume from the last persisted
// [CoordinatorState] and [NodeState]. After a coordinator restart every
// member is down until it says Hello again (the transport calls
// [Node.Reconnect] on reconnection). A round caught collecting or revealing
// is aborted (its reveal is never retried); one caught waiting for its
// commit resumes with the persisted Open result; a committed round is never
// committed again; a key setup (a re-key too) caught before its group-key
// step starts over with a new epoch. A restarted node rejoins with its key share
// (Scheme.LoadParty) and group key, and never protects twice in a round.
//
// # Key epochs, exclusion and re-keying
//
// A key setup runs among the members that are live and not excluded when it
// starts (its participants, named in SetupStart): at once when every member
// that is not excluded is live, or, with at least max(Threshold, MinCohort)
// of them live, Deadlines.Join ticks after the first Hello of the attempt.
// Each setup is a new key epoch with its own protect.Group.
//
// The daemon calls [Coordinator.Exclude] when a member's attestation fails,
// expires or is revoked, and [Coordinator.Readmit] when it attests again. An
// excluded member is down, sent nothing, and every message from it is
// rejected with [ErrExcluded]. At a round boundary the coordinator re-keys
// (a new setup instead of the next round) if a participant of the current
// epoch is excluded, or if a live member that is not excluded holds no party
// of it; the group-key dealer (the first participant that held the previous
// group key) carries the newest model over to the new group key. Both sets
// are in [CoordinatorState].
//
// # Known models
//
// The model key authenticates a model against the coordinator only: every
// member holds it, and a member excluded at a re-key holds the previous
// one. So a node keeps in [NodeState] (Known, KnownModel) the round and
// payload digest of the newest model it knows to be authentic: that of the
// newest commit whose signed round record it verified, or the model its
// epoch's dealer sealed under the group key (the dealer seals the round and
// digest to each participant with the group key). A Train or Decrypt base
// model, or a model a dealer is asked to carry over, of that round with
// another payload is refused with [ErrForged]. A model of a round the node
// knows nothing of (it missed that commit) is taken as before. On a node, [Node.Distrust] makes it refuse key
// setups with a member and reveals of aggregates that include it. A node's verdicts (NodeState.Distrusted)
// are in its state, so they survive a restart.
//
// # Failures
//
// Members that miss a deadline, or that the transport reports with
// [Coordinator.Unreachable], are down until their next Hello; a node that
// hears nothing for a while says Hello by itself, and gets what it waits
// for again. A Hello with new evidence from a live member that holds the
// current key epoch is a re-attestation ([Node.Reattest]): the coordinator
// relays the evidence to the other members and re-sends it nothing. So is
// one from a participant of a key setup that re-attested before the
// SetupStart reached it (it reports the epoch it held, and has not
// announced): the setup goes on.
//
// A round whose included set is smaller than the minimum cohort, or that
// cannot find t live revealers, aborts and the next round starts. A revealer that drops out
// abandons the reveal: the round aborts. A leader that does not commit is
// replaced by the next in rotation with the same Open result.
//
// # Errors
//
// Step returns a [*StepError] wrapping one sentinel: [ErrNotMember],
// [ErrForged], [ErrWrongSession], [ErrReplay], [ErrFuture], [ErrWrongPhase],
// [ErrNotSelected], [ErrDuplicate], [ErrStale], [ErrMalformed], [ErrRefused],
// [ErrUnknownKind] or [ErrExcluded]. A rejected message never panics and never changes the
// machine's state; it is reported as an [EventRejected] audit event.
//
// # Tests
//
// The transcripts in testdata/*.txt drive the machines by hand through every
// phase and failure; go test ./round -run TestInteraction -rewrite
// regenerates them for review.
package round
