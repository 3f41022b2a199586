package round

import (
	"bytes"
	"fmt"

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
	verdicts, err := n.checkPeers(m.Evidences)
	if err != nil {
		return err
	}
	if n.cfg.VerifyPeer != nil {
		for _, id := range n.members {
			if id != n.cfg.Self && m.Evidences[id] == nil {
				verdicts[id] = fmt.Errorf("no evidence relayed for %s", id)
			}
		}
	}
	// A setup needs every member: refuse it if one fails (recording
	// nothing, the refusal changes no state).
	for _, id := range n.members {
		if err := verdicts[id]; err != nil {
			n.emit(Event{Kind: EventPeerDistrusted, Node: id, Detail: err.Error()})
			return n.refuse(m.Epoch, 0, nil, "member %s failed attestation", id)
		}
	}
	n.applyPeers(verdicts)
	p, err := n.cfg.Scheme.NewParty(n.protectSession(m.Epoch), n.cfg.Self, n.cfg.Rand)
	if err != nil {
		return n.refuse(m.Epoch, 0, err, "new party")
	}
	ann, err := p.Announce()
	if err != nil {
		return n.refuse(m.Epoch, 0, err, "announce")
	}
	n.setupEpoch, n.setupStep, n.pending, n.announcement = m.Epoch, 1, p, ann
	n.send(Message{Kind: KindAnnounce, Epoch: m.Epoch, Payload: ann})
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
	if len(m.Payloads) != len(n.members) {
		return fmt.Errorf("%w: %d announcements for %d members", ErrMalformed, len(m.Payloads), len(n.members))
	}
	for _, id := range n.members {
		if len(m.Payloads[id]) == 0 {
			return fmt.Errorf("%w: no announcement from %s", ErrMalformed, id)
		}
	}
	if !bytes.Equal(m.Payloads[n.cfg.Self], n.announcement) {
		return fmt.Errorf("%w: the relayed announcement of this node is not its own", ErrForged)
	}
	d, err := n.pending.Deal(m.Payloads)
	if err != nil {
		return fmt.Errorf("%w: deal: %w", ErrMalformed, err)
	}
	sealed := make(map[fl.NodeID][]byte, len(d.Private))
	for _, to := range n.members {
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
		if !n.isMember[dealer] {
			return fmt.Errorf("%w: dealing from non-member %q", ErrMalformed, dealer)
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
	n.party, n.pending = n.pending, nil
	n.st.Epoch, n.st.Party = m.Epoch, state
	n.st.GroupKey, n.st.Target, n.target, n.modelKey = nil, nil, nil, nil
	n.setupStep, n.announcement = 0, nil
	n.out.changed()
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
}

func (n *Node) keyRequest(m Message) error {
	if err := n.checkKeyed(m.Epoch); err != nil {
		return err
	}
	if n.cfg.Self != n.dealer {
		return fmt.Errorf("%w: %s makes the group key", ErrNotSelected, n.dealer)
	}
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
	v := n.cfg.Init()
	if len(v) == 0 || !v.Finite() {
		return n.refuse(m.Epoch, 0, nil, "the initial model is empty or not finite")
	}
	opt, err := n.cfg.Optimizer.MarshalBinary()
	if err != nil {
		return n.refuse(m.Epoch, 0, err, "optimizer state")
	}
	model, err := n.cfg.Box.Seal(key, encodeModel(v, opt), modelAD(n.cfg.Session, 0))
	if err != nil {
		return n.refuse(m.Epoch, 0, err, "sealing the initial model")
	}
	sealed := make(map[fl.NodeID][]byte, len(n.members))
	for _, to := range n.members {
		ct, err := n.cfg.Sealer.Seal(to, envelope(purposeGroupKey, n.cfg.Session, m.Epoch, n.cfg.Self, to, gk))
		if err != nil {
			return n.refuse(m.Epoch, 0, err, "sealing the group key to %s", to)
		}
		sealed[to] = ct
	}
	n.target, n.modelKey = t, key
	n.st.GroupKey, n.st.Target = gk, t.Public()
	n.out.changed()
	n.emit(Event{Kind: EventKeyed, Epoch: m.Epoch, Nodes: n.members, Digest: DigestOf(n.st.Target), Detail: "made the group key"})
	n.send(Message{Kind: KindGroupKey, Epoch: m.Epoch, Payloads: sealed, Target: n.st.Target, Model: model})
	return nil
}

// openGroupKey opens the group key dealer sealed to this node and checks it
// against its public part. It changes nothing.
func (n *Node) openGroupKey(dealer fl.NodeID, sealed, public []byte) (*groupKey, error) {
	if dealer != n.dealer {
		return nil, fmt.Errorf("%w: group key dealt by %s, not %s", ErrForged, dealer, n.dealer)
	}
	pt, err := n.cfg.Sealer.Open(dealer, sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: opening the group key: %v", ErrForged, err)
	}
	gk, err := openEnvelope(pt, purposeGroupKey, n.cfg.Session, n.st.Epoch, dealer, n.cfg.Self)
	if err != nil {
		return nil, fmt.Errorf("group key: %w", err)
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
	return &groupKey{encoded: gk, public: bytes.Clone(public), target: t, key: key}, nil
}

func (n *Node) setGroupKey(k *groupKey) {
	n.target, n.modelKey = k.target, k.key
	n.st.GroupKey, n.st.Target = k.encoded, k.public
	n.out.changed()
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
		if !bytes.Equal(n.st.GroupKey, k.encoded) {
			return fmt.Errorf("%w: this node already holds another group key", ErrDuplicate)
		}
	} else {
		n.setGroupKey(k)
	}
	n.send(Message{Kind: KindKeyAck, Epoch: m.Epoch})
	return nil
}
