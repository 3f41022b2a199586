package round

import (
	"errors"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
)

// runUntil runs the federation until the coordinator is in phase p of round r.
func (f *fed) runUntil(p Phase, r fl.Round) {
	f.tb.Helper()
	f.run(func() bool { return f.c.st.Phase == p && f.c.st.Round == r })
	if f.c.st.Phase != p || f.c.st.Round != r {
		f.tb.Fatalf("stopped in phase %s of round %d, want %s of round %d", f.c.st.Phase, f.c.st.Round, p, r)
	}
}

// eventsAfter returns the coordinator's events of kind k from index i on.
func (f *fed) eventsAfter(i int, k EventKind) []Event {
	var es []Event
	for _, e := range f.caudit[i:] {
		if e.Kind == k {
			es = append(es, e)
		}
	}
	return es
}

// TestExcludeRekeys excludes n2 at the start of round 5 of 8: round 5
// commits without it, epoch 2 runs among the four others with a new group
// key, every node trains round 6 on exactly the model committed in round 5
// (carried over to the new key), and n2 is sent nothing from then on. The
// exclusion survives a coordinator restart; Readmit re-keys again to take
// n2 back.
func TestExcludeRekeys(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 5, t: 3, min: 3, rounds: 8})
	f.show = "none"
	f.runUntil(PhaseCollect, 5)
	oldTarget := f.c.gk.Target
	mark, auditMark := len(f.sent), len(f.caudit)
	inflight := 0
	for _, e := range f.inflight {
		if e.to == "n2" {
			inflight++
		}
	}

	f.c.Exclude("n2", "evidence revoked")
	f.runUntil(PhaseCollect, 7)
	if got := f.eventsAfter(auditMark, EventExcluded); len(got) != 1 || got[0].Node != "n2" || got[0].Detail != "evidence revoked" {
		t.Fatalf("excluded events %v", got)
	}

	// Round 5 committed without n2; epoch 2 has the four others.
	var committed []Event
	for _, e := range f.eventsAfter(auditMark, EventCommitted) {
		committed = append(committed, e)
		if slices.Contains(e.Nodes, "n2") {
			t.Fatalf("round %d committed with n2: %v", e.Round, e.Nodes)
		}
	}
	if len(committed) != 2 || committed[0].Round != 5 || committed[1].Round != 6 {
		t.Fatalf("commits after the exclusion: %v", committed)
	}
	rest := []fl.NodeID{"n1", "n3", "n4", "n5"}
	setups := f.eventsAfter(auditMark, EventSetupStarted)
	if len(setups) != 1 || setups[0].Epoch != 2 || !slices.Equal(setups[0].Nodes, rest) {
		t.Fatalf("setups after the exclusion: %v", setups)
	}
	if st := f.c.st; st.Epoch != 2 || st.KeyEpoch != 2 || !slices.Equal(st.Participants, rest) || st.Dealer != "n1" {
		t.Fatalf("coordinator keys: epoch %d/%d participants %v dealer %s", st.Epoch, st.KeyEpoch, st.Participants, st.Dealer)
	}
	if string(f.c.gk.Target) == string(oldTarget) {
		t.Fatal("the group key was not replaced")
	}
	for _, e := range f.eventsAfter(auditMark, EventRoundStarted) {
		if !slices.Equal(e.Nodes, rest) {
			t.Fatalf("round %d cohort %v", e.Round, e.Nodes)
		}
	}
	// n2 is sent nothing after its exclusion (beyond what was already in
	// flight), and no sealed payload is relayed to it.
	delivered := 0
	for _, e := range f.sent[mark:] {
		if e.to == "n2" {
			delivered++
			if e.m.Kind != KindTrain || e.m.Round != 5 {
				t.Fatalf("n2 was sent %s after its exclusion", describe(e.m))
			}
		}
	}
	if delivered > inflight {
		t.Fatalf("n2 got %d messages after its exclusion, %d were in flight", delivered, inflight)
	}
	for _, e := range f.eventsAfter(auditMark, EventRelayed) {
		if slices.Contains(e.Nodes, "n2") {
			t.Fatalf("sealed payload relayed to n2: %v", e)
		}
	}
	// The model carried over: every participant trained round 6 on the
	// model it evaluated in round 5, now sealed under the new group key.
	for _, id := range rest {
		sn := f.byID[id]
		if sn.evals[5] == nil || !slices.Equal(sn.trains[6], sn.evals[5]) {
			t.Fatalf("%s trained round 6 on %v, round 5 committed %v", id, sn.trains[6], sn.evals[5])
		}
		if sn.n.st.OldModelKeys != nil {
			t.Fatalf("%s still holds old model keys after round 6", id)
		}
	}
	if _, ok := f.byID["n2"].trains[6]; ok {
		t.Fatal("n2 trained in round 6")
	}

	// Exclusion and epoch participants are persisted.
	f.crashCoordinator()
	f.restartCoordinator()
	if s := f.c.Status(); !slices.Equal(s.Excluded, []fl.NodeID{"n2"}) || s.Exclusions["n2"] != "evidence revoked" ||
		!slices.Equal(s.Participants, rest) {
		t.Fatalf("after a restart: excluded %v (%v), participants %v", s.Excluded, s.Exclusions, s.Participants)
	}
	err := f.c.Step("n2", Message{Kind: KindHello, Session: f.cfg.Session, Epoch: 1})
	if !errors.Is(err, ErrExcluded) {
		t.Fatalf("Hello of an excluded member: %v", err)
	}
	// Readmitted, n2 joins the next epoch (the restart aborted round 7) and
	// trains round 8 on the carried model of round 6.
	f.c.Readmit("n2")
	auditMark = len(f.caudit)
	for _, sn := range f.nodes {
		sn.n.Reconnect()
	}
	f.run(nil)
	setups = f.eventsAfter(auditMark, EventSetupStarted)
	all := []fl.NodeID{"n1", "n2", "n3", "n4", "n5"}
	if len(setups) != 1 || setups[0].Epoch != 3 || !slices.Equal(setups[0].Nodes, all) || setups[0].Detail != "re-key: n2 readmitted" {
		t.Fatalf("setups after readmission: %v", setups)
	}
	if st := f.c.Status(); st.Phase != PhaseDone || st.Commits != 8 || !slices.Equal(st.Participants, all) {
		t.Fatalf("status %+v", st)
	}
	n2 := f.byID["n2"]
	if n2.trains[8] == nil || !slices.Equal(n2.trains[8], f.byID["n1"].evals[6]) {
		t.Fatalf("n2 trained round 8 on %v, round 6 committed %v", n2.trains[8], f.byID["n1"].evals[6])
	}
}

// TestExcludeTable checks where an exclusion lands for each phase of a
// round.
func TestExcludeTable(t *testing.T) {
	for _, tc := range []struct {
		name    string
		phase   Phase
		who     fl.NodeID
		aborted bool // round 2 aborts
	}{
		{"collect, before its upload", PhaseCollect, "n3", false},
		{"reveal, a revealer", PhaseReveal, "n3", true},
		{"reveal, included but no revealer", PhaseReveal, "n5", true},
		{"commit, the leader", PhaseCommit, "n2", true},
		{"evaluate", PhaseEvaluate, "n4", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFed(t, fedOptions{nodes: 5, t: 3, min: 3, rounds: 4})
			f.show = "none"
			f.runUntil(tc.phase, 2)
			mark := len(f.caudit)
			f.c.Exclude(tc.who, "test")
			f.run(nil)
			st := f.c.Status()
			if st.Phase != PhaseDone || st.Commits != 4 {
				t.Fatalf("status %+v", st)
			}
			aborted := len(f.eventsAfter(mark, EventAborted)) > 0
			if aborted != tc.aborted {
				t.Fatalf("aborted %t, want %t: %v", aborted, tc.aborted, f.eventsAfter(mark, EventAborted))
			}
			for _, e := range f.eventsAfter(mark, EventCommitted) {
				if e.Round > 2 && slices.Contains(e.Nodes, tc.who) {
					t.Fatalf("round %d includes the excluded %s", e.Round, tc.who)
				}
			}
			if slices.Contains(st.Participants, tc.who) || st.Epoch != 2 {
				t.Fatalf("epoch %d participants %v", st.Epoch, st.Participants)
			}
		})
	}
}

// TestDistrust: Node.Distrust is idempotent and lasts until VerifyPeer
// accepts other evidence of the member.
func TestDistrust(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 1})
	f.show = "none"
	f.run(nil)
	n := f.byID["n1"].n
	n.Distrust("n3", "expired")
	n.Distrust("n3", "expired again")
	n.Distrust("n1", "self")
	n.Distrust("nobody", "not a member")
	events := 0
	for _, e := range n.Ready().Audit {
		if e.Kind == EventPeerDistrusted {
			events++
		}
	}
	n.Advance()
	if events != 1 || !slices.Equal(n.Status().Distrusted, []fl.NodeID{"n3"}) {
		t.Fatalf("%d events, distrusted %v", events, n.Status().Distrusted)
	}
	// The same evidence relayed again does not lift it; other valid
	// evidence does.
	same := Message{Kind: KindPeer, Session: f.cfg.Session, Evidences: map[fl.NodeID][]byte{"n3": []byte("evidence:n3")}}
	if err := n.Step(coordID, same); err != nil || len(n.Status().Distrusted) != 1 {
		t.Fatalf("same evidence: %v, distrusted %v", err, n.Status().Distrusted)
	}
	f.byID["n1"].cfg.VerifyPeer = nil
	n.cfg.VerifyPeer = func(fl.NodeID, []byte) error { return nil }
	fresh := same
	fresh.Evidences = map[fl.NodeID][]byte{"n3": []byte("evidence:n3, refreshed")}
	if err := n.Step(coordID, fresh); err != nil || len(n.Status().Distrusted) != 0 {
		t.Fatalf("fresh evidence: %v, distrusted %v", err, n.Status().Distrusted)
	}
}

// TestExcludeMHE re-keys on threshold multiparty CKKS (insecure test
// parameters): the collective key, the threshold shares and the group key
// of epoch 2 are made among three of four members, and the rounds after
// it decrypt the right mean.
func TestExcludeMHE(t *testing.T) {
	s, err := mhe.New(mhe.InsecureTest)
	if err != nil {
		t.Fatal(err)
	}
	f := newFed(t, fedOptions{nodes: 4, t: 2, min: 2, rounds: 3, init: fl.Vector{1, 2, 3}, scheme: s})
	f.show = "none"
	deltas := []fl.Vector{{1, 0, -1}, {2, 1, 0}, {0.5, 0.5, 0.5}, {-1, 4, 2}}
	all, rest := make(fl.Vector, 3), make(fl.Vector, 3)
	for i, sn := range f.nodes {
		sn.delta = deltas[i]
		_ = all.Add(0.25, deltas[i])
		if i < 3 {
			_ = rest.Add(1.0/3, deltas[i])
		}
	}
	f.runUntil(PhaseEvaluate, 1)
	f.c.Exclude("n4", "revoked")
	f.run(nil)
	for _, err := range f.errs {
		if !errors.Is(err, ErrExcluded) {
			t.Fatalf("error: %v", err)
		}
	}
	if st := f.c.Status(); st.Phase != PhaseDone || st.Commits != 3 || st.Epoch != 2 || len(st.Participants) != 3 {
		t.Fatalf("status %+v", st)
	}
	// Every upload under mhe is followed by the precomputation of the
	// uploader's reveal share (TaskPrecompute).
	if f.precomputed == 0 {
		t.Error("no TaskPrecompute ran under mhe")
	}
	want := fl.Vector{1, 2, 3}
	_ = want.Add(1, all)
	_ = want.Add(2, rest)
	got, _ := f.globalModel()
	if tol := 3*s.Capacity().MaxError + 1e-9; !closeTo(got, want, tol) {
		t.Fatalf("model %v, want %v within %g", got, want, tol)
	}
}

// TestDistrustedParticipantGetsNothing: a node that distrusts a participant
// of a key setup or of its current key epoch (n4, which holds its tasks and
// uploads nothing) refuses every request whose answer would reach n4 even
// though n4's upload is in no included set: dealt shares sealed to it, the
// group key and the carried model sealed to it, an upload under a
// collective key n4 holds a share of, a reveal to the group key n4 holds,
// and a model sealed under it.
func TestDistrustedParticipantGetsNothing(t *testing.T) {
	for _, k := range []Kind{KindAnnouncements, KindKeyRequest, KindTrain, KindRevealRequest, KindDecrypt} {
		t.Run(k.String(), func(t *testing.T) {
			f := newFed(t, fedOptions{nodes: 4, t: 2, min: 2, rounds: 2})
			f.show = "none"
			f.byID["n4"].hold = true
			next := func() bool { return len(f.inflight) > 0 && f.inflight[0].m.Kind == k && f.inflight[0].to != "n4" }
			for range 200 {
				if f.run(next); next() {
					break
				}
				f.c.Tick() // not f.tick, which runs past next
			}
			if !next() {
				t.Fatalf("no %s was sent: %v %v", k, f.c.Status(), f.errs)
			}
			to := f.inflight[0].to
			sn := f.byID[to]
			sn.n.Distrust("n4", "evidence expired")
			sn.n.Ready()
			sn.n.Advance()
			err := sn.n.Step(coordID, f.inflight[0].m)
			if !errors.Is(err, ErrRefused) {
				t.Fatalf("%s answered %s while distrusting n4: %v", to, k, err)
			}
			rd := sn.n.Ready()
			if len(rd.Tasks) != 0 || len(rd.Messages) != 1 || rd.Messages[0].Kind != KindRefuse {
				t.Fatalf("%s: tasks %v, messages %v", to, rd.Tasks, rd.Messages)
			}
		})
	}
}
