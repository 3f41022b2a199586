package round

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
)

func TestReadyAdvance(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 1})
	c := f.c
	rd := c.Ready()
	if rd.State == nil || rd.State.Phase != PhaseJoin || len(rd.Messages) != 0 {
		t.Fatalf("first Ready: %+v", rd)
	}
	c.Advance()
	if c.HasReady() || !c.Ready().Empty() {
		t.Fatal("Ready after Advance is not empty")
	}
	_ = c.Step("n1", Message{Kind: KindHello, Session: f.cfg.Session})
	first := c.Ready()
	if len(first.Audit) != 1 {
		t.Fatalf("audit %v", first.Audit)
	}
	// A step between Ready and Advance: its output survives the Advance.
	_ = c.Step("n2", Message{Kind: KindHello, Session: f.cfg.Session})
	again := c.Ready()
	if len(again.Audit) != 2 {
		t.Fatalf("Ready before Advance must repeat the earlier output: %v", again.Audit)
	}
	_ = c.Step("n3", Message{Kind: KindHello, Session: f.cfg.Session})
	c.Advance()
	rd = c.Ready()
	if rd.State == nil || rd.State.Phase != PhaseAnnounce || len(rd.Messages) != 3 {
		t.Fatalf("output of the step after Ready was lost: state %v, %d messages", rd.State, len(rd.Messages))
	}
	c.Advance()
	if c.HasReady() {
		t.Fatal("still ready")
	}
}

func TestRejectedStepChangesNothing(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 2})
	f.show = "none"
	f.run(func() bool { return f.c.st.Phase == PhaseCollect })
	before := f.snapshot(coordID)
	err := f.c.Step("n1", Message{Kind: KindPledge, Session: f.cfg.Session, Epoch: 1, Round: 1,
		Included: []Contribution{{Node: "n1", Digest: DigestOf([]byte("x")), Signature: []byte("forged")}}})
	var se *StepError
	if !errors.As(err, &se) || se.From != "n1" || se.Round != 1 || se.Kind != KindPledge || !errors.Is(err, ErrForged) {
		t.Fatalf("error %#v", err)
	}
	if f.snapshot(coordID) != before {
		t.Fatal("rejected message changed the coordinator")
	}
	rd := f.c.Ready()
	if n := len(rd.Audit); n == 0 || rd.Audit[n-1].Kind != EventRejected || rd.Audit[n-1].Node != "n1" {
		t.Fatalf("no rejection event: %v", rd.Audit)
	}
}

func TestStateEncoding(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 2})
	f.show = "none"
	f.run(func() bool { return f.c.st.Phase == PhaseCommit })
	cs := f.c.st.clone()
	b, err := cs.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back CoordinatorState
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	b2, _ := back.MarshalBinary()
	if !bytes.Equal(b, b2) || len(back.Result) == 0 || back.Phase != PhaseCommit {
		t.Fatalf("round trip: %+v", back)
	}
	ns := f.byID["n1"].n.st.clone()
	nb, _ := ns.MarshalBinary()
	var nback NodeState
	if err := nback.UnmarshalBinary(nb); err != nil || nback.Epoch != ns.Epoch ||
		nback.KnownModel != ns.KnownModel || nback.Known != ns.Known {
		t.Fatalf("node round trip: %v", err)
	}
	for _, bad := range [][]byte{nil, []byte("{"), []byte(`{"Version":2}`), []byte(`{"Version":1,"Phase":200}`)} {
		if err := back.UnmarshalBinary(bad); err == nil {
			t.Errorf("coordinator state %q accepted", bad)
		}
	}
	if err := nback.UnmarshalBinary([]byte(`{"Version":9}`)); err == nil {
		t.Error("node state of another version accepted")
	}
	// A state of another session is refused.
	cs.Session = []byte("other")
	if _, err := RestartCoordinator(f.ccfg, cs, nil, nil); !errors.Is(err, ErrWrongSession) {
		t.Errorf("restart with another session: %v", err)
	}
}

func TestConfigValidate(t *testing.T) {
	good := Config{Session: []byte("s"), Members: []fl.NodeID{"a", "b", "c"}, Threshold: 2, MinCohort: 2, Rounds: 1, Mode: "plain"}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mut := range map[string]func(*Config){
		"no session":     func(c *Config) { c.Session = nil },
		"long session":   func(c *Config) { c.Session = make([]byte, 65) },
		"duplicate":      func(c *Config) { c.Members = []fl.NodeID{"a", "a", "b"} },
		"threshold 0":    func(c *Config) { c.Threshold = 0 },
		"threshold > n":  func(c *Config) { c.Threshold = 4 },
		"min cohort 0":   func(c *Config) { c.MinCohort = 0 },
		"min cohort > n": func(c *Config) { c.MinCohort = 4 },
		"no rounds":      func(c *Config) { c.Rounds = 0 },
		"fraction":       func(c *Config) { c.Fraction = 1.5 },
		"no mode":        func(c *Config) { c.Mode = "" },
	} {
		c := good
		c.Members = slices.Clone(good.Members)
		mut(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	cc := CoordinatorConfig{Config: good, Scheme: plain.Scheme{}, Verifier: fakeVerifier{}, Rand: rand.New(rand.NewPCG(1, 1))}
	if _, err := NewCoordinator(cc); err != nil {
		t.Fatal(err)
	}
	cc.Mode = "mhe"
	if _, err := NewCoordinator(cc); err == nil {
		t.Error("scheme of another mode accepted")
	}
	nc := NodeConfig{Config: good, Self: "a", Coordinator: "c", Scheme: plain.Scheme{}}
	if _, err := NewNode(nc); err == nil {
		t.Error("node without crypto accepted")
	}
}

func TestCohortSampling(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 5, t: 2, min: 2, rounds: 4, fraction: 0.4, seed: 7})
	f.show = "none"
	f.run(nil)
	if len(f.errs) != 0 {
		t.Fatal(f.errs)
	}
	var cohorts [][]fl.NodeID
	for _, e := range f.caudit {
		if e.Kind == EventRoundStarted {
			cohorts = append(cohorts, e.Nodes)
			if len(e.Nodes) != 2 || !slices.IsSorted(e.Nodes) {
				t.Fatalf("cohort %v: want 2 = ceil(0.4·5), sorted", e.Nodes)
			}
		}
	}
	if len(cohorts) != 4 || f.c.st.Commits != 4 {
		t.Fatalf("cohorts %v, commits %d", cohorts, f.c.st.Commits)
	}
	distinct := map[string]bool{}
	for _, c := range cohorts {
		distinct[fmt.Sprint(c)] = true
	}
	if len(distinct) < 2 {
		t.Fatalf("sampling picked the same cohort every round: %v", cohorts)
	}
}

// MaxRound bounds the round numbers, aborted rounds included.
func TestMaxRound(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 3, rounds: 5, maxRound: 2, deadlines: Deadlines{Collect: 1}})
	f.show = "none"
	f.byID["n3"].hold = true
	f.run(nil)
	f.tick(1, false) // round 1: quorum not reached, abort; round 2 waits for n3
	if st := f.c.Status(); st.Phase != PhaseWait || st.Round != 1 {
		t.Fatalf("status %+v", st)
	}
	f.byID["n3"].hold = false
	f.byID["n3"].held = nil
	f.byID["n3"].n.Reconnect()
	f.run(nil)
	if st := f.c.Status(); st.Phase != PhaseDone || st.Round != 2 || st.Commits != 1 {
		t.Fatalf("MaxRound: status %+v", st)
	}
}

func FuzzDecoders(f *testing.F) {
	f.Add(encodeModel(fl.Vector{1, 2}, []byte("opt")))
	f.Add(encodeGroupKey([]byte("t"), []byte("k")))
	f.Add(encodeDealtKey(encodeGroupKey([]byte("t"), []byte("k")), 3, DigestOf([]byte("model"))))
	f.Add(envelope(purposeDeal, []byte("s"), 1, "a", "b", []byte("p")))
	f.Add([]byte(`{"Version":1,"Phase":3}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if v, st, err := decodeModel(b); err == nil {
			if !bytes.Equal(encodeModel(v, st), b) {
				t.Fatal("model does not re-encode")
			}
		}
		_, _, _ = decodeGroupKey(b)
		if gk, base, d, err := decodeDealtKey(b); err == nil && !bytes.Equal(encodeDealtKey(gk, base, d), b) {
			t.Fatal("dealt group key does not re-encode")
		}
		_, _ = openEnvelope(b, purposeDeal, []byte("s"), 1, "a", "b")
		var cs CoordinatorState
		_ = cs.UnmarshalBinary(b)
		var ns NodeState
		_ = ns.UnmarshalBinary(b)
	})
}

// FuzzStep steps arbitrary messages into a coordinator collecting round 1
// and into a node: nothing panics, and a rejected message changes nothing.
func FuzzStep(f *testing.F) {
	f.Add(uint8(KindUpload), uint8(1), uint64(1), uint64(1), []byte("payload"), []byte("sig"), false)
	f.Add(uint8(KindShare), uint8(2), uint64(1), uint64(1), []byte{}, []byte{}, false)
	f.Add(uint8(KindTrain), uint8(0), uint64(1), uint64(2), []byte("model"), []byte{}, true)
	f.Add(uint8(KindRevealRequest), uint8(0), uint64(1), uint64(1), []byte("agg"), []byte("t"), true)
	fd := newFed(f, fedOptions{nodes: 3, t: 2, min: 2, rounds: 2})
	fd.show = "none"
	fd.byID["n3"].hold = true
	fd.run(func() bool { return fd.c.st.Phase == PhaseCollect })
	fd.run(nil)
	f.Fuzz(func(t *testing.T, kind, sender uint8, epoch, r uint64, payload, extra []byte, toNode bool) {
		froms := []fl.NodeID{"n1", "n2", "n3", "mallory", "c"}
		from := froms[int(sender)%len(froms)]
		m := Message{Kind: Kind(kind), Session: fd.cfg.Session, Epoch: epoch, Round: fl.Round(r),
			Payload: payload, Signature: extra, Model: payload, Aggregate: payload, Target: extra, Sealed: payload,
			Payloads: map[fl.NodeID][]byte{"n1": payload, "x": extra}, Cohort: []fl.NodeID{"n1", "n2", "n3"},
			Included: []Contribution{{Node: "n1", Signature: extra}}, Revealers: []fl.NodeID{"n1", "n3"},
			Update: fl.Update{Round: fl.Round(r), Delta: fl.Vector{1, 2}, Weight: 1}, Participants: []fl.NodeID{"n1", "n2", "n3"}}
		to := coordID
		if toNode {
			to = "n3"
		}
		before := fd.snapshot(to)
		var err error
		if toNode {
			err = fd.byID["n3"].n.Step(from, m)
		} else {
			err = fd.c.Step(from, m)
		}
		if err != nil && fd.snapshot(to) != before {
			t.Fatalf("rejected %s from %s changed the state: %v", m.Kind, from, err)
		}
		if err == nil {
			t.Skip("accepted; the machine moved on")
		}
	})
}

// TestNodeStateOpenModel: a node's state opens a model sealed under its
// group key, or one sealed under an earlier epoch's model key it still
// keeps (a model not yet re-sealed after a re-key), and nothing else.
func TestNodeStateOpenModel(t *testing.T) {
	session := []byte("s")
	oldKey, newKey, otherKey := bytes.Repeat([]byte{1}, 16), bytes.Repeat([]byte{2}, 16), bytes.Repeat([]byte{3}, 16)
	st := NodeState{Session: session, OldModelKeys: map[uint64][]byte{1: otherKey, 2: oldKey}}
	keys := NodeKeys{GroupKey: encodeGroupKey([]byte("target"), newKey)}
	model := fl.Vector{1, -2, 3}
	for _, key := range [][]byte{newKey, oldKey, otherKey} {
		sealed, _ := fakeBox{}.Seal(key, encodeModel(model, []byte("opt")), modelAD(session, 4))
		v, opt, err := st.OpenModel(keys, fakeBox{}, 4, sealed)
		if err != nil || !slices.Equal(v, model) || string(opt) != "opt" {
			t.Errorf("key %x: OpenModel = %v, %q, %v; want %v", key[:1], v, opt, err, model)
		}
		if _, _, err := st.OpenModel(keys, fakeBox{}, 5, sealed); !errors.Is(err, ErrMalformed) {
			t.Errorf("key %x: opened as the model of another round: %v", key[:1], err)
		}
	}
	sealed, _ := fakeBox{}.Seal(bytes.Repeat([]byte{4}, 16), encodeModel(model, nil), modelAD(session, 4))
	if _, _, err := st.OpenModel(keys, fakeBox{}, 4, sealed); !errors.Is(err, ErrMalformed) {
		t.Errorf("a model under a key the node never held: %v, want ErrMalformed", err)
	}
	if _, _, err := (NodeState{Session: session}).OpenModel(NodeKeys{}, fakeBox{}, 4, sealed); !errors.Is(err, ErrWrongPhase) {
		t.Errorf("a state without a group key: %v, want ErrWrongPhase", err)
	}
}

// TestHelloEvidenceBound: the coordinator takes Hello evidence up to
// MaxEvidence, the size the message limits count per member, and no more.
func TestHelloEvidenceBound(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 1})
	hello := Message{Kind: KindHello, Session: f.cfg.Session, Evidence: make([]byte, MaxEvidence+1)}
	if err := f.c.Step("n1", hello); !errors.Is(err, ErrMalformed) {
		t.Fatalf("%d bytes of evidence: %v, want ErrMalformed", len(hello.Evidence), err)
	}
	hello.Evidence = hello.Evidence[:MaxEvidence]
	if err := f.c.Step("n1", hello); err != nil {
		t.Fatalf("%d bytes of evidence: %v", len(hello.Evidence), err)
	}
}

// TestKeepModel: a node hands out a newer sealed model to keep, and a model
// of the kept round only when a Train brings it re-sealed (after a re-key):
// that copy replaces the kept one, which only the previous group key opens.
func TestKeepModel(t *testing.T) {
	n := &Node{st: NodeState{Kept: 2, KeptDigest: DigestOf([]byte("m2"))}}
	steps := []struct {
		r       fl.Round
		sealed  string
		reseal  bool
		pend    string // "" if nothing to keep
		replace bool
	}{
		{1, "m1", true, "", false},                    // older
		{2, "m2", true, "", false},                    // the kept copy again
		{2, "m2'", false, "", false},                  // a Model of the kept round: never replaced
		{2, "m2 resealed", true, "m2 resealed", true}, // Train after a re-key
		{2, "m2 resealed", true, "m2 resealed", true}, // the same Train again
		{3, "m3", false, "m3", false},                 // the next commit
		{2, "m2 resealed2", true, "m3", false},        // older than what is kept
	}
	for i, s := range steps {
		n.keep(s.r, []byte(s.sealed), s.reseal)
		rd := n.Ready()
		switch {
		case s.pend == "" && rd.Model != nil:
			t.Errorf("step %d: kept %q, want nothing", i, rd.Model.Sealed)
		case s.pend != "" && (rd.Model == nil || string(rd.Model.Sealed) != s.pend || rd.Model.Replaces != s.replace):
			t.Errorf("step %d: kept %+v, want %q (replace %t)", i, rd.Model, s.pend, s.replace)
		case s.pend != "" && (rd.State == nil || rd.State.Kept != s.r && s.pend != "m3" || rd.State.KeptDigest != DigestOf([]byte(s.pend))):
			t.Errorf("step %d: state %+v does not name the kept model", i, rd.State)
		}
	}
}

// TestRevealOnceInState: the reveal-once fact is the engine's own state,
// handed out in the Ready that carries the share: a node restarted from it
// refuses the same reveal request again even with an empty ledger (a
// Party whose ledger lost the record), and the share's Ready carries the
// state that records it.
func TestRevealOnceInState(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 2})
	f.show = "none"
	f.runUntil(PhaseCommit, 1)
	var id fl.NodeID
	var req Message
	for _, e := range f.sent {
		if e.m.Kind == KindRevealRequest {
			id, req = e.to, e.m
			break
		}
	}
	if id == "" {
		t.Fatal("no reveal request was delivered")
	}
	sn := f.byID[id]
	var st NodeState
	if err := st.UnmarshalBinary(sn.state); err != nil {
		t.Fatal(err)
	}
	if st.Revealed != 1 || st.RevealedAggregate != DigestOf(req.Aggregate) {
		t.Fatalf("%s's persisted state: revealed round %d, aggregate %s; want round 1, %s", id, st.Revealed,
			st.RevealedAggregate, DigestOf(req.Aggregate))
	}
	cfg := sn.cfg
	cfg.Ledger = &protect.MemLedger{} // the second line, lost
	n, err := RestartNode(cfg, st, sn.keys)
	if err != nil {
		t.Fatal(err)
	}
	n.Ready()
	n.Advance()
	if err := n.Step(coordID, req); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("the same reveal request after a restart with an empty ledger: %v, want ErrDuplicate", err)
	}
	if rd := n.Ready(); slices.ContainsFunc(rd.Messages, func(m Message) bool { return m.Kind == KindShare }) {
		t.Fatal("a second share left")
	}
}

// TestIdleHelloCrossesSetupStart: a live participant's idle Hello that
// crossed SetupStart reports the epoch it held before; its stream stayed up,
// so SetupStart reaches it next, and the setup goes on (it restarted, and a
// join window that is a multiple of the nodes' idle period restarted it
// forever). A member that was unreachable restarts it (see the
// node_restart transcript).
func TestIdleHelloCrossesSetupStart(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 1})
	f.show = "none"
	f.runUntil(PhaseAnnounce, 0)
	epoch := f.c.st.Epoch
	mark := len(f.caudit)
	hello := Message{Kind: KindHello, Session: f.cfg.Session, Epoch: epoch - 1, Evidence: []byte("evidence:n1")}
	if err := f.c.Step("n1", hello); err != nil {
		t.Fatal(err)
	}
	f.drain()
	if f.c.st.Epoch != epoch || len(f.eventsAfter(mark, EventAborted)) != 0 {
		t.Fatalf("a crossed idle Hello restarted the setup: epoch %d (was %d), aborts %v", f.c.st.Epoch, epoch,
			f.eventsAfter(mark, EventAborted))
	}
	f.run(func() bool { return f.c.st.Phase == PhaseCollect })
	if f.c.st.Phase != PhaseCollect || f.c.st.KeyEpoch != epoch {
		t.Fatalf("the setup did not complete: phase %s, key epoch %d, want collect and %d", f.c.st.Phase, f.c.st.KeyEpoch, epoch)
	}

}

// TestRestartCoordinatorNeedsModel: a keyed state restored without its
// current model is refused with an error saying so, not resumed with no
// model to send.
func TestRestartCoordinatorNeedsModel(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 2})
	f.show = "none"
	f.runUntil(PhaseCollect, 1)
	var st CoordinatorState
	if err := st.UnmarshalBinary(f.cstate); err != nil {
		t.Fatal(err)
	}
	if _, err := RestartCoordinator(f.ccfg, st, nil, f.cgk); err == nil || !strings.Contains(err.Error(), "without its current model") {
		t.Fatalf("restart without the model: %v", err)
	}
	if _, err := RestartCoordinator(f.ccfg, st, f.cmodel, f.cgk); err != nil {
		t.Fatalf("restart with it: %v", err)
	}
}

// TestIdleHelloWhileTraining: a member that trains longer than its idle
// period says Hello naming the round it trains; on its live stream that
// fetches nothing (the coordinator re-sent the round's Train, and its
// model, at every idle Hello, which the node then refused as a duplicate).
// A member that comes back on a new stream gets the Train again.
func TestIdleHelloWhileTraining(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 2})
	f.show = "none"
	slow := f.byID["n1"]
	slow.hold = true
	f.runUntil(PhaseCollect, 1)
	f.run(func() bool { return len(slow.held) > 0 })
	if len(slow.held) != 1 || slow.held[0].Kind != TaskTrain {
		t.Fatalf("n1 holds %v, want one training task", slow.held)
	}
	trains := func() int {
		n := 0
		for _, e := range f.inflight {
			if e.to == "n1" && e.m.Kind == KindTrain {
				n++
			}
		}
		return n
	}
	if n := trains(); n != 0 {
		t.Fatalf("%d Train in flight to n1 before its Hello", n)
	}
	for range slow.n.dl.Idle {
		slow.n.Tick()
	}
	rd := slow.n.Ready()
	i := slices.IndexFunc(rd.Messages, func(m Message) bool { return m.Kind == KindHello })
	if i < 0 || rd.Messages[i].Round != 1 {
		t.Fatalf("n1's idle Hello while training: %v, want one naming round 1", rd.Messages)
	}
	if err := f.c.Step("n1", rd.Messages[i]); err != nil {
		t.Fatal(err)
	}
	slow.n.Advance()
	f.drain()
	if n := trains(); n != 0 {
		t.Fatalf("the coordinator sent %d Train to a member training on a live stream, want none", n)
	}
	// Positive control: the same Hello after its stream ended (a restarted
	// member that lost the task) fetches the Train.
	f.c.Unreachable("n1")
	f.drain()
	if err := f.c.Step("n1", Message{Kind: KindHello, Session: f.cfg.Session, Epoch: f.c.st.Epoch, Evidence: []byte("evidence:n1")}); err != nil {
		t.Fatal(err)
	}
	f.drain()
	if n := trains(); n != 1 {
		t.Fatalf("the coordinator sent %d Train to a member back on a new stream, want 1", n)
	}
}

// TestNoSecondProtectAfterRestart: a node protects at most one update per
// round, also across a restart. Under mhe this is what keeps the round's
// common polynomial a from being used twice with one key share (two
// uploads under one a disclose the difference of the updates). The
// restarted node's party comes from the keys persisted at setup, which know
// nothing of the round: the engine's durable NodeState.Protected refuses
// the round's Train again, and a Trained for it, and nothing leaves.
func TestNoSecondProtectAfterRestart(t *testing.T) {
	s, err := mhe.New(mhe.InsecureTest)
	if err != nil {
		t.Fatal(err)
	}
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 2, init: fl.Vector{1, 2, 3}, scheme: s})
	f.show = "none"
	for _, sn := range f.nodes {
		sn.delta = fl.Vector{1, 0, -1}
	}
	sn := f.nodes[0]
	protected := func() (NodeState, bool) {
		var st NodeState
		if sn.state == nil {
			return st, false
		}
		if err := st.UnmarshalBinary(sn.state); err != nil {
			t.Fatal(err)
		}
		return st, st.Protected == 1
	}
	f.run(func() bool { _, ok := protected(); return ok })
	st, ok := protected()
	if !ok {
		t.Fatalf("%s never protected round 1", sn.id)
	}
	var train Message
	for _, e := range f.sent {
		if e.to == sn.id && e.m.Kind == KindTrain && e.m.Round == 1 {
			train = e.m
		}
	}
	if train.Kind != KindTrain {
		t.Fatal("no Train of round 1 was delivered")
	}
	n, err := RestartNode(sn.cfg, st, sn.keys)
	if err != nil {
		t.Fatal(err)
	}
	n.Ready()
	n.Advance()
	if err := n.Step(coordID, train); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("the Train of round 1 again after a restart: %v, want ErrDuplicate", err)
	}
	up := Message{Kind: KindTrained, Update: fl.Update{Node: sn.id, Round: 1, Delta: fl.Vector{5, 5, 5}, Weight: 1}}
	if err := n.Step(sn.id, up); err == nil {
		t.Fatal("a Trained of round 1 after a restart was protected")
	}
	rd := n.Ready()
	if len(rd.Tasks) > 0 || slices.ContainsFunc(rd.Messages, func(m Message) bool { return m.Kind == KindPledge || m.Kind == KindUpload }) {
		t.Fatalf("after a restart in round 1: tasks %v, messages %v", rd.Tasks, rd.Messages)
	}
}
