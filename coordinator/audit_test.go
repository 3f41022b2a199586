package coordinator

import (
	"crypto/ed25519"
	"path/filepath"
	"testing"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
)

// TestAuditExclusionAndReadmission: the engine's exclusion and readmission
// of a member become node-dropped (excluded: …) and node-readmitted
// records, which a log accepts and audit.Verify checks.
func TestAuditExclusionAndReadmission(t *testing.T) {
	var c Coordinator
	got := c.auditEntries([]round.Event{
		{Kind: round.EventExcluded, Round: 3, Node: "node-2", Detail: "attestation expired"},
		{Kind: round.EventReadmitted, Round: 5, Node: "node-2"},
	}, nil)
	if len(got) != 2 || got[0].kind != audit.NodeDropped || got[1].kind != audit.NodeReadmitted {
		t.Fatalf("audit entries %+v, want node-dropped then node-readmitted", got)
	}
	if d := got[1].data; d.Node != fl.NodeID("node-2") || d.Round != 5 || d.Reason == "" {
		t.Errorf("node-readmitted data %+v, want node-2, round 5 and a reason", d)
	}
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "audit.log")
	l, err := audit.Open(path, key, "coordinator", audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Append(audit.SessionStarted, audit.Data{Session: "s", Manifest: audit.Digest(round.DigestOf([]byte("m")))}); err != nil {
		t.Fatal(err)
	}
	for _, e := range got {
		if _, err := l.Append(e.kind, e.data); err != nil {
			t.Fatalf("appending %s: %v", e.kind, err)
		}
	}
	l.Close()
	sum, err := audit.Verify(path, audit.Keys{"coordinator": pub})
	if err != nil {
		t.Fatalf("audit.Verify: %v", err)
	}
	t.Logf("verified: %v", sum.Kinds)
}
