package coordinator_test

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
)

// TestAttestationReadmission runs the exclusion and the readmission of a
// member end to end in the daemons. Every node runs a sim TEE whose
// platform state is a file, and re-attests every 200ms. node-2's platform
// is downgraded (TCB 1, below the policy's floor 2): its next
// re-attestation is refused, the coordinator excludes it, re-keys among
// node-1 and node-3, and rounds commit without it. Then its TCB is
// restored: its next re-attestation verifies, the coordinator readmits it
// (node-readmitted), re-keys with it (a key-rotated record naming the
// readmission), and a later round includes it again. The peers' logs show
// node-2's attestation failing, then verifying again; every log verifies;
// and node-2's `model export` gives the federation's final model.
func TestAttestationReadmission(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var good [48]byte
		rand.Read(good[:])
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 2, Mode: federation.ModeMHE, Preset: "InsecureTest", DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 100000, LocalEpochs: 1, Batch: 16, LearningRate: 0.1},
			Attestation: simPolicy(good, time.Hour)})}
		f.TrainTime = 100 * time.Millisecond // rounds take time, so that re-attestations come between them
		platform := func(name string) string { return filepath.Join(f.Dir, name+"-platform.json") }
		setTCB := func(name string, tcb uint32) {
			t.Helper()
			b, err := json.Marshal(attest.SimPlatform{TCB: tcb})
			if err != nil {
				t.Fatal(err)
			}
			// Atomically: the TEE reads the file at every attestation.
			if err := store.WriteFile(platform(name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		// The end: once stop is set, a node holds its update of any round
		// after it until the test is over, so that the last committed round
		// stays the last.
		var stop atomic.Int64
		stop.Store(math.MaxInt64)
		release := make(chan struct{})
		var mu sync.Mutex
		holding := map[fl.NodeID]fl.Round{}
		f.NodeConfig = func(name string, c *node.Config) {
			c.TEE = attest.NewSimTEE(good, platform(name))
			c.AttestEvery = 200 * time.Millisecond
			c.OnUpdate = func(u fl.Update) {
				if int64(u.Round) > stop.Load() {
					mu.Lock()
					holding[u.Node] = u.Round
					mu.Unlock()
					<-release
				}
			}
		}
		for _, name := range fedtest.NodeNames(3) {
			setTCB(name, attest.DefaultSimTCB)
		}
		f.StartCoordinator()
		f.StartNodes(3)
		defer func() { // also on a failure: the held trainers must return for the nodes to stop
			select {
			case <-release:
			default:
				close(release)
			}
		}()
		all := []fl.NodeID{"node-1", "node-2", "node-3"}
		without := []fl.NodeID{"node-1", "node-3"}
		h := f.waitHistory("a round committed by all three", func(r historyRound) bool {
			return slices.Equal(r.Included, all)
		})
		t.Logf("round %d committed with %v", h.Round, h.Included)
		epoch := f.Coord.Status().Epoch

		// Downgrade node-2's firmware: its next re-attestation fails.
		setTCB("node-2", 1)
		f.WaitStatus("node-2 excluded", func(s round.Status) bool { return slices.Contains(s.Excluded, "node-2") })
		a := f.Coord.Attestation()["node-2"]
		t.Logf("node-2 excluded: %s", a.LastError)
		if a.OK || !strings.Contains(a.LastError, "TCB") {
			t.Errorf("node-2's attestation status %+v, want its TCB refused", a)
		}
		excludedAfter := f.Coord.Status().LastCommitted
		s := f.WaitStatus("a re-key without node-2 and two rounds committed by it", func(s round.Status) bool {
			return s.Epoch > epoch && slices.Equal(s.Participants, without) && s.LastCommitted >= excludedAfter+2
		})
		epoch = s.Epoch
		readmittedAfter := s.LastCommitted

		// Restore it: its next re-attestation verifies.
		setTCB("node-2", attest.DefaultSimTCB)
		f.WaitStatus("node-2 readmitted", func(s round.Status) bool { return !slices.Contains(s.Excluded, "node-2") })
		if a := f.Coord.Attestation()["node-2"]; !a.OK || a.LastError != "" || !slices.Equal(a.TCB, []uint32{attest.DefaultSimTCB}) {
			t.Errorf("node-2's attestation status after the restore %+v, want valid evidence at TCB %d", a, attest.DefaultSimTCB)
		}
		f.WaitStatus("a re-key with node-2", func(s round.Status) bool {
			return s.Epoch > epoch && slices.Equal(s.Participants, all)
		})
		h = f.waitHistory("a round committed with node-2 again", func(r historyRound) bool {
			return r.Round > readmittedAfter && slices.Contains(r.Included, "node-2")
		})
		t.Logf("round %d committed with %v", h.Round, h.Included)

		// End: the rounds after the current one wait, until every node holds
		// its update of the next round, whose Train carried the last committed
		// model.
		stop.Store(int64(f.Coord.Status().Round))
		f.WaitStatus("every node holding its next update", func(round.Status) bool {
			mu.Lock()
			defer mu.Unlock()
			return len(holding) == 3
		})
		final := f.Coord.Status().LastCommitted
		hist, err := f.Coord.History(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var rounds []historyRound
		for _, r := range hist.History {
			t.Logf("round %d %s included %v accuracy %v", r.Round, r.Outcome, r.Included, deref(r.Accuracy))
			if r.Outcome == "committed" {
				rounds = append(rounds, historyRound{r.Round, r.Included, r.Accuracy})
			}
		}
		for _, r := range rounds {
			if r.Round > excludedAfter && r.Round <= readmittedAfter && slices.Contains(r.Included, "node-2") {
				t.Errorf("round %d, committed while node-2 was excluded, included it: %v", r.Round, r.Included)
			}
		}
		if last := rounds[len(rounds)-1]; last.Round != final || last.Accuracy == nil || *last.Accuracy < 0.9 {
			t.Errorf("last committed round %d (accuracy %v), want round %d with accuracy ≥ 0.9", last.Round, deref(last.Accuracy), final)
		}
		// node-2's export is the final model, the one its peers export.
		ex2 := f.Export("node-2")
		if ex2.Round != final {
			t.Errorf("node-2 exports the model of round %d, want the last committed round %d", ex2.Round, final)
		}
		for _, name := range []string{"node-1", "node-3"} {
			ex := f.Export(name)
			if ex.Round != ex2.Round || ex.Digest != ex2.Digest || !slices.Equal(ex.Model, ex2.Model) {
				t.Errorf("%s exports round %d (sealed %s), node-2 round %d (sealed %s): want the same model",
					name, ex.Round, ex.Digest, ex2.Round, ex2.Digest)
			}
		}

		// Cancel every node before releasing the held trainers, so that no
		// node sends a held update and no round commits after `final`.
		for _, rn := range f.Nodes {
			rn.Cancel()
		}
		close(release)
		for _, n := range fedtest.NodeNames(3) {
			f.StopNode(n)
		}
		f.StopCoordinator()

		// The coordinator's log: node-2's TCB refused, its exclusion ended,
		// then a re-key that names the readmission and includes node-2.
		coordLog := auditRecords(t, filepath.Join(f.Dir, "coordinator-state", "audit.log"))
		refused := findRecord(coordLog, 0, func(r audit.Record) bool {
			return r.Kind == audit.NodeRefused && r.Data.Node == "node-2" && strings.Contains(r.Data.Reason, "TCB")
		})
		readmitted := findRecord(coordLog, refused+1, func(r audit.Record) bool {
			return r.Kind == audit.NodeReadmitted && r.Data.Node == "node-2"
		})
		rekeyed := findRecord(coordLog, readmitted+1, func(r audit.Record) bool {
			return r.Kind == audit.KeyRotated && strings.Contains(r.Data.Reason, "node-2 readmitted") && slices.Equal(r.Data.Members, all)
		})
		if refused < 0 || readmitted < 0 || rekeyed < 0 {
			t.Errorf("the coordinator's log: node-refused (TCB) of node-2 at %d, node-readmitted after it at %d, key-rotated naming it after that at %d; want all three, in order",
				refused, readmitted, rekeyed)
		} else {
			t.Logf("coordinator: %s %q; %s; %s %q", coordLog[refused].Kind, coordLog[refused].Data.Reason, coordLog[readmitted].Kind,
				coordLog[rekeyed].Kind, coordLog[rekeyed].Data.Reason)
		}
		// No key setup restarted: the nodes re-attest every 200ms, and a
		// re-attestation that crosses a re-key's SetupStart does not restart it.
		for _, r := range coordLog {
			if r.Kind == audit.Aborted && strings.HasPrefix(r.Data.Reason, "key setup restarted") {
				t.Errorf("the coordinator's log: %s %q", r.Kind, r.Data.Reason)
			}
		}
		// Each peer verified node-2's evidence itself: failed, then valid again.
		for _, name := range []string{"node-1", "node-3"} {
			recs := auditRecords(t, filepath.Join(f.Dir, name+"-state", "audit.log"))
			failed := findRecord(recs, 0, func(r audit.Record) bool {
				return r.Kind == audit.AttestationFailed && r.Data.Node == "node-2" && strings.Contains(r.Data.Reason, "TCB")
			})
			ok := findRecord(recs, failed+1, func(r audit.Record) bool {
				return r.Kind == audit.AttestationOK && r.Data.Node == "node-2"
			})
			if failed < 0 || ok < 0 {
				t.Errorf("%s's log: attestation-failed (TCB) of node-2 at %d, attestation-ok of node-2 after it at %d; want both", name, failed, ok)
			}
		}
		f.VerifyAudit(len(rounds), 4)
	})
}

// historyRound is a round of the coordinator's history.
type historyRound struct {
	Round    fl.Round
	Included []fl.NodeID
	Accuracy *float64
}

// waitHistory waits for a committed round that satisfies ok and returns it.
func (f fed) waitHistory(what string, ok func(historyRound) bool) historyRound {
	f.T.Helper()
	var found historyRound
	f.WaitStatus(what, func(round.Status) bool {
		h, err := f.Coord.History(f.T.Context())
		if err != nil {
			f.T.Fatal(err)
		}
		for _, r := range h.History {
			if hr := (historyRound{r.Round, r.Included, r.Accuracy}); r.Outcome == "committed" && ok(hr) {
				found = hr
				return true
			}
		}
		return false
	})
	return found
}

// auditRecords reads the records of a log (complete lines only).
func auditRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var recs []audit.Record
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		for _, line := range bytes.Split(b[:i], []byte("\n")) {
			r, err := audit.ParseRecord(line)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			recs = append(recs, r)
		}
	}
	return recs
}

// findRecord returns the index of the first record at or after from that
// satisfies ok, or -1 (also when from is negative).
func findRecord(recs []audit.Record, from int, ok func(audit.Record) bool) int {
	if from < 0 || from > len(recs) {
		return -1
	}
	for i := from; i < len(recs); i++ {
		if ok(recs[i]) {
			return i
		}
	}
	return -1
}
