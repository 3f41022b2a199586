package round

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

func (n *Node) setupStart(m Message) error {
	switch {
	case m.Epoch <= n.st.Epoch || m.Epoch < n.setupEpoch:
		return fmt.Errorf("%w: setup epoch %d, this node is at %d", ErrReplay, m.Epoch, max(n.st.Epoch, n.setupEpoch))
	case m.Epoch == n.setupEpoch && n.setupStep > 0:
		return fmt.Errorf("%w: setup epoch %d already started", ErrDuplicate, m.Epoch)
	}
	parts := m.Participants
	if err := n.checkParticipants(parts); err != nil {
		return fmt.Errorf("%w: participants %v: %v", ErrMalformed, parts, err)
	}
	evs := make(map[fl.NodeID][]byte, len(parts))
	for id, ev := range m.Evidences {
		if slices.Contains(parts, id) || id == n.cfg.Aggregator && id != "" {
			evs[id] = ev
		}
	}
	verdicts, err := n.checkPeers(evs)
	if err != nil {
		return err
	}
	if agg := n.cfg.Aggregator; agg != "" {
		if err := verdicts[agg]; err != nil {
			return n.refuse(m.Epoch, 0, nil, "the aggregator %s failed attestation: %v", agg, err)
		}
		delete(evs, agg)
	}
	if !slices.Contains(parts, n.cfg.Self) {
		return n.refuse(m.Epoch, 0, nil, "not a participant of key setup %d %v", m.Epoch, parts)
	}
	if n.cfg.VerifyPeer != nil {
		for _, id := range parts {
			if id != n.cfg.Self && evs[id] == nil {
				verdicts[id] = fmt.Errorf("no evidence relayed for %s", id)
			}
		}
	}
	// Every participant must be trusted: refuse the setup if one is not
	// (recording nothing, the refusal changes no state).
	for _, id := range parts {
		if err := verdicts[id]; err != nil {
			n.emit(Event{Kind: EventPeerDistrusted, Node: id, Detail: err.Error()})
			return n.refuse(m.Epoch, 0, nil, "member %s failed attestation", id)
		}
		if _, checked := verdicts[id]; n.distrusted[id] && (!checked || n.stillPinned(id, evs[id])) {
			return n.refuse(m.Epoch, 0, nil, "member %s is distrusted", id)
		}
	}
	n.applyPeers(verdicts, evs)
	p, err := n.cfg.Scheme.NewParty(n.protectSession(m.Epoch, parts), n.cfg.Self, n.cfg.Rand)
	if err != nil {
		return n.refuse(m.Epoch, 0, err, "new party")
	}
	ann, err := p.Announce()
	if err != nil {
		return n.refuse(m.Epoch, 0, err, "announce")
	}
	n.setupEpoch, n.setupStep, n.pending, n.announcement = m.Epoch, 1, p, ann
	n.setupMembers = slices.Clone(parts)
	n.send(Message{Kind: KindAnnounce, Epoch: m.Epoch, Payload: ann})
	return nil
}

// checkParticipants checks a key setup's participant set: sorted, distinct
// members, at least max(Threshold, MinCohort) of them.
func (n *Node) checkParticipants(parts []fl.NodeID) error {
	if need := max(n.cfg.Threshold, n.cfg.MinCohort); len(parts) < need {
		return fmt.Errorf("%d participants, at least %d are needed", len(parts), need)
	}
	for i, id := range parts {
		switch {
		case !n.isMember[id]:
			return fmt.Errorf("%q is not a member", id)
		case i > 0 && parts[i-1] >= id:
			return fmt.Errorf("not sorted and distinct at %s", id)
		}
	}
	return nil
}

// checkSetupStep checks that m belongs to the setup attempt in progress, at step want.
func (n *Node) checkSetupStep(m Message, want int) error {
	switch {
	case n.setupEpoch == 0 || m.Epoch < n.setupEpoch:
		return fmt.Errorf("%w: setup epoch %d, this node is at %d", ErrReplay, m.Epoch, n.setupEpoch)
	case m.Epoch > n.setupEpoch:
		return fmt.Errorf("%w: setup epoch %d, this node is at %d", ErrFuture, m.Epoch, n.setupEpoch)
	case n.setupStep > want:
		return fmt.Errorf("%w: setup step already taken", ErrDuplicate)
	case n.setupStep < want:
		return fmt.Errorf("%w: setup step %d, expected %d", ErrWrongPhase, n.setupStep, want)
	}
	return nil
}

func (n *Node) announcements(m Message) error {
	if err := n.checkSetupStep(m, 1); err != nil {
		return err
	}
	if len(m.Payloads) != len(n.setupMembers) {
		return fmt.Errorf("%w: %d announcements for %d participants", ErrMalformed, len(m.Payloads), len(n.setupMembers))
	}
	for _, id := range n.setupMembers {
		if len(m.Payloads[id]) == 0 {
			return fmt.Errorf("%w: no announcement from %s", ErrMalformed, id)
		}
	}
	if !bytes.Equal(m.Payloads[n.cfg.Self], n.announcement) {
		return fmt.Errorf("%w: the relayed announcement of this node is not its own", ErrForged)
	}
	if id, ok := n.distrustedAmong(n.setupMembers); ok {
		return n.refuse(m.Epoch, 0, nil, "member %s is distrusted", id)
	}
	d, err := n.pending.Deal(m.Payloads)
	if err != nil {
		return fmt.Errorf("%w: deal: %w", ErrMalformed, err)
	}
	sealed := make(map[fl.NodeID][]byte, len(d.Private))
	for _, to := range n.setupMembers {
		p, ok := d.Private[to]
		if !ok {
			continue
		}
		ct, err := n.cfg.Sealer.Seal(to, envelope(purposeDeal, n.cfg.Session, m.Epoch, n.cfg.Self, to, p))
		if err != nil {
			return fmt.Errorf("round: sealing a dealing to %s: %w", to, err)
		}
		sealed[to] = ct
	}
	n.setupStep = 2
	n.send(Message{Kind: KindDeal, Epoch: m.Epoch, Payload: d.Public, Payloads: sealed})
	return nil
}

func (n *Node) setup(m Message) error {
	if err := n.checkSetupStep(m, 2); err != nil {
		return err
	}
	if len(m.Payload) == 0 {
		return fmt.Errorf("%w: setup: %v", ErrMalformed, errNoPayload)
	}
	private := make(map[fl.NodeID][]byte, len(m.Payloads))
	for dealer, ct := range m.Payloads {
		if !slices.Contains(n.setupMembers, dealer) {
			return fmt.Errorf("%w: dealing from %q, not a participant", ErrMalformed, dealer)
		}
		pt, err := n.cfg.Sealer.Open(dealer, ct)
		if err != nil {
			return fmt.Errorf("%w: opening the dealing of %s: %v", ErrForged, dealer, err)
		}
		p, err := openEnvelope(pt, purposeDeal, n.cfg.Session, m.Epoch, dealer, n.cfg.Self)
		if err != nil {
			return fmt.Errorf("dealing of %s: %w", dealer, err)
		}
		private[dealer] = p
	}
	if err := n.pending.Accept(m.Payload, private); err != nil {
		return fmt.Errorf("%w: accept: %w", ErrMalformed, err)
	}
	state, err := n.pending.MarshalBinary()
	if err != nil {
		return fmt.Errorf("round: saving the party: %w", err)
	}
	if n.modelKey != nil {
		n.keepOldModelKey(n.st.Epoch, n.modelKey)
	}
	n.party, n.pending = n.pending, nil
	n.st.Epoch, n.st.Participants = m.Epoch, n.setupMembers
	n.keys = NodeKeys{Party: state}
	n.target, n.modelKey = nil, nil
	n.setupStep, n.announcement, n.setupMembers = 0, nil, nil
	n.out.keysChanged()
	n.emit(Event{Kind: EventKeyed, Epoch: m.Epoch, Detail: "key share accepted"})
	n.send(Message{Kind: KindAccept, Epoch: m.Epoch})
	return nil
}

// checkKeyed checks that the node holds a party of epoch e.
func (n *Node) checkKeyed(e uint64) error {
	switch {
	case n.party == nil:
		return fmt.Errorf("%w: the node holds no key share", ErrWrongPhase)
	case e < n.st.Epoch:
		return fmt.Errorf("%w: epoch %d, this node holds %d", ErrReplay, e, n.st.Epoch)
	case e > n.st.Epoch:
		return fmt.Errorf("%w: epoch %d, this node holds %d", ErrFuture, e, n.st.Epoch)
	}
	return nil
}

type groupKey struct {
	encoded []byte // encodeGroupKey(target secret, model key)
	public  []byte
	target  protect.Target
	key     []byte
	// The model the dealer sealed under this group key: its round and
	// payload digest (see NodeState.KnownModel).
	base  fl.Round
	model Digest
}

// maxOldModelKeys bounds NodeState.OldModelKeys: a node keeps the model
// keys of this many earlier epochs at most (each failed key setup attempt
// in which it got a group key adds one).
const maxOldModelKeys = 16

// keepOldModelKey keeps the model key of epoch e's group key, to open a
// model a re-key carries over.
func (n *Node) keepOldModelKey(e uint64, key []byte) {
	if n.st.OldModelKeys == nil {
		n.st.OldModelKeys = make(map[uint64][]byte)
	}
	n.st.OldModelKeys[e] = bytes.Clone(key)
	for len(n.st.OldModelKeys) > maxOldModelKeys {
		delete(n.st.OldModelKeys, slices.Min(slices.Collect(maps.Keys(n.st.OldModelKeys))))
	}
}

// dropOldModelKeys forgets the model keys of earlier epochs, once a model
// sealed under the current group key was opened.
func (n *Node) dropOldModelKeys() {
	if n.st.OldModelKeys != nil {
		n.st.OldModelKeys = nil
		n.out.changed()
	}
}

// openCarried opens a model of round r sealed under the group key of an
// earlier epoch, trying the newest epoch first. It returns the plaintext
// model payload.
func (n *Node) openCarried(sealed []byte, r fl.Round) ([]byte, error) {
	epochs := slices.Sorted(maps.Keys(n.st.OldModelKeys))
	for i := len(epochs) - 1; i >= 0; i-- {
		pt, err := n.cfg.Box.Open(n.st.OldModelKeys[epochs[i]], sealed, modelAD(n.cfg.Session, r))
		if err != nil {
			continue
		}
		if _, _, err := decodeModel(pt); err != nil {
			return nil, err
		}
		return pt, nil
	}
	return nil, fmt.Errorf("no group key of an earlier epoch (%d held) opens the model of round %d", len(epochs), r)
}

func (n *Node) keyRequest(m Message) error {
	if err := n.checkKeyed(m.Epoch); err != nil {
		return err
	}
	if len(m.Model) > 0 && m.Base < n.st.ModelRound {
		return fmt.Errorf("%w: carrying over the model of round %d, this node has seen round %d", ErrReplay, m.Base, n.st.ModelRound)
	}
	// The group key (and the model carried over) is sealed to every
	// participant: none may be distrusted.
	if id, ok := n.distrustedAmong(n.participants()); ok {
		return n.refuse(m.Epoch, 0, nil, "member %s is distrusted", id)
	}
	// The coordinator names the dealer: any participant of the epoch (it
	// holds a party of it) may make the group key.
	t := n.target
	key := n.modelKey
	if t == nil {
		var err error
		if t, err = n.cfg.Scheme.NewTarget(n.cfg.Rand); err != nil {
			return n.refuse(m.Epoch, 0, err, "new target")
		}
		if key, err = n.readKey(n.cfg.Box.KeySize()); err != nil {
			return n.refuse(m.Epoch, 0, err, "model key")
		}
	}
	sec, err := t.MarshalBinary()
	if err != nil {
		return n.refuse(m.Epoch, 0, err, "target secret")
	}
	gk := encodeGroupKey(sec, key)
	var pt []byte
	detail := "made the group key"
	if len(m.Model) > 0 {
		// A re-key: carry the newest model (and the optimizer state sealed
		// with it) over to the new group key, under the same round.
		if pt, err = n.openCarried(m.Model, m.Base); err != nil {
			return n.refuse(m.Epoch, 0, err, "carrying the model of round %d over", m.Base)
		}
		if err := n.checkKnown(m.Epoch, 0, m.Base, DigestOf(pt), "the model to carry over"); err != nil {
			return err
		}
		detail = fmt.Sprintf("made the group key, carried the model of round %d over", m.Base)
	} else {
		v := n.cfg.Init()
		if len(v) == 0 || !v.Finite() {
			return n.refuse(m.Epoch, 0, nil, "the initial model is empty or not finite")
		}
		opt, err := n.cfg.Optimizer.MarshalBinary()
		if err != nil {
			return n.refuse(m.Epoch, 0, err, "optimizer state")
		}
		pt = encodeModel(v, opt)
	}
	model, err := n.cfg.Box.Seal(key, pt, modelAD(n.cfg.Session, m.Base))
	if err != nil {
		return n.refuse(m.Epoch, 0, err, "sealing the model")
	}
	dealt := encodeDealtKey(gk, m.Base, DigestOf(pt))
	parts := n.participants()
	sealed := make(map[fl.NodeID][]byte, len(parts))
	for _, to := range parts {
		ct, err := n.cfg.Sealer.Seal(to, envelope(purposeGroupKey, n.cfg.Session, m.Epoch, n.cfg.Self, to, dealt))
		if err != nil {
			return n.refuse(m.Epoch, 0, err, "sealing the group key to %s", to)
		}
		sealed[to] = ct
	}
	n.target, n.modelKey = t, key
	n.keys.GroupKey, n.keys.Target = gk, t.Public()
	n.learnModel(m.Base, DigestOf(pt), true)
	n.out.keysChanged()
	n.emit(Event{Kind: EventKeyed, Epoch: m.Epoch, Nodes: parts, Digest: DigestOf(n.keys.Target), Detail: detail})
	n.send(Message{Kind: KindGroupKey, Epoch: m.Epoch, Payloads: sealed, Target: n.keys.Target, Model: model, Base: m.Base})
	return nil
}

// openGroupKey opens the group key dealer sealed to this node and checks it
// against its public part. It changes nothing.
func (n *Node) openGroupKey(dealer fl.NodeID, sealed, public []byte) (*groupKey, error) {
	if !n.isParticipant(dealer) {
		return nil, fmt.Errorf("%w: group key dealt by %s, not a participant of key epoch %d", ErrForged, dealer, n.st.Epoch)
	}
	pt, err := n.cfg.Sealer.Open(dealer, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: opening the group key: %v", ErrForged, err)
	}
	dealt, err := openEnvelope(pt, purposeGroupKey, n.cfg.Session, n.st.Epoch, dealer, n.cfg.Self)
	if err != nil {
		return nil, fmt.Errorf("group key: %w", err)
	}
	gk, base, model, err := decodeDealtKey(dealt)
	if err != nil {
		return nil, err
	}
	sec, key, err := decodeGroupKey(gk)
	if err != nil {
		return nil, err
	}
	if len(key) != n.cfg.Box.KeySize() {
		return nil, fmt.Errorf("%w: model key of %d bytes", ErrMalformed, len(key))
	}
	t, err := n.cfg.Scheme.LoadTarget(sec)
	if err != nil {
		return nil, fmt.Errorf("%w: group key: %w", ErrMalformed, err)
	}
	if !bytes.Equal(t.Public(), public) {
		return nil, fmt.Errorf("%w: the group key does not match the relayed public part", ErrForged)
	}
	return &groupKey{encoded: gk, public: bytes.Clone(public), target: t, key: key, base: base, model: model}, nil
}

func (n *Node) setGroupKey(k *groupKey) {
	n.target, n.modelKey = k.target, k.key
	n.keys.GroupKey, n.keys.Target = k.encoded, k.public
	n.learnModel(k.base, k.model, true)
	n.out.keysChanged()
	n.emit(Event{Kind: EventKeyed, Digest: DigestOf(k.public), Detail: "opened the group key"})
}

func (n *Node) keyDelivery(m Message) error {
	if err := n.checkKeyed(m.Epoch); err != nil {
		return err
	}
	k, err := n.openGroupKey(m.Dealer, m.Sealed, m.Target)
	if err != nil {
		return err
	}
	if n.target != nil {
		if !bytes.Equal(n.keys.GroupKey, k.encoded) {
			return fmt.Errorf("%w: this node already holds another group key", ErrDuplicate)
		}
	} else {
		n.setGroupKey(k)
	}
	n.send(Message{Kind: KindKeyAck, Epoch: m.Epoch})
	return nil
}
