package coordinator_test

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
)

// failoverFed is a federation of 3 nodes whose coordinators share one
// store (a SQLite file here; the real-process test in cmd/cloister runs
// on PostgreSQL) with a lease of 2 s, and whose rounds take fake time.
func failoverFed(t *testing.T, rounds int) *fedtest.Fed {
	f := fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 2, Mode: federation.ModePlain,
		Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: rounds, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})
	shared := filepath.Join(f.Dir, "shared.db")
	f.CoordinatorConfig = func(c *coordinator.Config) {
		c.Store = shared
		c.Lease = 2 * time.Second
	}
	f.TrainTime = time.Second
	return f
}

// checkCommits verifies every log, and checks that the shared store holds
// n committed rounds, each with one commit record, and that the
// coordinators' logs together record exactly those commits, each once.
func checkCommits(t *testing.T, f *fedtest.Fed, n int) {
	t.Helper()
	man := f.Kits["coordinator"].Manifest
	res, err := audit.VerifyDir(f.Dir, audit.Federation{Keys: audit.Keys(man.AuditKeys()), Coordinator: man.Coordinator.Name})
	if err != nil {
		t.Fatalf("audit verify: %v", err)
	}
	logged := map[fl.Round][]string{}
	for _, r := range res {
		if r.Summary.State.Actor != man.Coordinator.Name {
			continue
		}
		for rd := range r.Summary.State.Commits {
			logged[rd] = append(logged[rd], filepath.Base(filepath.Dir(r.Path)))
		}
	}
	db, err := store.Open(filepath.Join(f.Dir, "shared.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	sess, _ := man.Hash()
	sc := db.Coordinator(sess[:])
	rounds, err := sc.Rounds(context.Background(), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var committed, aborted []fl.Round
	for _, r := range rounds {
		switch r.Outcome {
		case store.Committed:
			committed = append(committed, r.Round)
			if _, err := sc.Commit(context.Background(), r.Round); err != nil {
				t.Errorf("round %d: %v", r.Round, err)
			}
			if len(logged[r.Round]) != 1 {
				t.Errorf("round %d committed in the logs %v, want one", r.Round, logged[r.Round])
			}
		case store.Aborted:
			aborted = append(aborted, r.Round)
		}
	}
	if len(committed) != n || len(logged) != n {
		t.Errorf("%d rounds committed in the store (%v), %d in the logs (%v); want %d", len(committed), committed, len(logged), logged, n)
	}
	t.Logf("committed %v, aborted %v; by log %v", committed, aborted, logged)
}

// TestFailoverHandover: a standby waits while the leader leads; the leader
// shuts down mid-session (releasing its lease) and the standby takes over
// at once from the stored state; the session ends with every round
// committed once. The nodes are given two coordinator addresses, the first
// of which never answers: they reach the coordinator through the second.
func TestFailoverHandover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := failoverFed(t, 16)
		const dead = "127.0.0.1:7001"
		f.NodeAddrs = []string{dead, fedtest.Address}
		dials := map[string]int{}
		var mu sync.Mutex
		f.NodeConfig = func(name string, c *node.Config) {
			c.Dial = func(ctx context.Context, addr string) (net.Conn, error) {
				mu.Lock()
				dials[addr]++
				mu.Unlock()
				if addr == dead {
					return nil, fedtest.ErrRefused
				}
				return f.Net.Dial(ctx, addr)
			}
		}
		f.StartCoordinator()
		var standby *coordinator.Coordinator
		took := make(chan error, 1)
		go func() {
			var err error
			standby, err = coordinator.Standby(context.Background(), f.CoordinatorSettings("standby"))
			took <- err
		}()
		f.StartNodes(3)
		f.WaitStatus("round 2 committed", func(s round.Status) bool { return s.Commits >= 2 })
		time.Sleep(10 * time.Second) // five leases: the leader renews, the standby waits
		select {
		case err := <-took:
			t.Fatalf("the standby took the lead while the leader leads: %v", err)
		default:
		}
		if !strings.Contains(f.Logs.String(), "standby: another coordinator leads") {
			t.Error("the standby does not say whom it waits for")
		}
		at := f.Coord.Status()
		if at.Phase == round.PhaseDone {
			t.Fatalf("the session ended before the handover: %+v", at)
		}
		f.StopCoordinator()
		start := time.Now()
		if err := <-took; err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("the standby took %v to take a released lead", d)
		}
		t.Logf("handover in round %d (%s) after %v", at.Round, at.Phase, time.Since(start))
		f.Serve(standby)
		f.WaitDone(16, 5*time.Minute)
		f.StopCoordinator()
		checkCommits(t, f, 16)
		if dials[dead] == 0 || dials[fedtest.Address] < 6 {
			t.Errorf("dials %v: want the dead address tried, and the live one by each node before and after the handover", dials)
		}
	})
}

// TestFailoverClockSkew: the standby's clock runs an hour ahead, so it
// finds the leader's lease expired and takes the lead while the leader is
// still acting. The leader's next write (or renewal) is fenced: it stops,
// saying why, and commits nothing more; the new leader finishes the
// session; no round is committed twice. The clocks decide when a lease may
// be taken; the fencing token decides who writes.
func TestFailoverClockSkew(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := failoverFed(t, 6)
		f.StartCoordinator()
		old := f.Coord
		f.StartNodes(3)
		f.WaitStatus("round 2 committed", func(s round.Status) bool { return s.Commits >= 2 })
		cfg := f.CoordinatorSettings("standby")
		cfg.Now = func() time.Time { return time.Now().Add(time.Hour) }
		standby, err := coordinator.Standby(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		f.Serve(standby)
		select {
		case <-old.Done():
		case <-time.After(time.Minute):
			t.Fatal("the fenced leader still runs a minute later")
		}
		if err := old.Err(); !errors.Is(err, store.ErrFenced) || !strings.Contains(err.Error(), "lost the lead") {
			t.Errorf("the old leader stopped with %v, want a lost lead (ErrFenced)", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := old.Shutdown(ctx); !errors.Is(err, store.ErrFenced) {
			t.Errorf("Shutdown of the fenced leader: %v", err)
		}
		f.WaitDone(6, 5*time.Minute)
		f.StopCoordinator()
		checkCommits(t, f, 6)
	})
}

// TestLeadHeld: a second coordinator on the store, not a standby, is
// refused while the leader leads, naming it; it writes nothing (no audit
// log in its state directory, no change to the lease).
func TestLeadHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := failoverFed(t, 2)
		f.StartCoordinator()
		cfg := f.CoordinatorSettings("second")
		_, err := coordinator.New(cfg)
		var held *store.LeaseHeldError
		if !errors.As(err, &held) || !strings.Contains(err.Error(), f.StateDir("coordinator")) {
			t.Fatalf("a second coordinator: %v, want the lead held by the first", err)
		}
		if held.Lease.Token != 1 {
			t.Errorf("the lease in force has token %d, want 1", held.Lease.Token)
		}
		if _, err := os.Stat(filepath.Join(cfg.StateDir, coordinator.AuditFile)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the refused coordinator left an audit log: %v", err)
		}
		// The leader goes on, and its restart takes its own lease back at
		// once (the same host and state directory), with a new token.
		f.StopCoordinator()
		f.StartCoordinator()
		f.StartNodes(3)
		f.WaitDone(2, 5*time.Minute)
		f.StopCoordinator()
		checkCommits(t, f, 2)
		if !slices.ContainsFunc(strings.Split(f.Logs.String(), "\n"), func(l string) bool {
			return strings.Contains(l, "took the lead") && strings.Contains(l, "token=2")
		}) {
			t.Error("the restarted leader did not take the lead with token 2 (the refused coordinator takes none)")
		}
	})
}
