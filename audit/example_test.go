package audit_test

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cloisterfl/cloister/audit"
)

// A node keeps its log: every append is durable before it returns, the
// log verifies with the node's public key, and the fold of the log says
// what happened.
func Example() {
	dir, _ := os.MkdirTemp("", "audit-example-")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "node-1.log")

	seed := sha256.Sum256([]byte("example"))
	key := ed25519.NewKeyFromSeed(seed[:])
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { now = now.Add(time.Second); return now }

	l, err := audit.Open(path, key, "node-1", audit.Options{Now: clock})
	if err != nil {
		fmt.Println(err)
		return
	}
	l.Append(audit.SessionStarted, audit.Data{Session: "fed-example", Manifest: sha256.Sum256([]byte("manifest"))})
	l.Record(1, sha256.Sum256([]byte("aggregate of round 1"))) // protect.Ledger: reveal once
	err = l.Record(1, sha256.Sum256([]byte("another aggregate")))
	fmt.Println("second reveal refused:", err != nil)
	l.Append(audit.Committed, audit.Data{Round: 1, Digest: sha256.Sum256([]byte("model 1"))})
	l.Close()

	s, err := audit.Verify(path, audit.Keys{"node-1": key.Public().(ed25519.PublicKey)})
	fmt.Println("verified:", err == nil, "records:", s.Records, "rounds committed:", s.Rounds)
	fmt.Println("reveals in round 1:", len(s.State.Reveals[1]))
	// Output:
	// second reveal refused: true
	// verified: true records: 3 rounds committed: 1
	// reveals in round 1: 1
}

// The leader cosigns a commit's statement; the coordinator's log carries
// both signatures.
func ExampleCosign() {
	dir, _ := os.MkdirTemp("", "audit-example-")
	defer os.RemoveAll(dir)

	_, coordKey, _ := ed25519.GenerateKey(nil)
	_, leaderKey, _ := ed25519.GenerateKey(nil)
	keys := audit.Keys{
		"coordinator": coordKey.Public().(ed25519.PublicKey),
		"node-2":      leaderKey.Public().(ed25519.PublicKey),
	}
	commit := audit.Data{Round: 7, Digest: sha256.Sum256([]byte("model 7")), Leader: "node-2", Session: "fed-example"}

	// On the leader:
	cosig, _ := audit.Cosign(leaderKey, "node-2", audit.Committed, commit)

	// On the coordinator:
	l, _ := audit.Open(filepath.Join(dir, "coordinator.log"), coordKey, "coordinator", audit.Options{Keys: keys})
	rec, err := l.AppendCosigned(audit.Committed, commit, cosig)
	l.Close()
	fmt.Println(rec.Seq, rec.Cosign.Signer, err)

	_, err = audit.Verify(filepath.Join(dir, "coordinator.log"), keys)
	fmt.Println("verified:", err == nil)
	// Output:
	// 1 node-2 <nil>
	// verified: true
}
