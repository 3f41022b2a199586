package aggregator_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/aggregator"
	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/pki"
)

// image is the sim measurement of the tests' aggregator.
var image = [48]byte{0xa6}

// records returns the records of the audit log at path of kind whose
// reason contains s.
func records(t *testing.T, path string, kind audit.Kind, s string) []audit.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []audit.Record
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		rec, err := audit.ParseRecord(line)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Kind == kind && strings.Contains(rec.Data.Reason, s) {
			out = append(out, rec)
		}
	}
	return out
}

// TestReattest runs real daemons in mode tee on a fake clock (fedtest):
// 3 members and the aggregator, which re-attests every 2s while 30 rounds
// of 200ms of training run. Each time, right after it answered a round,
// it makes new keys, asks for a fresh nonce and says Hello with new
// evidence on its stream; the coordinator verifies it, relays it, and
// re-keys the members at that round boundary, so that the later rounds are
// sealed to the new key, which the aggregator opens. Every round commits:
// a rotation costs no round.
func TestReattest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		policy := &attest.Policy{Formats: []string{attest.FormatSim}, AllowSim: true, MaxAge: attest.Duration(time.Hour),
			Measurements: map[string][]string{attest.FormatSim: {hex.EncodeToString(image[:])}}}
		f := fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 3, Mode: federation.ModeTEE, DP: &federation.DP{},
			AggregatorAttestation: policy, Model: federation.ModelSpec{Kind: "softmax"},
			Training: federation.Training{Rounds: 30, LocalEpochs: 1, Batch: 16, LearningRate: 0.05}})
		f.TrainTime = 200 * time.Millisecond // rounds take time, so that the schedule gets a turn
		f.AggregatorConfig = func(c *aggregator.Config) { c.AttestEvery = 2 * time.Second }
		f.StartCoordinator()
		a := f.StartAggregator(attest.NewSimTEE(image, ""))
		first := a.Key()
		f.StartNodes(3)
		f.WaitDone(30, 5*time.Minute)
		if err := <-f.AggregatorDone; err != nil {
			t.Errorf("the aggregator: %v", err)
		}
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		f.StopCoordinator()
		res := f.VerifyAudit(30, 5) // the coordinator's, the 3 members' and the aggregator's own
		logs := f.Logs.String()
		// The aggregator's log: every round it opened, once, and a key
		// setup for every epoch, each re-key after a rotation included.
		var agg, coord map[audit.Kind]int
		for _, r := range res {
			switch r.Summary.State.Actor {
			case pki.DefaultAggregator:
				agg = r.Summary.Kinds
			case "coordinator":
				coord = r.Summary.Kinds
			}
		}
		t.Logf("the aggregator's audit log: %v; the coordinator's key setups: %d", agg, coord[audit.KeySetup])
		if agg[audit.Revealed] != 30 || agg[audit.SessionStarted] != 1 || agg[audit.KeySetup] < 2 || agg[audit.KeySetup] != coord[audit.KeySetup] {
			t.Errorf("the aggregator's audit log: %v; want 30 rounds opened, and a key setup for each of the coordinator's %d", agg, coord[audit.KeySetup])
		}

		if bytes.Equal(a.Key(), first) {
			t.Error("the aggregator's key is the one it started with")
		}
		rotations := strings.Count(logs, "re-attested: new process keys, new evidence")
		verified := strings.Count(logs, "the aggregator's attestation verified")
		t.Logf("%d rounds, %d re-attestations with new keys, %d of the aggregator's evidence verified by the coordinator",
			len(h.History), rotations, verified)
		if rotations < 2 || verified != rotations+1 {
			t.Errorf("%d re-attestations, the coordinator verified %d Hellos: want at least 2, and each verified", rotations, verified)
		}
		for _, r := range h.History {
			if r.Outcome != "committed" {
				t.Errorf("round %d: %s (%s)", r.Round, r.Outcome, r.Reason)
			}
		}
		// The coordinator re-keyed for each new key (the last may come after
		// the last round), and the aggregator took each new epoch's setup
		// and opened its rounds.
		coordLog := filepath.Join(f.Dir, "coordinator-state", "audit.log")
		rekeys := records(t, coordLog, audit.KeyRotated, "the aggregator aggregator has new evidence")
		if len(rekeys) < rotations-1 || len(rekeys) == 0 {
			t.Errorf("%d re-keys for the aggregator's new evidence, want %d or %d", len(rekeys), rotations-1, rotations)
		}
		for _, r := range rekeys {
			if !strings.Contains(logs, "event=keyed epoch="+itoa(r.Data.Epoch)) || !strings.Contains(logs, "event=opened epoch="+itoa(r.Data.Epoch)) {
				t.Errorf("the aggregator did not take epoch %d's setup, or opened none of its rounds", r.Data.Epoch)
			}
		}
		if strings.Contains(logs, "event=refused") {
			t.Error("the aggregator refused a setup or a round")
		}
		// Every member verified each of the aggregator's evidence itself.
		for _, n := range fedtest.NodeNames(3) {
			ok := records(t, filepath.Join(f.Dir, n+"-state", "audit.log"), audit.AttestationOK, "")
			var agg int
			for _, r := range ok {
				if r.Data.Node == pki.DefaultAggregator {
					agg++
				}
			}
			if agg < rotations {
				t.Errorf("%s verified the aggregator's evidence %d times, want at least %d", n, agg, rotations)
			}
		}
	})
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
