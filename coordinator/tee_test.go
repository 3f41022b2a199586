package coordinator_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/aggregator"
	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
)

// aggregatorImage is the sim measurement the tests' aggregator policy
// allows: another image than the members'.
var aggregatorImage = [48]byte{0xa6}

// teeRun runs a federation of 5 real daemons in mode tee for 6 rounds with
// the aggregator a daemon of its own (cloister aggregator's code) on a sim
// TEE of measurement image: node-1 runs the attack spec ("" for an honest
// run). It returns the final accuracy the members report (-1 if no round
// committed), and the logs.
func teeRun(t *testing.T, rule, spec string, image [48]byte) (acc float64, logs string) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 5, Threshold: 3, MinCohort: 5, Mode: federation.ModeTEE, DP: &federation.DP{},
			Rule: rule, InsecureAttacks: true, AggregatorAttestation: simPolicy(aggregatorImage, time.Hour),
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 6, LocalEpochs: 1, Batch: 16, LearningRate: 0.05}})}
		f.NodeConfig = func(name string, c *node.Config) {
			if name == "node-1" {
				c.InsecureAttack = spec
			}
		}
		f.StartCoordinator()
		f.StartAggregator(attest.NewSimTEE(image, ""))
		f.StartNodes(5)
		acc = -1
		if image != aggregatorImage {
			// The coordinator refuses the aggregator's evidence; no key
			// setup starts, nothing is sealed. Give it a while.
			time.Sleep(2 * time.Minute)
			synctest.Wait()
			logs = f.Logs.String()
			f.StopCoordinator()
			f.VerifyAudit(0, 7)
			return
		}
		f.WaitDone(6, 5*time.Minute)
		if err := <-f.AggregatorDone; err != nil {
			t.Errorf("the aggregator: %v", err)
		}
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
		t.Logf("mode tee, rule %q, attack %q: accuracy by round %v", rule, spec, trace)
		f.StopCoordinator()
		f.VerifyAudit(6, 7) // the coordinator's log (aggregator events included), the members' and the aggregator's
	})
	return acc, logs
}

// TestAggregatorTEE: mode tee with the aggregator in its own daemon. The
// coordinator's helper cannot open anything, so every committed round was
// opened by the attested aggregator; the honest run learns as in mode
// plain (TestByzantineRule); one sign-flip attacker ruins the mean and not
// the median or Krum.
func TestAggregatorTEE(t *testing.T) {
	honest, logs := teeRun(t, "", "", aggregatorImage)
	if honest < 0.9 {
		t.Fatalf("honest run: accuracy %.3f, want ≥ 0.9", honest)
	}
	if strings.Contains(logs, "cannot record an audit event") {
		t.Error("an aggregator event did not map to an audit record")
	}
	for _, want := range []string{"the aggregator's attestation verified", "attested", "event=opened"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs do not say %q", want)
		}
	}
	const attack = "sign-flip:scale=10"
	if mean, _ := teeRun(t, "", attack, aggregatorImage); mean > honest-0.3 {
		t.Errorf("mean with one %s attacker: accuracy %.3f, honest %.3f: the positive control should be hurt", attack, mean, honest)
	}
	for _, rule := range []string{"median", "krum"} {
		if acc, _ := teeRun(t, rule, attack, aggregatorImage); acc < honest-0.05 {
			t.Errorf("%s with one %s attacker: accuracy %.3f, honest %.3f", rule, attack, acc, honest)
		}
	}
}

// TestAggregatorRefused: an aggregator on an image its policy does not
// allow is refused by the coordinator, with the reason, audited; no key
// setup starts, so no member seals anything to it.
func TestAggregatorRefused(t *testing.T) {
	acc, logs := teeRun(t, "", "", [48]byte{0xbb})
	if acc != -1 {
		t.Errorf("a round committed with a refused aggregator")
	}
	if strings.Contains(logs, "cannot record an audit event") {
		t.Error("an aggregator event did not map to an audit record")
	}
	for _, want := range []string{"refused the aggregator's evidence", "measurement"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the logs do not say %q", want)
		}
	}
	if strings.Contains(logs, "setup-started") || strings.Contains(logs, "event=opened") {
		t.Error("a key setup started, or a round opened, with a refused aggregator")
	}
}

// recordsOf returns the records of recs of kind, for node if not empty,
// whose reason contains s.
func recordsOf(recs []audit.Record, kind audit.Kind, node fl.NodeID, s string) []audit.Record {
	var out []audit.Record
	for _, r := range recs {
		if r.Kind == kind && (node == "" || r.Data.Node == node) && strings.Contains(r.Data.Reason, s) {
			out = append(out, r)
		}
	}
	return out
}

// TestAggregatorExpiry: the aggregator's evidence may be at most 4s old,
// and it re-attests every 6s, half a period late at the most while no
// round ends (its start warns that this is too seldom). Each time its
// evidence gets older than 4s, the coordinator says so in its log and
// audit log, lets the round under way end, and starts no round and no key
// setup until the aggregator's re-attestation (new keys, fresh evidence,
// 5s later); it then re-keys the members to the new key and the session
// goes on, to its 40 commits.
func TestAggregatorExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 3, Mode: federation.ModeTEE, DP: &federation.DP{},
			AggregatorAttestation: simPolicy(aggregatorImage, 4*time.Second), Model: federation.ModelSpec{Kind: "softmax"},
			Training: federation.Training{Rounds: 40, LocalEpochs: 1, Batch: 16, LearningRate: 0.05}})}
		f.TrainTime = 250 * time.Millisecond // rounds take time, so that evidence ages while they go on
		f.AggregatorConfig = func(c *aggregator.Config) { c.AttestEvery = 6 * time.Second }
		f.StartCoordinator()
		f.StartAggregator(attest.NewSimTEE(aggregatorImage, ""))
		f.StartNodes(3)
		f.WaitDone(40, 5*time.Minute)
		if err := <-f.AggregatorDone; err != nil {
			t.Errorf("the aggregator: %v", err)
		}
		metric := f.Metric(`cloister_coordinator_attestations_total{result="expired"}`)
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		f.StopCoordinator()
		f.VerifyAudit(40, 5)
		logs := f.Logs.String()
		for _, want := range []string{"re-attests less often than its policy's maximum evidence age",
			"the aggregator's evidence expired: no round or key setup starts until it re-attests",
			"re-attested: new process keys, new evidence"} {
			if !strings.Contains(logs, want) {
				t.Errorf("the logs do not say %q", want)
			}
		}

		recs := auditRecords(t, filepath.Join(f.Dir, "coordinator-state", "audit.log"))
		expired := recordsOf(recs, audit.NodeRefused, pki.DefaultAggregator, "aggregator attestation expired")
		if len(expired) == 0 || metric != float64(len(expired)) {
			t.Fatalf("%d node-refused records of the aggregator's expired evidence, attestations_total{result=\"expired\"} = %v: "+
				"want at least one, and as many", len(expired), metric)
		}
		// In the audit log's order (the fake clock stands still while the
		// daemons compute): after each expiry, the aggregator's next Hello
		// admitted, with no round started or key setup begun in between,
		// and a re-key for its new evidence after it.
		admitted := recordsOf(recs, audit.NodeAdmitted, pki.DefaultAggregator, "")
		started := recordsOf(recs, audit.RoundStarted, "", "")
		rekeys := recordsOf(recs, audit.KeyRotated, "", "")
		for _, e := range expired {
			i := slices.IndexFunc(admitted, func(r audit.Record) bool { return r.Seq > e.Seq })
			if i < 0 {
				t.Fatalf("no Hello of the aggregator admitted after its evidence expired (record %d)", e.Seq)
			}
			fresh := admitted[i]
			t.Logf("the aggregator's evidence expired at %v, it re-attested at %v", e.Time.Sub(h.History[0].Started),
				fresh.Time.Sub(h.History[0].Started))
			if fresh.Time.Sub(e.Time) < time.Second {
				t.Errorf("expired at %v, re-attested at %v: want a wait between", e.Time, fresh.Time)
			}
			for _, r := range append(slices.Clone(started), rekeys...) {
				if r.Seq > e.Seq && r.Seq < fresh.Seq {
					t.Errorf("%s (round %d, epoch %d) at %v, on the aggregator's expired evidence (expired at %v, fresh at %v)",
						r.Kind, r.Data.Round, r.Data.Epoch, r.Time, e.Time, fresh.Time)
				}
			}
			if !slices.ContainsFunc(rekeys, func(r audit.Record) bool {
				return r.Seq > fresh.Seq && strings.Contains(r.Data.Reason, "the aggregator aggregator has new evidence")
			}) {
				t.Errorf("no re-key for the aggregator's fresh evidence (record %d)", fresh.Seq)
			}
		}
		for _, r := range h.History {
			if r.Outcome != "committed" {
				t.Errorf("round %d: %s (%s)", r.Round, r.Outcome, r.Reason)
			}
		}
		if last := started[len(started)-1]; last.Seq < expired[0].Seq {
			t.Error("no round after the aggregator's evidence expired")
		}
	})
}
