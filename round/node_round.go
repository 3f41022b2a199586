package round

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// checkRoundKeys checks that the node can take part in rounds of epoch e.
func (n *Node) checkRoundKeys(e uint64) error {
	if err := n.checkKeyed(e); err != nil {
		return err
	}
	if n.target == nil {
		return fmt.Errorf("%w: the node holds no group key", ErrWrongPhase)
	}
	return nil
}

// openModel opens a sealed model produced by round r (0: the initial model).
// It also returns the digest of the model payload (see NodeState.KnownModel).
func (n *Node) openModel(sealed []byte, r fl.Round) (fl.Vector, []byte, Digest, error) {
	pt, err := n.cfg.Box.Open(n.modelKey, sealed, modelAD(n.cfg.Session, r))
	if err != nil {
		return nil, nil, Digest{}, fmt.Errorf("%w: opening the model of round %d: %v", ErrMalformed, r, err)
	}
	v, opt, err := decodeModel(pt)
	return v, opt, DigestOf(pt), err
}

// checkKnown refuses (see refuse, with ErrForged) a model of round base,
// asked for in round r of epoch, whose payload digest d is not the one this
// node knows for round base (NodeState.KnownModel): the coordinator
// substituted another model sealed under a key it was given. A model of a
// round this node knows nothing of is accepted.
func (n *Node) checkKnown(epoch uint64, r, base fl.Round, d Digest, what string) error {
	if n.st.KnownModel == (Digest{}) || base != n.st.Known || d == n.st.KnownModel {
		return nil
	}
	return n.refuse(epoch, r, ErrForged, "%s of round %d is not the model this node knows for that round (payload %s, want %s)",
		what, base, d, n.st.KnownModel)
}

// learnModel records d as the payload digest of the authentic model of
// round r, if r is later than the round this node knows a model of. dealt
// says that d comes from the dealer of the node's key epoch (not from a
// verified round record): for round 0, the initial model, which no record
// covers, the dealer of the newest epoch decides (a failed key setup's
// dealer may have made another initial model); for a committed round, the
// model whose record this node verified stays.
func (n *Node) learnModel(r fl.Round, d Digest, dealt bool) {
	if known := n.st.KnownModel != (Digest{}); known && (r < n.st.Known || r == n.st.Known && !(dealt && r == 0)) {
		return
	}
	n.st.Known, n.st.KnownModel = r, d
	n.out.changed()
}

// keep hands out sealed, the model of round r, as the newest sealed model
// the node keeps (NodeReady.Model), if it is newer than the kept one or,
// with reseal, that round sealed again under another key.
func (n *Node) keep(r fl.Round, sealed []byte, reseal bool) {
	if len(sealed) == 0 {
		return
	}
	d := DigestOf(sealed)
	has := n.st.KeptDigest != (Digest{})
	if has && (r < n.st.Kept || r == n.st.Kept && (!reseal || d == n.st.KeptDigest)) {
		return
	}
	n.kept = &SealedModel{Round: r, Sealed: bytes.Clone(sealed), Replaces: has && r == n.st.Kept}
	n.st.Kept, n.st.KeptDigest = r, d
	n.out.modelChanged()
}

func (n *Node) train(m Message) error {
	if err := n.checkRoundKeys(m.Epoch); err != nil {
		return err
	}
	r := m.Round
	switch {
	case r < n.st.Round:
		return fmt.Errorf("%w: round %d, this node is at round %d", ErrReplay, r, n.st.Round)
	case n.st.Protected >= r || (r == n.st.Round && n.step != stepIdle):
		return fmt.Errorf("%w: this node already trained in round %d", ErrDuplicate, r)
	case !slices.Contains(m.Cohort, n.cfg.Self):
		return fmt.Errorf("%w: not in the cohort %v", ErrNotSelected, m.Cohort)
	case m.Base >= r:
		return fmt.Errorf("%w: round %d trains on the model of round %d", ErrMalformed, r, m.Base)
	case m.Base < n.st.ModelRound:
		return fmt.Errorf("%w: base model of round %d, this node has seen round %d", ErrReplay, m.Base, n.st.ModelRound)
	}
	if err := n.checkEpochTrusted(m.Epoch, r); err != nil {
		return err
	}
	if n.cfg.MayTrain != nil {
		if err := n.cfg.MayTrain(r); err != nil {
			return n.refuse(m.Epoch, r, nil, "%v", err)
		}
	}
	v, _, d, err := n.openModel(m.Model, m.Base)
	if err != nil {
		return err
	}
	if err := n.checkKnown(m.Epoch, r, m.Base, d, "the base model"); err != nil {
		return err
	}
	n.dropOldModelKeys()
	// After a re-key, the model of the base round comes re-sealed under the
	// new group key (which just opened it): it replaces the kept copy,
	// which only the previous group key opens.
	n.keep(m.Base, m.Model, true)
	n.st.Round, n.st.ModelRound = r, m.Base
	n.step, n.upload, n.leader, n.cohort = stepTraining, nil, m.Leader, slices.Clone(m.Cohort)
	n.out.changed()
	n.out.tasks = append(n.out.tasks, Task{Kind: TaskTrain, Round: r, Model: v, Config: m.Config})
	return nil
}

func (n *Node) trained(m Message) error {
	u := m.Update
	switch {
	case n.step != stepTraining || u.Round != n.st.Round:
		return fmt.Errorf("%w: no training task for round %d", ErrStale, u.Round)
	case u.Node != "" && u.Node != n.cfg.Self:
		return fmt.Errorf("%w: update of %s", ErrForged, u.Node)
	case len(u.Delta) == 0 && m.Reason != "":
		// The application could not train (its trainer failed): decline
		// the round, so that the coordinator goes on without this node
		// and keeps it live for the next round.
		n.step = stepDeclined
		return n.refuse(n.st.Epoch, u.Round, nil, "%s", m.Reason)
	case len(u.Delta) == 0 || !u.Delta.Finite() || math.IsNaN(u.Weight) || math.IsInf(u.Weight, 0) || u.Weight < 0:
		return fmt.Errorf("%w: update with %d values, weight %v", ErrMalformed, len(u.Delta), u.Weight)
	}
	p, err := n.party.Protect(u.Round, u.Delta, u.Weight)
	if err != nil {
		return fmt.Errorf("protect: %w", err)
	}
	d := DigestOf(p)
	sig, err := n.cfg.Signer.Sign(pledgeSigned(n.cfg.Session, n.st.Epoch, u.Round, d))
	if err != nil {
		return fmt.Errorf("round: signing the pledge: %w", err)
	}
	n.st.Protected, n.st.Uploaded, n.st.Pledged = u.Round, d, nil
	n.dim = len(u.Delta)
	n.step, n.uploaded, n.upload = stepPledged, d, p
	n.out.changed()
	n.send(Message{Kind: KindPledge, Round: u.Round, Included: []Contribution{{Node: n.cfg.Self, Digest: d, Signature: sig}}})
	n.emit(Event{Kind: EventPledged, Round: u.Round, Node: n.cfg.Self, Digest: d})
	if pc, ok := n.party.(protect.Precomputer); ok && len(n.keys.Target) > 0 && n.likelyRevealer(n.cohort) {
		// This node is likely a revealer of the round: its party makes the
		// share's randomness while the others still train and pledge.
		target, dim := bytes.Clone(n.keys.Target), n.dim
		n.out.tasks = append(n.out.tasks, Task{Kind: TaskPrecompute, Round: u.Round, Precompute: func() error { return pc.Precompute(target, dim) }})
	}
	return nil
}

// pledges takes the round's pledge set and uploads under it. The set must
// hold this node's pledge as it made it, and only distinct trusted
// participants' signed pledges, at least the minimum cohort: every upload
// of the round will have to be the one its sender pledged in this set,
// which is fixed before this node's upload leaves it.
func (n *Node) pledges(m Message) error {
	if err := n.checkCurrent(m); err != nil {
		return err
	}
	r := m.Round
	switch {
	case n.step != stepPledged:
		return fmt.Errorf("%w: no pledge of this node waits in round %d (step %s)", ErrWrongPhase, r, n.step)
	}
	if n.upload == nil {
		return n.refuse(m.Epoch, r, nil, "this node restarted after its pledge and no longer holds its protected update; it sits round %d out", r)
	}
	if err := n.checkPledges(r, m.Included); err != nil {
		return n.refuse(m.Epoch, r, nil, "%v", err)
	}
	if err := n.checkEpochTrusted(m.Epoch, r); err != nil {
		return err
	}
	pd := pledgesDigest(n.cfg.Session, n.st.Epoch, r, m.Included)
	sig, err := n.cfg.Signer.Sign(uploadSigned(n.cfg.Session, n.st.Epoch, r, n.uploaded, pd))
	if err != nil {
		return fmt.Errorf("round: signing the upload: %w", err)
	}
	p := n.upload
	n.st.Pledged = slices.Clone(m.Included)
	n.step, n.upload = stepUploaded, nil
	n.out.changed()
	n.emit(Event{Kind: EventUploaded, Round: r, Node: n.cfg.Self, Digest: n.uploaded})
	n.send(Message{Kind: KindUpload, Round: r, Payload: p, Signature: sig})
	return nil
}

// likelyRevealer tells whether the coordinator, picking revealers as
// Coordinator.pickRevealers does (the leader, then the included members in
// rotation order after it, t of them), would pick this node if the whole
// cohort uploads: only those precompute their reveal share, so that the
// others leave the cores to the members still training. It is a hint,
// nothing rests on it: the leader and the cohort are the Train message's
// claims, and a revealer that did not precompute makes its share when
// asked (Reveal falls back on fresh randomness). With no leader known,
// every member precomputes.
func (n *Node) likelyRevealer(cohort []fl.NodeID) bool {
	if n.cfg.Threshold <= 0 || !slices.Contains(n.members, n.leader) {
		return true
	}
	picked := rotationPick(n.members, n.leader, n.cfg.Threshold, func(m fl.NodeID) bool { return slices.Contains(cohort, m) })
	return slices.Contains(picked, n.cfg.Self)
}

// checkPledges checks a pledge set: sorted distinct trusted participants,
// at least the minimum cohort, each pledge signed, this node's as it made
// it.
func (n *Node) checkPledges(r fl.Round, set []Contribution) error {
	if len(set) < n.cfg.MinCohort {
		return fmt.Errorf("pledge set of %d, minimum cohort %d", len(set), n.cfg.MinCohort)
	}
	mine := false
	for i, p := range set {
		switch {
		case !n.isMember[p.Node] || !n.isParticipant(p.Node):
			return fmt.Errorf("pledge of %q, not a participant of key epoch %d", p.Node, n.st.Epoch)
		case i > 0 && set[i-1].Node >= p.Node:
			return fmt.Errorf("pledge set not sorted and distinct at %s", p.Node)
		case n.distrusted[p.Node]:
			return fmt.Errorf("pledge of %s, which failed attestation", p.Node)
		case p.Node == n.cfg.Self:
			if p.Digest != n.uploaded {
				return fmt.Errorf("the pledge set holds digest %s for this node, which pledged %s", p.Digest, n.uploaded)
			}
			mine = true
		}
		if err := n.cfg.Verifier.Verify(p.Node, pledgeSigned(n.cfg.Session, n.st.Epoch, r, p.Digest), p.Signature); err != nil {
			return fmt.Errorf("bad pledge signature of %s: %v", p.Node, err)
		}
	}
	if !mine {
		return errors.New("the pledge set does not hold this node's pledge")
	}
	return nil
}

// checkPledgeSigs checks that a pledge set is sorted distinct members, each
// pledge signed by its member.
func (n *Node) checkPledgeSigs(r fl.Round, set []Contribution) error {
	for i, p := range set {
		if !n.isMember[p.Node] || i > 0 && set[i-1].Node >= p.Node {
			return fmt.Errorf("pledge set not sorted distinct members at %q", p.Node)
		}
		if err := n.cfg.Verifier.Verify(p.Node, pledgeSigned(n.cfg.Session, n.st.Epoch, r, p.Digest), p.Signature); err != nil {
			return fmt.Errorf("bad pledge signature of %s: %v", p.Node, err)
		}
	}
	return nil
}

// checkIncluded checks an included set: sorted distinct members, trusted,
// at least the minimum cohort, each with a valid signature over its digest.
//
// Every included upload must be the one its sender pledged in the round's
// pledge set, and signed under that set: the set this node uploaded under
// or, for a leader that did not upload in the round, the set the Decrypt
// carries (each pledge checked by its signature).
func (n *Node) checkIncluded(r fl.Round, inc []Contribution, given []Contribution) error {
	pledged := n.st.Pledged
	if n.st.Protected != r || len(pledged) == 0 {
		if given == nil {
			return fmt.Errorf("this node uploaded under no pledge set in round %d, and none was given", r)
		}
		if err := n.checkPledgeSigs(r, given); err != nil {
			return err
		}
		pledged = given
	}
	pd := pledgesDigest(n.cfg.Session, n.st.Epoch, r, pledged)
	if !n.cfg.insecureNoPledgeCheck && len(inc) != len(pledged) {
		// With every included upload pledged (below), the included set is
		// the pledge set: one set per round, whoever reveals.
		return fmt.Errorf("included set of %d, the pledge set has %d: the included set must be the whole pledge set", len(inc), len(pledged))
	}
	if len(inc) < n.cfg.MinCohort {
		return fmt.Errorf("included set of %d, minimum cohort %d", len(inc), n.cfg.MinCohort)
	}
	for i, c := range inc {
		switch {
		case !n.isMember[c.Node]:
			return fmt.Errorf("included non-member %q", c.Node)
		case i > 0 && inc[i-1].Node >= c.Node:
			return fmt.Errorf("included set not sorted and distinct at %s", c.Node)
		case !n.isParticipant(c.Node):
			return fmt.Errorf("included %s, not a participant of key epoch %d", c.Node, n.st.Epoch)
		case n.distrusted[c.Node]:
			return fmt.Errorf("included %s failed attestation", c.Node)
		}
		i := slices.IndexFunc(pledged, func(p Contribution) bool { return p.Node == c.Node })
		if !n.cfg.insecureNoPledgeCheck && (i < 0 || pledged[i].Digest != c.Digest) {
			return fmt.Errorf("included %s with an upload it did not pledge in the pledge set this node uploaded under", c.Node)
		}
		if err := n.cfg.Verifier.Verify(c.Node, uploadSigned(n.cfg.Session, n.st.Epoch, r, c.Digest, pd), c.Signature); err != nil {
			return fmt.Errorf("bad upload signature of %s (or uploaded under another pledge set): %v", c.Node, err)
		}
	}
	return nil
}

// checkSum checks that the aggregate a reveal request asks to switch is the
// scheme's sum of the included uploads, and nothing else: each included
// member's upload is in the request with the digest that member signed
// (checkIncluded verified the signatures), nothing more, and the scheme's
// Helper.Aggregate of them (a deterministic function of its inputs) is the
// aggregate, byte for byte. So a coordinator cannot have this node reveal a
// single site's upload, or any ciphertext of its choosing, as an aggregate.
func (n *Node) checkSum(r fl.Round, m Message) error {
	if n.cfg.insecureNoSumCheck {
		return nil
	}
	if len(m.Payloads) != len(m.Included) {
		return fmt.Errorf("%d uploads for %d included members", len(m.Payloads), len(m.Included))
	}
	for _, c := range m.Included {
		up, ok := m.Payloads[c.Node]
		switch {
		case !ok:
			return fmt.Errorf("no upload of included member %s", c.Node)
		case DigestOf(up) != c.Digest:
			return fmt.Errorf("the upload of %s is not the one it signed (digest %s, signed %s)", c.Node, DigestOf(up), c.Digest)
		}
	}
	if n.helper == nil || n.helperEpoch != n.st.Epoch {
		h, err := n.cfg.Scheme.NewHelper(n.protectSession(n.st.Epoch, n.participants()))
		if err != nil {
			return fmt.Errorf("the scheme's helper: %w", err)
		}
		n.helper, n.helperEpoch = h, n.st.Epoch
	}
	sum, err := n.helper.Aggregate(r, m.Payloads)
	if err != nil {
		return fmt.Errorf("summing the included uploads: %w", err)
	}
	if !bytes.Equal(sum, m.Aggregate) {
		return fmt.Errorf("aggregate %s, the included uploads sum to %s", DigestOf(m.Aggregate), DigestOf(sum))
	}
	return nil
}

// checkCurrent checks that m is of the current key epoch and of the round
// this node is in.
func (n *Node) checkCurrent(m Message) error {
	if err := n.checkRoundKeys(m.Epoch); err != nil {
		return err
	}
	switch {
	case m.Round < n.st.Round:
		return fmt.Errorf("%w: round %d, this node is at round %d", ErrReplay, m.Round, n.st.Round)
	case m.Round > n.st.Round:
		return fmt.Errorf("%w: round %d, this node is at round %d", ErrFuture, m.Round, n.st.Round)
	}
	return nil
}

func (n *Node) revealRequest(m Message) error {
	if err := n.checkCurrent(m); err != nil {
		return err
	}
	r := m.Round
	switch {
	case n.step == stepRevealed || r <= n.st.Revealed:
		return fmt.Errorf("%w: already revealed in round %d", ErrDuplicate, r)
	case n.step != stepUploaded:
		return fmt.Errorf("%w: no upload in round %d (step %s)", ErrWrongPhase, r, n.step)
	case len(m.Aggregate) == 0:
		return fmt.Errorf("%w: empty aggregate", ErrMalformed)
	}
	if string(m.Target) != string(n.keys.Target) {
		return n.refuse(m.Epoch, r, nil, "the reveal is to a key other than the group key")
	}
	if len(m.Revealers) != n.cfg.Threshold || !slices.Contains(m.Revealers, n.cfg.Self) {
		return n.refuse(m.Epoch, r, nil, "revealers %v: want %d including this node", m.Revealers, n.cfg.Threshold)
	}
	seen := make(map[fl.NodeID]bool)
	for _, id := range m.Revealers {
		if !n.isParticipant(id) || seen[id] {
			return n.refuse(m.Epoch, r, nil, "revealers %v are not distinct participants", m.Revealers)
		}
		seen[id] = true
	}
	if err := n.checkIncluded(r, m.Included, nil); err != nil {
		return n.refuse(m.Epoch, r, nil, "%v", err)
	}
	if err := n.checkEpochTrusted(m.Epoch, r); err != nil {
		return err
	}
	if i := slices.IndexFunc(m.Included, func(c Contribution) bool { return c.Node == n.cfg.Self }); i < 0 || m.Included[i].Digest != n.uploaded {
		return n.refuse(m.Epoch, r, nil, "the included set does not hold this node's upload")
	}
	req := protect.RevealRequest{Round: r, Aggregate: m.Aggregate, Revealers: m.Revealers, Target: m.Target, Uploads: m.Payloads}
	if n.cfg.Scheme.Capacity().SetBound {
		// The party checks that the aggregate is of the included set: the
		// set is its key, and no other aggregate under it reveals more
		// than the sum (protect.Capacity.SetBound).
		req.Included = nodesOf(m.Included)
		req.InsecureTrustAggregateSet = n.cfg.insecureNoSumCheck
	} else if err := n.checkSum(r, m); err != nil {
		return n.refuse(m.Epoch, r, err, "the aggregate is not the sum of the included uploads")
	}
	share, err := n.party.Reveal(req, n.cfg.Ledger)
	if err != nil {
		return n.refuse(m.Epoch, r, err, "reveal")
	}
	// The reveal-once fact travels in the Ready that carries the share,
	// and is durable before the share leaves.
	n.step = stepRevealed
	n.st.Revealed, n.st.RevealedAggregate = r, DigestOf(m.Aggregate)
	n.out.changed()
	n.emit(Event{Kind: EventRevealed, Round: r, Node: n.cfg.Self, Nodes: nodesOf(m.Included), Digest: DigestOf(m.Aggregate)})
	n.send(Message{Kind: KindShare, Round: r, Payload: share})
	return nil
}

func (n *Node) decrypt(m Message) error {
	if err := n.checkRoundKeys(m.Epoch); err != nil {
		return err
	}
	r := m.Round
	if r == n.st.Led && n.lastCommit != nil && r != 0 {
		// The coordinator lost our commit (a restart): send the same one.
		n.send(*n.lastCommit)
		return nil
	}
	switch {
	case r < n.st.Round || r < n.st.Led:
		return fmt.Errorf("%w: round %d, this node is at round %d", ErrReplay, r, n.st.Round)
	case m.Base >= r:
		return fmt.Errorf("%w: round %d applies to the model of round %d", ErrMalformed, r, m.Base)
	case m.Base < n.st.ModelRound:
		return fmt.Errorf("%w: base model of round %d, this node has seen round %d", ErrReplay, m.Base, n.st.ModelRound)
	case len(m.Payload) == 0:
		return fmt.Errorf("%w: empty result", ErrMalformed)
	}
	global, optState, d, err := n.openModel(m.Model, m.Base)
	if err != nil {
		return err
	}
	if err := n.checkKnown(m.Epoch, r, m.Base, d, "the base model"); err != nil {
		return err
	}
	if err := n.checkIncluded(r, m.Included, m.Pledges); err != nil {
		return n.refuse(m.Epoch, r, nil, "%v", err)
	}
	if err := n.checkEpochTrusted(m.Epoch, r); err != nil {
		return err
	}
	sum, err := n.target.Decrypt(m.Payload)
	if err != nil {
		return n.refuse(m.Epoch, r, err, "decrypt")
	}
	if len(sum.Vector) != len(global) || !sum.Vector.Finite() || !(sum.Weight > 0) || math.IsInf(sum.Weight, 0) {
		return n.refuse(m.Epoch, r, nil, "sum of %d values with weight %v for a model of %d", len(sum.Vector), sum.Weight, len(global))
	}
	mean := sum.Vector.Clone()
	mean.Scale(1 / sum.Weight)
	if err := n.cfg.Optimizer.UnmarshalBinary(optState); err != nil {
		return n.refuse(m.Epoch, r, err, "optimizer state")
	}
	next, err := n.cfg.Optimizer.Apply(global, mean)
	if err != nil {
		return n.refuse(m.Epoch, r, err, "optimizer")
	}
	state, err := n.cfg.Optimizer.MarshalBinary()
	if err != nil {
		return n.refuse(m.Epoch, r, err, "optimizer state")
	}
	sealed, err := n.cfg.Box.Seal(n.modelKey, encodeModel(next, state), modelAD(n.cfg.Session, r))
	if err != nil {
		return n.refuse(m.Epoch, r, err, "sealing the model")
	}
	rec := Record{Epoch: n.st.Epoch, Round: r, Base: m.Base, Included: nodesOf(m.Included),
		Aggregate: m.Record.Aggregate, Model: DigestOf(sealed)}
	sig, err := n.cfg.Signer.Sign(rec.Signed(n.cfg.Session))
	if err != nil {
		return n.refuse(m.Epoch, r, err, "signing the round record")
	}
	st := CommitStatement(n.cfg.Session, r, n.cfg.Self, rec.Digest(n.cfg.Session))
	cosig, err := n.cfg.Signer.Sign(st[:])
	if err != nil {
		return n.refuse(m.Epoch, r, err, "cosigning the committed record")
	}
	if r > n.st.Round {
		n.st.Round, n.step = r, stepIdle
	}
	n.st.Led, n.st.ModelRound = r, m.Base
	n.out.changed()
	n.emit(Event{Kind: EventCommitted, Round: r, Node: n.cfg.Self, Nodes: rec.Included, Digest: rec.Digest(n.cfg.Session),
		Detail: fmt.Sprintf("led: weight %g, model %s", sum.Weight, rec.Model)})
	commit := Message{Kind: KindCommit, Round: r, Model: sealed, Record: rec, Signature: sig, Cosign: cosig}
	n.lastCommit = &commit
	n.send(commit)
	return nil
}

func (n *Node) model(m Message) error {
	if err := n.checkRoundKeys(m.Epoch); err != nil {
		return err
	}
	r, rec := m.Round, m.Record
	switch {
	case r < n.st.ModelRound:
		return fmt.Errorf("%w: model of round %d, this node has seen round %d", ErrReplay, r, n.st.ModelRound)
	case r == n.st.ModelRound || r == n.evalRound:
		return fmt.Errorf("%w: model of round %d already received", ErrDuplicate, r)
	case rec.Epoch != n.st.Epoch || rec.Round != r || rec.Base >= r || rec.Model != DigestOf(m.Model) || !n.isParticipant(m.Leader):
		return fmt.Errorf("%w: round record %+v does not match the model of round %d", ErrMalformed, rec, r)
	}
	if err := n.cfg.Verifier.Verify(m.Leader, rec.Signed(n.cfg.Session), m.Signature); err != nil {
		return fmt.Errorf("%w: round record signature of %s: %v", ErrForged, m.Leader, err)
	}
	v, _, d, err := n.openModel(m.Model, r)
	if err != nil {
		return err
	}
	n.dropOldModelKeys()
	n.learnModel(r, d, false)
	n.keep(r, m.Model, false)
	n.out.commits = append(n.out.commits, Commit{Leader: m.Leader, Record: rec.clone(), Signature: bytes.Clone(m.Signature)})
	if r > n.st.Round {
		n.st.Round, n.step = r, stepIdle
	}
	n.st.ModelRound = r
	n.evalRound = r
	n.out.changed()
	n.out.tasks = append(n.out.tasks, Task{Kind: TaskEvaluate, Round: r, Model: v})
	return nil
}

func (n *Node) evaluated(m Message) error {
	mt := m.Metrics
	switch {
	case n.evalRound == 0 || m.Round != n.evalRound:
		return fmt.Errorf("%w: no evaluation task for round %d", ErrStale, m.Round)
	case math.IsNaN(mt.Accuracy) || mt.Accuracy < 0 || mt.Accuracy > 1 || math.IsNaN(mt.Loss) || math.IsInf(mt.Loss, 0) || mt.Examples < 0:
		return fmt.Errorf("%w: metrics %+v", ErrMalformed, mt)
	}
	n.evalRound = 0
	n.send(Message{Kind: KindMetrics, Round: m.Round, Metrics: mt})
	return nil
}
