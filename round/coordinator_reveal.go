package round

// The reveal phase: picking the revealers, asking them for their shares,
// opening the result (or taking mode tee's aggregator's), and handing it to
// the leader, or to the next one in rotation.

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// sendRevealRequest asks a revealer for its share of the aggregate. The
// request carries the included uploads: the revealer sums them itself and
// reveals nothing but their sum. Under a scheme whose reveal is keyed by
// the included set (protect.Capacity.SetBound), the revealer checks the
// set instead and the uploads stay here.
func (c *Coordinator) sendRevealRequest(to fl.NodeID) {
	var uploads map[fl.NodeID][]byte
	if !c.cfg.Scheme.Capacity().SetBound {
		uploads = make(map[fl.NodeID][]byte, len(c.st.Included))
		for _, in := range c.st.Included {
			uploads[in.Node] = c.uploads[in.Node]
		}
	}
	c.send(to, Message{Kind: KindRevealRequest, Round: c.st.Round, Aggregate: c.aggregate, Revealers: c.st.Revealers,
		Target: c.gk.Target, Included: c.st.Included, Payloads: uploads})
}

// pickRevealers fixes exactly t revealers among the live included members:
// the leader first if it is one, then in rotation order after the leader.
func (c *Coordinator) pickRevealers(included []fl.NodeID) []fl.NodeID {
	return rotationPick(c.members, c.leader(), c.cfg.Threshold, func(m fl.NodeID) bool {
		return slices.Contains(included, m) && c.canAnswer(m)
	})
}

// rotationPick returns the first t members for which eligible holds, in
// rotation order from leader (from the first member if leader is none of
// them): how a round's revealers are picked, by the coordinator
// (pickRevealers) and, ahead, by the nodes (Node.likelyRevealer).
func rotationPick(members []fl.NodeID, leader fl.NodeID, t int, eligible func(fl.NodeID) bool) []fl.NodeID {
	start := max(slices.Index(members, leader), 0)
	var rs []fl.NodeID
	for i := range members {
		m := members[(start+i)%len(members)]
		if eligible(m) {
			rs = append(rs, m)
			if len(rs) == t {
				break
			}
		}
	}
	return rs
}

func (c *Coordinator) revealRequest() protect.RevealRequest {
	return protect.RevealRequest{Round: c.st.Round, Aggregate: c.aggregate, Revealers: c.st.Revealers, Target: c.gk.Target}
}

func (c *Coordinator) share(from fl.NodeID, m Message) error {
	if err := c.wantPhase(PhaseReveal); err != nil {
		return err
	}
	if !slices.Contains(c.st.Revealers, from) {
		return fmt.Errorf("%w: %s is not a revealer %v", ErrNotSelected, from, c.st.Revealers)
	}
	if c.shares[from] != nil {
		return fmt.Errorf("%w: %s already sent its share", ErrDuplicate, from)
	}
	if len(m.Payload) == 0 {
		return fmt.Errorf("%w: share: %v", ErrMalformed, errNoPayload)
	}
	c.shares[from] = bytes.Clone(m.Payload)
	c.emit(Event{Kind: EventRevealed, Round: c.st.Round, Node: from, Digest: c.st.Aggregate})
	if len(c.shares) < len(c.st.Revealers) {
		return nil
	}
	if c.cfg.Aggregator != "" {
		// Mode tee: the attested aggregator opens, not this helper.
		c.awaitAggregator = true
		c.elapsed = 0
		c.emit(Event{Kind: EventRevealRequested, Round: c.st.Round, Nodes: []fl.NodeID{c.cfg.Aggregator}, Digest: c.st.Aggregate,
			Detail: "to the aggregator"})
		c.send(c.cfg.Aggregator, Message{Kind: KindRevealRequest, Round: c.st.Round, Aggregate: c.aggregate,
			Revealers: c.st.Revealers, Target: c.gk.Target, Payloads: maps.Clone(c.shares)})
		return nil
	}
	res, err := c.helper.Open(c.revealRequest(), c.shares)
	if err != nil {
		c.abort(fmt.Sprintf("Helper.Open: %v", err))
		return nil
	}
	c.opened(res)
	return nil
}

// aggregatorStep handles a message from mode tee's aggregator: its answer
// to the current round's reveal request.
func (c *Coordinator) aggregatorStep(m Message) error {
	switch {
	case m.Kind != KindShare && m.Kind != KindRefuse && m.Kind != KindHello:
		return fmt.Errorf("%w: the aggregator does not send %s", ErrForged, m.Kind)
	case !bytes.Equal(m.Session, c.cfg.Session):
		return fmt.Errorf("%w: %x", ErrWrongSession, m.Session)
	case m.Kind == KindHello:
		return c.aggregatorHello(m)
	}
	if err := c.checkEpoch(m.Epoch); err != nil {
		return err
	}
	if err := c.checkRound(m.Round); err != nil {
		return err
	}
	if err := c.wantPhase(PhaseReveal); err != nil {
		return err
	}
	if !c.awaitAggregator {
		return fmt.Errorf("%w: the reveal shares of round %d are not all in", ErrWrongPhase, c.st.Round)
	}
	if m.Kind == KindShare && len(m.Payload) == 0 {
		return fmt.Errorf("%w: the aggregator's result: %v", ErrMalformed, errNoPayload)
	}
	c.awaitAggregator = false
	if m.Kind == KindRefuse {
		reason := m.Reason
		if len(reason) > 200 {
			reason = reason[:200]
		}
		c.emit(Event{Kind: EventRefused, Round: m.Round, Node: c.cfg.Aggregator, Detail: reason})
		c.abort(fmt.Sprintf("the aggregator refused to open: %s", reason))
		return nil
	}
	c.opened(bytes.Clone(m.Payload))
	return nil
}

// aggregatorHello admits the aggregator: its evidence goes to every live
// member, which verifies it itself before sealing anything to its key. New
// evidence after a key setup (a new connection, a re-attestation with new
// keys) re-keys at the next round boundary, so that the members seal to the
// keys it holds now; it also ends the wait for fresh evidence that
// AggregatorExpired started.
func (c *Coordinator) aggregatorHello(m Message) error {
	if len(m.Evidence) == 0 || len(m.Evidence) > MaxEvidence {
		return fmt.Errorf("%w: %d bytes of evidence", ErrMalformed, len(m.Evidence))
	}
	if c.aggEvidence != nil && !bytes.Equal(c.aggEvidence, m.Evidence) && c.st.Epoch > 0 {
		c.aggRekey = fmt.Sprintf("the aggregator %s has new evidence", c.cfg.Aggregator)
	}
	c.aggEvidence, c.aggLive, c.aggExpired = bytes.Clone(m.Evidence), true, ""
	c.emit(Event{Kind: EventAdmitted, Node: c.cfg.Aggregator, Digest: DigestOf(m.Evidence), Detail: "the aggregator"})
	for _, id := range c.members {
		if c.live[id] {
			c.send(id, Message{Kind: KindPeer, Evidences: map[fl.NodeID][]byte{c.cfg.Aggregator: bytes.Clone(m.Evidence)}})
		}
	}
	switch c.st.Phase {
	case PhaseJoin:
		c.maybeStartSetup()
	case PhaseWait:
		c.maybeStartFromWait()
	case PhaseDone:
		c.send(c.cfg.Aggregator, Message{Kind: KindDone, Round: c.st.Round})
	}
	return nil
}

// opened takes res, the open result of the current round, and hands it to
// the leader.
func (c *Coordinator) opened(res []byte) {
	c.st.Result = res
	c.st.Phase = PhaseCommit
	c.elapsed = 0
	c.changed()
	leader := c.leader()
	c.emit(Event{Kind: EventOpened, Round: c.st.Round, Node: leader, Digest: DigestOf(res)})
	if c.canAnswer(leader) {
		c.sendDecrypt(leader)
	} else {
		c.nextLeader(fmt.Sprintf("leader %s is down", leader))
	}
}

func (c *Coordinator) sendDecrypt(to fl.NodeID) {
	c.send(to, Message{Kind: KindDecrypt, Round: c.st.Round, Base: c.st.ModelRound, Model: c.model,
		Payload: c.st.Result, Included: c.st.Included, Pledges: c.st.Pledges, Record: Record{Aggregate: c.st.Aggregate}})
}

// nextLeader hands the same Open result to the next leader in rotation.
func (c *Coordinator) nextLeader(why string) {
	c.markDown(c.leader(), why)
	next, idx := c.rotate(c.st.Leaders)
	if next == "" {
		c.abort(fmt.Sprintf("no leader left: %s", why))
		return
	}
	c.st.Leaders = append(c.st.Leaders, next)
	c.st.Rotation = idx
	c.elapsed = 0
	c.changed()
	c.emit(Event{Kind: EventLeaderFailed, Round: c.st.Round, Node: next, Detail: why})
	c.sendDecrypt(next)
}
