package coordinator_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// limitedMetrics are the coordinator's rate-limit counters.
var limitedMetrics = []string{
	`cloister_coordinator_limited_total{reason="hello"}`,
	`cloister_coordinator_limited_total{reason="message"}`,
	`cloister_coordinator_limited_total{reason="unrecorded"}`,
}

// checkNotLimited fails the test if the coordinator's rate limits stopped
// anything: an honest federation never meets them.
func (f fed) checkNotLimited() {
	f.T.Helper()
	for _, m := range limitedMetrics {
		if v := f.Metric(m); v != 0 {
			f.T.Errorf("%s = %v in an honest federation, want 0", m, v)
		}
	}
}

// floodFigures is what the coordinator did for a rogue member in one minute
// of its flood.
type floodFigures struct {
	hellos, junk int // what the rogue sent
	peers        int // KindPeer relays to the other members
	welcomes     int // Welcomes sent to the rogue
	records      int // audit records about the rogue
	kinds        map[audit.Kind]int
}

// TestAmplificationBounded: a rogue holding node-4's certificate and audit
// key (node-4 stopped) says Hello in a loop, each time with evidence for
// new process keys, which the coordinator would relay to every live member,
// and sends messages the engine refuses (replayed uploads), which it would
// record one by one. With the default rates, what the coordinator relays
// and records for node-4 per minute stays within the bound, and the honest
// members' session completes; with the rates off (the control), the same
// flood is relayed and recorded in full.
func TestAmplificationBounded(t *testing.T) {
	const perSecond, minutes = 10, 2
	limited := flood(t, coordinator.Rates{}, perSecond, minutes)
	unlimited := flood(t, coordinator.Rates{Hellos: -1, Refused: -1}, perSecond, minutes)
	h, r := coordinator.DefaultHellosPerMinute, coordinator.DefaultRefusedPerMinute
	for i, fig := range limited {
		t.Logf("minute %d, default rates (%d Hellos, %d refusals a minute): rogue sent %d Hellos and %d refused messages; coordinator relayed %d Peer messages to the 3 others, sent the rogue %d Welcomes, wrote %d audit records about it %v",
			i+1, h, r, fig.hellos, fig.junk, fig.peers, fig.welcomes, fig.records, fig.kinds)
		// A token bucket lets through its burst and what it refills: at
		// most 2 × rate in the first minute, rate + the few that arrive
		// as a token refills in the next. Each Hello that passes relays
		// its evidence to the 3 others and writes one node-admitted
		// record; each refusal one node-refused record; plus one summary.
		maxHellos := h + h
		if i > 0 {
			maxHellos = h + 1
		}
		if fig.peers > 3*maxHellos {
			t.Errorf("minute %d: %d Peer relays, want ≤ %d", i+1, fig.peers, 3*maxHellos)
		}
		maxRefusals := r + r
		if i > 0 {
			maxRefusals = r + 1
		}
		// node-dropped records (the rogue misses the rounds it is in the
		// cohort of) come with the rounds, not the flood.
		if got, want := fig.kinds[audit.NodeAdmitted]+fig.kinds[audit.NodeRefused], maxHellos+maxRefusals+1; got > want {
			t.Errorf("minute %d: %d node-admitted and node-refused records about the rogue, want ≤ %d", i+1, got, want)
		}
	}
	for i, fig := range unlimited {
		t.Logf("minute %d, rates off: rogue sent %d Hellos and %d refused messages; coordinator relayed %d Peer messages to the 3 others, sent the rogue %d Welcomes, wrote %d audit records about it %v",
			i+1, fig.hellos, fig.junk, fig.peers, fig.welcomes, fig.records, fig.kinds)
		// The control: without the rates, the flood is amplified in full.
		if fig.peers < 3*fig.hellos*9/10 || fig.records < fig.junk {
			t.Errorf("minute %d without rates: %d relays and %d records for %d Hellos and %d junk messages: the control does not amplify",
				i+1, fig.peers, fig.records, fig.hellos, fig.junk)
		}
	}
}

// flood runs a federation of 4 (node-4 replaced by a rogue after round 2)
// under rates, floods for minutes at perSecond Hellos and refused messages
// each, and returns the figures of each minute. With limits on, it checks
// that the session completes and that only the rogue was limited.
func flood(t *testing.T, rates coordinator.Rates, perSecond, minutes int) []floodFigures {
	var figs []floodFigures
	t.Run(map[bool]string{true: "limited", false: "unlimited"}[rates.Hellos >= 0], func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			f := fed{fedtest.New(t, pki.InitOptions{Nodes: 4, Threshold: 2, MinCohort: 2, Mode: federation.ModePlain, DP: &federation.DP{},
				Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 40, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})}
			f.TrainTime = 2 * time.Second // rounds take fake time, so that the session outlasts the flood
			f.CoordinatorConfig = func(c *coordinator.Config) { c.Rates = rates }
			f.Deadlines = func(d *coordinator.Deadlines) { d.Collect = 5 * time.Second }
			f.StartCoordinator()
			f.StartNodes(4)
			f.WaitStatus("round 2", func(s round.Status) bool { return s.Round >= 2 })
			if err := f.StopNode("node-4"); err != nil && !errors.Is(err, context.Canceled) {
				t.Fatalf("node-4: %v", err)
			}
			f.WaitStatus("node-4 down", func(s round.Status) bool { return !slices.Contains(s.Live, "node-4") })
			f.checkNotLimited()

			rogue := f.DialAs("node-4", transport.ClientConfig{})
			fedtest.Drain(rogue)
			kit4 := f.Kits["node-4"]
			session, _ := f.Kits["coordinator"].Manifest.Hash()
			before := f.floodCounts()
			for m := range minutes {
				var fig floodFigures
				for range 60 {
					for range perSecond {
						st := f.Coord.Status()
						sk, err := keyring.NewKeys(nil)
						if err != nil {
							t.Fatal(err)
						}
						ev := sk.Evidence(session[:], "node-4", kit4.AuditKey, time.Now(), nil)
						if rogue.Send(context.Background(), round.Message{Kind: round.KindHello, Session: session[:], Epoch: st.Epoch, Evidence: ev}) == nil {
							fig.hellos++
						}
						if rogue.Send(context.Background(), round.Message{Kind: round.KindUpload, Session: session[:], Epoch: st.Epoch, Round: 1,
							Payload: []byte("old"), Signature: make([]byte, 64)}) == nil {
							fig.junk++
						}
						time.Sleep(time.Second / time.Duration(perSecond))
					}
				}
				time.Sleep(time.Second) // the window's summary is recorded at the next second's check
				after := f.floodCounts()
				fig.peers, fig.welcomes, fig.records = after.peers-before.peers, after.welcomes-before.welcomes, after.records-before.records
				fig.kinds = map[audit.Kind]int{}
				for k, n := range after.kinds {
					if d := n - before.kinds[k]; d > 0 {
						fig.kinds[k] = d
					}
				}
				before = after
				figs = append(figs, fig)
				t.Logf("minute %d: status %+v", m+1, f.Coord.Status())
			}
			if st := f.Coord.Status(); st.Phase == round.PhaseDone {
				t.Errorf("the session ended during the flood (%+v): the figures undercount", st)
			}
			rogue.Close()
			if rates.Hellos < 0 {
				f.StopCoordinator()
				return
			}
			f.WaitDone(40, 10*time.Minute)
			// Only the rogue met the limits: the warnings name node-4 alone.
			for _, line := range strings.Split(f.Logs.String(), "\n") {
				if strings.Contains(line, "over the member's rate limit") && !strings.Contains(line, "member=node-4") {
					t.Errorf("an honest member was limited: %s", line)
				}
			}
			f.StopCoordinator()
			f.VerifyAudit(40, 5)
			if !logHas(t, filepath.Join(f.Dir, "coordinator-state", "audit.log"), audit.NodeRefused, "rate limit (30 Hellos, 60 refusals a minute)") {
				t.Error("the coordinator's audit log has no rate-limit summary")
			}
		})
	})
	return figs
}

// floodCounts counts, so far, the Peer messages the coordinator sent to
// node-1…3, its Welcomes to node-4, and its audit records about node-4.
func (f fed) floodCounts() floodFigures {
	f.T.Helper()
	c := floodFigures{kinds: map[audit.Kind]int{}}
	for _, line := range strings.Split(f.Logs.String(), "\n") {
		if !strings.Contains(line, "msg=sent who=coordinator") || strings.Contains(line, "err=") && !strings.Contains(line, "err=<nil>") {
			continue
		}
		switch {
		case strings.Contains(line, "kind=Peer") && !strings.Contains(line, "member=node-4"):
			c.peers++
		case strings.Contains(line, "kind=Welcome") && strings.Contains(line, "member=node-4"):
			c.welcomes++
		}
	}
	b, err := os.ReadFile(filepath.Join(f.Dir, "coordinator-state", "audit.log"))
	if err != nil {
		f.T.Fatal(err)
	}
	for _, line := range bytes.Split(b, []byte("\n")) {
		rec, err := audit.ParseRecord(line)
		if err != nil {
			continue // the empty last line, or one being written
		}
		if rec.Data.Node == "node-4" {
			c.records++
			c.kinds[rec.Kind]++
		}
	}
	return c
}
