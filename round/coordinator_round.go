package round

import (
	"bytes"
	"fmt"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

func (c *Coordinator) resetRound() {
	c.uploads = make(map[fl.NodeID][]byte)
	c.contribs = make(map[fl.NodeID]Contribution)
	c.declined = make(map[fl.NodeID]bool)
	c.aggregate = nil
	c.shares = make(map[fl.NodeID][]byte)
	c.awaitAggregator = false
	c.expected = make(map[fl.NodeID]bool)
	c.reported = make(map[fl.NodeID]bool)
	c.pledges = make(map[fl.NodeID]Contribution)
	c.pledgeDigest = Digest{}
}

func (c *Coordinator) inCohort(id fl.NodeID) bool { return slices.Contains(c.st.Cohort, id) }

// startRound starts the next round if enough members are live, or waits.
func (c *Coordinator) startRound() {
	c.applyPending()
	if c.st.MaxRoundReached(c.cfg.MaxRound) {
		c.finish("last round number reached")
		return
	}
	if why := c.needRekey(); why != "" {
		c.rekey(why)
		return
	}
	live := c.liveKeyed()
	// Mode tee: no round on the aggregator's expired evidence; its next
	// Hello ends the wait.
	if need := max(c.cfg.MinCohort, c.cfg.Threshold); len(live) < need || c.aggExpired != "" {
		if c.st.Phase != PhaseWait {
			c.st.Phase = PhaseWait
			c.elapsed = 0
			c.changed()
		}
		return
	}
	c.resetRound()
	c.st.Round++
	c.st.Cohort = c.sample(live)
	c.st.Leaders = nil
	c.st.Included, c.st.Aggregate, c.st.Revealers, c.st.Result, c.st.Pledges = nil, Digest{}, nil, nil, nil
	leader, next := c.rotate(nil)
	c.st.Leaders = []fl.NodeID{leader}
	c.st.Rotation = next
	c.st.Phase = PhaseCollect
	c.elapsed = 0
	c.changed()
	c.emit(Event{Kind: EventRoundStarted, Round: c.st.Round, Node: leader, Nodes: c.st.Cohort,
		Detail: fmt.Sprintf("leader %s, base model of round %d", leader, c.st.ModelRound)})
	for _, m := range c.st.Cohort {
		c.sendTrain(m)
	}
}

// MaxRoundReached reports whether no further round may start under the limit max (0: none).
func (s CoordinatorState) MaxRoundReached(max fl.Round) bool {
	return max != 0 && s.Round >= max
}

// maybeStartFromWait starts a round from PhaseWait when every participant
// that is not excluded is back, or once the gather window has passed, and
// re-keys at once if it must.
func (c *Coordinator) maybeStartFromWait() {
	all := true
	for _, m := range c.st.Participants {
		if !c.excluded(m) && !(c.live[m] && c.keyed[m]) {
			all = false
		}
	}
	if all || c.elapsed >= c.dl.Gather || c.needRekey() != "" {
		c.startRound()
	}
}

func (c *Coordinator) sendTrain(to fl.NodeID) {
	c.send(to, Message{Kind: KindTrain, Round: c.st.Round, Base: c.st.ModelRound, Model: c.model,
		Config: c.cfg.TrainConfig, Cohort: c.st.Cohort, Leader: c.leader()})
}

// sample picks the cohort among the live, keyed members (sorted).
func (c *Coordinator) sample(live []fl.NodeID) []fl.NodeID {
	f := c.cfg.Fraction
	if f == 0 || f == 1 {
		return slices.Clone(live)
	}
	k := int(math.Ceil(f * float64(len(live))))
	k = min(max(k, c.cfg.MinCohort, c.cfg.Threshold), len(live))
	perm := c.cfg.Rand.Perm(len(live))
	cohort := make([]fl.NodeID, k)
	for i := range k {
		cohort[i] = live[perm[i]]
	}
	slices.Sort(cohort)
	return cohort
}

// rotate returns the next live, keyed member in rotation order (from
// st.Rotation, in sorted member order) that is not in skip, and the rotation
// index after it. It returns "" if there is none.
func (c *Coordinator) rotate(skip []fl.NodeID) (fl.NodeID, int) {
	n := len(c.members)
	for i := range n {
		j := (c.st.Rotation + i) % n
		m := c.members[j]
		if c.live[m] && c.keyed[m] && !slices.Contains(skip, m) {
			return m, (j + 1) % n
		}
	}
	return "", c.st.Rotation
}

// pledge takes a cohort member's pledge: the digest of its protected
// update, which it signed before seeing anyone's upload.
func (c *Coordinator) pledge(from fl.NodeID, m Message) error {
	if err := c.wantPhase(PhaseCollect); err != nil {
		return err
	}
	switch {
	case c.st.Pledges != nil:
		return fmt.Errorf("%w: the pledges of round %d are closed", ErrWrongPhase, c.st.Round)
	case !c.inCohort(from):
		return fmt.Errorf("%w: %s is not in the cohort %v", ErrNotSelected, from, c.st.Cohort)
	case c.declined[from]:
		return fmt.Errorf("%w: %s already answered", ErrDuplicate, from)
	case len(m.Included) != 1 || m.Included[0].Node != from:
		return fmt.Errorf("%w: a pledge is one contribution of its sender", ErrMalformed)
	}
	if _, ok := c.pledges[from]; ok {
		return fmt.Errorf("%w: %s already pledged", ErrDuplicate, from)
	}
	p := m.Included[0]
	if err := c.cfg.Verifier.Verify(from, pledgeSigned(c.cfg.Session, c.st.Epoch, c.st.Round, p.Digest), p.Signature); err != nil {
		return fmt.Errorf("%w: pledge signature: %v", ErrForged, err)
	}
	c.pledges[from] = Contribution{Node: from, Digest: p.Digest, Signature: bytes.Clone(p.Signature)}
	c.live[from] = true
	c.maybeCloseCollect()
	return nil
}

// closePledges fixes the round's pledge set and sends it to every member
// in it: each uploads only once it has the set, so no member's upload
// (its pledge already in the set) can depend on another's.
func (c *Coordinator) closePledges(deadline bool) {
	if deadline {
		for _, m := range c.st.Cohort {
			if _, ok := c.pledges[m]; !ok && !c.declined[m] {
				c.markDown(m, "no pledge by the deadline")
			}
		}
	}
	if len(c.pledges) < c.cfg.MinCohort {
		c.abort(fmt.Sprintf("quorum not reached: %d pledges, minimum cohort %d", len(c.pledges), c.cfg.MinCohort))
		return
	}
	c.st.Pledges = nil
	for _, m := range c.members {
		if p, ok := c.pledges[m]; ok {
			c.st.Pledges = append(c.st.Pledges, p)
		}
	}
	c.pledgeDigest = pledgesDigest(c.cfg.Session, c.st.Epoch, c.st.Round, c.st.Pledges)
	c.elapsed = 0
	c.changed()
	c.emit(Event{Kind: EventPledged, Round: c.st.Round, Nodes: nodesOf(c.st.Pledges), Digest: c.pledgeDigest})
	for _, p := range c.st.Pledges {
		c.sendPledges(p.Node)
	}
}

func (c *Coordinator) sendPledges(to fl.NodeID) {
	c.send(to, Message{Kind: KindPledges, Round: c.st.Round, Included: c.st.Pledges})
}

func (c *Coordinator) upload(from fl.NodeID, m Message) error {
	if err := c.wantPhase(PhaseCollect); err != nil {
		return err
	}
	if c.st.Pledges == nil {
		return fmt.Errorf("%w: the pledges of round %d are not closed", ErrWrongPhase, c.st.Round)
	}
	i := slices.IndexFunc(c.st.Pledges, func(p Contribution) bool { return p.Node == from })
	if i < 0 {
		return fmt.Errorf("%w: %s is not in the pledge set %v", ErrNotSelected, from, nodesOf(c.st.Pledges))
	}
	if c.uploads[from] != nil || c.declined[from] {
		return fmt.Errorf("%w: %s already answered", ErrDuplicate, from)
	}
	if len(m.Payload) == 0 {
		return fmt.Errorf("%w: upload: %v", ErrMalformed, errNoPayload)
	}
	d := DigestOf(m.Payload)
	if d != c.st.Pledges[i].Digest {
		return fmt.Errorf("%w: the upload of %s (digest %s) is not the one it pledged (%s)", ErrForged, from, d, c.st.Pledges[i].Digest)
	}
	if err := c.cfg.Verifier.Verify(from, uploadSigned(c.cfg.Session, c.st.Epoch, c.st.Round, d, c.pledgeDigest), m.Signature); err != nil {
		return fmt.Errorf("%w: upload signature: %v", ErrForged, err)
	}
	// Check the payload alone, so that one bad upload cannot spoil the sum.
	if err := protect.Check(c.helper, c.st.Round, from, m.Payload); err != nil {
		return fmt.Errorf("%w: upload: %w", ErrMalformed, err)
	}
	c.uploads[from] = bytes.Clone(m.Payload)
	c.contribs[from] = Contribution{Node: from, Digest: d, Signature: bytes.Clone(m.Signature)}
	c.live[from] = true
	c.emit(Event{Kind: EventUploaded, Round: c.st.Round, Node: from, Digest: d})
	c.maybeCloseCollect()
	return nil
}

// maybeCloseCollect closes the pledges once every cohort member has
// pledged, refused or is down, then the uploads once every pledged member
// has uploaded, refused or is down.
func (c *Coordinator) maybeCloseCollect() {
	if c.st.Pledges == nil {
		for _, m := range c.st.Cohort {
			if _, ok := c.pledges[m]; !ok && !c.declined[m] && c.canAnswer(m) {
				return
			}
		}
		c.closePledges(false)
		return
	}
	for _, p := range c.st.Pledges {
		if c.uploads[p.Node] == nil && !c.declined[p.Node] && c.canAnswer(p.Node) {
			return
		}
	}
	c.closeCollect(false)
}

// closeCollect ends the current step of the collection: the pledges, or the
// uploads (then the round's aggregate is fixed).
func (c *Coordinator) closeCollect(deadline bool) {
	if c.st.Pledges == nil {
		c.closePledges(deadline)
		return
	}
	if deadline {
		for _, p := range c.st.Pledges {
			if c.uploads[p.Node] == nil && !c.declined[p.Node] {
				c.markDown(p.Node, "no upload by the deadline")
			}
		}
	}
	// The included set is the pledge set, whole: revealers take no other
	// (so that two reveals of one round cannot be two different sums).
	var missing []fl.NodeID
	for _, p := range c.st.Pledges {
		if c.uploads[p.Node] == nil {
			missing = append(missing, p.Node)
		}
	}
	if len(missing) > 0 {
		c.abort(fmt.Sprintf("pledged members %v did not upload: the included set must be the whole pledge set", missing))
		return
	}
	agg, err := c.helper.Aggregate(c.st.Round, c.uploads)
	if err != nil {
		c.abort(fmt.Sprintf("Helper.Aggregate: %v", err))
		return
	}
	var included []Contribution
	for _, m := range c.members {
		if ct, ok := c.contribs[m]; ok {
			included = append(included, ct)
		}
	}
	revealers := c.pickRevealers(nodesOf(included))
	c.st.Included = included
	c.st.Aggregate = DigestOf(agg)
	c.aggregate = agg
	c.emit(Event{Kind: EventAggregated, Round: c.st.Round, Nodes: nodesOf(included), Digest: c.st.Aggregate})
	if len(revealers) < c.cfg.Threshold {
		c.abort(fmt.Sprintf("only %d live revealers among the included, threshold %d", len(revealers), c.cfg.Threshold))
		return
	}
	c.st.Revealers = revealers
	c.st.Phase = PhaseReveal
	c.elapsed = 0
	c.changed()
	c.emit(Event{Kind: EventRevealRequested, Round: c.st.Round, Nodes: revealers, Digest: c.st.Aggregate})
	for _, r := range revealers {
		c.sendRevealRequest(r)
	}
}

func (c *Coordinator) commit(from fl.NodeID, m Message) error {
	if err := c.wantPhase(PhaseCommit); err != nil {
		return err
	}
	if !slices.Contains(c.st.Leaders, from) {
		return fmt.Errorf("%w: %s is not a leader of round %d %v", ErrNotSelected, from, c.st.Round, c.st.Leaders)
	}
	want := Record{Epoch: c.st.Epoch, Round: c.st.Round, Base: c.st.ModelRound, Included: nodesOf(c.st.Included),
		Aggregate: c.st.Aggregate, Model: DigestOf(m.Model)}
	if len(m.Model) == 0 {
		return fmt.Errorf("%w: commit without a model", ErrMalformed)
	}
	if !m.Record.equal(want) {
		return fmt.Errorf("%w: round record %+v does not match %+v", ErrMalformed, m.Record, want)
	}
	if err := c.cfg.Verifier.Verify(from, want.Signed(c.cfg.Session), m.Signature); err != nil {
		return fmt.Errorf("%w: round record signature: %v", ErrForged, err)
	}
	// The leader cosigns the committed record the coordinator will write:
	// by its own key, for this round and this record (CommitStatement).
	if len(m.Cosign) == 0 {
		return fmt.Errorf("%w: commit of round %d by %s without the leader's cosignature", ErrMalformed, c.st.Round, from)
	}
	st := CommitStatement(c.cfg.Session, c.st.Round, from, want.Digest(c.cfg.Session))
	if err := c.cfg.Verifier.Verify(from, st[:], m.Cosign); err != nil {
		return fmt.Errorf("%w: cosignature of round %d's committed record is not %s's: %v", ErrForged, c.st.Round, from, err)
	}
	c.model = bytes.Clone(m.Model)
	c.st.ModelRound = c.st.Round
	c.st.Resealed = false
	c.out.modelChanged()
	c.out.commits = append(c.out.commits, Commit{Leader: from, Record: want.clone(), Signature: bytes.Clone(m.Signature),
		Cosign: bytes.Clone(m.Cosign), Model: bytes.Clone(m.Model)})
	c.st.LastCommitted = c.st.Round
	c.st.Commits++
	c.st.Phase = PhaseEvaluate
	c.live[from] = true
	c.elapsed = 0
	c.changed()
	c.emit(Event{Kind: EventCommitted, Round: c.st.Round, Node: from, Nodes: want.Included, Digest: want.Digest(c.cfg.Session),
		Detail: fmt.Sprintf("commit %d of %d, model %s", c.st.Commits, c.cfg.Rounds, want.Model)})
	c.expected = make(map[fl.NodeID]bool)
	c.reported = make(map[fl.NodeID]bool)
	for _, to := range c.liveKeyed() {
		c.expected[to] = true
		c.send(to, Message{Kind: KindModel, Round: c.st.Round, Model: c.model, Record: want,
			Signature: bytes.Clone(m.Signature), Leader: from})
	}
	c.maybeFinishEval()
	return nil
}

func (c *Coordinator) metrics(from fl.NodeID, m Message) error {
	if err := c.wantPhase(PhaseEvaluate); err != nil {
		return err
	}
	if !c.expected[from] {
		return fmt.Errorf("%w: %s was not sent the model", ErrNotSelected, from)
	}
	if c.reported[from] {
		return fmt.Errorf("%w: %s already reported", ErrDuplicate, from)
	}
	mt := m.Metrics
	if math.IsNaN(mt.Accuracy) || mt.Accuracy < 0 || mt.Accuracy > 1 || math.IsNaN(mt.Loss) || math.IsInf(mt.Loss, 0) || mt.Examples < 0 {
		return fmt.Errorf("%w: metrics %+v", ErrMalformed, mt)
	}
	c.reported[from] = true
	c.emit(Event{Kind: EventMetrics, Round: c.st.Round, Node: from, Metrics: &mt})
	c.maybeFinishEval()
	return nil
}

func (c *Coordinator) maybeFinishEval() {
	for _, m := range c.members {
		if c.expected[m] && !c.reported[m] && c.canAnswer(m) {
			return
		}
	}
	c.finishEval()
}

func (c *Coordinator) finishEval() {
	c.applyPending() // more rounds may be in force from this boundary
	if c.st.Commits >= c.cfg.Rounds {
		c.finish(fmt.Sprintf("%d rounds committed", c.st.Commits))
		return
	}
	c.startRound()
}

func (c *Coordinator) finish(why string) {
	c.st.Phase = PhaseDone
	c.changed()
	c.emit(Event{Kind: EventDone, Round: c.st.Round, Detail: why})
	for _, m := range c.sortedSet(c.live) {
		c.send(m, Message{Kind: KindDone, Round: c.st.Round})
	}
	if c.aggLive {
		c.send(c.cfg.Aggregator, Message{Kind: KindDone, Round: c.st.Round})
	}
}

// abort ends the current round without a commit and starts the next one.
// Its reveal, if any, is never retried.
func (c *Coordinator) abort(why string) {
	c.emit(Event{Kind: EventAborted, Round: c.st.Round, Detail: why})
	c.resetRound()
	c.st.Phase = PhaseWait
	c.elapsed = 0
	c.changed()
	c.startRound()
}
