package round

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

// A node whose training fails (its external trainer crashed, hung or sent
// a bad reply) declines the round: the coordinator closes the round with
// the others without waiting for its deadline, keeps the node live, and
// the node trains in the next round.
func TestTrainingFailedDeclines(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 3, deadlines: Deadlines{Collect: 1000}})
	f.byID["n3"].fail = map[fl.Round]string{2: "training failed on this node"}
	f.run(nil)
	if st := f.c.Status(); st.Phase != PhaseDone || st.Commits != 3 {
		t.Fatalf("status %+v, want done after 3 commits", st)
	}
	if !strings.Contains(f.w.String(), "n3: refused round=2") || !strings.Contains(f.w.String(), "training failed on this node") {
		t.Errorf("no refusal of round 2 by n3 with the reason in the transcript:\n%s", f.w.String())
	}
	included := map[fl.Round][]fl.NodeID{}
	for _, e := range f.caudit {
		if e.Kind == EventAggregated {
			included[e.Round] = e.Nodes
		}
		if e.Kind == EventDown && e.Node == "n3" {
			t.Errorf("n3 counted down: %+v", e)
		}
	}
	if !slices.Contains(included[1], "n3") || slices.Contains(included[2], "n3") || !slices.Contains(included[3], "n3") {
		t.Errorf("included sets %v: want n3 in rounds 1 and 3, not 2", included)
	}
	var refused int
	for _, err := range f.errs {
		if errors.Is(err, ErrRefused) {
			refused++
		}
	}
	if refused != 1 {
		t.Errorf("%d refusals among the steps' errors %v, want 1", refused, f.errs)
	}
}

// After declining, a late update or a second failure of the same round is
// stale.
func TestTrainingFailedThenStale(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 2})
	sn := f.byID["n3"]
	sn.hold = true
	f.run(func() bool { return len(sn.held) > 0 })
	task := sn.held[0]
	if task.Kind != TaskTrain {
		t.Fatalf("held %v, want a training task", task.Kind)
	}
	if err := sn.n.Step(sn.id, Message{Kind: KindTrained, Update: fl.Update{Round: task.Round}, Reason: "trainer crashed"}); !errors.Is(err, ErrRefused) {
		t.Fatalf("declining: %v, want ErrRefused", err)
	}
	late := Message{Kind: KindTrained, Update: fl.Update{Node: sn.id, Round: task.Round, Delta: fl.Vector{1, 2, 3}, Weight: 1}}
	if err := sn.n.Step(sn.id, late); !errors.Is(err, ErrStale) {
		t.Errorf("an update after declining: %v, want ErrStale", err)
	}
	if err := sn.n.Step(sn.id, Message{Kind: KindTrained, Update: fl.Update{Round: task.Round}, Reason: "again"}); !errors.Is(err, ErrStale) {
		t.Errorf("a second failure: %v, want ErrStale", err)
	}
}
