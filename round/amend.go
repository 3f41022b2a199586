package round

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/cloisterfl/cloister/fl"
)

// Terms are the part of the configuration a manifest amendment may change:
// who the members are, the threshold and minimum cohort, how many rounds
// to commit and the last round the privacy budget lets start. A session
// runs under one Terms at a time; [Coordinator.Amend] replaces them at a
// round boundary, and every member adopts the new ones from the amended
// manifest the coordinator relays (KindAmend), which it checks itself
// ([NodeConfig.Amend]).
type Terms struct {
	// Serial is the manifest serial these terms come from; Manifest the
	// signed manifest (opaque to the engine, relayed to the members as is).
	Serial   uint64
	Manifest []byte
	// Summary says what changed (the amendment's audit record); empty for
	// a session's first terms.
	Summary   string
	Members   []fl.NodeID
	Threshold int
	MinCohort int
	Rounds    int
	MaxRound  fl.Round
}

// Terms returns the configuration's terms.
func (c Config) Terms() Terms {
	return Terms{Serial: c.Serial, Manifest: bytes.Clone(c.Manifest), Members: slices.Clone(c.Members),
		Threshold: c.Threshold, MinCohort: c.MinCohort, Rounds: c.Rounds, MaxRound: c.MaxRound}
}

// WithTerms returns c under terms t.
func (c Config) WithTerms(t Terms) Config {
	c.Serial, c.Manifest = t.Serial, bytes.Clone(t.Manifest)
	c.Members = slices.Clone(t.Members)
	c.Threshold, c.MinCohort, c.Rounds, c.MaxRound = t.Threshold, t.MinCohort, t.Rounds, t.MaxRound
	return c
}

func (t *Terms) clone() *Terms {
	if t == nil {
		return nil
	}
	u := *t
	u.Manifest = bytes.Clone(t.Manifest)
	u.Members = slices.Clone(t.Members)
	return &u
}

// rekeyFor says why moving from terms a to b needs new keys ("" if it does
// not): the members or the threshold changed.
func rekeyFor(a, b Config) string {
	switch {
	case !slices.Equal(a.sorted(), b.sorted()):
		return "the members changed"
	case a.Threshold != b.Threshold:
		return fmt.Sprintf("the threshold changed from %d to %d", a.Threshold, b.Threshold)
	}
	return ""
}

// Amend schedules new terms for the session: an amended manifest the
// application verified (signed by the federation CA, of this session, and
// amending only what may be amended). They take effect at the next round
// boundary (at once if the coordinator is waiting for members or for a key
// setup to start): the coordinator relays the manifest to every live
// member, drops removed members, and re-keys among the new members, the
// dealer carrying the current model over, when the members or the
// threshold changed. Members of the new terms may say Hello before then;
// they wait for the boundary. An amendment after the session is done, or
// whose serial is not above the running (and any scheduled) one, is
// refused; a later amendment replaces one not yet in force.
func (c *Coordinator) Amend(t Terms) error {
	if c.st.Phase == PhaseDone {
		return errors.New("round: the session is over: amendments no longer apply")
	}
	if t.Serial <= c.cfg.Serial {
		return fmt.Errorf("round: amendment serial %d is not above the running serial %d", t.Serial, c.cfg.Serial)
	}
	next := c.cfg.Config.WithTerms(t)
	if err := next.Validate(); err != nil {
		return fmt.Errorf("round: amendment serial %d: %w", t.Serial, err)
	}
	if len(t.Manifest) == 0 {
		return fmt.Errorf("round: amendment serial %d has no manifest to relay", t.Serial)
	}
	c.st.Pending = t.clone()
	c.changed()
	c.emit(Event{Kind: EventAmendmentPending, Round: c.st.Round, Digest: DigestOf(t.Manifest),
		Detail: fmt.Sprintf("manifest serial %d in force at the next round boundary: %s", t.Serial, t.Summary)})
	switch c.st.Phase {
	case PhaseJoin:
		c.applyPending()
		c.maybeStartSetup()
	case PhaseWait:
		c.startRound()
	}
	return nil
}

// applyPending puts the scheduled terms in force (at a round boundary).
func (c *Coordinator) applyPending() {
	t := c.st.Pending
	if t == nil {
		return
	}
	c.st.Pending = nil
	old := c.cfg
	c.cfg.Config = c.cfg.WithTerms(*t)
	c.st.Terms = t.clone()
	c.members = c.cfg.sorted()
	c.isMember = make(map[fl.NodeID]bool, len(c.members))
	for _, m := range c.members {
		c.isMember[m] = true
	}
	c.out.termsChanged()
	c.emit(Event{Kind: EventAmended, Round: c.st.Round, Nodes: c.members, Digest: DigestOf(t.Manifest),
		Detail: fmt.Sprintf("manifest serial %d in force: %s", t.Serial, t.Summary)})
	// Every live member learns the new terms, the removed ones too (they
	// leave); then the removed are forgotten.
	amend := Message{Kind: KindAmend, Serial: t.Serial, Manifest: t.Manifest}
	all := append(old.sorted(), c.members...)
	slices.Sort(all)
	for _, m := range slices.Compact(all) {
		if c.live[m] {
			c.send(m, amend)
		}
	}
	for _, m := range old.sorted() {
		if c.isMember[m] {
			continue
		}
		c.emit(Event{Kind: EventDown, Round: c.roundIfRunning(), Node: m, Detail: fmt.Sprintf("removed by manifest serial %d", t.Serial)})
		delete(c.live, m)
		delete(c.keyed, m)
		delete(c.evidence, m)
		delete(c.readmitted, m)
		delete(c.refused, m)
		delete(c.st.Excluded, m)
	}
	// Members that said Hello while the terms were scheduled are welcome now.
	for _, m := range c.members {
		if c.live[m] && !slices.Contains(old.Members, m) {
			c.welcome(m, true)
		}
	}
	if why := rekeyFor(old.Config, c.cfg.Config); why != "" && c.st.Epoch > 0 {
		c.amendRekey = fmt.Sprintf("manifest serial %d: %s", t.Serial, why)
	}
}

// pendingHello admits the Hello of a member of scheduled terms: it is live
// from now, and waits for the terms to take effect.
func (c *Coordinator) pendingHello(from fl.NodeID, m Message) error {
	if len(m.Evidence) > MaxEvidence {
		return fmt.Errorf("%w: %d bytes of evidence", ErrMalformed, len(m.Evidence))
	}
	c.live[from] = true
	c.evidence[from] = bytes.Clone(m.Evidence)
	c.emit(Event{Kind: EventAdmitted, Node: from, Epoch: m.Epoch, Digest: DigestOf(m.Evidence),
		Detail: fmt.Sprintf("member from manifest serial %d, waiting for the next round boundary", c.st.Pending.Serial)})
	return nil
}

func (c *Coordinator) pendingMember(id fl.NodeID) bool {
	return c.st.Pending != nil && slices.Contains(c.st.Pending.Members, id)
}

// amend handles KindAmend: the node checks the relayed manifest itself
// (Config.Amend) and adopts its terms, or leaves the federation if its own
// policy refuses them.
func (n *Node) amend(m Message) error {
	if m.Serial <= n.cfg.Serial {
		return nil // already in force (relayed again after a reconnect)
	}
	if n.cfg.Amend == nil {
		return fmt.Errorf("%w: this node takes no amendments", ErrRefused)
	}
	t, err := n.cfg.Amend(n.cfg.Manifest, m.Manifest)
	if errors.Is(err, ErrRefused) {
		// Valid, but below this node's own policy: leave rather than run
		// under it.
		n.emit(Event{Kind: EventRefused, Node: n.cfg.Self, Digest: DigestOf(m.Manifest),
			Detail: fmt.Sprintf("amendment serial %d: %v; leaving the federation", m.Serial, err)})
		n.send(Message{Kind: KindRefuse, Epoch: n.st.Epoch, Round: n.st.Round, Reason: fmt.Sprintf("amendment serial %d refused: %v", m.Serial, err)})
		return n.leave(fmt.Sprintf("refused manifest serial %d", m.Serial))
	}
	if err != nil {
		return fmt.Errorf("%w: amendment serial %d: %w", ErrForged, m.Serial, err)
	}
	if t.Serial != m.Serial {
		return fmt.Errorf("%w: amendment says serial %d, its manifest is serial %d", ErrForged, m.Serial, t.Serial)
	}
	next := n.cfg.Config.WithTerms(t)
	if err := next.Validate(); err != nil {
		return fmt.Errorf("%w: amendment serial %d: %w", ErrMalformed, t.Serial, err)
	}
	n.cfg.Config = next
	n.st.Terms = t.clone()
	n.members = n.cfg.sorted()
	n.isMember = make(map[fl.NodeID]bool, len(n.members))
	for _, id := range n.members {
		n.isMember[id] = true
	}
	n.out.termsChanged()
	n.emit(Event{Kind: EventAmended, Nodes: n.members, Digest: DigestOf(t.Manifest),
		Detail: fmt.Sprintf("manifest serial %d in force: %s", t.Serial, t.Summary)})
	if !n.isMember[n.cfg.Self] {
		return n.leave(fmt.Sprintf("removed from the federation by manifest serial %d", t.Serial))
	}
	return nil
}

// leave ends this node's part in the session.
func (n *Node) leave(why string) error {
	n.st.Done = true
	n.out.done = true
	n.out.changed()
	n.emit(Event{Kind: EventDone, Round: n.st.Round, Detail: why})
	return nil
}
