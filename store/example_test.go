package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/store"
)

// Example persists one committed round on the coordinator's side, and one
// reveal on a node's side, then restarts both from their files. Errors are
// ignored for brevity; a daemon checks every one.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "store-example")
	defer os.RemoveAll(dir)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) // the daemon's clock
	id := []byte("manifest hash ‖ key epoch")

	// The coordinator creates its session, then saves each Ready of its
	// engine in one transaction before sending the Ready's messages.
	db, _ := store.Open(filepath.Join(dir, "coordinator.db"))
	db.CreateSession(ctx, store.Session{ID: id, Manifest: sha256.Sum256([]byte("signed manifest")), Created: now})
	c := db.Coordinator(id)
	err := c.Save(ctx, store.CoordinatorBatch{
		State: []byte("engine state after round 1"), // CoordinatorState.MarshalBinary
		Epoch: 1,
		Rounds: []store.Round{{Round: 1, Epoch: 1, Phase: "evaluate", Leader: "alice",
			Cohort: []fl.NodeID{"alice", "bob"}, Outcome: store.Committed, Started: now,
			Timings: []store.Timing{{Phase: "collect", Duration: 2 * time.Second}}}},
		Models:  []store.Model{{Round: 1, Sealed: []byte("model 1, sealed with the group key")}},
		Commits: []store.Commit{{Round: 1, Epoch: 1, Leader: "alice", Record: []byte("round record"), Signature: []byte("sig")}},
		Metrics: []store.Metric{
			{Round: 1, Node: "alice", Metrics: fl.Metrics{Accuracy: 0.9, Loss: 0.3, Examples: 100}},
			{Round: 1, Node: "bob", Metrics: fl.Metrics{Accuracy: 0.7, Loss: 0.5, Examples: 300}},
		},
	})
	fmt.Println("saved:", err)
	db.Close()

	// After a restart, it resumes the latest session.
	db, _ = store.Open(filepath.Join(dir, "coordinator.db"))
	s, _ := db.LatestSession(ctx)
	c = db.Coordinator(s.ID)
	state, _ := c.State(ctx)
	m, _ := c.LatestModel(ctx)
	sum, _ := c.Summaries(ctx, 0, 0)
	fmt.Printf("resumed epoch %d: %q, model of round %d\n", s.Epoch, state, m.Round)
	fmt.Printf("round %d: %d nodes, accuracy %.2f\n", sum[0].Round, sum[0].Nodes, sum[0].Accuracy)
	err = c.Save(ctx, store.CoordinatorBatch{Commits: []store.Commit{{Round: 1, Record: []byte("another record")}}})
	fmt.Println("commit again:", errors.Is(err, store.ErrCommitted))
	db.Close()

	// A node seals its secrets with its at-rest key, and uses the store as
	// its reveal-once ledger.
	key, _ := store.LoadOrCreateKey(dir) // the node's kit directory
	db, _ = store.Open(filepath.Join(dir, "node.db"))
	db.CreateSession(ctx, store.Session{ID: id, Created: now})
	n := db.Node(id, key)
	n.Save(ctx, store.NodeBatch{Keys: &store.Keys{Party: []byte("key shares")}, Epoch: 1})
	var ledger protect.Ledger = n // what Party.Reveal takes
	fmt.Println("reveal:", ledger.Record(1, [32]byte{1}))
	db.Close()

	db, _ = store.Open(filepath.Join(dir, "node.db"))
	defer db.Close()
	n = db.Node(id, key)
	b, _ := n.Load(ctx)
	fmt.Printf("party: %q\n", b.Keys.Party)
	err = n.Record(1, [32]byte{2})
	fmt.Println("reveal again:", errors.Is(err, protect.ErrRevealed))

	// Output:
	// saved: <nil>
	// resumed epoch 1: "engine state after round 1", model of round 1
	// round 1: 2 nodes, accuracy 0.75
	// commit again: true
	// reveal: <nil>
	// party: "key shares"
	// reveal again: true
}
