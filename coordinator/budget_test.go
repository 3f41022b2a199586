package coordinator_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
)

// records reads an audit log's records of the given kind.
func records(t *testing.T, path string, kind audit.Kind) []audit.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		r, err := audit.ParseRecord(line)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if r.Kind == kind {
			out = append(out, r)
		}
	}
	return out
}

// The budget, enforced twice. The manifest's ε = 8 (σ = 1, C = 1, δ = 1e-5)
// covers 2 of the 4 planned rounds: the coordinator stops after round 2 and
// records budget-exhausted. node-3's own limit, ε = 6, covers round 1 only:
// it refuses to train for round 2, which goes on without it. Every log
// records the ε of each commit, and the logs verify.
func TestBudgetEnforcedTwice(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 2, Mode: federation.ModePlain,
			DP:    &federation.DP{NoiseMultiplier: 1, Clip: 1, Epsilon: 8, Delta: 1e-5},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 4, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
		f.NodeConfig = func(name string, c *node.Config) {
			if name == "node-3" {
				c.MaxEpsilon = 6
			}
		}
		man := f.Kits["coordinator"].Manifest
		scheme, err := federation.Scheme(man.Mode, man.Preset)
		if err != nil {
			t.Fatal(err)
		}
		rcfg, err := federation.RoundConfig(man)
		if err != nil {
			t.Fatal(err)
		}
		rule, _, err := federation.Privacy(man, rcfg, scheme.Capacity())
		if err != nil {
			t.Fatal(err)
		}
		var eps [4]dp.Cost
		for r := range eps {
			eps[r], _ = rule.After(r)
		}
		if !(eps[2].Epsilon <= 8 && eps[3].Epsilon > 8 && eps[1].Epsilon <= 6 && eps[2].Epsilon > 6) {
			t.Fatalf("the test's figures no longer hold: ε(1..3) = %v, %v, %v", eps[1], eps[2], eps[3])
		}

		f.StartCoordinator()
		f.StartNodes(3)
		f.WaitNodes(2 * time.Minute)
		st := f.Coord.Status()
		if st.Phase != round.PhaseDone || st.Commits != 2 || st.Round != 2 {
			t.Fatalf("coordinator status %+v, want done at round 2 after 2 commits", st)
		}
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if p := h.Privacy; p == nil || p.MaxRound != 2 || !p.Exhausted || p.Budget != 8 || p.Multiplier != rule.Multiplier {
			t.Errorf("/rounds privacy %+v", h.Privacy)
		}
		if len(h.History) != 2 {
			t.Fatalf("%d rounds in the history, want 2", len(h.History))
		}
		for i, r := range h.History {
			want := dp.EpsilonFromMicro(mustMicro(t, eps[i+1]))
			if r.EpsilonTotal != want || !(r.Epsilon > 0) {
				t.Errorf("round %d: ε %v, total %v, want total %v", r.Round, r.Epsilon, r.EpsilonTotal, want)
			}
		}
		if !slices.Contains(h.History[0].Included, "node-3") || slices.Contains(h.History[1].Included, "node-3") {
			t.Errorf("included sets %v, %v: want node-3 in round 1 only", h.History[0].Included, h.History[1].Included)
		}
		rec := httptest.NewRecorder()
		f.Coord.Handler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		if want := fmt.Sprintf("cloister_coordinator_epsilon_spent %g", dp.EpsilonFromMicro(mustMicro(t, eps[2]))); !strings.Contains(rec.Body.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
		f.StopCoordinator()
		f.VerifyAudit(2, 4)

		// The coordinator's log: the ε of each commit, adding up, and why it stopped.
		clog := filepath.Join(f.Dir, "coordinator-state", "audit.log")
		for _, path := range []string{clog, filepath.Join(f.Dir, "node-1-state", "audit.log"), filepath.Join(f.Dir, "node-3-state", "audit.log")} {
			spent := records(t, path, audit.EpsilonSpent)
			if len(spent) != 2 {
				t.Fatalf("%s: %d epsilon-spent records, want 2", path, len(spent))
			}
			var sum int64
			for i, r := range spent {
				sum += r.Data.MicroEpsilon
				if r.Data.Round != fl.Round(i+1) || r.Data.TotalMicroEpsilon != mustMicro(t, eps[i+1]) || r.Data.TotalMicroEpsilon != sum || r.Data.Delta != 1e-5 {
					t.Errorf("%s: epsilon-spent %+v", path, r.Data)
				}
			}
		}
		ex := records(t, clog, audit.BudgetExhausted)
		if len(ex) != 1 || ex[0].Data.Round != 2 || ex[0].Data.TotalMicroEpsilon != mustMicro(t, eps[2]) ||
			!strings.Contains(ex[0].Data.Reason, "round 3 would take ε") || !strings.Contains(ex[0].Data.Reason, "budget of 8") {
			t.Errorf("budget-exhausted records %+v", ex)
		}
		if len(ex) == 1 {
			t.Logf("coordinator: budget-exhausted: %s", ex[0].Data.Reason)
		}
		// node-3's refusal, with the figures.
		var refused bool
		for _, r := range records(t, filepath.Join(f.Dir, "node-3-state", "audit.log"), audit.NodeRefused) {
			if strings.Contains(r.Data.Reason, "refused: node: the federation's ε would pass this node's limit: round 2") {
				refused = true
				t.Logf("node-3: node-refused: %s", r.Data.Reason)
			}
		}
		if !refused {
			t.Error("node-3's log has no refusal of round 2")
		}
		if !strings.Contains(f.Logs.String(), "refusing to train") {
			t.Error("node-3 did not log its refusal")
		}
	})
}

func mustMicro(t *testing.T, c dp.Cost) int64 {
	t.Helper()
	m, err := c.Micro()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A budget that does not cover one round is refused at start, and a node
// limit without DP in the manifest too.
func TestBudgetRefusedAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 2, Threshold: 2, Mode: federation.ModePlain,
			DP: &federation.DP{NoiseMultiplier: 0.5, Clip: 1, Epsilon: 1, Delta: 1e-5}, Model: federation.ModelSpec{Kind: "softmax"}})}
		_, err := coordinator.New(coordinator.Config{Kit: f.Kits["coordinator"], StateDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "does not cover a single round") {
			t.Errorf("a budget below one round: %v", err)
		}
		g := fed{fedtest.New(t, pki.InitOptions{Nodes: 2, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{}, Model: federation.ModelSpec{Kind: "softmax"}})}
		_, err = node.New(node.Config{Kit: g.Kits["node-1"], StateDir: t.TempDir(), Train: fedtest.Blobs(10, 6, 3, 1), Test: fedtest.Blobs(10, 6, 3, 2), MaxEpsilon: 3})
		if err == nil || !strings.Contains(err.Error(), "no differential privacy") {
			t.Errorf("a node limit without DP: %v", err)
		}
	})
}

// A coordinator restarted mid-session keeps pricing rounds where its audit
// log left off: every log's epsilon-spent records still add up to their
// totals (audit verify checks it), and the last total is ε of the last
// round number, aborted rounds included.
func TestBudgetAcrossRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 2, Mode: federation.ModePlain,
			DP:    &federation.DP{NoiseMultiplier: 3, Clip: 1, Epsilon: 8, Delta: 1e-5},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 4, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
		f.TrainTime = 100 * time.Millisecond // rounds take time, so that the coordinator restarts mid-session
		f.StartCoordinator()
		f.StartNodes(3)
		if s := f.WaitStatus("2 commits", func(s round.Status) bool { return s.Commits >= 2 }); s.Commits >= 4 {
			t.Fatalf("status %+v at the restart: want it mid-session", s)
		}
		f.StopCoordinator()
		f.StartCoordinator()
		st := f.WaitDone(4, 2*time.Minute)
		f.checkRoundLog() // each round logged once, by the process it ended in
		f.StopCoordinator()
		f.VerifyAudit(4, 4)
		man := f.Kits["coordinator"].Manifest
		rcfg, _ := federation.RoundConfig(man)
		scheme, _ := federation.Scheme(man.Mode, man.Preset)
		rule, _, err := federation.Privacy(man, rcfg, scheme.Capacity())
		if err != nil {
			t.Fatal(err)
		}
		last, _ := rule.After(int(st.Round))
		spent := records(t, filepath.Join(f.Dir, "coordinator-state", "audit.log"), audit.EpsilonSpent)
		if len(spent) != 4 || spent[3].Data.TotalMicroEpsilon != mustMicro(t, last) {
			t.Errorf("%d epsilon-spent records, last %+v; want 4, the last at ε(%d) = %v", len(spent), spent[len(spent)-1].Data, st.Round, last.Epsilon)
		}
		t.Logf("%d round numbers for 4 commits; ε = %v", st.Round, last)
	})
}
