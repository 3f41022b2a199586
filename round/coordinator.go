package round

import (
	"bytes"
	"fmt"
	"maps"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Coordinator is the coordinator's state machine. It learns nothing secret:
// it relays sealed payloads, schedules rounds, sums protected updates with
// the scheme's Helper and stores sealed models.
//
// A Coordinator is not safe for concurrent use: one goroutine calls Step,
// Tick, Unreachable, Ready and Advance.
type Coordinator struct {
	cfg      CoordinatorConfig
	dl       Deadlines
	members  []fl.NodeID // sorted
	isMember map[fl.NodeID]bool
	helper   protect.Helper // for st.Epoch
	st       CoordinatorState
	out      outbox

	// Large pieces of the persistent state, handed out when they change.
	model []byte   // the newest sealed model, of st.ModelRound
	gk    GroupKey // the group key of st.Epoch's setup (empty until the dealer sends it)

	// refused is the last evidence of each member refused by Refuse, relayed
	// to members that join while it is excluded.
	refused map[fl.NodeID][]byte

	// Volatile: rebuilt from Hellos after a restart.
	elapsed  int                  // ticks since the current step started
	live     map[fl.NodeID]bool   // said Hello and has not missed a deadline since
	keyed    map[fl.NodeID]bool   // holds a party of st.Epoch
	evidence map[fl.NodeID][]byte // from the last Hello
	// In PhaseJoin: joining is set from the first Hello of the attempt
	// (elapsed counts from then), joinWhy says why the setup runs.
	joining bool
	joinWhy string
	// The current round's pledges (collect's first step), and once closed,
	// the pledge set every upload must match and its digest.
	pledges      map[fl.NodeID]Contribution
	pledgeSet    []Contribution
	pledgeDigest Digest
	// amendRekey says why terms put in force need new keys (until the next
	// key setup starts).
	amendRekey string
	readmitted map[fl.NodeID]bool // since the last setup started, for the re-key's reason

	// Key setup.
	announcements map[fl.NodeID][]byte
	publics       map[fl.NodeID][]byte
	privates      map[fl.NodeID]map[fl.NodeID][]byte // dealer → recipient → sealed
	accepted      map[fl.NodeID]bool
	acked         map[fl.NodeID]bool

	// The current round.
	uploads   map[fl.NodeID][]byte
	contribs  map[fl.NodeID]Contribution
	declined  map[fl.NodeID]bool
	aggregate []byte
	shares    map[fl.NodeID][]byte
	// awaitAggregator: the shares are in and the reveal request went to
	// the aggregator (Config.Aggregator), whose answer is awaited.
	awaitAggregator bool
	// aggEvidence is the aggregator's last Hello evidence, relayed to the
	// members; aggLive says its stream is up; aggRekey, if not empty, is
	// why the next round boundary re-keys (its evidence changed);
	// aggExpired, if not empty, is why no round or key setup starts until
	// its next Hello (AggregatorExpired).
	aggEvidence []byte
	aggLive     bool
	aggRekey    string
	aggExpired  string
	expected    map[fl.NodeID]bool // evaluation: who was sent the model
	reported    map[fl.NodeID]bool
}

// Status is a read-only summary of a coordinator, for dashboards and tests.
type Status struct {
	Phase         Phase
	Epoch         uint64
	Round         fl.Round
	Commits       int
	LastCommitted fl.Round
	Live          []fl.NodeID
	Cohort        []fl.NodeID
	Leader        fl.NodeID
	Uploaded      []fl.NodeID
	Included      []fl.NodeID
	Revealers     []fl.NodeID
	// Participants are the members of the current epoch's key setup;
	// Keyed the live members that hold a party of it; Excluded the members
	// excluded by Exclude, and Exclusions the reason each was excluded for.
	Participants []fl.NodeID
	Keyed        []fl.NodeID
	Excluded     []fl.NodeID
	Exclusions   map[fl.NodeID]string
}

// NewCoordinator returns a coordinator for a new session. It waits for the
// members' Hellos, then runs the key setup (see [Deadlines].Join).
func NewCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	c, err := newCoordinator(cfg)
	if err != nil {
		return nil, err
	}
	c.st = CoordinatorState{Session: bytes.Clone(cfg.Session), Phase: PhaseJoin}
	if len(cfg.Manifest) > 0 {
		c.st.Terms = new(c.cfg.Terms()) // persisted: a restart runs under the terms in force
	}
	c.out.changed()
	return c, nil
}

// RestartCoordinator returns a coordinator that resumes from what it
// persisted of its earlier Readys: the newest State, Model (nil: none) and
// GroupKey (nil: none). Every member is down until it says Hello again;
// excluded members stay excluded. A round caught collecting or revealing is
// aborted (its reveal is never retried); a round caught waiting for its
// commit resumes with the same Open result; a key setup caught before its
// group key step restarts with a new epoch (a re-key too: the model it
// carries over is still sealed under the previous group key).
func RestartCoordinator(cfg CoordinatorConfig, st CoordinatorState, model *SealedModel, key *GroupKey) (*Coordinator, error) {
	if st.Terms != nil {
		cfg.Config = cfg.Config.WithTerms(*st.Terms)
	}
	c, err := newCoordinator(cfg)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(st.Session, cfg.Session) {
		return nil, fmt.Errorf("round: restoring state of session %x into session %x: %w", st.Session, cfg.Session, ErrWrongSession)
	}
	if st.Phase >= phaseEnd {
		return nil, fmt.Errorf("round: restoring state in phase %d", st.Phase)
	}
	c.st = st.clone()
	if model == nil && st.KeyEpoch > 0 {
		return nil, fmt.Errorf("round: restoring a state of key epoch %d without its current model (a state written before models were stored apart?)", st.KeyEpoch)
	}
	if model != nil {
		if model.Round != st.ModelRound {
			return nil, fmt.Errorf("round: restoring the model of round %d into a state whose model is of round %d", model.Round, st.ModelRound)
		}
		c.model = bytes.Clone(model.Sealed)
	}
	if key != nil && key.Epoch == st.Epoch {
		c.gk = key.clone()
	}
	if c.st.Epoch > 0 && len(c.st.Participants) == 0 {
		// A state written before key setups over subsets: every member.
		c.st.Participants = slices.Clone(c.members)
		if c.st.Phase >= PhaseWait && c.st.KeyEpoch == 0 {
			c.st.KeyEpoch, c.st.Keyholders = c.st.Epoch, slices.Clone(c.members)
		}
	}
	for id := range c.st.Excluded {
		if !c.isMember[id] {
			return nil, fmt.Errorf("round: restoring state that excludes non-member %q", id)
		}
	}
	if c.st.Phase <= PhaseGroupKey && c.st.KeyEpoch > 0 {
		c.joinWhy = "re-key, resumed after a coordinator restart"
	}
	if c.st.Epoch > 0 {
		if c.helper, err = c.newHelper(c.st.Epoch); err != nil {
			return nil, err
		}
	}
	c.emit(Event{Kind: EventRestarted, Epoch: c.st.Epoch, Round: c.st.Round, Detail: "phase " + c.st.Phase.String()})
	switch c.st.Phase {
	case PhaseAnnounce, PhaseDeal, PhaseAccept:
		c.restartSetup("coordinator restarted")
	case PhaseCollect, PhaseReveal:
		c.abort("coordinator restarted")
	case PhaseEvaluate:
		c.finishEval()
	}
	return c, nil
}

func newCoordinator(cfg CoordinatorConfig) (*Coordinator, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.Members = slices.Clone(cfg.Members)
	cfg.Session = bytes.Clone(cfg.Session)
	c := &Coordinator{
		cfg:        cfg,
		dl:         cfg.Deadlines.withDefaults(),
		members:    cfg.sorted(),
		isMember:   make(map[fl.NodeID]bool),
		live:       make(map[fl.NodeID]bool),
		keyed:      make(map[fl.NodeID]bool),
		evidence:   make(map[fl.NodeID][]byte),
		readmitted: make(map[fl.NodeID]bool),
		refused:    make(map[fl.NodeID][]byte),
	}
	for _, m := range c.members {
		c.isMember[m] = true
	}
	c.resetSetup()
	c.resetRound()
	return c, nil
}

func (c *Coordinator) newHelper(epoch uint64) (protect.Helper, error) {
	h, err := c.cfg.Scheme.NewHelper(c.protectSession(epoch))
	if err != nil {
		return nil, fmt.Errorf("round: helper for epoch %d: %w", epoch, err)
	}
	if h.Needed() != c.cfg.Threshold {
		return nil, fmt.Errorf("round: helper needs %d shares, threshold is %d", h.Needed(), c.cfg.Threshold)
	}
	return h, nil
}

func (c *Coordinator) protectSession(epoch uint64) protect.Group {
	return protect.Group{ID: protectSessionID(c.cfg.Session, epoch), Members: c.st.Participants, Threshold: c.cfg.Threshold}
}

// Ready returns the pending output. It is safe to call Ready again before
// Advance: the result then includes the earlier output.
func (c *Coordinator) Ready() CoordinatorReady {
	c.out.hand()
	rd := CoordinatorReady{Audit: slices.Clone(c.out.audit), Commits: slices.Clone(c.out.commits), Messages: slices.Clone(c.out.messages)}
	if c.out.dirty != 0 {
		st := c.st.clone()
		rd.State = &st
	}
	if c.out.terms != 0 {
		rd.Terms = c.st.Terms.clone()
	}
	if c.out.model != 0 {
		rd.Model = &SealedModel{Round: c.st.ModelRound, Sealed: bytes.Clone(c.model), Replaces: c.st.Resealed}
	}
	if c.out.groupKey != 0 {
		gk := c.gk.clone()
		rd.GroupKey = &gk
	}
	return rd
}

// HasReady reports whether Ready has anything to hand out.
func (c *Coordinator) HasReady() bool { return c.out.pending() }

// Advance tells the coordinator that the last Ready has been handled:
// state persisted, audit events appended, messages sent.
func (c *Coordinator) Advance() { c.out.advance() }

// Status returns a summary of the coordinator's state.
func (c *Coordinator) Status() Status {
	s := Status{
		Phase: c.st.Phase, Epoch: c.st.Epoch, Round: c.st.Round, Commits: c.st.Commits,
		LastCommitted: c.st.LastCommitted, Cohort: slices.Clone(c.st.Cohort),
		Included: nodesOf(c.st.Included), Revealers: slices.Clone(c.st.Revealers),
		Live: c.sortedSet(c.live), Uploaded: c.sortedSet(boolSet(c.uploads)),
		Participants: slices.Clone(c.st.Participants), Keyed: c.liveKeyed(), Excluded: c.sortedSet(boolSet(c.st.Excluded)),
	}
	if len(c.st.Excluded) > 0 {
		s.Exclusions = maps.Clone(c.st.Excluded)
	}
	if len(s.Included) == 0 {
		s.Included = nil
	}
	if n := len(c.st.Leaders); n > 0 {
		s.Leader = c.st.Leaders[n-1]
	}
	return s
}

func (c *Coordinator) roundIfRunning() fl.Round {
	if c.st.Phase >= PhaseCollect && c.st.Phase <= PhaseEvaluate {
		return c.st.Round
	}
	return 0
}

func (c *Coordinator) leader() fl.NodeID {
	if n := len(c.st.Leaders); n > 0 {
		return c.st.Leaders[n-1]
	}
	return ""
}

func (c *Coordinator) sortedSet(s map[fl.NodeID]bool) []fl.NodeID {
	var ns []fl.NodeID
	for _, m := range c.members {
		if s[m] {
			ns = append(ns, m)
		}
	}
	return ns
}

func boolSet[V any](m map[fl.NodeID]V) map[fl.NodeID]bool {
	s := make(map[fl.NodeID]bool, len(m))
	for k := range m {
		s[k] = true
	}
	return s
}

func (s CoordinatorState) clone() CoordinatorState {
	s.Session = bytes.Clone(s.Session)
	s.Result = bytes.Clone(s.Result)
	s.Keyholders = slices.Clone(s.Keyholders)
	s.Participants = slices.Clone(s.Participants)
	if s.Excluded != nil {
		s.Excluded = maps.Clone(s.Excluded)
	}
	s.Cohort = slices.Clone(s.Cohort)
	s.Leaders = slices.Clone(s.Leaders)
	s.Included = slices.Clone(s.Included)
	s.Revealers = slices.Clone(s.Revealers)
	s.Pledges = slices.Clone(s.Pledges)
	s.Terms, s.Pending = s.Terms.clone(), s.Pending.clone()
	return s
}
