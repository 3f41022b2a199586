package round

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

// persistNode hands out sn's pending Ready as the harness's drain would
// (its State through its encoding), keeping the messages for the caller to
// inspect.
func persistNode(t *testing.T, sn *simNode) NodeReady {
	t.Helper()
	rd := sn.n.Ready()
	if rd.State != nil {
		b, err := rd.State.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		sn.state = b
	}
	if rd.Keys != nil {
		sn.keys = rd.Keys.clone()
	}
	sn.n.Advance()
	return rd
}

// restartFromState restarts sn from what it persisted, as a crashed
// process would, without touching the coordinator.
func restartFromState(t *testing.T, sn *simNode) {
	t.Helper()
	var st NodeState
	if err := st.UnmarshalBinary(sn.state); err != nil {
		t.Fatal(err)
	}
	n, err := RestartNode(sn.cfg, st, sn.keys)
	if err != nil {
		t.Fatal(err)
	}
	sn.n = n
	persistNode(t, sn) // the restart's Hello
}

// TestVerdictsSurviveRestart: a node that distrusts a participant of its key
// epoch (told by Distrust, or because the participant's relayed evidence
// failed VerifyPeer) and restarts from its persisted state still refuses to
// train, reveal and lead in that epoch.
func TestVerdictsSurviveRestart(t *testing.T) {
	for _, how := range []string{"distrust", "failed"} {
		for _, k := range []Kind{KindTrain, KindRevealRequest, KindDecrypt} {
			t.Run(how+"/"+k.String(), func(t *testing.T) {
				f := newFed(t, fedOptions{nodes: 4, t: 2, min: 2, rounds: 2})
				f.show = "none"
				f.byID["n4"].hold = true
				next := func() bool { return len(f.inflight) > 0 && f.inflight[0].m.Kind == k && f.inflight[0].to != "n4" }
				for range 200 {
					if f.run(next); next() {
						break
					}
					f.c.Tick()
				}
				if !next() {
					t.Fatalf("no %s was sent: %v %v", k, f.c.Status(), f.errs)
				}
				m, sn := f.inflight[0].m, f.byID[f.inflight[0].to]
				switch how {
				case "distrust":
					sn.n.Distrust("n4", "evidence expired")
				case "failed":
					peer := Message{Kind: KindPeer, Session: f.cfg.Session, Epoch: m.Epoch,
						Evidences: map[fl.NodeID][]byte{"n4": []byte("forged:n4")}}
					if err := sn.n.Step(coordID, peer); err != nil {
						t.Fatal(err)
					}
				}
				rd := persistNode(t, sn)
				if rd.State == nil || len(rd.State.Distrusted) != 1 || rd.State.Distrusted[0].Member != "n4" {
					t.Fatalf("the Ready that distrusts n4 carries state %+v", rd.State)
				}
				if v := rd.State.Distrusted[0]; v.Pinned != (how == "distrust") || v.Reason == "" {
					t.Fatalf("verdict %+v", v)
				}
				restartFromState(t, sn)
				if got := sn.n.Status().Distrusted; !slices.Equal(got, []fl.NodeID{"n4"}) {
					t.Fatalf("restarted %s distrusts %v", sn.id, got)
				}
				err := sn.n.Step(coordID, m)
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "n4") {
					t.Fatalf("restarted %s answered %s: %v", sn.id, k, err)
				}
				rd = sn.n.Ready()
				if len(rd.Tasks) != 0 || len(rd.Messages) != 1 || rd.Messages[0].Kind != KindRefuse {
					t.Fatalf("%s: tasks %v, messages %v", sn.id, rd.Tasks, rd.Messages)
				}
			})
		}
	}
}

// TestVerdictsRestartSetup: a restarted node refuses a key setup with a
// member whose pinned evidence the coordinator relays again (it would deal
// shares to it), and takes part once fresh evidence of the member verifies;
// the verdict is then gone from its state.
func TestVerdictsRestartSetup(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 4, t: 2, min: 2, rounds: 2})
	f.show = "none"
	f.runUntil(PhaseCollect, 1)
	sn := f.byID["n1"]
	sn.n.Distrust("n4", "evidence expired")
	persistNode(t, sn)
	restartFromState(t, sn)

	parts := []fl.NodeID{"n1", "n2", "n3", "n4"}
	evs := map[fl.NodeID][]byte{"n1": []byte("evidence:n1"), "n2": []byte("evidence:n2"),
		"n3": []byte("evidence:n3"), "n4": []byte("evidence:n4")}
	start := Message{Kind: KindSetupStart, Session: f.cfg.Session, Epoch: 2, Participants: parts, Evidences: evs}
	err := sn.n.Step(coordID, start)
	if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "member n4 is distrusted") {
		t.Fatalf("setup with n4's pinned evidence: %v", err)
	}
	persistNode(t, sn)

	evs["n4"] = []byte("evidence:n4#1") // n4 attested again
	start.Epoch = 3
	if err := sn.n.Step(coordID, start); err != nil {
		t.Fatalf("setup with n4's fresh evidence: %v", err)
	}
	rd := persistNode(t, sn)
	if rd.State == nil || len(rd.State.Distrusted) != 0 || len(sn.n.Status().Distrusted) != 0 {
		t.Fatalf("after fresh evidence: state %+v, distrusted %v", rd.State, sn.n.Status().Distrusted)
	}
	if len(rd.Messages) != 1 || rd.Messages[0].Kind != KindAnnounce {
		t.Fatalf("messages %v", rd.Messages)
	}
	restartFromState(t, sn)
	if d := sn.n.Status().Distrusted; len(d) != 0 {
		t.Fatalf("restarted after fresh evidence: distrusted %v", d)
	}
}

// TestNodeStateVerdicts: a state written before verdicts were kept (no
// Distrusted field) restores a node that distrusts no one; verdicts round
// trip through the encoding; a verdict against a non-member, the node
// itself, or out of order is refused.
func TestNodeStateVerdicts(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 1})
	cfg := f.byID["n1"].cfg
	old := []byte(`{"Version":1,"Session":"` + "dGVzdC1zZXNzaW9u" + `","Epoch":0,"Round":0}`)
	var st NodeState
	if err := st.UnmarshalBinary(old); err != nil {
		t.Fatal(err)
	}
	n, err := RestartNode(cfg, st, NodeKeys{})
	if err != nil || st.Distrusted != nil || len(n.Status().Distrusted) != 0 {
		t.Fatalf("old state: %v, %+v, distrusted %v", err, st.Distrusted, n.Status().Distrusted)
	}

	st.Distrusted = []Verdict{{Member: "n2", Evidence: DigestOf([]byte("e2")), Reason: "bad"},
		{Member: "n3", Evidence: DigestOf([]byte("e3")), Pinned: true, Pin: DigestOf([]byte("e3")), Reason: "expired"}}
	b, err := st.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back NodeState
	if err := back.UnmarshalBinary(b); err != nil || !slices.Equal(back.Distrusted, st.Distrusted) {
		t.Fatalf("round trip: %v, %+v", err, back.Distrusted)
	}
	if n, err = RestartNode(cfg, back, NodeKeys{}); err != nil || !slices.Equal(n.Status().Distrusted, []fl.NodeID{"n2", "n3"}) {
		t.Fatalf("restore: %v, distrusted %v", err, n.Status().Distrusted)
	}

	for _, bad := range [][]Verdict{
		{{Member: "mallory"}},
		{{Member: "n1"}},
		{{Member: "n3"}, {Member: "n2"}},
		{{Member: "n2"}, {Member: "n2"}},
	} {
		st.Distrusted = bad
		if _, err := RestartNode(cfg, st, NodeKeys{}); err == nil {
			t.Errorf("restored verdicts %+v", bad)
		}
	}
}

// TestVerdictReasonBounded: the state keeps at most maxVerdictReason bytes
// of a verdict's reason, the audit event all of it.
func TestVerdictReasonBounded(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 1})
	n := f.byID["n1"].n
	long := strings.Repeat("é", maxVerdictReason)
	n.Distrust("n2", long)
	rd := n.Ready()
	if rd.State == nil || len(rd.State.Distrusted) != 1 || len(rd.State.Distrusted[0].Reason) > maxVerdictReason ||
		!strings.HasPrefix(long, rd.State.Distrusted[0].Reason) {
		t.Fatalf("state %+v", rd.State)
	}
	if e := rd.Audit[len(rd.Audit)-1]; e.Kind != EventPeerDistrusted || e.Detail != long {
		t.Fatalf("event %v", e)
	}
}
