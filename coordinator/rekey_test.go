package coordinator_test

import (
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
)

// TestLateMemberRekey: node-3 is not there when the session starts. After
// Deadlines.Join the key setup starts with node-1 and node-2, who train.
// node-3 comes during round 3, which aborts (node-1 and node-2 hold their
// updates past the collect deadline); the re-key that follows includes
// node-3 and carries the newest committed model (round 2, unless a round
// before aborted) over to the new group key. A node's `model export` gives
// that committed model before the re-key and right after it, while round 4
// trains on it. It runs with join windows that are and are not multiples of
// the nodes' idle period: with a multiple, the idle Hellos leave as the
// window closes and cross SetupStart, which must not restart the setup.
func TestLateMemberRekey(t *testing.T) {
	for _, join := range []time.Duration{500 * time.Millisecond, time.Second, 3 * time.Second} {
		t.Run(join.String(), func(t *testing.T) { lateMemberRekey(t, join) })
	}
}

func lateMemberRekey(t *testing.T, join time.Duration) {
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 2, Mode: federation.ModePlain, DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 4, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
		f.Deadlines = func(d *coordinator.Deadlines) {
			// On the fake clock load cannot delay node-1 and node-2's
			// Hellos: the natural window works.
			d.Join = join
			d.Collect = 2 * time.Second
		}
		var mu sync.Mutex
		held := map[fl.Round][]fl.NodeID{} // who holds its update of round r
		release := map[fl.Round]chan struct{}{3: make(chan struct{}), 4: make(chan struct{})}
		f.NodeConfig = func(name string, c *node.Config) {
			c.Idle = time.Second // node-1 and node-2 say Hello again soon after they are marked down
			c.OnUpdate = func(u fl.Update) {
				if ch := release[u.Round]; ch != nil && (u.Round == 3 || name == "node-2") {
					mu.Lock()
					held[u.Round] = append(held[u.Round], u.Node)
					mu.Unlock()
					<-ch
				}
			}
		}
		defer func() { // also on a failure: the held trainers must return for the nodes to stop
			for _, ch := range release {
				select {
				case <-ch:
				default:
					close(ch)
				}
			}
		}()
		holding := func(r fl.Round, n int) func(round.Status) bool {
			return func(round.Status) bool {
				mu.Lock()
				defer mu.Unlock()
				return len(held[r]) == n
			}
		}
		f.StartCoordinator()
		f.StartNodes(2)
		f.WaitStatus("round 3 held by node-1 and node-2", holding(3, 2))
		s := f.Coord.Status()
		if s.LastCommitted == 0 || !slices.Equal(s.Participants, []fl.NodeID{"node-1", "node-2"}) {
			t.Fatalf("status %+v: want rounds committed by a setup of node-1 and node-2", s)
		}
		epoch, last := s.Epoch, s.LastCommitted
		before := f.Export("node-2")
		f.StartNode("node-3", fedtest.Blobs(120, 6, 3, 2), fedtest.Blobs(90, 6, 3, 99)) // as StartNodes(3) would
		f.WaitStatus("round 3 aborted", func(s round.Status) bool { return s.Round > 3 || s.Phase < round.PhaseWait })
		close(release[3])
		f.WaitStatus("node-2 holds round 4", holding(4, 1))
		s = f.Coord.Status()
		if s.Epoch == epoch || !slices.Equal(s.Participants, []fl.NodeID{"node-1", "node-2", "node-3"}) || s.LastCommitted != last {
			t.Fatalf("status %+v: want a re-key with node-3 after round %d", s, last)
		}
		after := f.Export("node-2")
		close(release[4])
		f.WaitNodes(time.Minute)
		// The operator's log: round 3 aborted with its reason, every other
		// round committed with its metrics.
		h := f.checkRoundLog()
		if len(h.History) < 4 || h.History[2].Outcome != "aborted" {
			t.Errorf("rounds %+v: want round 3 aborted", h.History)
		}
		f.StopCoordinator()
		if before.Round != last || after.Round != last || !slices.Equal(before.Model, after.Model) {
			t.Errorf("export before the re-key: round %d %v; after: round %d %v; want the same committed model of round %d",
				before.Round, before.Model[:3], after.Round, after.Model[:3], last)
		}
		if before.Digest == after.Digest {
			t.Error("the export after the re-key opened the copy sealed under the previous group key, not the re-sealed one")
		}
		f.VerifyAudit(4, 4)
	})
}
