package round

import (
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
)

// TestSimulation runs a whole federation in memory: 5 nodes, t = 3, 5
// rounds, FedAvg with server learning rate 1, each node's Δ fixed, so the
// final model is known exactly.
func TestSimulation(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 5, t: 3, min: 3, rounds: 5, init: fl.Vector{1, 2, 3}})
	f.show = "none"
	weights := []float64{1, 2, 3, 4, 6}
	deltas := []fl.Vector{{1, 0, -1}, {2, 1, 0}, {0.5, 0.5, 0.5}, {-1, 4, 2}, {0, 0, 8}}
	// The weighted mean Δ̄ = Σ wᵢΔᵢ / Σ wᵢ, added each round.
	var sumW float64
	mean := make(fl.Vector, 3)
	for i, sn := range f.nodes {
		sn.delta, sn.weight = deltas[i], weights[i]
		sumW += weights[i]
		_ = mean.Add(weights[i], deltas[i])
	}
	mean.Scale(1 / sumW)
	f.run(nil)
	if len(f.errs) != 0 {
		t.Fatalf("errors: %v", f.errs)
	}
	st := f.c.Status()
	if st.Phase != PhaseDone || st.Commits != 5 || st.Round != 5 {
		t.Fatalf("status %+v", st)
	}
	want := fl.Vector{1, 2, 3}
	for range 5 {
		_ = want.Add(1, mean)
	}
	got, r := f.globalModel()
	if r != 5 || !closeTo(got, want, 1e-12) {
		t.Fatalf("model of round %d = %v, want %v", r, got, want)
	}
	// Every node evaluated every committed model; leaders rotated.
	var leaders []fl.NodeID
	for _, e := range f.caudit {
		if e.Kind == EventCommitted {
			leaders = append(leaders, e.Node)
		}
	}
	if !slices.Equal(leaders, []fl.NodeID{"n1", "n2", "n3", "n4", "n5"}) {
		t.Fatalf("leaders %v", leaders)
	}
	for _, sn := range f.nodes {
		if len(sn.evals) != 5 || !closeTo(sn.evals[5], want, 1e-12) {
			t.Fatalf("%s evaluated %v", sn.id, sn.evals)
		}
		if !sn.n.Status().Done {
			t.Fatalf("%s is not done", sn.id)
		}
		// Every node revealed at most once per round.
		if len(sn.ledger.entries) > 5 {
			t.Fatalf("%s ledger %v", sn.id, sn.ledger.entries)
		}
	}
}

func closeTo(a, b fl.Vector, eps float64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if d := a[i] - b[i]; d > eps || d < -eps {
			return false
		}
	}
	return true
}

// TestSimulationMHE runs the same engine on threshold multiparty CKKS
// (insecure test parameters): the engine is mode-agnostic.
func TestSimulationMHE(t *testing.T) {
	s, err := mhe.New(mhe.InsecureTest)
	if err != nil {
		t.Fatal(err)
	}
	f := newFed(t, fedOptions{nodes: 4, t: 3, min: 3, rounds: 2, init: fl.Vector{1, 2, 3}, scheme: s})
	f.show = "none"
	deltas := []fl.Vector{{1, 0, -1}, {2, 1, 0}, {0.5, 0.5, 0.5}, {-1, 4, 2}}
	mean := make(fl.Vector, 3)
	for i, sn := range f.nodes {
		sn.delta = deltas[i]
		_ = mean.Add(0.25, deltas[i])
	}
	f.run(nil)
	if len(f.errs) != 0 {
		t.Fatalf("errors: %v", f.errs)
	}
	if st := f.c.Status(); st.Phase != PhaseDone || st.Commits != 2 {
		t.Fatalf("status %+v", st)
	}
	want := fl.Vector{1, 2, 3}
	_ = want.Add(2, mean)
	got, _ := f.globalModel()
	// Each round's mean carries the scheme's error, divided by Σw = 4.
	if tol := 2*s.Capacity().MaxError + 1e-9; !closeTo(got, want, tol) {
		t.Fatalf("model %v, want %v within %g", got, want, tol)
	}
	t.Logf("mhe: model %v (exact %v)", got, want)
	// Only the members the coordinator then picked as revealers (the
	// leader and the next in rotation) made their reveal share ahead; the
	// fourth left the cores to the others.
	revealers := make(map[fl.Round][]fl.NodeID)
	for _, e := range f.caudit {
		if e.Kind == EventRevealRequested {
			revealers[e.Round] = slices.Sorted(slices.Values(e.Nodes))
		}
	}
	for r := fl.Round(1); r <= 2; r++ {
		got := slices.Sorted(slices.Values(f.precomputedBy[r]))
		if len(revealers[r]) != 3 || !slices.Equal(got, revealers[r]) {
			t.Errorf("round %d: precomputed by %v, revealers %v", r, got, revealers[r])
		}
	}
}
