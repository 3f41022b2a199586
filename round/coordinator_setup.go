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
	joining := !c.live[from]
	err := c.hello1(from, m, !joining)
	if err == nil && joining {
		c.relayRefused(from)
	}
	return err
}

// hello1 handles a Hello; wasLive says that the member was live before it
// (it has not been unreachable since: its stream stayed up, for the
// transport reports a stream's end before a new stream of the member).
func (c *Coordinator) hello1(from fl.NodeID, m Message, wasLive bool) error {
	if len(m.Evidence) > MaxEvidence {
		return fmt.Errorf("%w: %d bytes of evidence", ErrMalformed, len(m.Evidence))
	}
	fresh := !c.live[from] || !bytes.Equal(c.evidence[from], m.Evidence)
	reattested := c.reattests(from, m)
	if m.Serial < c.cfg.Serial && len(c.cfg.Manifest) > 0 {
		// The member missed an amendment (it was down when it took
		// effect): the terms in force first.
		c.send(from, Message{Kind: KindAmend, Serial: c.cfg.Serial, Manifest: c.cfg.Manifest})
	}
	c.live[from] = true
	c.evidence[from] = bytes.Clone(m.Evidence)
	c.emit(Event{Kind: EventAdmitted, Node: from, Epoch: m.Epoch, Digest: DigestOf(m.Evidence),
		Detail: fmt.Sprintf("holds key epoch %d", m.Epoch)})
	if reattested {
		// A re-attestation on a live stream: the member lost nothing, so
		// nothing is re-sent to it; the others learn its new evidence.
		c.relayEvidence(from)
		return nil
	}
	switch c.st.Phase {
	case PhaseJoin:
		c.maybeStartSetup()
	case PhaseAnnounce, PhaseDeal, PhaseAccept:
		// A participant that is still in this attempt reports its epoch;
		// any other lost its progress, unless it stayed live since the
		// attempt started: then its Hello (an idle one) crossed SetupStart,
		// which its stream delivers next, and it lost nothing. A member
		// that is not a participant waits for the next round boundary,
		// which re-keys to include it.
		if c.isParticipant(from) && m.Epoch != c.st.Epoch && !wasLive {
			c.restartSetup(fmt.Sprintf("%s rejoined without its setup state", from))
		}
	case PhaseGroupKey:
		if !c.isParticipant(from) {
			return nil
		}
		if m.Epoch != c.st.Epoch {
			c.restartSetup(fmt.Sprintf("%s lost its key share", from))
			return nil
		}
		c.keyed[from] = true
		switch {
		case c.gk.Sealed == nil && from == c.st.Dealer:
			c.sendKeyRequest()
		case c.gk.Sealed != nil && !c.acked[from]:
			c.deliverKey(from)
		}
	default:
		c.keyed[from] = m.Epoch == c.st.Epoch && c.isParticipant(from)
		c.welcome(from, fresh)
		if c.st.Phase == PhaseDone {
			c.send(from, Message{Kind: KindDone, Round: c.st.Round})
			return nil
		}
		if !c.keyed[from] {
			why := fmt.Sprintf("%s holds key epoch %d, not %d: out of the rounds until a re-key includes it", from, m.Epoch, c.st.Epoch)
			c.emit(Event{Kind: EventDown, Round: c.roundIfRunning(), Node: from, Detail: why})
			c.stopWaitingFor(from, why)
			if c.st.Phase == PhaseWait {
				c.maybeStartFromWait() // a round boundary: re-key now
			}
			return nil
		}
		switch c.st.Phase {
		case PhaseWait:
			c.maybeStartFromWait()
		case PhaseCollect:
			_, pledged := c.pledges[from]
			switch {
			case !c.inCohort(from) || c.uploads[from] != nil || c.declined[from]:
			case c.st.Pledges == nil && !pledged && !(wasLive && m.Round == c.st.Round):
				// Not to a member that says, on the stream that
				// carried it, that it is training this round.
				c.sendTrain(from)
			case c.st.Pledges != nil && slices.Contains(nodesOf(c.st.Pledges), from):
				c.sendPledges(from)
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

// reattests reports whether Hello m from a live member is a re-attestation:
// new evidence, and the member holds what the current phase needs of its
// key epoch (a party of the running setup, or of the current epoch and the
// group key once the setup is done). The same evidence again is a Hello
// after a quiet spell, by which the member asks for what it waits for.
//
// A participant that has not announced yet may have re-attested before the
// SetupStart reached it: its Hello then reports the epoch it held, below
// the setup's. That is a re-attestation too: its stream stayed up (a lost
// stream is reported with Unreachable, which restarts the setup), so the
// SetupStart reaches it after the Hello.
func (c *Coordinator) reattests(from fl.NodeID, m Message) bool {
	if !c.live[from] || c.evidence[from] == nil || bytes.Equal(c.evidence[from], m.Evidence) {
		return false
	}
	switch c.st.Phase {
	case PhaseJoin:
		return false
	case PhaseAnnounce, PhaseDeal, PhaseAccept, PhaseGroupKey:
		crossed := c.st.Phase == PhaseAnnounce && m.Epoch < c.st.Epoch && c.announcements[from] == nil
		return c.isParticipant(from) && (m.Epoch == c.st.Epoch || crossed)
	default:
		return m.Epoch == c.st.Epoch && c.keyed[from]
	}
}

// relayEvidence sends member id's evidence to the other live members that
// hold the current epoch, or, during a key setup, to the other live
// participants (Peer).
func (c *Coordinator) relayEvidence(id fl.NodeID) {
	to := c.liveKeyed()
	if c.st.Phase >= PhaseAnnounce && c.st.Phase <= PhaseGroupKey {
		to = slices.DeleteFunc(slices.Clone(c.st.Participants), func(m fl.NodeID) bool { return !c.live[m] })
	}
	for _, m := range to {
		if m != id {
			c.send(m, Message{Kind: KindPeer, Evidences: map[fl.NodeID][]byte{id: c.evidence[id]}})
		}
	}
}

// MaxEvidence bounds the evidence a Hello may carry (pki.MaxHello, the
// Hello evidence envelope's bound): the coordinator relays every member's
// evidence in one Welcome or SetupStart, whose size limit counts this much
// per member.
const MaxEvidence = 64 << 10

// welcome tells a member that (re)joined after the setup where the session
// is, relays the other members' evidence to it and its evidence to them.
// Excluded members' evidence is not relayed.
func (c *Coordinator) welcome(id fl.NodeID, relay bool) {
	ev := make(map[fl.NodeID][]byte)
	for _, m := range c.members {
		if m != id && c.evidence[m] != nil && !c.excluded(m) {
			ev[m] = c.evidence[m]
		}
	}
	if c.aggEvidence != nil {
		ev[c.cfg.Aggregator] = c.aggEvidence
	}
	w := Message{Kind: KindWelcome, Round: c.st.Round, Evidences: ev}
	if s := c.gk.Sealed[id]; s != nil {
		w.Dealer, w.Sealed, w.Target = c.st.Dealer, s, c.gk.Target
	}
	c.send(id, w)
	if relay {
		c.relayEvidence(id)
	}
}

// maybeStartSetup starts a key setup from PhaseJoin when the start rule
// allows: every member that is not excluded is live, or at least
// max(Threshold, MinCohort) of them are and Deadlines.Join ticks have passed
// since the first Hello of the attempt. A re-key also needs a live holder of
// the previous group key to carry the model over (unless no round has
// committed yet).
func (c *Coordinator) maybeStartSetup() {
	if c.st.Phase != PhaseJoin {
		return
	}
	eligible := c.eligible()
	if len(eligible) == 0 {
		return
	}
	if !c.joining {
		c.joining, c.elapsed = true, 0
	}
	if len(eligible) < max(c.cfg.Threshold, c.cfg.MinCohort) {
		return
	}
	if !c.allEligibleLive() && c.elapsed < c.dl.Join {
		return
	}
	if c.cfg.Aggregator != "" && (!c.aggLive || c.aggExpired != "") {
		return // mode tee: the members seal to the aggregator's key, relayed in SetupStart, on fresh evidence only
	}
	dealer := c.pickDealer(eligible)
	if dealer == "" {
		return
	}
	c.startSetup(eligible, dealer)
}

// pickDealer names the member of participants that makes the group key: the
// first (sorted) that holds the previous epoch's group key, so that it can
// carry the model over; the first if there is no previous group key, or if
// none holds it and no round has committed (it makes a new initial model).
// It returns "" if the model cannot be carried over.
func (c *Coordinator) pickDealer(participants []fl.NodeID) fl.NodeID {
	if c.st.KeyEpoch == 0 {
		return participants[0]
	}
	for _, p := range participants {
		if slices.Contains(c.st.Keyholders, p) {
			return p
		}
	}
	if c.st.ModelRound == 0 {
		return participants[0]
	}
	return ""
}

// carry reports whether the running setup's dealer carries Model over to
// the new group key.
func (c *Coordinator) carry() bool {
	return c.st.KeyEpoch != 0 && slices.Contains(c.st.Keyholders, c.st.Dealer)
}

// startSetup starts a key setup attempt with a new epoch among participants
// (live, sorted).
func (c *Coordinator) startSetup(participants []fl.NodeID, dealer fl.NodeID) {
	c.st.Epoch++
	c.st.Participants = slices.Clone(participants)
	h, err := c.newHelper(c.st.Epoch)
	if err != nil {
		// The configuration was validated; a scheme that cannot make a
		// helper for it is a programming error of the scheme. Stay in Join
		// until the next Hello.
		c.emit(Event{Kind: EventAborted, Detail: err.Error()})
		c.st.Phase = PhaseJoin
		c.joining = false
		c.changed()
		return
	}
	c.helper = h
	c.resetSetup()
	c.st.Phase = PhaseAnnounce
	c.gk = GroupKey{Epoch: c.st.Epoch}
	c.out.groupKeyChanged()
	c.st.Dealer = dealer
	c.elapsed, c.joining = 0, false
	c.readmitted = make(map[fl.NodeID]bool)
	c.amendRekey, c.aggRekey = "", ""
	c.changed()
	c.emit(Event{Kind: EventSetupStarted, Nodes: c.st.Participants, Detail: c.joinWhy})
	ev := make(map[fl.NodeID][]byte, len(participants)+1)
	for _, m := range participants {
		ev[m] = c.evidence[m]
	}
	if c.aggEvidence != nil {
		ev[c.cfg.Aggregator] = c.aggEvidence
	}
	for _, m := range participants {
		c.send(m, Message{Kind: KindSetupStart, Evidences: ev, Participants: c.st.Participants})
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
// epoch) starts by the start rule (see maybeStartSetup).
func (c *Coordinator) restartSetup(why string) {
	c.emit(Event{Kind: EventAborted, Detail: "key setup restarted: " + why})
	c.resetSetup()
	c.st.Phase = PhaseJoin
	c.gk.Model = nil
	c.out.groupKeyChanged()
	c.joining = false
	c.changed()
	c.maybeStartSetup()
}

// rekey replaces the current epoch's keys at a round boundary: a key setup
// among the live members that are not excluded, by the start rule.
func (c *Coordinator) rekey(why string) {
	c.resetRound()
	c.st.Phase = PhaseJoin
	c.joining = false
	c.joinWhy = "re-key: " + why
	c.changed()
	c.maybeStartSetup()
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
		if c.gk.Sealed == nil {
			done = map[fl.NodeID]bool{}
			for _, m := range c.st.Participants {
				done[m] = m != c.st.Dealer
			}
		}
	}
	for _, m := range c.st.Participants {
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
	if len(c.announcements) == len(c.st.Participants) {
		c.st.Phase = PhaseDeal
		c.elapsed = 0
		c.changed()
		for _, to := range c.st.Participants {
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
		if !c.isParticipant(to) || len(p) == 0 {
			return fmt.Errorf("%w: private dealing for %q, not a participant", ErrMalformed, to)
		}
	}
	c.publics[from] = bytes.Clone(m.Payload)
	c.privates[from] = maps.Clone(m.Payloads)
	if len(c.publics) < len(c.st.Participants) {
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
	for _, dealer := range c.st.Participants {
		var to []fl.NodeID
		var all []byte
		for _, r := range c.st.Participants {
			if p := c.privates[dealer][r]; p != nil {
				to = append(to, r)
				all = append(all, p...)
			}
		}
		if len(to) > 0 {
			c.emit(Event{Kind: EventRelayed, Node: dealer, Nodes: to, Digest: DigestOf(all), Detail: "private dealings"})
		}
	}
	for _, to := range c.st.Participants {
		priv := make(map[fl.NodeID][]byte)
		for _, dealer := range c.st.Participants {
			if p := c.privates[dealer][to]; p != nil {
				priv[dealer] = p
			}
		}
		c.send(to, Message{Kind: KindSetup, Payload: setup, Payloads: priv})
	}
	if c.cfg.Aggregator != "" {
		c.send(c.cfg.Aggregator, Message{Kind: KindSetup, Payload: setup, Participants: slices.Clone(c.st.Participants)})
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
	if len(c.accepted) == len(c.st.Participants) {
		c.st.Phase = PhaseGroupKey
		c.elapsed = 0
		c.changed()
		c.sendKeyRequest()
	}
	return nil
}

// sendKeyRequest asks the dealer for the group key; at a re-key, with the
// model to carry over.
func (c *Coordinator) sendKeyRequest() {
	m := Message{Kind: KindKeyRequest}
	if c.carry() {
		m.Model, m.Base = c.model, c.st.ModelRound
	}
	c.send(c.st.Dealer, m)
}

func (c *Coordinator) groupKey(from fl.NodeID, m Message) error {
	if err := c.wantPhase(PhaseGroupKey); err != nil {
		return err
	}
	if from != c.st.Dealer {
		return fmt.Errorf("%w: the group key is made by %s", ErrNotSelected, c.st.Dealer)
	}
	if c.gk.Sealed != nil {
		return fmt.Errorf("%w: the group key is already in place", ErrDuplicate)
	}
	if len(m.Target) == 0 || len(m.Model) == 0 {
		return fmt.Errorf("%w: group key without target or model", ErrMalformed)
	}
	if base := c.st.ModelRound; c.carry() && m.Base != base {
		return fmt.Errorf("%w: group key carries the model of round %d, want %d", ErrMalformed, m.Base, base)
	} else if !c.carry() && m.Base != 0 {
		return fmt.Errorf("%w: group key with a model of round %d, want the initial model", ErrMalformed, m.Base)
	}
	if len(m.Payloads) != len(c.st.Participants) {
		return fmt.Errorf("%w: group key sealed to %d members, want %d", ErrMalformed, len(m.Payloads), len(c.st.Participants))
	}
	var all []byte
	for _, to := range c.st.Participants {
		p := m.Payloads[to]
		if len(p) == 0 {
			return fmt.Errorf("%w: group key not sealed to %s", ErrMalformed, to)
		}
		all = append(all, p...)
	}
	c.gk = GroupKey{Epoch: c.st.Epoch, Sealed: maps.Clone(m.Payloads), Target: bytes.Clone(m.Target), Model: bytes.Clone(m.Model)}
	c.elapsed = 0
	c.out.groupKeyChanged()
	detail := "group key"
	if c.carry() {
		detail = fmt.Sprintf("group key, model of round %d carried over", m.Base)
	}
	c.emit(Event{Kind: EventRelayed, Node: from, Nodes: c.st.Participants, Digest: DigestOf(all), Detail: detail})
	c.acked[from] = true
	for _, to := range c.st.Participants {
		if to != from && c.live[to] {
			c.deliverKey(to)
		}
	}
	c.maybeFinishSetup()
	return nil
}

func (c *Coordinator) deliverKey(to fl.NodeID) {
	c.send(to, Message{Kind: KindKeyDelivery, Dealer: c.st.Dealer, Sealed: c.gk.Sealed[to], Target: c.gk.Target})
}

func (c *Coordinator) keyAck(from fl.NodeID) error {
	if err := c.wantPhase(PhaseGroupKey); err != nil {
		return err
	}
	if c.gk.Sealed == nil {
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
	if len(c.acked) < len(c.st.Participants) {
		return
	}
	if c.carry() {
		c.st.Resealed = true
	} else {
		c.st.ModelRound, c.st.Resealed = 0, false
	}
	c.model = c.gk.Model
	c.gk.Model = nil
	c.out.modelChanged()
	c.out.groupKeyChanged()
	c.st.KeyEpoch, c.st.Keyholders = c.st.Epoch, slices.Clone(c.st.Participants)
	c.joinWhy = ""
	c.emit(Event{Kind: EventSetupDone, Node: c.st.Dealer, Nodes: c.st.Participants, Digest: DigestOf(c.gk.Target)})
	c.st.Phase = PhaseWait
	c.changed()
	c.startRound()
}
