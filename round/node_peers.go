package round

import (
	"cmp"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/fl"
)

// A node's verdicts on its peers' evidence: which members it trusts, and
// the refusals that follow from distrust.

// maxVerdictReason bounds the reason a verdict keeps in the state (the
// audit event has it whole).
const maxVerdictReason = 200

// Distrust tells the node that member id's attestation can no longer be
// trusted (its evidence expired, or was revoked), for reason. The node
// refuses key setups that include id and reveals and decryptions of
// aggregates that include it; while id is a participant of the node's key
// epoch (it holds a key share and the group key), the node also refuses to
// train, reveal, lead or deal in that epoch. It emits an
// [EventPeerDistrusted] event.
// The distrust lasts until VerifyPeer accepts evidence of id other than the
// evidence the node holds now (fresh evidence, relayed after id attested
// again). Distrusting a member already distrusted for the same evidence
// changes nothing; a NodeID that is not another member is ignored. The
// verdict is in the node's state (NodeState.Distrusted), so it outlives a
// restart.
func (n *Node) Distrust(id fl.NodeID, reason string) {
	if !n.isMember[id] || id == n.cfg.Self {
		return
	}
	if v, ok := n.verdict(id); ok && v.Pinned && v.Pin == n.seen[id] {
		return
	}
	n.putVerdict(Verdict{Member: id, Evidence: n.seen[id], Pinned: true, Pin: n.seen[id], Reason: reason})
	n.emit(Event{Kind: EventPeerDistrusted, Node: id, Detail: reason})
}

// findVerdict returns where the node's verdict against id is (or would be)
// in st.Distrusted.
func (n *Node) findVerdict(id fl.NodeID) (int, bool) {
	return slices.BinarySearchFunc(n.st.Distrusted, id, func(v Verdict, id fl.NodeID) int { return cmp.Compare(v.Member, id) })
}

// verdict returns the node's verdict against id, if it distrusts id.
func (n *Node) verdict(id fl.NodeID) (Verdict, bool) {
	i, ok := n.findVerdict(id)
	if !ok {
		return Verdict{}, false
	}
	return n.st.Distrusted[i], true
}

// putVerdict records v, replacing any verdict against v.Member: the state
// changes (and the next Ready carries it) if v is new.
func (n *Node) putVerdict(v Verdict) {
	if len(v.Reason) > maxVerdictReason {
		v.Reason = strings.ToValidUTF8(v.Reason[:maxVerdictReason], "")
	}
	i, ok := n.findVerdict(v.Member)
	switch {
	case ok && n.st.Distrusted[i] == v:
		return
	case ok:
		n.st.Distrusted[i] = v
	default:
		n.st.Distrusted = slices.Insert(n.st.Distrusted, i, v)
	}
	n.distrusted[v.Member] = true
	n.out.changed()
}

// dropVerdict ends the node's distrust of id.
func (n *Node) dropVerdict(id fl.NodeID) {
	i, ok := n.findVerdict(id)
	if !ok {
		return
	}
	n.st.Distrusted = slices.Delete(n.st.Distrusted, i, i+1)
	delete(n.distrusted, id)
	n.out.changed()
}

// checkPeers runs VerifyPeer on relayed evidence. It returns the verdicts
// and emits one (EventPeerVerified or EventPeerFailed) per check, without
// changing anything else.
func (n *Node) checkPeers(evs map[fl.NodeID][]byte) (map[fl.NodeID]error, error) {
	verdicts := make(map[fl.NodeID]error)
	for _, id := range slices.Sorted(maps.Keys(evs)) {
		ev := evs[id]
		if id == n.cfg.Aggregator && id != "" {
			// Mode tee's aggregator: checked, audited; not a member, so no
			// verdict on a member (the scheme reads the verified key).
			if n.cfg.VerifyPeer != nil {
				err := n.cfg.VerifyPeer(id, ev)
				verdicts[id] = err
				if err != nil {
					n.emit(Event{Kind: EventPeerFailed, Node: id, Digest: DigestOf(ev), Detail: err.Error()})
				} else {
					n.emit(Event{Kind: EventPeerVerified, Node: id, Digest: DigestOf(ev)})
				}
			}
			continue
		}
		if !n.isMember[id] {
			return nil, fmt.Errorf("%w: evidence of non-member %q", ErrMalformed, id)
		}
		if id == n.cfg.Self || n.cfg.VerifyPeer == nil {
			continue
		}
		err := n.cfg.VerifyPeer(id, ev)
		verdicts[id] = err
		if err != nil {
			n.emit(Event{Kind: EventPeerFailed, Node: id, Digest: DigestOf(ev), Detail: err.Error()})
		} else {
			n.emit(Event{Kind: EventPeerVerified, Node: id, Digest: DigestOf(ev)})
		}
	}
	return verdicts, nil
}

// applyPeers records verdicts on evs (in the node's state): a failed
// member is distrusted, a verified one trusted again (unless Distrust
// pinned that evidence).
func (n *Node) applyPeers(verdicts map[fl.NodeID]error, evs map[fl.NodeID][]byte) {
	for _, id := range n.members {
		err, ok := verdicts[id]
		if !ok {
			continue
		}
		d := DigestOf(evs[id])
		n.seen[id] = d
		v, held := n.verdict(id)
		switch {
		case err != nil:
			v.Member, v.Evidence, v.Reason = id, d, err.Error() // a pin stays
			n.putVerdict(v)
			n.emit(Event{Kind: EventPeerDistrusted, Node: id, Detail: err.Error()})
		case held && v.Pinned && v.Pin == d:
			v.Evidence = d
			n.putVerdict(v)
		default:
			n.dropVerdict(id)
		}
	}
}

// distrustedAmong returns the first of ids that the node distrusts.
func (n *Node) distrustedAmong(ids []fl.NodeID) (fl.NodeID, bool) {
	for _, id := range ids {
		if n.distrusted[id] {
			return id, true
		}
	}
	return "", false
}

// checkEpochTrusted refuses (see refuse) to act in round r of the current
// key epoch while the node distrusts one of its participants: that member
// holds a share of the epoch's collective key and the group key, so an
// upload, a reveal (to the group key) or a model sealed under the group key
// would reach it. The node takes part again after a re-key without it, or
// once fresh evidence of it verifies.
func (n *Node) checkEpochTrusted(epoch uint64, r fl.Round) error {
	if id, ok := n.distrustedAmong(n.participants()); ok {
		return n.refuse(epoch, r, nil, "participant %s of key epoch %d is distrusted", id, n.st.Epoch)
	}
	return nil
}

// stillPinned reports whether Distrust pinned ev, the evidence of id.
func (n *Node) stillPinned(id fl.NodeID, ev []byte) bool {
	v, ok := n.verdict(id)
	return ok && v.Pinned && v.Pin == DigestOf(ev)
}

func (n *Node) peer(m Message) error {
	verdicts, err := n.checkPeers(m.Evidences)
	if err != nil {
		return err
	}
	n.applyPeers(verdicts, m.Evidences)
	return nil
}
