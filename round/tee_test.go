package round

import (
	"crypto/hpke"
	"crypto/rand"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/tee"
)

// teeFed is a federation in mode tee: the members seal to the aggregator's
// key, the coordinator's helper is blind (its Open refuses), and the
// aggregator, a separate machine, opens each round with rule.
func teeFed(t *testing.T, nodes, th, rounds int, rule string, bad ...fl.NodeID) *fed {
	t.Helper()
	id, err := tee.NewIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	f := newFed(t, fedOptions{nodes: nodes, t: th, min: nodes, rounds: rounds, init: fl.Vector{1, 2},
		scheme: tee.Scheme{Rule: rule}, nodeScheme: tee.Scheme{Key: id.PublicKey().Bytes()},
		aggregator: tee.Scheme{Identity: id, Rule: rule}, badEvidence: bad})
	f.show = "none"
	return f
}

// TestSimulationTEE runs mode tee with the aggregator outside the
// coordinator: 5 members, one of which sends Δ = (1000, −1000); with the
// median the model moves by the honest median each round, with the mean
// (no rule) the attacker drags it. The coordinator's own helper cannot
// open anything, so every commit came through the aggregator.
func TestSimulationTEE(t *testing.T) {
	for _, c := range []struct {
		rule string
		want fl.Vector // Δ applied per round
	}{
		{"median:f=1", fl.Vector{3, -3}},       // median of 1, 2, 3, 4, 1000
		{"", fl.Vector{1010 / 5., -1010 / 5.}}, // the mean
	} {
		f := teeFed(t, 5, 3, 3, c.rule)
		f.nodes[4].delta = fl.Vector{1000, -1000}
		f.run(nil)
		if len(f.errs) != 0 {
			t.Fatalf("rule %q: errors: %v", c.rule, f.errs)
		}
		if st := f.c.Status(); st.Phase != PhaseDone || st.Commits != 3 {
			t.Fatalf("rule %q: status %+v", c.rule, st)
		}
		want := fl.Vector{1, 2}
		_ = want.Add(3, c.want)
		if got, _ := f.globalModel(); !closeTo(got, want, 1e-9) {
			t.Errorf("rule %q: model %v, want %v", c.rule, got, want)
		}
		var opened int
		for _, e := range f.aaudit {
			if e.Kind == EventOpened {
				opened++
			}
		}
		if opened != 3 {
			t.Errorf("rule %q: the aggregator opened %d rounds, want 3: %v", c.rule, opened, f.aaudit)
		}
		if !f.agg.Done() {
			t.Errorf("rule %q: the aggregator was not told the session is over", c.rule)
		}
	}
}

// TestTEEAggregatorFails: an aggregator that does not answer, or refuses,
// aborts the round with the reason; the coordinator never opens itself.
func TestTEEAggregatorFails(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		f := teeFed(t, 3, 2, 1, "")
		f.run(func() bool { return f.c.Status().Phase == PhaseReveal })
		f.aggCut = true
		f.run(nil)
		f.tick(f.c.dl.Reveal, false)
		if !aborted(f, "did not answer by the deadline") {
			t.Errorf("no abort naming the aggregator's deadline: %v", f.caudit)
		}
	})
	t.Run("disconnected", func(t *testing.T) {
		f := teeFed(t, 3, 2, 1, "")
		f.run(func() bool { return f.c.awaitAggregator })
		f.aggCut = true
		f.c.Unreachable(aggID)
		f.run(func() bool { return aborted(f, "") })
		if !aborted(f, "the aggregator agg is unreachable") {
			t.Errorf("no abort naming the unreachable aggregator: %v", f.caudit)
		}
	})
	t.Run("attestation", func(t *testing.T) {
		// Every member's check of the aggregator's evidence fails: each
		// audits the failure and refuses the key setup with the reason, so
		// nothing is ever sealed to the aggregator.
		f := teeFed(t, 3, 2, 1, "", aggID)
		f.show = "all"
		f.tick(f.c.dl.Setup, true)
		out := f.w.String()
		for _, want := range []string{"peer-failed epoch=0 node=agg", "refused", "the aggregator agg failed attestation"} {
			if !strings.Contains(out, want) {
				t.Errorf("the transcript lacks %q", want)
			}
		}
		if st := f.c.Status(); st.Commits != 0 || st.Epoch > 0 && st.Phase > PhaseGroupKey {
			t.Errorf("a session went on with an aggregator that failed attestation: %+v", st)
		}
	})
	t.Run("refuses", func(t *testing.T) {
		// An aggregator whose rule no key epoch of 3 members can meet
		// refuses the setup (robust.ErrInfeasible) and then every round,
		// which aborts with its reason at once.
		f := teeFed(t, 3, 2, 1, "")
		f.agg.cfg.Scheme = tee.Scheme{Identity: f.agg.cfg.Scheme.(tee.Scheme).Identity, Rule: "krum:f=1"}
		f.run(func() bool { return aborted(f, "") }) // each aborted round starts the next
		if !aborted(f, "the aggregator refused to open") || !aborted(f, "infeasible") {
			t.Errorf("no abort with the aggregator's reason: %v", f.caudit)
		}
		if f.c.Status().Commits != 0 {
			t.Errorf("%d commits without the aggregator", f.c.Status().Commits)
		}
	})
	t.Run("forged", func(t *testing.T) {
		// A member cannot pose as the aggregator; the aggregator takes
		// nothing from a member.
		f := teeFed(t, 3, 2, 1, "")
		if err := f.agg.Step("n1", Message{Kind: KindSetup, Session: f.cfg.Session, Epoch: 9, Payload: []byte("x")}); err == nil {
			t.Error("the aggregator took a setup from a member")
		}
		if err := f.c.Step(aggID, Message{Kind: KindUpload, Session: f.cfg.Session}); err == nil {
			t.Error("the coordinator took an upload from the aggregator")
		}
	})
}

func aborted(f *fed, says string) bool {
	for _, e := range f.caudit {
		if e.Kind == EventAborted && strings.Contains(e.Detail, says) {
			return true
		}
	}
	return false
}

// FuzzAggregatorStep steps arbitrary messages into mode tee's aggregator
// and, as the aggregator, into a coordinator waiting for its answer:
// nothing panics, and a rejected message changes nothing.
func FuzzAggregatorStep(f *testing.F) {
	f.Add(uint8(KindRevealRequest), uint8(0), uint64(1), uint64(1), []byte("agg"), []byte("t"), false)
	f.Add(uint8(KindSetup), uint8(0), uint64(2), uint64(0), []byte("setup"), []byte{}, false)
	f.Add(uint8(KindShare), uint8(0), uint64(1), uint64(1), []byte("result"), []byte{}, true)
	f.Add(uint8(KindRefuse), uint8(0), uint64(1), uint64(1), []byte{}, []byte{}, true)
	f.Add(uint8(KindHello), uint8(0), uint64(0), uint64(0), []byte("evidence:agg"), []byte{}, true)
	id, err := tee.NewIdentity(rand.Reader)
	if err != nil {
		f.Fatal(err)
	}
	fd := newFed(f, fedOptions{nodes: 3, t: 2, min: 3, rounds: 2, init: fl.Vector{1, 2},
		scheme: tee.Scheme{}, nodeScheme: tee.Scheme{Key: id.PublicKey().Bytes()}, aggregator: tee.Scheme{Identity: id}})
	fd.show = "none"
	fd.aggCut = true // the aggregator's answer is lost: the coordinator waits for it
	fd.run(func() bool { return fd.c.awaitAggregator })
	f.Fuzz(func(t *testing.T, kind, sender uint8, epoch, r uint64, payload, extra []byte, toCoordinator bool) {
		froms := []fl.NodeID{coordID, aggID, "n1", "mallory"}
		from := froms[int(sender)%len(froms)]
		m := Message{Kind: Kind(kind), Session: fd.cfg.Session, Epoch: epoch, Round: fl.Round(r),
			Payload: payload, Aggregate: payload, Target: extra, Evidence: payload, Reason: string(extra),
			Payloads: map[fl.NodeID][]byte{"n1": payload, "n2": extra}, Revealers: []fl.NodeID{"n1", "n2"},
			Participants: []fl.NodeID{"n1", "n2", "n3"}}
		var before string
		var err error
		if toCoordinator {
			before = fd.snapshot(coordID)
			err = fd.c.Step(aggID, m)
			if err != nil && fd.snapshot(coordID) != before {
				t.Fatalf("rejected %s from the aggregator changed the coordinator: %v", m.Kind, err)
			}
		} else {
			a := fd.agg
			before = fmt.Sprintf("%d %d %q %v %d", a.epoch, a.answered, a.refused, a.done, len(a.messages))
			err = a.Step(from, m)
			after := fmt.Sprintf("%d %d %q %v %d", a.epoch, a.answered, a.refused, a.done, len(a.messages))
			if err != nil && after != before {
				t.Fatalf("rejected %s from %s changed the aggregator: %v", m.Kind, from, err)
			}
			a.Advance()
		}
		if err == nil {
			t.Skip("accepted; the machine moved on")
		}
	})
}

// rotatingKey is a member's scheme in mode tee whose aggregator key is the
// one it holds when it makes a party, as a node reads the newest key its
// keyring verified (node's teeScheme).
type rotatingKey struct {
	tee.Scheme
	key *[]byte
}

func (s rotatingKey) NewParty(g protect.Group, self fl.NodeID, rand io.Reader) (protect.Party, error) {
	k := s.Scheme
	k.Key = *s.key
	return k.NewParty(g, self, rand)
}

func (s rotatingKey) LoadParty(g protect.Group, self fl.NodeID, state []byte, rand io.Reader) (protect.Party, error) {
	k := s.Scheme
	k.Key = *s.key
	return k.LoadParty(g, self, state, rand)
}

// rotatingTEEFed is teeFed with members that seal to the key they verified
// last; it returns the aggregator's identity and a function that rotates
// it: a new identity for the aggregator's engine and its Hello with new
// evidence (verified by the members as "evidence:agg#k").
func rotatingTEEFed(t *testing.T, nodes, th, rounds int) (f *fed, first hpke.PrivateKey, rotate func() hpke.PrivateKey) {
	t.Helper()
	first, err := tee.NewIdentity(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	key := first.PublicKey().Bytes()
	f = newFed(t, fedOptions{nodes: nodes, t: th, min: nodes, rounds: rounds, init: fl.Vector{1, 2},
		scheme: tee.Scheme{}, nodeScheme: rotatingKey{key: &key}, aggregator: tee.Scheme{Identity: first}})
	f.show = "none"
	k := 0
	rotate = func() hpke.PrivateKey {
		id, err := tee.NewIdentity(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.agg.Rotate(tee.Scheme{Identity: id}); err != nil {
			t.Fatal(err)
		}
		k++
		key = id.PublicKey().Bytes() // what the members verify in the relayed evidence
		f.agg.Hello(fmt.Appendf(nil, "evidence:%s#%d", aggID, k))
		return id
	}
	return f, first, rotate
}

func (f *fed) aggEvents(k EventKind) []Event {
	var out []Event
	for _, e := range f.aaudit {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

func (f *fed) coordEvents(k EventKind) []Event {
	var out []Event
	for _, e := range f.caudit {
		if e.Kind == k {
			out = append(out, e)
		}
	}
	return out
}

// TestTEEAggregatorRotates: the aggregator re-attests with new keys right
// after it answered round 1. The coordinator relays the new evidence and
// re-keys at the round boundary; the members seal the later rounds to the
// new key, which opens them, and the previous key opens none of them: it
// is refused by the new epoch's setup, and its helper of the first epoch
// does not open a later round. No round is lost.
func TestTEEAggregatorRotates(t *testing.T) {
	f, old, rotate := rotatingTEEFed(t, 3, 2, 4)
	f.run(func() bool { return len(f.aggEvents(EventOpened)) == 1 })
	rotate()
	f.run(nil)
	if len(f.errs) != 0 {
		t.Fatalf("errors: %v", f.errs)
	}
	if st := f.c.Status(); st.Phase != PhaseDone || st.Commits != 4 || st.Epoch != 2 {
		t.Fatalf("status %+v, want done after 4 commits in epoch 2", st)
	}
	if a := f.coordEvents(EventAborted); len(a) != 0 {
		t.Errorf("aborted: %v", a)
	}
	setups := f.coordEvents(EventSetupStarted)
	if len(setups) != 2 || !strings.Contains(setups[1].Detail, "the aggregator agg has new evidence") {
		t.Errorf("setups %v, want a re-key naming the aggregator's new evidence", setups)
	}
	if opened := f.aggEvents(EventOpened); len(opened) != 4 || opened[1].Epoch != 2 {
		t.Errorf("the aggregator opened %v, want rounds 2 to 4 in epoch 2", opened)
	}
	// What the coordinator sent the aggregator: the setups of epochs 1 and
	// 2, and the reveal requests of rounds 1 to 4.
	setup := map[uint64]Message{}
	var requests []Message
	for _, e := range f.sent {
		switch {
		case e.to == aggID && e.m.Kind == KindSetup:
			setup[e.m.Epoch] = e.m
		case e.to == aggID && e.m.Kind == KindRevealRequest:
			requests = append(requests, e.m)
		}
	}
	if len(setup) != 2 || len(requests) != 4 {
		t.Fatalf("sent the aggregator setups %d and requests %d, want 2 and 4", len(setup), len(requests))
	}
	group := func(s Message) protect.Group {
		return protect.Group{ID: protectSessionID(f.cfg.Session, s.Epoch), Members: s.Participants, Threshold: f.cfg.Threshold}
	}
	if _, err := (tee.Scheme{Identity: old}).NewAggregator(group(setup[2]), setup[2].Payload); err == nil {
		t.Error("the previous key took the setup of epoch 2")
	} else {
		t.Logf("the previous key and epoch 2's setup: %v", err)
	}
	h, err := (tee.Scheme{Identity: old}).NewAggregator(group(setup[1]), setup[1].Payload)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range requests[1:] {
		req := protect.RevealRequest{Round: m.Round, Aggregate: m.Aggregate, Revealers: m.Revealers, Target: m.Target}
		if _, err := h.Open(req, m.Payloads); err == nil {
			t.Errorf("the previous key opened round %d", m.Round)
		}
	}
	if _, err := h.Open(protect.RevealRequest{Round: requests[0].Round, Aggregate: requests[0].Aggregate,
		Revealers: requests[0].Revealers, Target: requests[0].Target}, requests[0].Payloads); err != nil {
		t.Errorf("the previous key does not open round 1, sealed to it: %v", err)
	}
}

// TestTEEAggregatorRotatesMidRound: a rotation while a round collects
// (the daemon defers to a round boundary, but a late one rotates anyway)
// costs that round: the aggregator no longer holds the key its updates are
// sealed to and refuses it with the reason, and the coordinator re-keys
// and goes on.
func TestTEEAggregatorRotatesMidRound(t *testing.T) {
	f, _, rotate := rotatingTEEFed(t, 3, 2, 3)
	f.run(func() bool { return f.c.Status().Phase == PhaseCollect })
	if !f.agg.Keyed() {
		t.Fatal("the aggregator holds no helper in round 1")
	}
	rotate()
	if f.agg.Keyed() {
		t.Error("the aggregator kept its helper of epoch 1 after rotating")
	}
	f.run(nil)
	if !aborted(f, "its keys were rotated after its setup of epoch 1") {
		t.Errorf("no abort with the aggregator's reason: %v", f.coordEvents(EventAborted))
	}
	if st := f.c.Status(); st.Phase != PhaseDone || st.Round != 4 || st.Commits != 3 || st.Epoch != 2 {
		t.Fatalf("status %+v, want done after 3 commits in 4 rounds, in epoch 2", st)
	}
}

// TestTEEAggregatorExpired: once the application says the aggregator's
// evidence expired, the round under way ends, and then no round and no key
// setup starts, whatever the deadlines, until the aggregator says Hello
// with fresh evidence: the coordinator then re-keys and the rounds go on.
// Before the first setup, expired evidence holds the setup back.
func TestTEEAggregatorExpired(t *testing.T) {
	t.Run("between rounds", func(t *testing.T) {
		f, _, rotate := rotatingTEEFed(t, 3, 2, 3)
		f.run(func() bool { return len(f.aggEvents(EventOpened)) == 1 })
		f.c.AggregatorExpired("aggregator attestation expired: evidence of 2h0m1s, more than the maximum 2h0m0s")
		f.run(nil)
		f.tick(3*(f.c.dl.Gather+f.c.dl.Join), true)
		st := f.c.Status()
		if st.Phase != PhaseWait || st.Commits != 1 || st.Round != 1 {
			t.Fatalf("status %+v, want waiting after round 1", st)
		}
		rej := f.coordEvents(EventRejected)
		if len(rej) != 1 || rej[0].Node != aggID || !strings.Contains(rej[0].Detail, "expired") {
			t.Errorf("rejections %v, want one naming the aggregator's expired evidence", rej)
		}
		f.c.AggregatorExpired("again") // no second event
		rotate()
		f.run(nil)
		if st := f.c.Status(); st.Phase != PhaseDone || st.Commits != 3 || st.Epoch != 2 {
			t.Fatalf("status %+v, want done after 3 commits in epoch 2", st)
		}
		if n := len(f.coordEvents(EventRejected)); n != 1 {
			t.Errorf("%d rejections, want 1", n)
		}
	})
	t.Run("before the first setup", func(t *testing.T) {
		f, _, rotate := rotatingTEEFed(t, 3, 2, 1)
		f.run(func() bool { return f.c.aggLive }) // its Hello arrives first, before the members'
		f.c.AggregatorExpired("aggregator attestation expired")
		f.tick(3*f.c.dl.Join, true)
		if st := f.c.Status(); st.Phase != PhaseJoin || st.Epoch != 0 {
			t.Fatalf("status %+v, want no key setup", st)
		}
		rotate()
		f.run(nil)
		if st := f.c.Status(); st.Phase != PhaseDone || st.Commits != 1 {
			t.Fatalf("status %+v, want done after 1 commit", st)
		}
	})
}
