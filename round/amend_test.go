package round

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/strategy"
)

// terms returns test terms: manifest "manifest-<serial>" over members
// n1..nk without the removed ones.
func testTerms(serial uint64, k, t, min, rounds int, removed ...fl.NodeID) Terms {
	var ms []fl.NodeID
	for i := 1; i <= k; i++ {
		if id := fl.NodeID(fmt.Sprintf("n%d", i)); !slices.Contains(removed, id) {
			ms = append(ms, id)
		}
	}
	return Terms{Serial: serial, Manifest: fmt.Appendf(nil, "manifest-%d", serial), Summary: fmt.Sprintf("serial %d", serial),
		Members: ms, Threshold: t, MinCohort: min, Rounds: rounds}
}

// amendable makes every node take the test terms in all (by manifest), and
// refuse, as its own policy, those in refuse[node].
func (f *fed) amendable(all []Terms, refuse map[fl.NodeID]uint64) {
	for _, sn := range f.nodes {
		id := sn.id
		sn.cfg.Amend = func(cur, next []byte) (Terms, error) {
			for _, t := range all {
				if string(next) == string(t.Manifest) {
					if refuse[id] == t.Serial {
						return Terms{}, fmt.Errorf("%w: threshold below this node's floor", ErrRefused)
					}
					return t, nil
				}
			}
			return Terms{}, errors.New("bad signature")
		}
		if sn.n != nil {
			sn.n.cfg.Amend = sn.cfg.Amend
		}
	}
}

// addNode starts a new member under terms t (its kit's manifest).
func (f *fed) addNode(id fl.NodeID, t Terms) *simNode {
	f.tb.Helper()
	base := f.nodes[0].cfg
	opt, err := strategy.New("fedavg")
	if err != nil {
		f.tb.Fatal(err)
	}
	sn := &simNode{id: id, ledger: &recLedger{}, weight: 1, delta: fl.Vector{6, -6}, evals: map[fl.Round]fl.Vector{},
		trains: map[fl.Round]fl.Vector{}}
	sn.cfg = base
	sn.cfg.Config = base.Config.WithTerms(t)
	sn.cfg.Self, sn.cfg.Sealer, sn.cfg.Signer, sn.cfg.Ledger, sn.cfg.Optimizer = id, fakeSealer{id}, fakeSigner{id}, sn.ledger, opt
	sn.cfg.Rand = rand.NewChaCha8([32]byte{6, 7})
	sn.cfg.Evidence = []byte("evidence:" + id)
	sn.cfg.Init = func() fl.Vector { f.tb.Fatal("a joining member made an initial model"); return nil }
	if sn.n, err = NewNode(sn.cfg); err != nil {
		f.tb.Fatal(err)
	}
	f.nodes = append(f.nodes, sn)
	f.byID[id] = sn
	return sn
}

// TestAmendAddsMember adds n6 to a running five-member federation: the
// coordinator schedules the amendment in round 3, n6 says Hello before the
// boundary and waits, the amendment takes effect at the boundary (every
// member adopts it), a re-key among all six carries the model over, and n6
// trains round 4 from exactly the model round 3 committed. A forged
// amendment is rejected; a stale one is refused by the coordinator.
func TestAmendAddsMember(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 5, t: 3, min: 3, rounds: 6})
	f.show = "none"
	t2 := testTerms(2, 6, 3, 3, 6)
	f.amendable([]Terms{t2}, nil)
	f.runUntil(PhaseCollect, 3)
	mark := len(f.caudit)
	if err := f.c.Amend(t2); err != nil {
		t.Fatal(err)
	}
	if err := f.c.Amend(testTerms(0, 6, 3, 3, 6)); err == nil {
		t.Fatal("an amendment with a serial not above the running one was scheduled")
	}
	n6 := f.addNode("n6", t2)
	f.run(func() bool { return f.c.st.Round == 3 && f.c.live["n6"] })
	if f.c.isMember["n6"] {
		t.Fatal("n6 became a member before the round boundary")
	}
	f.runUntil(PhaseCollect, 5)

	am := f.eventsAfter(mark, EventAmended)
	if len(am) != 1 || !slices.Contains(am[0].Nodes, "n6") || am[0].Round != 3 {
		t.Fatalf("amended events %v", am)
	}
	setups := f.eventsAfter(mark, EventSetupStarted)
	if len(setups) != 1 || len(setups[0].Nodes) != 6 || !strings.Contains(setups[0].Detail, "members changed") {
		t.Fatalf("setups after the amendment: %v", setups)
	}
	for _, sn := range f.nodes {
		if sn.n.cfg.Serial != 2 || len(sn.n.members) != 6 {
			t.Fatalf("%s runs serial %d with %d members", sn.id, sn.n.cfg.Serial, len(sn.n.members))
		}
	}
	if f.c.st.Terms == nil || f.c.st.Terms.Serial != 2 || f.c.st.Pending != nil {
		t.Fatalf("coordinator terms %+v pending %+v", f.c.st.Terms, f.c.st.Pending)
	}
	started := f.eventsAfter(mark, EventRoundStarted)
	if len(started) == 0 || started[0].Round != 4 || !slices.Contains(started[0].Nodes, "n6") {
		t.Fatalf("rounds after the amendment: %v", started)
	}
	// n6 trained round 4 from the model every old member trained from.
	if got, want := n6.trains[4], f.byID["n1"].trains[4]; got == nil || !slices.Equal(got, want) {
		t.Fatalf("n6 trained round 4 from %v, n1 from %v", got, want)
	}
	if want := f.byID["n1"].evals[3]; !slices.Equal(n6.trains[4], want) {
		t.Fatalf("round 4 started from %v, round 3 committed %v", n6.trains[4], want)
	}

	// A forged amendment (the nodes' check fails) changes nothing.
	if err := f.byID["n1"].n.Step(coordID, Message{Kind: KindAmend, Session: f.cfg.Session, Serial: 9, Manifest: []byte("forged")}); !errors.Is(err, ErrForged) {
		t.Fatalf("forged amendment: %v", err)
	}
	if f.byID["n1"].n.cfg.Serial != 2 {
		t.Fatal("a forged amendment took effect")
	}

	// Restarts keep the terms in force.
	f.crashCoordinator()
	f.restartCoordinator()
	f.crashNode("n2")
	f.restartNode("n2")
	if f.c.cfg.Serial != 2 || len(f.c.members) != 6 || f.byID["n2"].n.cfg.Serial != 2 {
		t.Fatalf("after restarts: coordinator serial %d members %v, n2 serial %d", f.c.cfg.Serial, f.c.members, f.byID["n2"].n.cfg.Serial)
	}
	f.tick(200, true)
	if f.c.st.Phase != PhaseDone || f.c.st.Commits != 6 {
		t.Fatalf("phase %s after %d commits", f.c.st.Phase, f.c.st.Commits)
	}
}

// TestAmendRemovesAndRefuses removes n2 and raises t to 4 at one boundary:
// n2 learns it and leaves, the others re-key among four with t = 4. Then
// an amendment that n3's policy refuses makes n3 leave (audited), and the
// session goes on without it.
func TestAmendRemovesAndRefuses(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 5, t: 3, min: 3, rounds: 8})
	f.show = "none"
	t2 := testTerms(2, 5, 4, 4, 8, "n2")
	t3 := testTerms(3, 5, 3, 3, 9, "n2")
	f.amendable([]Terms{t2, t3}, map[fl.NodeID]uint64{"n3": 3})
	f.runUntil(PhaseCollect, 2)
	mark := len(f.caudit)
	if err := f.c.Amend(t2); err != nil {
		t.Fatal(err)
	}
	f.runUntil(PhaseCollect, 4)
	if n2 := f.byID["n2"].n; !n2.st.Done {
		t.Fatal("n2 did not leave after its removal")
	}
	if f.c.isMember["n2"] || f.c.cfg.Threshold != 4 {
		t.Fatalf("coordinator members %v threshold %d", f.c.members, f.c.cfg.Threshold)
	}
	if st := f.c.st; !slices.Equal(st.Participants, []fl.NodeID{"n1", "n3", "n4", "n5"}) || len(st.Revealers) != 0 && len(st.Revealers) != 4 {
		t.Fatalf("participants %v revealers %v", st.Participants, st.Revealers)
	}
	for _, e := range f.eventsAfter(mark, EventRoundStarted) {
		if slices.Contains(e.Nodes, "n2") && e.Round > 2 {
			t.Fatalf("round %d with n2", e.Round)
		}
	}
	if err := f.c.Step("n2", Message{Kind: KindHello, Session: f.cfg.Session}); !errors.Is(err, ErrNotMember) {
		t.Fatalf("removed member's Hello: %v", err)
	}

	mark = len(f.caudit)
	if err := f.c.Amend(t3); err != nil {
		t.Fatal(err)
	}
	f.tick(300, true)
	if n3 := f.byID["n3"].n; !n3.st.Done || n3.cfg.Serial != 2 {
		t.Fatalf("n3 done %v serial %d after refusing serial 3", n3.st.Done, n3.cfg.Serial)
	}
	if f.c.st.Phase != PhaseDone || f.c.st.Commits != 9 {
		t.Fatalf("phase %s after %d commits (rounds %d)", f.c.st.Phase, f.c.st.Commits, f.c.cfg.Rounds)
	}
}
