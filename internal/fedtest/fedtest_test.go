package fedtest_test

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
)

// TestPlain runs a plain federation of three nodes to its end on the fake
// clock: the harness itself, end to end.
func TestPlain(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 3, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})
		start := time.Now()
		f.StartCoordinator()
		f.StartNodes(3)
		f.WaitNodes(2 * time.Minute)
		if st := f.Coord.Status(); st.Phase != round.PhaseDone || st.Commits != 3 {
			t.Fatalf("coordinator status %+v, want done after 3 commits", st)
		}
		t.Logf("session took %v of fake time", time.Since(start))
		// Each node reports what it did, by task, in its state directory.
		var reveals, leads uint64
		for _, name := range fedtest.NodeNames(3) {
			r, err := node.ReadReport(f.StateDir(name))
			if err != nil {
				t.Fatal(err)
			}
			if r.Train.Count != 3 || r.Protect.Count != 3 || r.Evaluate.Count != 3 || r.Connects == 0 {
				t.Errorf("%s's report %+v: want 3 trainings, protections and evaluations", name, r)
			}
			reveals, leads = reveals+r.Reveal.Count, leads+r.Lead.Count
		}
		if reveals != 3*2 || leads != 3 {
			t.Errorf("the nodes revealed %d times and led %d rounds, want 6 and 3", reveals, leads)
		}
		f.StopCoordinator()
		f.VerifyAudit(3, 4)
	})
}
