package round

import (
	"bytes"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/fl"
)

// Unreachable tells the coordinator that the transport lost its connection
// to id. The member is down until it says Hello again; the current step
// stops waiting for it.
func (c *Coordinator) Unreachable(id fl.NodeID) {
	if id == c.cfg.Aggregator && id != "" {
		c.aggLive = false
		if c.st.Phase == PhaseReveal && c.awaitAggregator {
			c.abort(fmt.Sprintf("reveal abandoned: the aggregator %s is unreachable", id))
		}
		return
	}
	if !c.live[id] {
		return
	}
	c.markDown(id, "unreachable")
	c.stopWaitingFor(id, fmt.Sprintf("%s is unreachable", id))
}

// AggregatorExpired tells the coordinator that the evidence of mode tee's
// aggregator, from its last Hello, is older than the aggregator policy's
// maximum age (the application reads evidence; the engine does not): an
// [EventRejected] event of the aggregator for reason. Until the
// aggregator's next Hello, whose fresh evidence the application verified,
// no round and no key setup starts: the coordinator waits (PhaseWait, or
// PhaseJoin for a re-key) rather than have the members seal updates to a
// key that only stale evidence vouches for (they refuse to make parties
// for it themselves). A round or a key setup under way goes on: its
// parties were made on fresh evidence. Expiring evidence already expired
// changes nothing; without an aggregator it is ignored.
func (c *Coordinator) AggregatorExpired(reason string) {
	if c.cfg.Aggregator == "" || c.aggExpired != "" {
		return
	}
	if len(reason) > 200 {
		reason = reason[:200]
	}
	c.aggExpired = reason
	c.emit(Event{Kind: EventRejected, Round: c.roundIfRunning(), Node: c.cfg.Aggregator, Detail: reason})
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
		delete(c.pledges, id)
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
	if c.amendRekey != "" {
		why = append(why, c.amendRekey)
	}
	if c.aggRekey != "" {
		why = append(why, c.aggRekey)
	}
	for _, m := range c.st.Participants {
		if !c.isMember[m] {
			why = append(why, fmt.Sprintf("%s removed", m))
		} else if r, ok := c.st.Excluded[m]; ok {
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

func (c *Coordinator) markDown(id fl.NodeID, why string) {
	if !c.live[id] {
		return
	}
	delete(c.live, id)
	c.emit(Event{Kind: EventDown, Round: c.roundIfRunning(), Node: id, Detail: why})
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
