package coordinator_test

import (
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"strings"
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

// TestRevocationMidSession: every daemon runs with --crl on the CA's CRL
// file. node-2's certificate is revoked while rounds go on (the file is
// replaced, as `cloister ca revoke` does): within a round the coordinator
// excludes it with the revocation as the reason and drops its stream, the
// others re-key without it, and rounds go on to the end. node-2's later
// handshakes are refused and audited; a forged CRL written afterwards is
// refused, naming the file, and changes nothing. Every log verifies.
func TestRevocationMidSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rounds = 16
		// A round takes longer than a CRL poll (2 s), as in any real federation.
		f, crlPath, l, revokedAt, s := revokeNode2(t, rounds, 2*time.Second)
		if s.Round > revokedAt.Round+1 {
			t.Errorf("node-2 excluded in round %d, revoked during round %d", s.Round, revokedAt.Round)
		}
		s = f.WaitStatus("a key epoch without node-2", func(s round.Status) bool {
			return s.Epoch > revokedAt.Epoch && len(s.Participants) > 0 && !slices.Contains(s.Participants, "node-2") && s.Commits > revokedAt.Commits+1
		})
		f.WaitStatus("node-2's handshakes refused", func(round.Status) bool {
			return strings.Contains(f.Logs.String(), "TLS handshake refused")
		})
		f.WaitStatus("every daemon loaded the CRL", func(round.Status) bool {
			return strings.Count(f.Logs.String(), "revocation list loaded") >= 5
		})
		// A forged CRL (another CA, a higher number, revoking nothing) is
		// refused by every daemon, naming the file; node-2 stays revoked.
		other, _ := pki.NewCA("forger", time.Now(), nil)
		forged, _ := other.Revoke(l, nil, time.Now())
		if err := os.WriteFile(crlPath, forged.DER, 0o644); err != nil {
			t.Fatal(err)
		}
		f.WaitStatus("the forged CRL refused", func(round.Status) bool {
			return strings.Count(f.Logs.String(), "revocation list refused") >= 5
		})
		if err := f.StopNode("node-2"); err != nil {
			t.Logf("node-2: %v", err)
		}
		f.WaitDone(rounds, 5*time.Minute)
		logs := f.Logs.String()
		for _, want := range []string{"excluding a member: its certificate is revoked", "dropped a revoked member's stream",
			"not signed by federation CA", crlPath, "certificate revoked"} {
			if !strings.Contains(logs, want) {
				t.Errorf("logs do not mention %q", want)
			}
		}
		f.VerifyAudit(rounds, 5)
		// The coordinator's log records the exclusion with its reason, and
		// the refused handshakes; node-1's records its distrust of node-2.
		for name, wants := range map[string][]string{
			"coordinator": {"excluded: certificate revoked", "TLS handshake refused"},
			"node-1":      {"certificate revoked"},
		} {
			b, err := os.ReadFile(filepath.Join(f.StateDir(name), coordinator.AuditFile))
			if err != nil {
				t.Fatal(err)
			}
			for _, want := range wants {
				if !strings.Contains(string(b), want) {
					t.Errorf("%s's audit log does not mention %q", name, want)
				}
			}
		}
	})
}

// TestRevocationFastRounds: rounds shorter than a CRL poll. The rounds
// go on with node-2 until a daemon reads the new CRL (within a poll); the
// nodes may read it before the coordinator and refuse the rounds that
// include node-2, which then abort faster than the coordinator's
// once-a-second checks. After an aborted round the coordinator reads the
// CRL at its next tick, so at most the refused round and one more abort
// before node-2 is excluded (reading it only at the one-second checks, 8
// rounds aborted here), and the session completes without it.
func TestRevocationFastRounds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rounds = 12
		start := time.Now()
		f, _, _, revokedAt, s := revokeNode2(t, rounds, 150*time.Millisecond)
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var aborted []fl.Round
		for _, r := range h.History {
			if r.Round > revokedAt.Round && r.Round < s.Round && r.Outcome == "aborted" {
				aborted = append(aborted, r.Round)
			}
		}
		t.Logf("excluded %v after the start, in round %d; rounds aborted before: %v", time.Since(start), s.Round, aborted)
		if len(aborted) > 2 {
			t.Errorf("rounds %v aborted before node-2's exclusion: want at most 2", aborted)
		}
		if err := f.StopNode("node-2"); err != nil {
			t.Logf("node-2: %v", err)
		}
		f.WaitDone(rounds, 5*time.Minute)
		h, err = f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.History {
			if r.Round >= s.Round && r.Outcome == "committed" && slices.Contains(r.Included, "node-2") {
				t.Errorf("round %d after the exclusion included node-2: %v", r.Round, r.Included)
			}
		}
	})
}

// revokeNode2 starts a federation of 4 whose daemons read the CA's CRL
// file, lets it commit 2 rounds with members training for trainTime,
// revokes node-2 (replacing the file, as `cloister ca revoke` does) and
// waits until the coordinator excludes it, for the revocation. It returns
// the federation, the CRL file, the CRL written, the status when it was
// written and the status that shows the exclusion.
func revokeNode2(t *testing.T, rounds int, trainTime time.Duration) (fed, string, *pki.RevocationList, round.Status, round.Status) {
	t.Helper()
	f := fed{fedtest.New(t, pki.InitOptions{Nodes: 4, Threshold: 2, MinCohort: 2, Mode: federation.ModePlain, DP: &federation.DP{},
		Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: rounds, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
	f.TrainTime = trainTime
	caDir := filepath.Join(f.Dir, "fed", pki.CADir)
	ca, err := pki.LoadCA(caDir)
	if err != nil {
		t.Fatal(err)
	}
	empty, err := ca.CRL(caDir, time.Now()) // the empty CRL the daemons start with
	if err != nil {
		t.Fatal(err)
	}
	crlPath := filepath.Join(caDir, pki.CRLFile)
	open := func() *pki.Revocations {
		rv, err := pki.OpenRevocations(crlPath, ca.Certificate())
		if err != nil {
			t.Fatal(err)
		}
		return rv
	}
	f.CoordinatorConfig = func(c *coordinator.Config) { c.CRL = open() }
	f.NodeConfig = func(name string, c *node.Config) { c.CRL = open() }
	f.StartCoordinator()
	f.StartNodes(4)
	f.WaitStatus("round 2 committed", func(s round.Status) bool { return s.Commits >= 2 })

	revokedAt := f.Coord.Status()
	l, err := ca.Revoke(empty, []*x509.Certificate{f.Kits["node-2"].Credential.Cert}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.SaveCRL(caDir, l); err != nil {
		t.Fatal(err)
	}
	s := f.WaitStatus("node-2 excluded", func(s round.Status) bool { _, ok := s.Exclusions["node-2"]; return ok })
	if !strings.Contains(s.Exclusions["node-2"], "certificate revoked") {
		t.Errorf("node-2 excluded for %q, want the revocation", s.Exclusions["node-2"])
	}
	t.Logf("revoked during round %d (epoch %d); excluded in round %d", revokedAt.Round, revokedAt.Epoch, s.Round)
	return f, crlPath, l, revokedAt, s
}
