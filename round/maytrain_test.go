package round

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

// A node whose MayTrain refuses a round answers the Train request with a
// refusal: the coordinator counts it as declined and the round goes on
// without it.
func TestMayTrainRefuses(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 3})
	sn := f.byID["n3"]
	var asked []fl.Round
	sn.cfg.MayTrain = func(r fl.Round) error {
		asked = append(asked, r)
		if r >= 2 {
			return errors.New("over the local limit")
		}
		return nil
	}
	var err error
	if sn.n, err = NewNode(sn.cfg); err != nil {
		t.Fatal(err)
	}
	f.run(nil)
	if st := f.c.Status(); st.Phase != PhaseDone || st.Commits != 3 {
		t.Fatalf("status %+v, want done after 3 commits", st)
	}
	if !slices.Equal(asked, []fl.Round{1, 2, 3}) {
		t.Errorf("MayTrain asked for rounds %v, want [1 2 3]", asked)
	}
	for _, r := range []string{"n3: refused round=2", "n3: refused round=3"} {
		if !strings.Contains(f.w.String(), r) || !strings.Contains(f.w.String(), "over the local limit") {
			t.Errorf("no %q with the reason in the transcript", r)
		}
	}
	included := map[fl.Round][]fl.NodeID{}
	for _, e := range f.caudit {
		if e.Kind == EventAggregated {
			included[e.Round] = e.Nodes
		}
	}
	if !slices.Contains(included[1], "n3") || slices.Contains(included[2], "n3") || slices.Contains(included[3], "n3") {
		t.Errorf("included sets %v: want n3 in round 1 only", included)
	}
}
