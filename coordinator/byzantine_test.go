package coordinator_test

import (
	"context"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/tee"
)

// byzantineRun runs a plain federation of 5 real daemons for 6 rounds, with
// the manifest's rule, in which node-1 runs the attack spec ("" for an
// honest run), and returns the final accuracy the members report, with
// the federation's logs.
func byzantineRun(t *testing.T, rule, spec string) (acc float64, logs string) {
	t.Helper()
	return byzantineRunMode(t, federation.ModePlain, rule, spec)
}

// byzantineRunMode is byzantineRun in mode plain or tee. In mode tee the
// aggregator runs inside the coordinator's process (its scheme has the
// aggregator's identity): this build has no aggregator process, so the
// test shows the scheme, its rule and its refusals running through both
// daemons and the engine, not the coordinator's blindness.
func byzantineRunMode(t *testing.T, mode, rule, spec string) (acc float64, logs string) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		var aggPolicy *attest.Policy
		if mode == federation.ModeTEE {
			aggPolicy = simPolicy([48]byte{0xa6}, time.Hour)
		}
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 5, Threshold: 3, MinCohort: 5, Mode: mode, DP: &federation.DP{},
			Rule: rule, InsecureAttacks: true, AggregatorAttestation: aggPolicy,
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 6, LocalEpochs: 1, Batch: 16, LearningRate: 0.05}})}
		var nodeScheme protect.Scheme
		if mode == federation.ModeTEE {
			id, err := tee.NewIdentity(rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			aggregator := tee.Scheme{Identity: id, Rule: f.Kits["coordinator"].Manifest.Rule}
			f.CoordinatorConfig = func(c *coordinator.Config) { c.Scheme = aggregator }
			nodeScheme = tee.Scheme{Key: id.PublicKey().Bytes()}
		}
		f.NodeConfig = func(name string, c *node.Config) {
			if name == "node-1" {
				c.InsecureAttack = spec
			}
			if nodeScheme != nil {
				c.Scheme = nodeScheme
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

// TestByzantineRuleTEE: the same in mode tee, the rule applied by the
// aggregator's scheme after it opens the sealed updates (run inside the
// coordinator's process here, see byzantineRunMode): the honest run
// learns, one sign-flip attacker ruins the mean, median and Krum hold.
func TestByzantineRuleTEE(t *testing.T) {
	honest, logs := byzantineRunMode(t, federation.ModeTEE, "", "")
	if honest < 0.9 {
		t.Fatalf("honest run in mode tee: accuracy %.3f, want ≥ 0.9 on separable blobs\n%s", honest, logs)
	}
	const attack = "sign-flip:scale=10"
	mean, _ := byzantineRunMode(t, federation.ModeTEE, "", attack)
	if mean > honest-0.3 {
		t.Errorf("mean with one %s attacker: accuracy %.3f, honest %.3f: the positive control should be hurt", attack, mean, honest)
	}
	for _, rule := range []string{"median", "krum"} {
		acc, _ := byzantineRunMode(t, federation.ModeTEE, rule, attack)
		if acc < honest-0.05 {
			t.Errorf("rule %s with one %s attacker: accuracy %.3f, honest %.3f: more than 5 points lost", rule, attack, acc, honest)
		}
	}
}

// Without an aggregator process (not in this build), both daemons refuse a
// manifest of mode tee at start, saying why, rather than run rounds that
// could never open.
func TestModeTEERefusedAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 2, Threshold: 2, Mode: federation.ModeTEE, DP: &federation.DP{}, Model: federation.ModelSpec{Kind: "softmax"},
			AggregatorAttestation: simPolicy([48]byte{0xa6}, time.Hour)})}
		_, err := coordinator.New(coordinator.Config{Kit: f.Kits["coordinator"], StateDir: t.TempDir()})
		if err == nil || !strings.Contains(err.Error(), "cloister aggregator") {
			t.Errorf("coordinator in mode tee: %v, want a refusal naming cloister aggregator", err)
		}
		_, err = node.New(node.Config{Kit: f.Kits["node-1"], StateDir: t.TempDir(), Train: fedtest.Blobs(10, 6, 3, 1), Test: fedtest.Blobs(10, 6, 3, 2)})
		if err == nil || !strings.Contains(err.Error(), "cloister aggregator") {
			t.Errorf("node in mode tee: %v, want a refusal naming cloister aggregator", err)
		}
	})
}
