package round

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/cloisterfl/cloister/fl"
)

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
		if c.elapsed >= c.dl.Reveal && c.awaitAggregator {
			c.abort(fmt.Sprintf("reveal abandoned: the aggregator %s did not answer by the deadline", c.cfg.Aggregator))
		} else if c.elapsed >= c.dl.Reveal {
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
	case from == c.cfg.Aggregator && from != "":
		return c.aggregatorStep(m)
	case !c.isMember[from] && m.Kind == KindHello && c.pendingMember(from) && bytes.Equal(m.Session, c.cfg.Session):
		return c.pendingHello(from, m)
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
	case KindPledge:
		return c.pledge(from, m)
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
		if !slices.Contains(c.st.Cohort, from) || c.uploads[from] != nil || c.declined[from] ||
			c.st.Pledges != nil && !slices.Contains(nodesOf(c.st.Pledges), from) {
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

var errNoPayload = errors.New("empty payload")
