package round

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Coordinator is the coordinator's state machine. It learns nothing secret:
// it relays sealed payloads, schedules rounds, sums protected updates with
// the scheme's Helper and stores sealed models.
//
// A Coordinator is not safe for concurrent use: one goroutine calls Step,
// Tick, Unreachable, Ready and Advance.
type Coordinator struct {
	cfg      CoordinatorConfig
	dl       Deadlines
	members  []fl.NodeID // sorted
	isMember map[fl.NodeID]bool
	helper   protect.Helper // for st.Epoch
	st       CoordinatorState
	out      outbox

	// Large pieces of the persistent state, handed out when they change.
	model []byte   // the newest sealed model, of st.ModelRound
	gk    GroupKey // the group key of st.Epoch's setup (empty until the dealer sends it)

	// refused is the last evidence of each member refused by Refuse, relayed
	// to members that join while it is excluded.
	refused map[fl.NodeID][]byte

	// Volatile: rebuilt from Hellos after a restart.
	elapsed  int                  // ticks since the current step started
	live     map[fl.NodeID]bool   // said Hello and has not missed a deadline since
	keyed    map[fl.NodeID]bool   // holds a party of st.Epoch
	evidence map[fl.NodeID][]byte // from the last Hello
	// In PhaseJoin: joining is set from the first Hello of the attempt
	// (elapsed counts from then), joinWhy says why the setup runs.
	joining    bool
	joinWhy    string
	readmitted map[fl.NodeID]bool // since the last setup started, for the re-key's reason

	// Key setup.
	announcements map[fl.NodeID][]byte
	publics       map[fl.NodeID][]byte
	privates      map[fl.NodeID]map[fl.NodeID][]byte // dealer → recipient → sealed
	accepted      map[fl.NodeID]bool
	acked         map[fl.NodeID]bool

	// The current round.
	uploads   map[fl.NodeID][]byte
	contribs  map[fl.NodeID]Contribution
	declined  map[fl.NodeID]bool
	aggregate []byte
	shares    map[fl.NodeID][]byte
	expected  map[fl.NodeID]bool // evaluation: who was sent the model
	reported  map[fl.NodeID]bool
}

// Status is a read-only summary of a coordinator, for dashboards and tests.
type Status struct {
	Phase         Phase
	Epoch         uint64
	Round         fl.Round
	Commits       int
	LastCommitted fl.Round
	Live          []fl.NodeID
	Cohort        []fl.NodeID
	Leader        fl.NodeID
	Uploaded      []fl.NodeID
	Included      []fl.NodeID
	Revealers     []fl.NodeID
	// Participants are the members of the current epoch's key setup;
	// Keyed the live members that hold a party of it; Excluded the members
	// excluded by Exclude, and Exclusions the reason each was excluded for.
	Participants []fl.NodeID
	Keyed        []fl.NodeID
	Excluded     []fl.NodeID
	Exclusions   map[fl.NodeID]string
}

// NewCoordinator returns a coordinator for a new session. It waits for the
// members' Hellos, then runs the key setup (see [Deadlines].Join).
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	c, err := newCoordinator(cfg)
	if err != nil {
		return nil, err
	}
	c.st = CoordinatorState{Session: bytes.Clone(cfg.Session), Phase: PhaseJoin}
	c.out.changed()
	return c, nil
}

// RestartCoordinator returns a coordinator that resumes from what it
// persisted of its earlier Readys: the newest State, Model (nil: none) and
// GroupKey (nil: none). Every member is down until it says Hello again;
// excluded members stay excluded. A round caught collecting or revealing is
// aborted (its reveal is never retried); a round caught waiting for its
// commit resumes with the same Open result; a key setup caught before its
// group key step restarts with a new epoch (a re-key too: the model it
// carries over is still sealed under the previous group key).
func RestartCoordinator(cfg CoordinatorConfig, st CoordinatorState, model *SealedModel, key *GroupKey) (*Coordinator, error) {
	c, err := newCoordinator(cfg)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(st.Session, cfg.Session) {
		return nil, fmt.Errorf("round: restoring state of session %x into session %x: %w", st.Session, cfg.Session, ErrWrongSession)
	}
	if st.Phase >= phaseEnd {
		return nil, fmt.Errorf("round: restoring state in phase %d", st.Phase)
	}
	c.st = st.clone()
	if model != nil {
		if model.Round != st.ModelRound {
			return nil, fmt.Errorf("round: restoring the model of round %d into a state whose model is of round %d", model.Round, st.ModelRound)
		}
		c.model = bytes.Clone(model.Sealed)
	}
	if key != nil && key.Epoch == st.Epoch {
		c.gk = key.clone()
	}
	if c.st.Epoch > 0 && len(c.st.Participants) == 0 {
		// A state written before key setups over subsets: every member.
		c.st.Participants = slices.Clone(c.members)
		if c.st.Phase >= PhaseWait && c.st.KeyEpoch == 0 {
			c.st.KeyEpoch, c.st.Keyholders = c.st.Epoch, slices.Clone(c.members)
		}
	}
	for id := range c.st.Excluded {
		if !c.isMember[id] {
			return nil, fmt.Errorf("round: restoring state that excludes non-member %q", id)
		}
	}
	if c.st.Phase <= PhaseGroupKey && c.st.KeyEpoch > 0 {
		c.joinWhy = "re-key, resumed after a coordinator restart"
	}
	if c.st.Epoch > 0 {
		if c.helper, err = c.newHelper(c.st.Epoch); err != nil {
			return nil, err
		}
	}
	c.emit(Event{Kind: EventRestarted, Epoch: c.st.Epoch, Round: c.st.Round, Detail: "phase " + c.st.Phase.String()})
	switch c.st.Phase {
	case PhaseAnnounce, PhaseDeal, PhaseAccept:
		c.restartSetup("coordinator restarted")
	case PhaseCollect, PhaseReveal:
		c.abort("coordinator restarted")
	case PhaseEvaluate:
		c.finishEval()
	}
	return c, nil
}

func newCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Members = slices.Clone(cfg.Members)
	cfg.Session = bytes.Clone(cfg.Session)
	c := &Coordinator{
		cfg:        cfg,
		dl:         cfg.Deadlines.withDefaults(),
		members:    cfg.sorted(),
		isMember:   make(map[fl.NodeID]bool),
		live:       make(map[fl.NodeID]bool),
		keyed:      make(map[fl.NodeID]bool),
		evidence:   make(map[fl.NodeID][]byte),
		readmitted: make(map[fl.NodeID]bool),
		refused:    make(map[fl.NodeID][]byte),
	}
	for _, m := range c.members {
		c.isMember[m] = true
	}
	c.resetSetup()
	c.resetRound()
	return c, nil
}

func (c *Coordinator) newHelper(epoch uint64) (protect.Helper, error) {
	h, err := c.cfg.Scheme.NewHelper(c.protectSession(epoch))
	if err != nil {
		return nil, fmt.Errorf("round: helper for epoch %d: %w", epoch, err)
	}
	if h.Needed() != c.cfg.Threshold {
		return nil, fmt.Errorf("round: helper needs %d shares, threshold is %d", h.Needed(), c.cfg.Threshold)
	}
	return h, nil
}

func (c *Coordinator) protectSession(epoch uint64) protect.Session {
	return protect.Session{ID: protectSessionID(c.cfg.Session, epoch), Members: c.st.Participants, Threshold: c.cfg.Threshold}
}

// Ready returns the pending output. It is safe to call Ready again before
// Advance: the result then includes the earlier output.
func (c *Coordinator) Ready() Ready {
	c.out.hand()
	rd := Ready{Audit: slices.Clone(c.out.audit), Commits: slices.Clone(c.out.commits), Messages: slices.Clone(c.out.messages)}
	if c.out.dirty != 0 {
		st := c.st.clone()
		rd.State = &st
	}
	if c.out.model != 0 {
		rd.Model = &SealedModel{Round: c.st.ModelRound, Sealed: bytes.Clone(c.model), Replaces: c.st.Resealed}
	}
	if c.out.groupKey != 0 {
		gk := c.gk.clone()
		rd.GroupKey = &gk
	}
	return rd
}

// HasReady reports whether Ready has anything to hand out.
func (c *Coordinator) HasReady() bool { return c.out.pending() }

// Advance tells the coordinator that the last Ready has been handled:
// state persisted, audit events appended, messages sent.
func (c *Coordinator) Advance() { c.out.advance() }

// Status returns a summary of the coordinator's state.
func (c *Coordinator) Status() Status {
	s := Status{
		Phase: c.st.Phase, Epoch: c.st.Epoch, Round: c.st.Round, Commits: c.st.Commits,
		LastCommitted: c.st.LastCommitted, Cohort: slices.Clone(c.st.Cohort),
		Included: nodesOf(c.st.Included), Revealers: slices.Clone(c.st.Revealers),
		Live: c.sortedSet(c.live), Uploaded: c.sortedSet(boolSet(c.uploads)),
		Participants: slices.Clone(c.st.Participants), Keyed: c.liveKeyed(), Excluded: c.sortedSet(boolSet(c.st.Excluded)),
	}
	if len(c.st.Excluded) > 0 {
		s.Exclusions = maps.Clone(c.st.Excluded)
	}
	if len(s.Included) == 0 {
		s.Included = nil
	}
	if n := len(c.st.Leaders); n > 0 {
		s.Leader = c.st.Leaders[n-1]
	}
	return s
}

// Tick advances the coordinator's logical clock by one tick. Deadlines are
// counted in ticks.
func (c *Coordinator) Tick() {
	c.elapsed++
	switch c.st.Phase {
	case PhaseJoin:
		c.maybeStartSetup()
	case PhaseAnnounce, PhaseDeal, PhaseAccept, PhaseGroupKey:
		if c.elapsed >= c.dl.Setup {
			c.setupTimeout()
		}
	case PhaseWait:
		c.maybeStartFromWait()
	case PhaseCollect:
		if c.elapsed >= c.dl.Collect {
			c.closeCollect(true)
		}
	case PhaseReveal:
		if c.elapsed >= c.dl.Reveal {
			var missing []fl.NodeID
			for _, r := range c.st.Revealers {
				if c.shares[r] == nil {
					missing = append(missing, r)
					c.markDown(r, "no reveal share by the deadline")
				}
			}
			c.abort(fmt.Sprintf("reveal abandoned: no share from %v", missing))
		}
	case PhaseCommit:
		if c.elapsed >= c.dl.Commit {
			c.nextLeader("no commit by the deadline")
		}
	case PhaseEvaluate:
		if c.elapsed >= c.dl.Eval {
			for _, m := range c.members {
				if c.expected[m] && !c.reported[m] {
					c.markDown(m, "no metrics by the deadline")
				}
			}
			c.finishEval()
		}
	}
}

// Unreachable tells the coordinator that the transport lost its connection
// to id. The member is down until it says Hello again; the current step
// stops waiting for it.
func (c *Coordinator) Unreachable(id fl.NodeID) {
	if !c.live[id] {
		return
	}
	c.markDown(id, "unreachable")
	c.stopWaitingFor(id, fmt.Sprintf("%s is unreachable", id))
}

// stopWaitingFor ends the current step's wait for id, which cannot answer
// (down, or without a key share of the current epoch).
func (c *Coordinator) stopWaitingFor(id fl.NodeID, why string) {
	switch c.st.Phase {
	case PhaseAnnounce, PhaseDeal, PhaseAccept:
		if c.isParticipant(id) {
			c.restartSetup(why)
		}
	case PhaseCollect:
		c.maybeCloseCollect()
	case PhaseReveal:
		if slices.Contains(c.st.Revealers, id) && c.shares[id] == nil {
			c.abort("reveal abandoned: revealer " + why)
		}
	case PhaseCommit:
		if id == c.leader() {
			c.nextLeader("leader " + why)
		}
	case PhaseEvaluate:
		c.maybeFinishEval()
	}
}

// Exclude excludes member id from the session, for reason (its attestation
// failed, expired or was revoked). Until [Coordinator.Readmit] it is down:
// it is in no cohort, key setup, reveal or leader rotation, it is sent
// nothing, and every message from it, Hello included, is rejected with
// [ErrExcluded]. Exclude emits an [EventExcluded] event.
//
// If id holds a party of the current key epoch, the coordinator re-keys:
// the current round stops waiting for it (a round whose included set holds
// it is aborted once collection has closed; an upload it made while
// collecting is dropped), and when the round ends, a key setup among the
// live members that are not excluded replaces the collective key, the
// threshold shares and the group key, carrying the model over. A key setup
// in progress that includes id restarts without it.
//
// Exclude is idempotent: excluding an excluded member changes nothing. A
// NodeID that is not a member is ignored.
func (c *Coordinator) Exclude(id fl.NodeID, reason string) {
	if !c.isMember[id] || c.excluded(id) {
		return
	}
	if len(reason) > 200 {
		reason = reason[:200]
	}
	if c.st.Excluded == nil {
		c.st.Excluded = make(map[fl.NodeID]string)
	}
	c.st.Excluded[id] = reason
	delete(c.readmitted, id)
	c.changed()
	c.emit(Event{Kind: EventExcluded, Round: c.roundIfRunning(), Node: id, Detail: reason})
	delete(c.live, id)
	delete(c.keyed, id)
	c.out.drop(id)
	why := fmt.Sprintf("%s is excluded (%s)", id, reason)
	switch c.st.Phase {
	case PhaseJoin:
		c.maybeStartSetup()
	case PhaseAnnounce, PhaseDeal, PhaseAccept, PhaseGroupKey:
		if c.isParticipant(id) {
			c.restartSetup(why)
		}
	case PhaseWait:
		c.maybeStartFromWait()
	case PhaseCollect:
		if _, ok := c.contribs[id]; ok {
			delete(c.uploads, id)
			delete(c.contribs, id)
		}
		c.maybeCloseCollect()
	case PhaseReveal, PhaseCommit:
		if slices.Contains(nodesOf(c.st.Included), id) {
			c.abort(why + ", and its upload is in the aggregate")
		} else {
			c.stopWaitingFor(id, why)
		}
	case PhaseEvaluate:
		c.maybeFinishEval()
	}
}

// Attested records that the application verified member id's evidence
// itself (TEE evidence bound to the member's connection, in format): an
// [EventAttested] event. It ends what Refuse relays of id.
func (c *Coordinator) Attested(id fl.NodeID, evidence []byte, format string) {
	if !c.isMember[id] {
		return
	}
	delete(c.refused, id)
	c.emit(Event{Kind: EventAttested, Node: id, Digest: DigestOf(evidence), Detail: format})
}

// Refuse records that the application refused member id for reason (its
// evidence failed or expired, or its connection broke the transport's
// rules): an [EventRejected] event. Evidence, if not empty, is what was
// refused: the coordinator's refusal is not a verdict the members take on
// trust, so it is relayed (KindPeer) to the live members, and to members
// that join while id is excluded, and each reaches its own verdict.
// Refuse does not exclude id: see Exclude.
func (c *Coordinator) Refuse(id fl.NodeID, reason string, evidence []byte) {
	e := Event{Kind: EventRejected, Node: id, Detail: reason}
	if len(evidence) == 0 {
		c.emit(e)
		return
	}
	e.Digest = DigestOf(evidence)
	c.emit(e)
	if !c.isMember[id] || len(evidence) > MaxEvidence {
		return
	}
	c.refused[id] = bytes.Clone(evidence)
	for _, m := range c.members {
		if m != id && c.live[m] {
			c.send(m, Message{Kind: KindPeer, Evidences: map[fl.NodeID][]byte{id: bytes.Clone(evidence)}})
		}
	}
}

// relayRefused tells a joining member of the excluded members refused so
// far, as the live members were told when it happened.
func (c *Coordinator) relayRefused(to fl.NodeID) {
	for _, id := range slices.Sorted(maps.Keys(c.refused)) {
		if id != to && c.excluded(id) {
			c.send(to, Message{Kind: KindPeer, Evidences: map[fl.NodeID][]byte{id: bytes.Clone(c.refused[id])}})
		}
	}
}

// Readmit ends the exclusion of member id (it presented fresh, valid
// evidence). It stays down until its next Hello; then, if it holds no party
// of the current key epoch, the next round boundary re-keys to include it.
// Readmit emits an [EventReadmitted] event; readmitting a member that is not
// excluded changes nothing.
func (c *Coordinator) Readmit(id fl.NodeID) {
	if !c.excluded(id) {
		return
	}
	delete(c.st.Excluded, id)
	if len(c.st.Excluded) == 0 {
		c.st.Excluded = nil
	}
	c.readmitted[id] = true
	c.changed()
	c.emit(Event{Kind: EventReadmitted, Round: c.roundIfRunning(), Node: id})
}

func (c *Coordinator) excluded(id fl.NodeID) bool {
	_, ok := c.st.Excluded[id]
	return ok
}

func (c *Coordinator) isParticipant(id fl.NodeID) bool {
	_, ok := slices.BinarySearch(c.st.Participants, id)
	return ok
}

// eligible returns the live members that are not excluded, sorted.
func (c *Coordinator) eligible() []fl.NodeID {
	var ns []fl.NodeID
	for _, m := range c.members {
		if c.live[m] && !c.excluded(m) {
			ns = append(ns, m)
		}
	}
	return ns
}

// needRekey says why the current epoch's keys must be replaced at this round
// boundary ("" if they need not): a participant was excluded, or a live
// member that is not excluded holds no party of the epoch.
func (c *Coordinator) needRekey() string {
	if c.st.Epoch == 0 {
		return ""
	}
	var why []string
	for _, m := range c.st.Participants {
		if r, ok := c.st.Excluded[m]; ok {
			why = append(why, fmt.Sprintf("%s excluded (%s)", m, r))
		}
	}
	for _, m := range c.members {
		switch {
		case !c.live[m] || c.excluded(m) || c.keyed[m]:
		case c.readmitted[m]:
			why = append(why, fmt.Sprintf("%s readmitted", m))
		case c.isParticipant(m):
			why = append(why, fmt.Sprintf("%s lost its key share of epoch %d", m, c.st.Epoch))
		default:
			why = append(why, fmt.Sprintf("%s is not a participant of epoch %d", m, c.st.Epoch))
		}
	}
	return strings.Join(why, "; ")
}

// Step processes a message from the member the transport authenticated as
// from. A rejected message returns a *StepError wrapping one of the sentinel
// errors, is reported as an EventRejected audit event, and changes nothing
// else.
func (c *Coordinator) Step(from fl.NodeID, m Message) error {
	if err := c.step(from, m); err != nil {
		c.emit(Event{Kind: EventRejected, Epoch: m.Epoch, Round: m.Round, Node: from, Detail: fmt.Sprintf("%s: %v", m.Kind, err)})
		return &StepError{From: from, Kind: m.Kind, Epoch: m.Epoch, Round: m.Round, Err: err}
	}
	return nil
}

func (c *Coordinator) step(from fl.NodeID, m Message) error {
	switch {
	case !c.isMember[from]:
		return ErrNotMember
	case c.excluded(from):
		return fmt.Errorf("%w: %s", ErrExcluded, c.st.Excluded[from])
	case m.Kind == KindUnknown || m.Kind >= kindEnd:
		return ErrUnknownKind
	case !m.Kind.toCoordinator():
		return fmt.Errorf("%w: nodes do not send %s", ErrForged, m.Kind)
	case !bytes.Equal(m.Session, c.cfg.Session):
		return fmt.Errorf("%w: %x", ErrWrongSession, m.Session)
	}
	switch m.Kind {
	case KindHello:
		return c.hello(from, m)
	case KindRefuse:
		return c.refuse(from, m)
	}
	if err := c.checkEpoch(m.Epoch); err != nil {
		return err
	}
	if m.Kind.setup() {
		if !c.isParticipant(from) {
			return fmt.Errorf("%w: %s is not a participant of key epoch %d %v", ErrNotSelected, from, c.st.Epoch, c.st.Participants)
		}
		switch m.Kind {
		case KindAnnounce:
			return c.announce(from, m)
		case KindDeal:
			return c.deal(from, m)
		case KindAccept:
			return c.accept(from)
		case KindGroupKey:
			return c.groupKey(from, m)
		case KindKeyAck:
			return c.keyAck(from)
		}
	}
	if m.Kind == KindCommit && m.Round != 0 && m.Round == c.st.LastCommitted {
		return fmt.Errorf("%w: round %d is already committed", ErrDuplicate, m.Round)
	}
	if err := c.checkRound(m.Round); err != nil {
		return err
	}
	switch m.Kind {
	case KindUpload:
		return c.upload(from, m)
	case KindShare:
		return c.share(from, m)
	case KindCommit:
		return c.commit(from, m)
	case KindMetrics:
		return c.metrics(from, m)
	}
	return fmt.Errorf("%w: %s", ErrUnknownKind, m.Kind)
}

func (c *Coordinator) checkEpoch(e uint64) error {
	switch {
	case e < c.st.Epoch:
		return fmt.Errorf("%w: epoch %d, current %d", ErrReplay, e, c.st.Epoch)
	case e > c.st.Epoch:
		return fmt.Errorf("%w: epoch %d, current %d", ErrFuture, e, c.st.Epoch)
	}
	return nil
}

func (c *Coordinator) checkRound(r fl.Round) error {
	switch {
	case c.st.Phase < PhaseWait:
		return fmt.Errorf("%w: key setup is running (phase %s)", ErrWrongPhase, c.st.Phase)
	case r < c.st.Round:
		return fmt.Errorf("%w: round %d, current %d", ErrReplay, r, c.st.Round)
	case r > c.st.Round:
		return fmt.Errorf("%w: round %d, current %d", ErrFuture, r, c.st.Round)
	}
	return nil
}

func (c *Coordinator) wantPhase(p Phase) error {
	if c.st.Phase != p {
		return fmt.Errorf("%w: expected in phase %s, coordinator is in phase %s", ErrWrongPhase, p, c.st.Phase)
	}
	return nil
}

// refuse handles a node's refusal of the current request.
func (c *Coordinator) refuse(from fl.NodeID, m Message) error {
	reason := m.Reason
	if len(reason) > 200 {
		reason = reason[:200]
	}
	if m.Round == 0 {
		if err := c.checkEpoch(m.Epoch); err != nil {
			return err
		}
		if c.st.Phase > PhaseGroupKey || c.st.Phase == PhaseJoin {
			return fmt.Errorf("%w: no key setup is running", ErrWrongPhase)
		}
		// The setup step's deadline restarts the setup.
		c.emit(Event{Kind: EventRefused, Epoch: m.Epoch, Node: from, Detail: reason})
		return nil
	}
	if err := c.checkEpoch(m.Epoch); err != nil {
		return err
	}
	if err := c.checkRound(m.Round); err != nil {
		return err
	}
	switch c.st.Phase {
	case PhaseCollect:
		if !slices.Contains(c.st.Cohort, from) || c.uploads[from] != nil || c.declined[from] {
			return fmt.Errorf("%w: nothing to refuse", ErrNotSelected)
		}
		c.emit(Event{Kind: EventRefused, Round: m.Round, Node: from, Detail: reason})
		c.declined[from] = true
		c.maybeCloseCollect()
	case PhaseReveal:
		if !slices.Contains(c.st.Revealers, from) || c.shares[from] != nil {
			return fmt.Errorf("%w: not a pending revealer", ErrNotSelected)
		}
		c.emit(Event{Kind: EventRefused, Round: m.Round, Node: from, Detail: reason})
		c.abort(fmt.Sprintf("reveal abandoned: %s refused: %s", from, reason))
	case PhaseCommit:
		if from != c.leader() {
			return fmt.Errorf("%w: not the current leader", ErrNotSelected)
		}
		c.emit(Event{Kind: EventRefused, Round: m.Round, Node: from, Detail: reason})
		c.abort(fmt.Sprintf("leader %s refused the result: %s", from, reason))
	default:
		return fmt.Errorf("%w: nothing to refuse in phase %s", ErrWrongPhase, c.st.Phase)
	}
	return nil
}

func (c *Coordinator) emit(e Event) {
	if e.Epoch == 0 {
		e.Epoch = c.st.Epoch
	}
	c.out.audit = append(c.out.audit, e)
}

func (c *Coordinator) send(to fl.NodeID, m Message) {
	m.To = to
	m.Session = c.cfg.Session
	if m.Epoch == 0 {
		m.Epoch = c.st.Epoch
	}
	c.out.messages = append(c.out.messages, m)
}

func (c *Coordinator) changed() { c.out.changed() }

func (c *Coordinator) markDown(id fl.NodeID, why string) {
	if !c.live[id] {
		return
	}
	delete(c.live, id)
	c.emit(Event{Kind: EventDown, Round: c.roundIfRunning(), Node: id, Detail: why})
}

func (c *Coordinator) roundIfRunning() fl.Round {
	if c.st.Phase >= PhaseCollect && c.st.Phase <= PhaseEvaluate {
		return c.st.Round
	}
	return 0
}

func (c *Coordinator) leader() fl.NodeID {
	if n := len(c.st.Leaders); n > 0 {
		return c.st.Leaders[n-1]
	}
	return ""
}

// canAnswer reports whether id can take part in the current round.
func (c *Coordinator) canAnswer(id fl.NodeID) bool { return c.live[id] && c.keyed[id] }

// liveKeyed returns the live members that hold a party of the current epoch,
// sorted.
func (c *Coordinator) liveKeyed() []fl.NodeID {
	var ns []fl.NodeID
	for _, m := range c.members {
		if c.live[m] && c.keyed[m] {
			ns = append(ns, m)
		}
	}
	return ns
}

// allEligibleLive reports whether every member that is not excluded is live.
func (c *Coordinator) allEligibleLive() bool {
	for _, m := range c.members {
		if !c.live[m] && !c.excluded(m) {
			return false
		}
	}
	return true
}

func (c *Coordinator) sortedSet(s map[fl.NodeID]bool) []fl.NodeID {
	var ns []fl.NodeID
	for _, m := range c.members {
		if s[m] {
			ns = append(ns, m)
		}
	}
	return ns
}

func boolSet[V any](m map[fl.NodeID]V) map[fl.NodeID]bool {
	s := make(map[fl.NodeID]bool, len(m))
	for k := range m {
		s[k] = true
	}
	return s
}

func (s CoordinatorState) clone() CoordinatorState {
	s.Session = bytes.Clone(s.Session)
	s.Result = bytes.Clone(s.Result)
	s.Keyholders = slices.Clone(s.Keyholders)
	s.Participants = slices.Clone(s.Participants)
	if s.Excluded != nil {
		s.Excluded = maps.Clone(s.Excluded)
	}
	s.Cohort = slices.Clone(s.Cohort)
	s.Leaders = slices.Clone(s.Leaders)
	s.Included = slices.Clone(s.Included)
	s.Revealers = slices.Clone(s.Revealers)
	return s
}

var errNoPayload = errors.New("empty payload")
