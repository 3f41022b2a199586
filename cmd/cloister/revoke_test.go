package main

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
)

// TestRevokeRunningFederation is issue 11's revocation check with real
// processes: every daemon reads the CA's CRL file (--crl); after round 2
// the admin runs `cloister ca revoke node-2`; no round after the one under
// way commits with node-2 (the nodes distrust it within a CRL poll), the coordinator
// excludes it by the round after, the others re-key without it and the
// session completes; every log verifies, and the coordinator's records the
// revocation.
func TestRevokeRunningFederation(t *testing.T) {
	f := newTestFed(t, 4, 2, 6, 1500) // rounds of a few seconds, longer than a CRL poll
	caDir := f.kit(pki.CADir)
	var out, errw bytes.Buffer
	// The empty CRL the daemons start with.
	if err := run([]string{"ca", "crl", "--ca", caDir}, nil, &out, &errw); err != nil {
		t.Fatalf("cloister ca crl: %v\n%s", err, errw.String())
	}
	t.Logf("cloister ca crl:\n%s", out.String())
	crl := filepath.Join(caDir, pki.CRLFile) // one machine: every daemon reads the file the CA writes
	f.coordArgs = append(f.coordArgs, "--crl", crl)
	f.nodeArgs = append(f.nodeArgs, "--crl", crl)
	f.startAll()
	f.wait(4*time.Minute, "round 2 committed", func(s fedStatus) bool { return s.LastCommitted >= 2 })

	out.Reset()
	if err := run([]string{"ca", "revoke", "--ca", caDir, "node-2"}, nil, &out, &errw); err != nil {
		t.Fatalf("cloister ca revoke node-2: %v\n%s", err, errw.String())
	}
	t.Logf("cloister ca revoke node-2:\n%s", out.String())
	revokedAt, _ := f.status()

	var st struct {
		Excluded map[fl.NodeID]string `json:"excluded"`
		Round    fl.Round             `json:"round"`
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if err := f.get("/status", &st); err == nil && strings.Contains(st.Excluded["node-2"], "revoked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node-2 not excluded 2 minutes after the revocation (round %d then): %+v", revokedAt.Round, st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("node-2 excluded in round %d (revoked in round %d): %s", st.Round, revokedAt.Round, st.Excluded["node-2"])
	// The nodes load the CRL within a poll and refuse the round under way
	// if it includes node-2; the coordinator excludes it by the round after.
	if st.Round > revokedAt.Round+2 {
		t.Errorf("node-2 excluded in round %d, revoked in round %d: want within the next round or the one after", st.Round, revokedAt.Round)
	}
	// node-2 is refused from now on: it would retry for ever.
	if err := f.kill("node-2"); err != nil {
		t.Fatal(err)
	}
	f.names = slices.DeleteFunc(f.names, func(n string) bool { return n == "node-2" })
	f.finish(6 * time.Minute)

	h := f.final
	if h.Phase != "done" || h.Commits != 6 {
		t.Fatalf("phase %s after %d commits, want done after 6", h.Phase, h.Commits)
	}
	last := h.History[len(h.History)-1]
	for _, r := range h.History {
		// The round under way when the CRL was written may still commit
		// with node-2 (the daemons read the file every 2 s); none after it.
		if r.Round > revokedAt.Round+1 && r.Outcome == "committed" && slices.Contains(r.Included, "node-2") {
			t.Errorf("round %d includes the revoked node-2: %v", r.Round, r.Included)
		}
	}
	for _, r := range h.History {
		t.Logf("round %d: %s with %v %s", r.Round, r.Outcome, r.Included, r.Reason)
	}
	t.Logf("last round %d: %s with %v", last.Round, last.Outcome, last.Included)
	f.verifyAudit(6)
	log, err := os.ReadFile(filepath.Join(f.state("coordinator"), "audit.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(log, []byte("certificate revoked")) {
		t.Error("the coordinator's audit log does not record the revocation")
	}
}
