package round

import (
	"math"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/secagg"
)

// TestSecAggDropoutAfterUpload runs the engine with mode secagg's real
// scheme (4 members, t = 2) and crashes one member right after the
// coordinator holds its upload, before the reveal: the member stays in
// the included set, the revealers rebuild its self mask from their shares,
// and the round commits the mean of all four updates, the dropped one's
// included. The next round goes on without it. (secagg's own tests drop
// members at every stage against the scheme alone: secagg_test.go.)
func TestSecAggDropoutAfterUpload(t *testing.T) {
	sa, err := secagg.New(secagg.Default)
	if err != nil {
		t.Fatal(err)
	}
	f := newFed(t, fedOptions{nodes: 4, t: 2, min: 3, rounds: 2, scheme: sa})
	f.show = "none"
	f.runUntil(PhaseCollect, 1)
	// The victim: the first member other than the leader whose upload
	// the coordinator holds (the leader must stay, to decrypt).
	leader := f.c.leader()
	var victim fl.NodeID
	f.run(func() bool {
		for id := range f.c.uploads {
			if id != leader {
				victim = id
				return true
			}
		}
		return false
	})
	if f.c.uploads[victim] == nil || f.c.st.Phase != PhaseCollect {
		t.Fatalf("phase %s, %s's upload held: %v; want its upload during collection", f.c.st.Phase, victim, f.c.uploads[victim] != nil)
	}
	f.crashNode(victim)
	f.c.Unreachable(victim)
	f.run(func() bool { return f.c.st.LastCommitted >= 1 || f.c.st.Round > 1 })
	if f.c.st.LastCommitted < 1 {
		t.Fatalf("round 1 did not commit after %s dropped past its upload: phase %s of round %d, errors %v", victim, f.c.st.Phase, f.c.st.Round, f.errs)
	}
	if slices.Contains(f.c.st.Revealers, victim) {
		t.Fatalf("%s, down, was asked to reveal", victim)
	}
	model, r := f.globalModel()
	// The members' updates are (k, −k) for n_k, weight 1: the mean of all
	// four is (2.5, −2.5); without the dropped member it would be another.
	if r != 1 || math.Abs(model[0]-2.5) > 1e-5 || math.Abs(model[1]+2.5) > 1e-5 {
		t.Fatalf("round %d's model %v, want (2.5, -2.5): the mean of all four updates, the dropped member's included", r, model)
	}
	f.run(func() bool { return f.c.st.Phase == PhaseDone })
	if f.c.st.Phase != PhaseDone || f.c.st.Commits != 2 {
		t.Fatalf("phase %s after %d commits, want done after 2", f.c.st.Phase, f.c.st.Commits)
	}
}
