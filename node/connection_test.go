package node_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
)

// TestSeveralCoordinators: nodes given two coordinator addresses, the first
// of which never answers (a standby, which listens only once it leads),
// reach the coordinator at the second, and back off only once every
// address has failed; the session completes.
func TestSeveralCoordinators(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 2, Mode: federation.ModePlain,
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 2, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})
		const dead = "127.0.0.1:7001"
		f.NodeAddrs = []string{dead, fedtest.Address}
		var mu sync.Mutex
		var dials []time.Time // of the dead address, by node-1
		f.NodeConfig = func(name string, c *node.Config) {
			c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
				if addr == dead {
					if name == "node-1" {
						mu.Lock()
						dials = append(dials, time.Now())
						mu.Unlock()
					}
					return nil, fedtest.ErrRefused
				}
				return f.Net.Dial(ctx, addr)
			}
		}
		// Nothing listens for a while: node-1 tries both, backing off
		// between rounds of tries.
		f.StartNodes(3)
		time.Sleep(3 * time.Second)
		mu.Lock()
		n := len(dials)
		gaps := 0
		for i := 1; i < n; i++ {
			if dials[i].Sub(dials[i-1]) >= 25*time.Millisecond { // half of fedtest's minimum backoff
				gaps++
			}
		}
		mu.Unlock()
		if n < 3 || gaps != n-1 {
			t.Errorf("node-1 dialed the dead address %d times with %d backoffs between: want a backoff between every round of tries", n, gaps)
		}
		f.StartCoordinator()
		f.WaitDone(2, time.Minute)
		f.StopCoordinator()
		f.VerifyAudit(2, 4)
	})
}
