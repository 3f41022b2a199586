package coordinator_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
)

// byzantineRun runs a plain federation of 5 real daemons for 6 rounds, with
// the manifest's rule, in which node-1 runs the attack spec ("" for an
// honest run), and returns the final accuracy the members report, with
// the federation's logs.
func byzantineRun(t *testing.T, rule, spec string) (acc float64, logs string) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 5, Threshold: 3, MinCohort: 5, Mode: federation.ModePlain, DP: &federation.DP{},
			Rule: rule, InsecureAttacks: true,
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 6, LocalEpochs: 1, Batch: 16, LearningRate: 0.05}})}
		if spec != "" {
			f.NodeConfig = func(name string, c *node.Config) {
				if name == "node-1" {
					c.InsecureAttack = spec
				}
			}
		}
		f.StartCoordinator()
		f.StartNodes(5)
		f.WaitDone(6, 5*time.Minute)
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var trace []string
		for _, r := range h.History {
			trace = append(trace, fmt.Sprintf("%d:%s:%.3f", r.Round, r.Outcome, deref(r.Accuracy)))
		}
		last := h.History[len(h.History)-1]
		if last.Accuracy == nil {
			t.Fatalf("no accuracy after the last round: %v", trace)
		}
		acc, logs = *last.Accuracy, f.Logs.String()
		t.Logf("rule %q, attack %q: accuracy by round %v", rule, spec, trace)
		f.StopCoordinator()
	})
	return acc, logs
}

// TestByzantineRule: in mode plain, one sign-flip attacker out of 5 ruins
// the mean, while the manifest's robust rules (median, Krum) still learn,
// within a few points of the honest run.
func TestByzantineRule(t *testing.T) {
	honest, _ := byzantineRun(t, "", "")
	if honest < 0.9 {
		t.Fatalf("honest run: accuracy %.3f, want ≥ 0.9 on separable blobs", honest)
	}
	const attack = "sign-flip:scale=10"
	mean, logs := byzantineRun(t, "", attack)
	if mean > honest-0.3 {
		t.Errorf("mean with one %s attacker: accuracy %.3f, honest %.3f: the positive control should be hurt", attack, mean, honest)
	}
	for _, want := range []string{"INSECURE: this node is a Byzantine attacker", "sign-flip:scale=10", federation.WarnInsecureAttacks} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs do not say %q", want)
		}
	}
	for _, rule := range []string{"median", "krum"} {
		acc, _ := byzantineRun(t, rule, attack)
		if acc < honest-0.05 {
			t.Errorf("rule %s with one %s attacker: accuracy %.3f, honest %.3f: more than 5 points lost", rule, attack, acc, honest)
		}
	}
}
