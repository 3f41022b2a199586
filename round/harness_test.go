package round

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/strategy"
)

// testScheme is the scheme the engine's tests run on.
var testScheme protect.Scheme = plain.Scheme{}

const (
	coordID fl.NodeID = "c"
	aggID   fl.NodeID = "agg" // mode tee's aggregator, when fedOptions.aggregator is set
)

// recLedger is a MemLedger that remembers what it recorded.
type recLedger struct {
	mem     protect.MemLedger
	entries []string
}

func (l *recLedger) Record(r fl.Round, d [32]byte) error {
	if err := l.mem.Record(r, d); err != nil {
		return err
	}
	l.entries = append(l.entries, fmt.Sprintf("r%d:%x", r, d[:4]))
	return nil
}

// flight is a message in flight.
type flight struct {
	from, to fl.NodeID
	m        Message
}

// simNode is one member in the simulated federation.
type simNode struct {
	id      fl.NodeID
	cfg     NodeConfig
	n       *Node // nil while crashed
	state   []byte
	keys    NodeKeys // the newest NodeReady.Keys
	ledger  *recLedger
	delta   fl.Vector
	weight  float64
	hold    bool                // keep tasks instead of running them
	fail    map[fl.Round]string // training fails in these rounds, for this reason
	held    []Task
	cut     bool // partitioned: messages to and from it are lost
	delay   bool // its outgoing messages are stashed until undelayed
	stash   []flight
	evals   map[fl.Round]fl.Vector
	trains  map[fl.Round]fl.Vector // the model each training task started from
	attests int                    // re-attestations, numbered in its evidence
}

// fed is an in-memory federation: a coordinator, its members and a router
// that delivers one message at a time, in order.
type fed struct {
	tb       testing.TB
	cfg      Config
	ccfg     CoordinatorConfig
	c        *Coordinator // nil while crashed
	cstate   []byte
	cmodel   *SealedModel // the newest CoordinatorReady.Model
	cgk      *GroupKey    // the newest CoordinatorReady.GroupKey, through its encoding
	nodes    []*simNode
	byID     map[fl.NodeID]*simNode
	inflight []flight
	sent     []flight // every delivered message, for replays
	// precomputed counts the TaskPrecompute tasks run; precomputedBy
	// names the members that ran one, per round.
	precomputed   int
	precomputedBy map[fl.Round][]fl.NodeID
	w             *strings.Builder
	show          string // "all", "audit" or "none"
	caudit        []Event
	errs          []error
	agg           *Aggregator // mode tee's aggregator; nil: none (or crashed)
	aaudit        []Event
	aggCut        bool // messages to and from the aggregator are lost
}

type fedOptions struct {
	nodes, t, min, rounds int
	fraction              float64
	maxRound              fl.Round
	deadlines             Deadlines
	strategy              string
	init                  fl.Vector
	seed                  uint64
	badEvidence           []fl.NodeID    // members whose evidence fails everyone's VerifyPeer
	scheme                protect.Scheme // testScheme if nil
	// nodeScheme, if set, is the members' scheme (scheme is then the
	// coordinator's); aggregator, if set, makes an Aggregator named aggID
	// with that scheme, and the coordinator sends it the reveals.
	nodeScheme protect.Scheme
	aggregator AggregatorScheme
}

func newFed(tb testing.TB, o fedOptions) *fed {
	tb.Helper()
	if o.scheme == nil {
		o.scheme = testScheme
	}
	var members []fl.NodeID
	for i := 1; i <= o.nodes; i++ {
		members = append(members, fl.NodeID(fmt.Sprintf("n%d", i)))
	}
	cfg := Config{
		Session: []byte("test-session"), Members: members, Threshold: o.t, MinCohort: o.min,
		Rounds: o.rounds, MaxRound: o.maxRound, Fraction: o.fraction, Mode: o.scheme.Name(),
		TrainConfig: []byte("epochs=1"), Deadlines: o.deadlines,
	}
	f := &fed{tb: tb, cfg: cfg, byID: map[fl.NodeID]*simNode{}, w: &strings.Builder{}, show: "all"}
	f.ccfg = CoordinatorConfig{Config: cfg, Scheme: o.scheme, Verifier: fakeVerifier{}, Rand: rand.New(rand.NewPCG(o.seed, 1))}
	if o.aggregator != nil {
		f.ccfg.Aggregator = aggID
		a, err := NewAggregator(AggregatorConfig{Session: cfg.Session, Threshold: cfg.Threshold, Coordinator: coordID, Scheme: o.aggregator})
		if err != nil {
			tb.Fatal(err)
		}
		f.agg = a
		a.Hello([]byte("evidence:" + aggID))
	}
	if o.nodeScheme == nil {
		o.nodeScheme = o.scheme
	}
	c, err := NewCoordinator(f.ccfg)
	if err != nil {
		tb.Fatal(err)
	}
	f.c = c
	if o.strategy == "" {
		o.strategy = "fedavg"
	}
	if o.init == nil {
		o.init = fl.Vector{0, 0}
	}
	for i, id := range members {
		k := float64(i + 1)
		opt, err := strategy.New(o.strategy)
		if err != nil {
			tb.Fatal(err)
		}
		init := o.init.Clone()
		sn := &simNode{id: id, ledger: &recLedger{}, weight: 1, delta: fl.Vector{k, -k}, evals: map[fl.Round]fl.Vector{},
			trains: map[fl.Round]fl.Vector{}}
		sn.cfg = NodeConfig{
			Config: cfg, Self: id, Coordinator: coordID, Scheme: o.nodeScheme,
			Sealer: fakeSealer{id}, Box: fakeBox{}, Signer: fakeSigner{id}, Verifier: fakeVerifier{},
			Ledger: sn.ledger, Optimizer: opt, Init: func() fl.Vector { return init.Clone() },
			Rand: rand.NewChaCha8([32]byte{byte(i), 7}), Evidence: []byte("evidence:" + id), Aggregator: f.ccfg.Aggregator,
			VerifyPeer: func(peer fl.NodeID, ev []byte) error {
				// Re-attested evidence is "evidence:ID#k".
				e, want := string(ev), "evidence:"+string(peer)
				if slices.Contains(o.badEvidence, peer) || e != want && !strings.HasPrefix(e, want+"#") {
					return fmt.Errorf("evidence of %s does not meet the policy", peer)
				}
				return nil
			},
		}
		if sn.n, err = NewNode(sn.cfg); err != nil {
			tb.Fatal(err)
		}
		f.nodes = append(f.nodes, sn)
		f.byID[id] = sn
	}
	return f
}

func (f *fed) printf(format string, args ...any) { fmt.Fprintf(f.w, format+"\n", args...) }

// drain handles every machine's Ready: persists state (through its
// encoding), records audit events, queues messages and runs tasks.
func (f *fed) drain() bool {
	did := false
	if f.c != nil && f.c.HasReady() {
		did = true
		rd := f.c.Ready()
		if rd.State != nil {
			b, err := rd.State.MarshalBinary()
			if err != nil {
				f.tb.Fatal(err)
			}
			f.cstate = b
		}
		if rd.Model != nil {
			m := *rd.Model
			f.cmodel = &m
		}
		if rd.GroupKey != nil {
			b, err := rd.GroupKey.MarshalBinary()
			if err != nil {
				f.tb.Fatal(err)
			}
			f.cgk = new(GroupKey)
			if err := f.cgk.UnmarshalBinary(b); err != nil {
				f.tb.Fatal(err)
			}
		}
		for _, e := range rd.Audit {
			f.caudit = append(f.caudit, e)
			if f.show != "none" {
				f.printf("c: %s", e)
			}
		}
		for _, m := range rd.Messages {
			f.inflight = append(f.inflight, flight{coordID, m.To, m})
		}
		f.c.Advance()
	}
	if f.agg != nil && f.agg.HasReady() {
		did = true
		rd := f.agg.Ready()
		for _, e := range rd.Audit {
			f.aaudit = append(f.aaudit, e)
			if f.show == "all" {
				f.printf("%s: %s", aggID, e)
			}
		}
		for _, m := range rd.Messages {
			f.inflight = append(f.inflight, flight{aggID, coordID, m})
		}
		f.agg.Advance()
	}
	for _, sn := range f.nodes {
		if sn.n == nil || !sn.n.HasReady() {
			continue
		}
		did = true
		rd := sn.n.Ready()
		if rd.State != nil {
			b, err := rd.State.MarshalBinary()
			if err != nil {
				f.tb.Fatal(err)
			}
			sn.state = b
		}
		if rd.Keys != nil {
			sn.keys = rd.Keys.clone()
		}
		for _, e := range rd.Audit {
			if f.show == "all" {
				f.printf("%s: %s", sn.id, e)
			}
		}
		for _, m := range rd.Messages {
			f.inflight = append(f.inflight, flight{sn.id, coordID, m})
		}
		sn.n.Advance()
		for _, t := range rd.Tasks {
			if sn.hold {
				sn.held = append(sn.held, t)
				if f.show == "all" {
					f.printf("%s: holds task %s round=%d", sn.id, t.Kind, t.Round)
				}
				continue
			}
			f.runTask(sn, t)
		}
	}
	return did
}

func (f *fed) runTask(sn *simNode, t Task) {
	if f.show == "all" {
		f.printf("%s: task %s round=%d model=%v", sn.id, t.Kind, t.Round, t.Model)
	}
	var m Message
	switch t.Kind {
	case TaskPrecompute:
		f.precomputed++
		if f.precomputedBy == nil {
			f.precomputedBy = make(map[fl.Round][]fl.NodeID)
		}
		f.precomputedBy[t.Round] = append(f.precomputedBy[t.Round], sn.id)
		if err := t.Precompute(); err != nil {
			f.errs = append(f.errs, err)
		}
		return
	case TaskTrain:
		sn.trains[t.Round] = t.Model.Clone()
		d := sn.delta.Clone()
		d.Scale(sn.weight)
		m = Message{Kind: KindTrained, Update: fl.Update{Node: sn.id, Round: t.Round, Delta: d, Weight: sn.weight}}
		if why, ok := sn.fail[t.Round]; ok {
			m = Message{Kind: KindTrained, Update: fl.Update{Round: t.Round}, Reason: why}
		}
	case TaskEvaluate:
		sn.evals[t.Round] = t.Model
		m = Message{Kind: KindEvaluated, Round: t.Round, Metrics: fl.Metrics{Accuracy: 0.5, Loss: 1, Examples: 10}}
	}
	if err := sn.n.Step(sn.id, m); err != nil {
		f.errs = append(f.errs, err)
	}
}

// deliverOne delivers the first message in flight.
func (f *fed) deliverOne() bool {
	if len(f.inflight) == 0 {
		return false
	}
	e := f.inflight[0]
	f.inflight = f.inflight[1:]
	lost := ""
	switch {
	case e.to == coordID && f.c == nil:
		lost = "coordinator down"
	case e.to == aggID || e.from == aggID:
		if f.agg == nil || f.aggCut {
			lost = "aggregator down"
		}
	case e.to != coordID && (f.byID[e.to] == nil || f.byID[e.to].n == nil):
		lost = "node down"
	case f.byID[e.from] != nil && f.byID[e.from].cut, f.byID[e.to] != nil && f.byID[e.to].cut:
		lost = "partitioned"
	}
	if f.show == "all" {
		if lost != "" {
			f.printf("%s>%s %s (lost: %s)", e.from, e.to, describe(e.m), lost)
		} else {
			f.printf("%s>%s %s", e.from, e.to, describe(e.m))
		}
	}
	if lost != "" {
		return true
	}
	if sn := f.byID[e.from]; sn != nil && sn.delay {
		sn.stash = append(sn.stash, e)
		if f.show == "all" {
			f.printf("  (delayed)")
		}
		return true
	}
	f.sent = append(f.sent, e)
	var err error
	if e.to == coordID {
		err = f.c.Step(e.from, e.m)
	} else if e.to == aggID {
		err = f.agg.Step(e.from, e.m)
	} else {
		err = f.byID[e.to].n.Step(e.from, e.m)
	}
	if err != nil {
		// The machine reports it as an EventRejected audit event.
		f.errs = append(f.errs, err)
	}
	return true
}

// run processes until nothing moves, or until stop returns true.
func (f *fed) run(stop func() bool) {
	for i := 0; ; i++ {
		if i > 100000 {
			f.tb.Fatal("federation does not settle")
		}
		if f.drain() {
			continue
		}
		if stop != nil && stop() {
			return
		}
		if !f.deliverOne() {
			return
		}
	}
}

// tick ticks the coordinator and every node, then runs.
func (f *fed) tick(n int, nodesToo bool) {
	for range n {
		if f.c != nil {
			f.c.Tick()
		}
		if nodesToo {
			for _, sn := range f.nodes {
				if sn.n != nil {
					sn.n.Tick()
				}
			}
		}
		f.run(nil)
	}
}

func (f *fed) crashCoordinator() {
	f.c = nil
	f.dropInflight(coordID)
}

func (f *fed) restartCoordinator() {
	var st CoordinatorState
	if err := st.UnmarshalBinary(f.cstate); err != nil {
		f.tb.Fatal(err)
	}
	c, err := RestartCoordinator(f.ccfg, st, f.cmodel, f.cgk)
	if err != nil {
		f.tb.Fatal(err)
	}
	f.c = c
}

func (f *fed) crashNode(id fl.NodeID) {
	sn := f.byID[id]
	sn.n, sn.held, sn.hold = nil, nil, false
	f.dropInflight(id)
}

func (f *fed) restartNode(id fl.NodeID) {
	sn := f.byID[id]
	if f.c != nil {
		// The restarted node dials a new stream; the transport reports the
		// end of the old one before anything arrives on the new one.
		f.c.Unreachable(id)
	}
	var err error
	if sn.state == nil {
		sn.n, err = NewNode(sn.cfg)
	} else {
		var st NodeState
		if err := st.UnmarshalBinary(sn.state); err != nil {
			f.tb.Fatal(err)
		}
		sn.n, err = RestartNode(sn.cfg, st, sn.keys)
	}
	if err != nil {
		f.tb.Fatal(err)
	}
}

func (f *fed) dropInflight(id fl.NodeID) {
	f.inflight = slices.DeleteFunc(f.inflight, func(e flight) bool { return e.to == id })
}

// globalModel opens the coordinator's newest sealed model with a member's key.
func (f *fed) globalModel() (fl.Vector, fl.Round) {
	var st CoordinatorState
	if err := st.UnmarshalBinary(f.cstate); err != nil {
		f.tb.Fatal(err)
	}
	for _, sn := range f.nodes {
		if sn.n == nil || sn.n.modelKey == nil {
			continue
		}
		v, _, _, err := sn.n.openModel(f.cmodel.Sealed, st.ModelRound)
		if err != nil {
			f.tb.Fatal(err)
		}
		return v, st.ModelRound
	}
	f.tb.Fatal("no node holds the model key")
	return nil, 0
}

// describe prints the fields of m that matter for its kind.
func describe(m Message) string {
	var b strings.Builder
	b.WriteString(m.Kind.String())
	if m.Kind.setup() || m.Kind == KindHello || m.Kind == KindWelcome || m.Kind == KindPeer {
		fmt.Fprintf(&b, " epoch=%d", m.Epoch)
	} else {
		fmt.Fprintf(&b, " round=%d", m.Round)
	}
	keys := func(p map[fl.NodeID][]byte) []fl.NodeID {
		ks := make([]fl.NodeID, 0, len(p))
		for k := range p {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	switch m.Kind {
	case KindAnnouncements, KindSetup, KindDeal, KindGroupKey:
		fmt.Fprintf(&b, " payloads=%v", keys(m.Payloads))
	case KindWelcome, KindSetupStart, KindPeer:
		fmt.Fprintf(&b, " evidence=%v", keys(m.Evidences))
		if m.Sealed != nil {
			fmt.Fprintf(&b, " key-from=%s", m.Dealer)
		}
	case KindKeyDelivery:
		fmt.Fprintf(&b, " dealer=%s", m.Dealer)
	case KindTrain:
		fmt.Fprintf(&b, " base=%d cohort=%v leader=%s", m.Base, m.Cohort, m.Leader)
	case KindUpload, KindShare:
		fmt.Fprintf(&b, " digest=%s", DigestOf(m.Payload))
	case KindRevealRequest:
		fmt.Fprintf(&b, " revealers=%v included=%v aggregate=%s", m.Revealers, nodesOf(m.Included), DigestOf(m.Aggregate))
	case KindDecrypt:
		fmt.Fprintf(&b, " base=%d result=%s", m.Base, DigestOf(m.Payload))
	case KindCommit:
		fmt.Fprintf(&b, " base=%d included=%v model=%s", m.Record.Base, m.Record.Included, m.Record.Model)
	case KindModel:
		fmt.Fprintf(&b, " leader=%s model=%s", m.Leader, m.Record.Model)
	case KindMetrics:
		fmt.Fprintf(&b, " acc=%g", m.Metrics.Accuracy)
	case KindRefuse:
		fmt.Fprintf(&b, " (%s)", m.Reason)
	}
	return b.String()
}
