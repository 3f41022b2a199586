package coordinator_test

import (
	"errors"
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

// TestAmendMidSession amends a running four-member federation on the fake
// clock. Bad amendments come first: a manifest signed by another CA and
// one of another session are refused by the coordinator, naming its
// manifest file, and change nothing. Then one amendment renews node-2's
// certificate, removes node-4 and adds two rounds: at the next boundary
// every member adopts it, node-4 leaves (its Run returns), the others
// re-key without it and the model carries over; node-2, restarted, dials
// with its renewed certificate (the old one is no longer listed). A third
// amendment lowers t to 1, which node-3's own floor refuses: node-3 leaves
// the federation, audited, and the last two finish the session. Every log
// verifies, and the amendments are in the logs of those that ran them.
func TestAmendMidSession(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const rounds = 8
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 4, Threshold: 2, MinCohort: 2, Mode: federation.ModePlain, DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: rounds, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
		f.TrainTime = 3 * time.Second // rounds longer than a manifest poll (2 s)
		fedDir := filepath.Join(f.Dir, "fed")
		manifestFile := filepath.Join(fedDir, pki.CoordinatorDir, pki.ManifestFile)
		f.CoordinatorConfig = func(c *coordinator.Config) { c.ManifestFile = manifestFile }
		f.NodeConfig = func(name string, c *node.Config) {
			c.KitDir = filepath.Join(fedDir, name)
			if name == "node-3" {
				c.MinThreshold = 2
			}
		}
		f.StartCoordinator()
		f.StartNodes(4)
		f.WaitStatus("round 2 committed", func(s round.Status) bool { return s.Commits >= 2 })

		// Forged: the same content signed by another CA.
		good, err := os.ReadFile(manifestFile)
		if err != nil {
			t.Fatal(err)
		}
		other, err := pki.NewCA("forger", time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		m := *f.Kits["coordinator"].Manifest
		m.Serial, m.Training.Rounds = 9, 100
		forged, err := federation.Sign(&m, other, nil)
		if err != nil {
			t.Fatal(err)
		}
		// Another session: the real CA, a higher serial, but no Session.
		ca, err := pki.LoadCA(filepath.Join(fedDir, pki.CADir))
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := federation.Sign(&m, ca, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i, bad := range [][]byte{forged, fresh} {
			if err := os.WriteFile(manifestFile, bad, 0o644); err != nil {
				t.Fatal(err)
			}
			f.WaitStatus("the bad amendment refused", func(round.Status) bool {
				return strings.Count(f.Logs.String(), "manifest amendment refused") > i
			})
		}
		if err := os.WriteFile(manifestFile, good, 0o644); err != nil {
			t.Fatal(err)
		}
		logs := f.Logs.String()
		for _, want := range []string{manifestFile, "not the federation CA", "is of session"} {
			if !strings.Contains(logs, want) {
				t.Errorf("the refusals do not mention %q", want)
			}
		}
		if s := f.Coord.Status(); len(s.Participants) != 4 {
			t.Fatalf("a refused amendment changed the federation: %+v", s)
		}

		// Renew node-2, remove node-4, two more rounds.
		before := f.Coord.Status()
		res, err := pki.Amend(fedDir, "", pki.Amendment{Renew: []fl.NodeID{"node-2"}, Remove: []fl.NodeID{"node-4"},
			Amendment: federation.Amendment{AddRounds: 2}}, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := pki.Amend(fedDir, "", pki.Amendment{Renew: []fl.NodeID{"node-9"}}, time.Now(), nil); err == nil || !strings.Contains(err.Error(), "not a member") {
			t.Fatalf("renewing an unknown member: %v", err)
		}
		s := f.WaitStatus("a key epoch without node-4", func(s round.Status) bool {
			return s.Epoch > before.Epoch && len(s.Participants) == 3 && !slices.Contains(s.Participants, "node-4") && s.Commits > before.Commits+1
		})
		t.Logf("amended (%s) during round %d; epoch %d among %v by round %d", res.Change, before.Round, s.Epoch, s.Participants, s.Round)
		if err := f.StopNode("node-4"); err != nil {
			t.Errorf("node-4, removed: %v", err)
		}
		if !strings.Contains(f.Logs.String(), "removed from the federation by manifest serial 2") {
			t.Error("node-4 did not say that it was removed")
		}
		// node-2 restarts with the kit it started with (the old
		// certificate): it runs under the terms in its state and loads the
		// renewed credential from its kit directory.
		if err := f.StopNode("node-2"); err != nil {
			t.Logf("node-2: %v", err)
		}
		f.StartNode("node-2", fedtest.Blobs(120, 6, 3, 1), fedtest.Blobs(90, 6, 3, 99))
		f.WaitStatus("node-2 back in a round", func(s round.Status) bool {
			return s.Commits > before.Commits+3 && slices.Contains(s.Live, "node-2")
		})
		if !strings.Contains(f.Logs.String(), "renewed certificate in use") {
			t.Error("node-2 did not take its renewed certificate")
		}
		// What the coordinator's TLS admits: the renewed certificate, not the old.
		if err := pki.Admit(res.Manifest, f.Kits["node-2"].Credential.Cert); !errors.Is(err, pki.ErrNotMember) {
			t.Errorf("node-2's old certificate under the amended manifest: %v", err)
		}
		if err := pki.Admit(res.Manifest, res.Renewed[0].Credential.Cert); err != nil {
			t.Errorf("node-2's renewed certificate: %v", err)
		}

		// t → 1: below node-3's floor.
		if _, err := pki.Amend(fedDir, "", pki.Amendment{Amendment: federation.Amendment{Threshold: 1, MinCohort: 1}}, time.Now(), nil); err != nil {
			t.Fatal(err)
		}
		f.WaitStatus("node-3 left", func(round.Status) bool {
			return strings.Contains(f.Logs.String(), "refused manifest serial 3")
		})
		if err := f.StopNode("node-3"); err != nil {
			t.Errorf("node-3, leaving: %v", err)
		}
		f.WaitDone(rounds+2, 5*time.Minute)
		f.VerifyAudit(rounds+2, 5)
		for name, wants := range map[string][]string{
			"coordinator": {`"kind":"amended"`, "serial 1→2; remove node-4; renew node-2; rounds 8→10", "serial 2→3; t 2→1"},
			"node-1":      {"serial 1→2", "serial 2→3"},
			"node-3":      {"serial 1→2", "amendment serial 3", "amendment refused by local policy: threshold 1"},
			"node-4":      {"serial 1→2"},
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
