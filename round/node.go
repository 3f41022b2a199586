package round

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// nodeStep is where a node is in its current round.
type nodeStep uint8

const (
	stepIdle     nodeStep = iota // nothing asked of it in st.Round
	stepTraining                 // a training task is out
	stepPledged                  // its update is protected and pledged, awaiting the pledge set
	stepUploaded                 // its update is uploaded
	stepRevealed                 // it revealed the round's aggregate
	stepDeclined                 // its training failed: it declined the round
)

var stepNames = [...]string{"idle", "training", "pledged", "uploaded", "revealed", "declined"}

func (s nodeStep) String() string { return stepNames[s] }

// Node is a member's state machine. It holds the member's key share (its
// protect.Party), the group key and the plaintext model; none of them leaves
// it unsealed.
//
// A Node is not safe for concurrent use: one goroutine calls Step, Tick,
// Reconnect, Ready and Advance.
type Node struct {
	cfg      NodeConfig
	dl       Deadlines
	members  []fl.NodeID
	isMember map[fl.NodeID]bool
	st       NodeState
	keys     NodeKeys     // the key material of st.Epoch
	kept     *SealedModel // the newest sealed model, while a Ready is to hand it out
	out      outbox

	party protect.Party // of st.Epoch
	// helper sums included uploads for the revealer's check (checkSum),
	// for the group of helperEpoch.
	helper      protect.Helper
	helperEpoch uint64
	target      protect.Target // the group key
	modelKey    []byte

	idle       int
	distrusted map[fl.NodeID]bool   // the members of st.Distrusted
	seen       map[fl.NodeID]Digest // the digest of the newest evidence VerifyPeer checked

	// A key setup in progress.
	setupEpoch   uint64
	setupStep    int // 0: none, 1: announced, 2: dealt
	setupMembers []fl.NodeID
	pending      protect.Party
	announcement []byte

	// The current round (st.Round).
	step       nodeStep
	uploaded   Digest
	upload     []byte      // the protected update pledged in st.Round, until the pledge set comes
	dim        int         // the length of the update protected last (0: none since the start), for TaskPrecompute
	leader     fl.NodeID   // the leader the Train message of st.Round named ("": unknown, as after a restart)
	cohort     []fl.NodeID // the cohort it named
	evalRound  fl.Round
	lastCommit *Message // the Commit this node sent for st.Led, resent if asked again
}

// NodeStatus is a read-only summary of a node.
type NodeStatus struct {
	Epoch       uint64
	Keyed       bool // holds a party of Epoch
	GroupKey    bool // holds the group key
	Round       fl.Round
	Step        string
	ModelRound  fl.Round
	Led         fl.Round
	Distrusted  []fl.NodeID
	Done        bool
	SetupEpoch  uint64
	PendingEval fl.Round
}

// NewNode returns a node that has not joined yet. Its first Ready carries
// its Hello.
func NewNode(cfg NodeConfig) (*Node, error) {
	n, err := newNode(cfg)
	if err != nil {
		return nil, err
	}
	n.st = NodeState{Session: bytes.Clone(cfg.Session)}
	if len(cfg.Manifest) > 0 {
		n.st.Terms = new(n.cfg.Terms()) // persisted: a restart runs under the terms in force
		n.out.changed()
	}
	n.hello()
	return n, nil
}

// RestartNode returns a node restored from what it persisted of its
// earlier NodeReadys: the newest State and Keys. Its party is restored with
// Scheme.LoadParty and its group key with Scheme.LoadTarget. Its first Ready
// carries a Hello, with which it rejoins the session.
func RestartNode(cfg NodeConfig, st NodeState, keys NodeKeys) (*Node, error) {
	if st.Terms != nil {
		cfg.Config = cfg.Config.WithTerms(*st.Terms)
	}
	n, err := newNode(cfg)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(st.Session, cfg.Session) {
		return nil, fmt.Errorf("round: restoring state of session %x into session %x: %w", st.Session, cfg.Session, ErrWrongSession)
	}
	n.st = st.clone()
	n.keys = keys.clone()
	for i, v := range n.st.Distrusted {
		switch {
		case !n.isMember[v.Member] || v.Member == cfg.Self:
			return nil, fmt.Errorf("round: restoring a verdict against %q, not another member", v.Member)
		case i > 0 && n.st.Distrusted[i-1].Member >= v.Member:
			return nil, fmt.Errorf("round: restoring verdicts not sorted and distinct at %s", v.Member)
		}
		n.distrusted[v.Member], n.seen[v.Member] = true, v.Evidence
	}
	if len(keys.Party) > 0 {
		if !slices.Contains(n.participants(), cfg.Self) {
			return nil, fmt.Errorf("round: restoring a party of epoch %d whose participants %v do not include %s", st.Epoch, n.participants(), cfg.Self)
		}
		n.party, err = cfg.Scheme.LoadParty(n.protectSession(st.Epoch, n.participants()), cfg.Self, keys.Party, cfg.Rand)
		if err != nil {
			return nil, fmt.Errorf("round: restoring the party of epoch %d: %w", st.Epoch, err)
		}
	}
	if len(keys.GroupKey) > 0 {
		sec, key, err := decodeGroupKey(keys.GroupKey)
		if err != nil {
			return nil, fmt.Errorf("round: restoring the group key: %w", err)
		}
		if n.target, err = cfg.Scheme.LoadTarget(sec); err != nil {
			return nil, fmt.Errorf("round: restoring the group key: %w", err)
		}
		n.modelKey = key
	}
	if st.Protected != 0 && st.Protected == st.Round {
		// Pledged but not uploaded: the protected update did not survive
		// the restart (it is never made twice in a round), so the node
		// sits this round out when the pledge set comes.
		n.step, n.uploaded = stepPledged, st.Uploaded
		if len(st.Pledged) > 0 {
			n.step = stepUploaded
		}
		if st.Revealed == st.Round {
			n.step = stepRevealed
		}
	}
	detail := fmt.Sprintf("key epoch %d", st.Epoch)
	if d := n.Status().Distrusted; len(d) > 0 {
		detail += fmt.Sprintf(", distrusting %v", d)
	}
	n.emit(Event{Kind: EventRestarted, Round: st.Round, Detail: detail})
	n.hello()
	return n, nil
}

func newNode(cfg NodeConfig) (*Node, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Members = slices.Clone(cfg.Members)
	cfg.Session = bytes.Clone(cfg.Session)
	n := &Node{
		cfg:        cfg,
		dl:         cfg.Deadlines.withDefaults(),
		members:    cfg.sorted(),
		isMember:   make(map[fl.NodeID]bool),
		distrusted: make(map[fl.NodeID]bool),
		seen:       make(map[fl.NodeID]Digest),
	}
	for _, m := range n.members {
		n.isMember[m] = true
	}
	return n, nil
}

func (n *Node) protectSession(epoch uint64, participants []fl.NodeID) protect.Group {
	return protect.Group{ID: protectSessionID(n.cfg.Session, epoch), Members: participants, Threshold: n.cfg.Threshold}
}

// participants returns the members of the key setup of st.Epoch.
func (n *Node) participants() []fl.NodeID {
	if len(n.st.Participants) == 0 {
		return n.members // a state written before key setups over subsets
	}
	return n.st.Participants
}

func (n *Node) isParticipant(id fl.NodeID) bool { return slices.Contains(n.participants(), id) }

// hello says Hello. While the node trains, the Hello names the round
// (Round), so that an idle Hello on a live stream does not fetch that
// round's Train, and its model, again; otherwise Round is 0.
func (n *Node) hello() {
	var training fl.Round
	if n.step == stepTraining {
		training = n.st.Round
	}
	n.send(Message{Kind: KindHello, Epoch: max(n.st.Epoch, n.setupEpoch), Round: training, Serial: n.cfg.Serial, Evidence: n.cfg.Evidence})
}

// Reconnect tells the node that its connection to the coordinator was
// (re)established: it says Hello again.
func (n *Node) Reconnect() {
	n.idle = 0
	n.hello()
}

// Tick advances the node's logical clock. A node that hears nothing from the
// coordinator for Deadlines.Idle ticks says Hello again.
func (n *Node) Tick() {
	if n.st.Done {
		return
	}
	n.idle++
	if n.idle >= n.dl.Idle {
		n.idle = 0
		n.hello()
	}
}

// Ready returns the pending output. It is safe to call Ready again before
// Advance: the result then includes the earlier output.
func (n *Node) Ready() NodeReady {
	n.out.hand()
	rd := NodeReady{Audit: slices.Clone(n.out.audit), Commits: slices.Clone(n.out.commits),
		Messages: slices.Clone(n.out.messages), Tasks: slices.Clone(n.out.tasks), Done: n.out.done}
	if n.out.dirty != 0 {
		st := n.st.clone()
		rd.State = &st
	}
	if n.out.terms != 0 {
		rd.Terms = n.st.Terms.clone()
	}
	if n.out.keys != 0 {
		k := n.keys.clone()
		rd.Keys = &k
	}
	if n.out.model != 0 && n.kept != nil {
		m := *n.kept
		m.Sealed = bytes.Clone(m.Sealed)
		rd.Model = &m
	}
	return rd
}

// HasReady reports whether Ready has anything to hand out.
func (n *Node) HasReady() bool { return n.out.pending() }

// Advance tells the node that the last Ready has been handled.
func (n *Node) Advance() {
	n.out.advance()
	if n.out.model == 0 {
		n.kept = nil // handed out: the application keeps it
	}
}

// Status returns a summary of the node's state.
func (n *Node) Status() NodeStatus {
	s := NodeStatus{Epoch: n.st.Epoch, Keyed: n.party != nil, GroupKey: n.target != nil, Round: n.st.Round,
		Step: n.step.String(), ModelRound: n.st.ModelRound, Led: n.st.Led, Done: n.st.Done,
		SetupEpoch: n.setupEpoch, PendingEval: n.evalRound}
	for _, m := range n.members {
		if n.distrusted[m] {
			s.Distrusted = append(s.Distrusted, m)
		}
	}
	return s
}

// Step processes a message. from is the authenticated sender: the
// coordinator for network messages, or the node itself (Config.Self) for the
// results of its tasks (KindTrained, KindEvaluated). A rejected message
// returns a *StepError wrapping a sentinel error, is reported as an
// EventRejected audit event, and changes nothing else. A well-formed request
// the node declines (see ErrRefused) is also answered with a KindRefuse
// message.
func (n *Node) Step(from fl.NodeID, m Message) error {
	if err := n.step1(from, m); err != nil {
		n.emit(Event{Kind: EventRejected, Epoch: m.Epoch, Round: m.Round, Node: from, Detail: fmt.Sprintf("%s: %v", m.Kind, err)})
		return &StepError{From: from, Kind: m.Kind, Epoch: m.Epoch, Round: m.Round, Err: err}
	}
	return nil
}

func (n *Node) step1(from fl.NodeID, m Message) error {
	if m.Kind == KindUnknown || m.Kind >= kindEnd {
		return ErrUnknownKind
	}
	if from == n.cfg.Self {
		switch m.Kind {
		case KindTrained:
			return n.trained(m)
		case KindEvaluated:
			return n.evaluated(m)
		}
		return fmt.Errorf("%w: %s is not a local input", ErrForged, m.Kind)
	}
	switch {
	case m.Kind.local():
		return fmt.Errorf("%w: local input %s from %s", ErrForged, m.Kind, from)
	case from != n.cfg.Coordinator:
		return fmt.Errorf("%w: %s is not the coordinator", ErrNotMember, from)
	case !m.Kind.toNode():
		return fmt.Errorf("%w: the coordinator does not send %s", ErrForged, m.Kind)
	case !bytes.Equal(m.Session, n.cfg.Session):
		return fmt.Errorf("%w: %x", ErrWrongSession, m.Session)
	}
	var err error
	switch m.Kind {
	case KindWelcome:
		err = n.welcome(m)
	case KindPeer:
		err = n.peer(m)
	case KindSetupStart:
		err = n.setupStart(m)
	case KindAnnouncements:
		err = n.announcements(m)
	case KindSetup:
		err = n.setup(m)
	case KindKeyRequest:
		err = n.keyRequest(m)
	case KindKeyDelivery:
		err = n.keyDelivery(m)
	case KindTrain:
		err = n.train(m)
	case KindRevealRequest:
		err = n.revealRequest(m)
	case KindDecrypt:
		err = n.decrypt(m)
	case KindModel:
		err = n.model(m)
	case KindDone:
		err = n.done(m)
	case KindAmend:
		err = n.amend(m)
	case KindPledges:
		err = n.pledges(m)
	default:
		err = fmt.Errorf("%w: %s", ErrUnknownKind, m.Kind)
	}
	if err == nil || errors.Is(err, ErrRefused) {
		n.idle = 0
	}
	return err
}

func (n *Node) emit(e Event) {
	if e.Epoch == 0 {
		e.Epoch = n.st.Epoch
	}
	n.out.audit = append(n.out.audit, e)
}

func (n *Node) send(m Message) {
	m.To = n.cfg.Coordinator
	m.Session = n.cfg.Session
	if m.Epoch == 0 {
		m.Epoch = n.st.Epoch
	}
	n.out.messages = append(n.out.messages, m)
}

// maxRefuseDetail bounds the reason a refusal records and sends.
const maxRefuseDetail = 1 << 10

// refuse declines a well-formed request: it answers with a Refuse message
// and returns an error wrapping ErrRefused (and cause).
func (n *Node) refuse(epoch uint64, r fl.Round, cause error, format string, args ...any) error {
	reason := fmt.Sprintf(format, args...)
	// The audit and the coordinator hear the cause too (shortened): "reveal"
	// alone would not say which check refused.
	detail := reason
	if cause != nil {
		detail = reason + ": " + cause.Error()
		if len(detail) > maxRefuseDetail {
			detail = strings.ToValidUTF8(detail[:maxRefuseDetail], "") + "…"
		}
	}
	n.emit(Event{Kind: EventRefused, Epoch: epoch, Round: r, Detail: detail})
	n.send(Message{Kind: KindRefuse, Epoch: epoch, Round: r, Reason: detail})
	if cause != nil {
		return fmt.Errorf("%w: %s: %w", ErrRefused, reason, cause)
	}
	return fmt.Errorf("%w: %s", ErrRefused, reason)
}

func (n *Node) welcome(m Message) error {
	verdicts, err := n.checkPeers(m.Evidences)
	if err != nil {
		return err
	}
	var key *groupKey
	if m.Sealed != nil && n.target == nil && n.party != nil && m.Epoch == n.st.Epoch {
		if key, err = n.openGroupKey(m.Dealer, m.Sealed, m.Target); err != nil {
			return err
		}
	}
	n.applyPeers(verdicts, m.Evidences)
	if m.Epoch != n.st.Epoch {
		n.emit(Event{Kind: EventRefused, Detail: fmt.Sprintf("the coordinator is at key epoch %d, this node holds epoch %d", m.Epoch, n.st.Epoch)})
	}
	if key != nil {
		n.setGroupKey(key)
	}
	return nil
}

func (n *Node) done(m Message) error {
	if n.st.Done {
		return nil // told again after a reconnect
	}
	n.st.Done = true
	n.out.done = true
	n.out.changed()
	n.emit(Event{Kind: EventDone, Round: m.Round})
	return nil
}

func (k NodeKeys) clone() NodeKeys {
	return NodeKeys{Party: bytes.Clone(k.Party), GroupKey: bytes.Clone(k.GroupKey), Target: bytes.Clone(k.Target)}
}

func (s NodeState) clone() NodeState {
	s.Session = bytes.Clone(s.Session)
	s.Participants = slices.Clone(s.Participants)
	s.Distrusted = slices.Clone(s.Distrusted)
	s.Terms = s.Terms.clone()
	s.Pledged = slices.Clone(s.Pledged)
	if s.OldModelKeys != nil {
		old := make(map[uint64][]byte, len(s.OldModelKeys))
		for e, k := range s.OldModelKeys {
			old[e] = bytes.Clone(k)
		}
		s.OldModelKeys = old
	}
	return s
}

// readKey reads a fresh key from the node's secret source.
func (n *Node) readKey(size int) ([]byte, error) {
	k := make([]byte, size)
	if _, err := io.ReadFull(n.cfg.Rand, k); err != nil {
		return nil, fmt.Errorf("round: reading a key: %w", err)
	}
	return k, nil
}
