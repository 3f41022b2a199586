package round

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/cloisterfl/cloister/fl"
)

// hello admits a member that (re)connected.
func (c *Coordinator) hello(from fl.NodeID, m Message) error {
	if len(m.Evidence) > maxEvidence {
		return fmt.Errorf("%w: %d bytes of evidence", ErrMalformed, len(m.Evidence))
	}
	fresh := !c.live[from] || !bytes.Equal(c.evidence[from], m.Evidence)
	c.live[from] = true
	c.evidence[from] = bytes.Clone(m.Evidence)
	c.emit(Event{Kind: EventAdmitted, Node: from, Epoch: m.Epoch, Digest: DigestOf(m.Evidence),
		Detail: fmt.Sprintf("holds key epoch %d", m.Epoch)})
	switch c.st.Phase {
	case PhaseJoin:
		if c.allLive() {
			c.startSetup()
		}
	case PhaseAnnounce, PhaseDeal, PhaseAccept:
		// A member that is still in this attempt reports its epoch; any
		// other lost its progress.
		if m.Epoch != c.st.Epoch {
			c.restartSetup(fmt.Sprintf("%s rejoined without its setup state", from))
		}
	case PhaseGroupKey:
		if m.Epoch != c.st.Epoch {
			c.restartSetup(fmt.Sprintf("%s lost its key share", from))
			return nil
		}
		c.keyed[from] = true
		switch {
		case c.st.Sealed == nil && from == c.dealer:
			c.send(from, Message{Kind: KindKeyRequest})
		case c.st.Sealed != nil && !c.acked[from]:
			c.deliverKey(from)
		}
	default:
		c.keyed[from] = m.Epoch == c.st.Epoch
		c.welcome(from, fresh)
		if c.st.Phase == PhaseDone {
			c.send(from, Message{Kind: KindDone, Round: c.st.Round})
			return nil
		}
		if !c.keyed[from] {
			why := fmt.Sprintf("%s holds key epoch %d, not %d: excluded until re-keyed", from, m.Epoch, c.st.Epoch)
			c.emit(Event{Kind: EventDown, Round: c.roundIfRunning(), Node: from, Detail: why})
			c.stopWaitingFor(from, why)
			return nil
		}
		switch c.st.Phase {
		case PhaseWait:
			c.maybeStartFromWait()
		case PhaseCollect:
			if c.inCohort(from) && c.uploads[from] == nil && !c.declined[from] {
				c.sendTrain(from)
			}
		case PhaseReveal:
			if slices.Contains(c.st.Revealers, from) && c.shares[from] == nil {
				c.sendRevealRequest(from)
			}
		case PhaseCommit:
			if from == c.leader() {
				c.sendDecrypt(from)
			}
		}
	}
	return nil
}

// maxEvidence bounds the attestation evidence a Hello may carry.
const maxEvidence = 1 << 20

// welcome tells a member that (re)joined after the setup where the session
// is, relays the other members' evidence to it and its evidence to them.
func (c *Coordinator) welcome(id fl.NodeID, relay bool) {
	ev := make(map[fl.NodeID][]byte)
	for _, m := range c.members {
		if m != id && c.evidence[m] != nil {
			ev[m] = c.evidence[m]
		}
	}
	w := Message{Kind: KindWelcome, Round: c.st.Round, Evidences: ev}
	if s := c.st.Sealed[id]; s != nil {
		w.Dealer, w.Sealed, w.Target = c.st.Dealer, s, c.st.Target
	}
	c.send(id, w)
	if !relay {
		return
	}
	for _, m := range c.liveKeyed() {
		if m != id {
			c.send(m, Message{Kind: KindPeer, Evidences: map[fl.NodeID][]byte{id: c.evidence[id]}})
		}
	}
}

// startSetup starts a key setup attempt with a new epoch. Every member must be live.
func (c *Coordinator) startSetup() {
	c.st.Epoch++
	h, err := c.newHelper(c.st.Epoch)
	if err != nil {
		// The configuration was validated; a scheme that cannot make a
		// helper for it is a programming error of the scheme. Stay in Join.
		c.emit(Event{Kind: EventAborted, Detail: err.Error()})
		c.st.Phase = PhaseJoin
		c.changed()
		return
	}
	c.helper = h
	c.resetSetup()
	c.st.Phase = PhaseAnnounce
	c.st.Sealed, c.st.Target, c.st.Dealer = nil, nil, ""
	c.elapsed = 0
	c.changed()
	c.emit(Event{Kind: EventSetupStarted, Nodes: c.members})
	ev := make(map[fl.NodeID][]byte, len(c.members))
	for _, m := range c.members {
		ev[m] = c.evidence[m]
	}
	for _, m := range c.members {
		c.send(m, Message{Kind: KindSetupStart, Evidences: ev})
	}
}

func (c *Coordinator) resetSetup() {
	c.announcements = make(map[fl.NodeID][]byte)
	c.publics = make(map[fl.NodeID][]byte)
	c.privates = make(map[fl.NodeID]map[fl.NodeID][]byte)
	c.accepted = make(map[fl.NodeID]bool)
	c.acked = make(map[fl.NodeID]bool)
	c.keyed = make(map[fl.NodeID]bool)
}

// restartSetup abandons the current setup attempt. The next attempt (a new
// epoch) starts as soon as every member is live.
func (c *Coordinator) restartSetup(why string) {
	c.emit(Event{Kind: EventAborted, Detail: "key setup restarted: " + why})
	c.resetSetup()
	c.st.Phase = PhaseJoin
	c.changed()
	if c.allLive() {
		c.startSetup()
	}
}

func (c *Coordinator) setupTimeout() {
	var done map[fl.NodeID]bool
	switch c.st.Phase {
	case PhaseAnnounce:
		done = boolSet(c.announcements)
	case PhaseDeal:
		done = boolSet(c.publics)
	case PhaseAccept:
		done = c.accepted
	case PhaseGroupKey:
		done = c.acked
		if c.st.Sealed == nil {
			done = map[fl.NodeID]bool{}
			for _, m := range c.members {
				done[m] = m != c.dealer
			}
		}
	}
	for _, m := range c.members {
		if !done[m] {
			c.markDown(m, fmt.Sprintf("no answer in setup phase %s by the deadline", c.st.Phase))
		}
	}
	c.restartSetup("deadline in phase " + c.st.Phase.String())
}

func (c *Coordinator) announce(from fl.NodeID, m Message) error {
	if err := c.wantPhase(PhaseAnnounce); err != nil {
		return err
	}
	if c.announcements[from] != nil {
		return fmt.Errorf("%w: %s already announced", ErrDuplicate, from)
	}
	if len(m.Payload) == 0 {
		return fmt.Errorf("%w: announcement: %v", ErrMalformed, errNoPayload)
	}
	c.announcements[from] = bytes.Clone(m.Payload)
	if len(c.announcements) == len(c.members) {
		c.st.Phase = PhaseDeal
		c.elapsed = 0
		c.changed()
		for _, to := range c.members {
			c.send(to, Message{Kind: KindAnnouncements, Payloads: c.announcements})
		}
	}
	return nil
}

func (c *Coordinator) deal(from fl.NodeID, m Message) error {
	if err := c.wantPhase(PhaseDeal); err != nil {
		return err
	}
	if c.publics[from] != nil {
		return fmt.Errorf("%w: %s already dealt", ErrDuplicate, from)
	}
	if len(m.Payload) == 0 {
		return fmt.Errorf("%w: public dealing: %v", ErrMalformed, errNoPayload)
	}
	for to, p := range m.Payloads {
		if !c.isMember[to] || len(p) == 0 {
			return fmt.Errorf("%w: private dealing for %q", ErrMalformed, to)
		}
	}
	c.publics[from] = bytes.Clone(m.Payload)
	c.privates[from] = maps.Clone(m.Payloads)
	if len(c.publics) < len(c.members) {
		return nil
	}
	setup, err := c.helper.Setup(c.announcements, c.publics)
	if err != nil {
		// No single dealing is to blame; start over.
		c.restartSetup(fmt.Sprintf("Helper.Setup: %v", err))
		return nil
	}
	c.st.Phase = PhaseAccept
	c.elapsed = 0
	c.changed()
	for _, dealer := range c.members {
		var to []fl.NodeID
		var all []byte
		for _, r := range c.members {
			if p := c.privates[dealer][r]; p != nil {
				to = append(to, r)
				all = append(all, p...)
			}
		}
		if len(to) > 0 {
			c.emit(Event{Kind: EventRelayed, Node: dealer, Nodes: to, Digest: DigestOf(all), Detail: "private dealings"})
		}
	}
	for _, to := range c.members {
		priv := make(map[fl.NodeID][]byte)
		for _, dealer := range c.members {
			if p := c.privates[dealer][to]; p != nil {
				priv[dealer] = p
			}
		}
		c.send(to, Message{Kind: KindSetup, Payload: setup, Payloads: priv})
	}
	return nil
}

func (c *Coordinator) accept(from fl.NodeID) error {
	if err := c.wantPhase(PhaseAccept); err != nil {
		return err
	}
	if c.accepted[from] {
		return fmt.Errorf("%w: %s already accepted", ErrDuplicate, from)
	}
	c.accepted[from] = true
	c.keyed[from] = true
	if len(c.accepted) == len(c.members) {
		c.st.Phase = PhaseGroupKey
		c.elapsed = 0
		c.changed()
		c.send(c.dealer, Message{Kind: KindKeyRequest})
	}
	return nil
}

func (c *Coordinator) groupKey(from fl.NodeID, m Message) error {
	if err := c.wantPhase(PhaseGroupKey); err != nil {
		return err
	}
	if from != c.dealer {
		return fmt.Errorf("%w: the group key is made by %s", ErrNotSelected, c.dealer)
	}
	if c.st.Sealed != nil {
		return fmt.Errorf("%w: the group key is already in place", ErrDuplicate)
	}
	if len(m.Target) == 0 || len(m.Model) == 0 {
		return fmt.Errorf("%w: group key without target or initial model", ErrMalformed)
	}
	if len(m.Payloads) != len(c.members) {
		return fmt.Errorf("%w: group key sealed to %d members, want %d", ErrMalformed, len(m.Payloads), len(c.members))
	}
	var all []byte
	for _, to := range c.members {
		p := m.Payloads[to]
		if len(p) == 0 {
			return fmt.Errorf("%w: group key not sealed to %s", ErrMalformed, to)
		}
		all = append(all, p...)
	}
	c.st.Sealed = maps.Clone(m.Payloads)
	c.st.Target = bytes.Clone(m.Target)
	c.st.Dealer = from
	c.st.Model = bytes.Clone(m.Model)
	c.st.ModelRound = 0
	c.elapsed = 0
	c.changed()
	c.emit(Event{Kind: EventRelayed, Node: from, Nodes: c.members, Digest: DigestOf(all), Detail: "group key"})
	c.acked[from] = true
	for _, to := range c.members {
		if to != from && c.live[to] {
			c.deliverKey(to)
		}
	}
	c.maybeFinishSetup()
	return nil
}

func (c *Coordinator) deliverKey(to fl.NodeID) {
	c.send(to, Message{Kind: KindKeyDelivery, Dealer: c.st.Dealer, Sealed: c.st.Sealed[to], Target: c.st.Target})
}

func (c *Coordinator) keyAck(from fl.NodeID) error {
	if err := c.wantPhase(PhaseGroupKey); err != nil {
		return err
	}
	if c.st.Sealed == nil {
		return fmt.Errorf("%w: no group key was delivered", ErrWrongPhase)
	}
	if c.acked[from] {
		return fmt.Errorf("%w: %s already acknowledged", ErrDuplicate, from)
	}
	c.acked[from] = true
	c.maybeFinishSetup()
	return nil
}

func (c *Coordinator) maybeFinishSetup() {
	if len(c.acked) < len(c.members) {
		return
	}
	c.emit(Event{Kind: EventSetupDone, Node: c.st.Dealer, Nodes: c.members, Digest: DigestOf(c.st.Target)})
	c.st.Phase = PhaseWait
	c.changed()
	c.startRound()
}
