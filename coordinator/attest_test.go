package coordinator_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// simPolicy allows sim evidence of measurement m at TCB 2 or later.
func simPolicy(m [48]byte, maxAge time.Duration) *attest.Policy {
	return &attest.Policy{Formats: []string{attest.FormatSim}, AllowSim: true, MaxAge: attest.Duration(maxAge),
		Measurements: map[string][]string{attest.FormatSim: {hex.EncodeToString(m[:])}},
		MinTCB:       map[string]attest.TCB{attest.FormatSim: {2}}}
}

// TestAttestationRejections runs a federation whose manifest requires sim
// evidence. node-1 and node-2 run on good TEEs; a rogue client with
// node-3's certificate sends Hellos whose evidence fails each check. The
// coordinator refuses every one before the engine sees it, with an error
// naming the check, in its audit log and metrics; it relays the refused
// evidence, and the members record the failures they can see themselves.
// Then node-3 joins on a good TEE and the federation trains.
func TestAttestationRejections(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var good, other [48]byte
		rand.Read(good[:])
		rand.Read(other[:])
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 3, Mode: federation.ModeMHE, Preset: "InsecureTest", DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 6, LocalEpochs: 1, Batch: 16, LearningRate: 0.1},
			Attestation: simPolicy(good, time.Hour)})}
		f.NodeConfig = func(name string, c *node.Config) { c.TEE = attest.NewSimTEE(good, "") }
		// The minimum cohort is every member: node-1 and node-2 wait for node-3
		// (and hear of each refusal) rather than train without it.
		f.StartCoordinator()
		test := fedtest.Blobs(90, 6, 3, 99)
		f.StartNode("node-1", fedtest.Blobs(120, 6, 3, 1), test)
		f.StartNode("node-2", fedtest.Blobs(120, 6, 3, 2), test)
		f.WaitStatus("node-1 and node-2 live", func(s round.Status) bool { return len(s.Live) == 2 })

		// The rogue: node-3's certificate and audit key, its own Hellos.
		kit3 := f.Kits["node-3"]
		ekmOf := func(c *transport.Conn) []byte {
			ekm, err := attest.SessionEKM(c.TLS())
			if err != nil {
				t.Fatal(err)
			}
			return ekm
		}
		// An earlier connection's keying material: the rogue's stream replaces it.
		first := f.DialAs("node-3", transport.ClientConfig{})
		otherEKM := ekmOf(first)
		rogue := f.DialAs("node-3", transport.ClientConfig{})
		first.Close()
		fedtest.Drain(rogue)
		session, _ := f.Kits["coordinator"].Manifest.Hash()
		nonce, ekm := rogue.Nonce(), ekmOf(rogue)
		keys, _ := keyring.NewKeys(nil)
		otherKeys, _ := keyring.NewKeys(nil)
		type ev struct {
			sim   attest.SimConfig
			bind  attest.Binding
			at    time.Time
			edit  func([]byte) []byte
			noTEE bool
		}
		hello := func(e ev) []byte {
			var tee []byte
			if !e.noTEE {
				if e.sim.Rand == nil {
					e.sim.Rand = rand.Reader
				}
				a, err := attest.NewSimAttester(e.sim)
				if err != nil {
					t.Fatal(err)
				}
				if tee, err = attest.Attest(a, e.bind, e.at); err != nil {
					t.Fatal(err)
				}
				if e.edit != nil {
					tee = e.edit(tee)
				}
			}
			return keys.Evidence(session[:], "node-3", kit3.AuditKey, time.Now(), tee)
		}
		ok := attest.SimConfig{Measurement: good, TCB: 2}
		now := time.Now()
		cases := []struct {
			name, result string // result: the metric label and the check named in the refusal
			e            func() ev
			peersSee     bool // the members can tell from the relayed evidence
		}{
			{"no TEE evidence", "missing", func() ev { return ev{noTEE: true} }, true},
			{"another session (relayed from another connection)", "session-binding", func() ev {
				return ev{sim: ok, bind: keys.Binding(nonce, otherEKM), at: now}
			}, false},
			{"another key", "key-binding", func() ev { return ev{sim: ok, bind: otherKeys.Binding(nonce, ekm), at: now} }, true},
			{"stale nonce", "stale-nonce", func() ev {
				old := nonce
				n, err := rogue.Challenge(context.Background())
				if err != nil {
					t.Fatal(err)
				}
				nonce = n
				return ev{sim: ok, bind: keys.Binding(old, ekm), at: now}
			}, false},
			{"unknown measurement", "measurement", func() ev {
				return ev{sim: attest.SimConfig{Measurement: other, TCB: 2}, bind: keys.Binding(nonce, ekm), at: now}
			}, true},
			{"debug TEE", "debug", func() ev {
				return ev{sim: attest.SimConfig{Measurement: good, TCB: 2, Debug: true}, bind: keys.Binding(nonce, ekm), at: now}
			}, true},
			{"TCB below the floor", "tcb", func() ev {
				return ev{sim: attest.SimConfig{Measurement: good, TCB: 1}, bind: keys.Binding(nonce, ekm), at: now}
			}, true},
			{"too old", "too-old", func() ev { return ev{sim: ok, bind: keys.Binding(nonce, ekm), at: now.Add(-2 * time.Hour)} }, true},
			{"tampered signature", "signature", func() ev {
				return ev{sim: ok, bind: keys.Binding(nonce, ekm), at: now, edit: func(b []byte) []byte {
					b = bytes.Clone(b)
					b[len(b)-1] ^= 1 // the sim report's platform signature ends the envelope
					return b
				}}
			}, true},
		}
		reasons := map[string]bool{}
		for _, c := range cases {
			e := c.e()
			b := hello(e)
			if err := rogue.Send(context.Background(), round.Message{Kind: round.KindHello, Session: session[:], Evidence: b}); err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			f.WaitMetric(`cloister_coordinator_attestations_total{result="`+c.result+`"}`, 1)
			st := f.Coord.Attestation()["node-3"]
			t.Logf("%s: %s", c.name, st.LastError)
			if st.OK || st.LastError == "" || reasons[st.LastError] {
				t.Errorf("%s: status %+v, want a new refusal", c.name, st)
			}
			reasons[st.LastError] = true
			if slices.Contains(f.Coord.Status().Live, "node-3") {
				t.Fatalf("%s: node-3 reached the engine", c.name)
			}
		}
		rogue.Close()
		// Every refusal is in the coordinator's audit log, with its check.
		coordLog := filepath.Join(f.Dir, "coordinator-state", "audit.log")
		for _, want := range []string{"no TEE evidence", "TLS keying material", "HPKE key", "answers nonce", "measurement", "debug mode",
			"TCB", "old", "signature"} {
			if !logHas(t, coordLog, audit.NodeRefused, want) {
				t.Errorf("the coordinator's audit log has no node-refused record for %q", want)
			}
		}

		// node-3 on a good TEE: admitted, and the federation trains.
		f.StartNode("node-3", fedtest.Blobs(120, 6, 3, 3), test)
		f.WaitNodes(2 * time.Minute)
		st := f.Coord.Status()
		if st.Phase != round.PhaseDone || st.Commits != 6 {
			t.Fatalf("status %+v, want done after 6 commits", st)
		}
		for _, id := range []fl.NodeID{"node-1", "node-2", "node-3"} {
			a := f.Coord.Attestation()[id]
			t.Logf("%s: %d attestations verified, %s", id, a.Count, a.Measurement)
			if a.Format != attest.FormatSim || a.Measurement != hex.EncodeToString(good[:]) || a.Count < 1 {
				t.Errorf("%s: attestation status %+v", id, a)
			}
		}
		f.StopCoordinator()
		// The members checked the relayed evidence themselves: node-1's log
		// records what it could see (measurement, debug, TCB, age, signature,
		// key binding), not what only the coordinator can (nonce, TLS session).
		n1 := filepath.Join(f.Dir, "node-1-state", "audit.log")
		for _, want := range []string{"measurement", "debug mode", "TCB", "old", "signature", "HPKE key", "no TEE evidence"} {
			if !logHas(t, n1, audit.AttestationFailed, want) {
				t.Errorf("node-1's audit log has no attestation-failed record for %q", want)
			}
		}
	})
}

// TestAttestationExpiry: node-3 never re-attests, the others every 300ms,
// and evidence may be at most 2s old. Once node-3's evidence is too old,
// the coordinator excludes it (and re-keys without it) and node-1 and
// node-2 distrust it; training goes on with them.
func TestAttestationExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var good [48]byte
		rand.Read(good[:])
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 2, Mode: federation.ModeMHE, Preset: "InsecureTest", DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 100000, LocalEpochs: 1, Batch: 16, LearningRate: 0.1},
			Attestation: simPolicy(good, 2*time.Second)})}
		f.TrainTime = 100 * time.Millisecond // rounds take time, so that evidence ages while they go on
		f.NodeConfig = func(name string, c *node.Config) {
			c.TEE = attest.NewSimTEE(good, "")
			c.AttestEvery = 300 * time.Millisecond
			if name == "node-3" {
				c.AttestEvery = time.Hour
			}
		}
		f.StartCoordinator()
		f.StartNodes(3)
		f.WaitStatus("node-3 excluded", func(s round.Status) bool {
			a := f.Coord.Attestation()["node-3"]
			return s.Commits > 0 && !a.OK && strings.Contains(a.LastError, "expired")
		})
		a := f.Coord.Attestation()["node-3"]
		t.Logf("node-3: %s", a.LastError)
		after := f.Coord.Status().Round
		f.WaitStatus("two rounds without node-3", func(s round.Status) bool { return s.Commits > 0 && s.LastCommitted > after+1 })
		h, err := f.Coord.History(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range h.History {
			if r.Round > after && r.Outcome == "committed" && slices.Contains(r.Included, "node-3") {
				t.Errorf("round %d after the exclusion included node-3: %v", r.Round, r.Included)
			}
		}
		for _, id := range []fl.NodeID{"node-1", "node-2"} {
			if a := f.Coord.Attestation()[id]; !a.OK || a.Count < 2 {
				t.Errorf("%s: %+v, want valid evidence, re-attested", id, a)
			}
		}
		// Each node checks its peers' evidence age once a second, on its own
		// clock: wait for both to have recorded node-3's expiry before stopping.
		for _, n := range []string{"node-1", "node-2"} {
			waitLogHas(t, filepath.Join(f.Dir, n+"-state", "audit.log"), audit.AttestationFailed, "more than the maximum", 20*time.Second)
		}
		for _, n := range fedtest.NodeNames(3) {
			f.StopNode(n)
		}
		f.StopCoordinator()
		if !logHas(t, filepath.Join(f.Dir, "coordinator-state", "audit.log"), audit.NodeRefused, "attestation expired") {
			t.Error("the coordinator's audit log does not record node-3's expired evidence")
		}
		for _, n := range []string{"node-1", "node-2"} {
			if !logHas(t, filepath.Join(f.Dir, n+"-state", "audit.log"), audit.AttestationFailed, "more than the maximum") {
				t.Errorf("%s's audit log does not distrust node-3's expired evidence", n)
			}
			// The verdict is in the node's sealed state: a restart keeps it.
			if d := f.EngineState(n).Distrusted; len(d) != 1 || d[0].Member != "node-3" || !d[0].Pinned ||
				!strings.Contains(d[0].Reason, "more than the maximum") {
				t.Errorf("%s's stored state distrusts %+v, want node-3's expired evidence", n, d)
			}
			// A re-attestation makes the coordinator relay the new evidence,
			// not re-send what the node already has.
			if logHas(t, filepath.Join(f.Dir, n+"-state", "audit.log"), audit.NodeRefused, round.ErrDuplicate.Error()) {
				t.Errorf("%s's audit log refuses duplicates: the coordinator re-sent messages after a re-attestation", n)
			}
		}
	})
}

// waitLogHas polls the audit log at path, which a running daemon appends
// to, until it has a record of kind whose reason contains s (complete
// lines only), or gives up after timeout; logHas then reports the verdict.
func waitLogHas(t *testing.T, path string, kind audit.Kind, s string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		b, _ := os.ReadFile(path)
		if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
			for _, line := range bytes.Split(b[:i], []byte("\n")) {
				if rec, err := audit.ParseRecord(line); err == nil && rec.Kind == kind && strings.Contains(rec.Data.Reason, s) {
					return
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestUnattestedStream: with attestation, a member's messages other than
// Hello are taken only on a stream where it attested. A process that holds
// node-3's certificate and audit key but no TEE opens a stream of its own
// (replacing node-3's attested one) and speaks without a Hello: refused,
// until a Hello with evidence bound to that stream.
func TestUnattestedStream(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var good [48]byte
		rand.Read(good[:])
		f := fed{fedtest.New(t, pki.InitOptions{Nodes: 3, Threshold: 2, MinCohort: 3, Mode: federation.ModePlain, DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: 1, LocalEpochs: 1, Batch: 16, LearningRate: 0.1},
			Attestation: simPolicy(good, time.Hour)})}
		f.StartCoordinator()
		kit3 := f.Kits["node-3"]
		session, _ := f.Kits["coordinator"].Manifest.Hash()
		keys, _ := keyring.NewKeys(nil)
		sim, err := attest.NewSimAttester(attest.SimConfig{Measurement: good, TCB: 2, Rand: rand.Reader})
		if err != nil {
			t.Fatal(err)
		}
		dial := func() *transport.Conn {
			c := f.DialAs("node-3", transport.ClientConfig{})
			fedtest.Drain(c)
			return c
		}
		send := func(c *transport.Conn, m round.Message) {
			m.Session = session[:]
			if err := c.Send(context.Background(), m); err != nil {
				t.Fatal(err)
			}
		}
		hello := func(c *transport.Conn) round.Message {
			ekm, err := attest.SessionEKM(c.TLS())
			if err != nil {
				t.Fatal(err)
			}
			tee, err := attest.Attest(sim, keys.Binding(c.Nonce(), ekm), time.Now())
			if err != nil {
				t.Fatal(err)
			}
			return round.Message{Kind: round.KindHello, Evidence: keys.Evidence(session[:], "node-3", kit3.AuditKey, time.Now(), tee)}
		}
		metrics := round.Message{Kind: round.KindMetrics, Round: 1, Metrics: fl.Metrics{Accuracy: 0.5, Examples: 1}}
		const unattested = `cloister_coordinator_rejected_total{reason="unattested"}`
		const ok = `cloister_coordinator_attestations_total{result="ok"}`

		a := dial()
		send(a, metrics) // before its Hello: refused
		send(a, hello(a))
		send(a, metrics) // after it: to the engine, which finds it in the wrong phase
		f.WaitMetric(`cloister_coordinator_rejected_total{reason="wrong-phase"}`, 1)
		b := dial()      // replaces a
		send(b, metrics) // refused: node-3 attested on a, not on b
		send(b, hello(b))
		f.WaitMetric(ok, 2)
		if got := f.Metric(unattested); got != 2 {
			t.Fatalf("%s = %v, want 2 (one message before each stream's Hello)", unattested, got)
		}
	})
}
