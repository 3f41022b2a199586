package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/blindscan"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
)

// The tests in this file run federations of real processes: the test
// binary itself, started as `cloister` (TestMain dispatches on argv[0]).

// blobsCSV writes a CSV of n examples in `classes` Gaussian blobs over
// `features` columns, with the label in column y.
func blobsCSV(t *testing.T, n, features, classes int) string {
	t.Helper()
	var b strings.Builder
	for j := range features {
		fmt.Fprintf(&b, "x%d,", j)
	}
	b.WriteString("y\n")
	rng := rand.New(rand.NewPCG(42, 1))
	for i := range n {
		y := i % classes
		for j := range features {
			c := 0.0
			if j%classes == y {
				c = 1.5
			}
			fmt.Fprintf(&b, "%.4f,", c+rng.NormFloat64())
		}
		fmt.Fprintf(&b, "%d\n", y)
	}
	path := filepath.Join(t.TempDir(), "blobs.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

type testFed struct {
	*localFed
	t     *testing.T
	names []string
	final *coordinator.History // the history when the session ended
}

// newTestFed provisions and starts a federation of real processes. Under
// -short it uses mhe's InsecureTest preset; otherwise Agg128.
func newTestFed(t *testing.T, nodes, threshold, rounds, localEpochs int) *testFed {
	t.Helper()
	return newTestFedWith(t, nodes, threshold, rounds, localEpochs, nil)
}

// newTestFedWith is newTestFed with the provisioning options edited by edit.
func newTestFedWith(t *testing.T, nodes, threshold, rounds, localEpochs int, edit func(*pki.InitOptions)) *testFed {
	t.Helper()
	preset := "Agg128"
	if testing.Short() {
		preset = "InsecureTest"
	}
	csv := blobsCSV(t, 400*nodes, 24, 4)
	dir := filepath.Join(t.TempDir(), "fed")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	opts := pki.InitOptions{Nodes: nodes, Threshold: threshold, MinCohort: threshold, Federation: "test",
		Mode: federation.ModeMHE, Preset: preset, DP: &federation.DP{}, Model: federation.ModelSpec{Kind: "mlp", Inputs: 24, Classes: 4, Hidden: []int{32}},
		Training: federation.Training{Rounds: rounds, LocalEpochs: localEpochs, Batch: 16, LearningRate: 0.05, Momentum: 0.9}}
	if edit != nil {
		edit(&opts)
	}
	f, err := newLocalFed(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	f.nodeArgs = []string{"--data", "csv:" + csv + ":label=y", "--partition", "iid", "--seed", "3", "--tick", "100ms"}
	f.coordArgs = []string{"--tick", "100ms", "--gather", "1s", "--collect-timeout", "60s", "--step-timeout", "20s",
		"--eval-timeout", "30s", "--log-level", "debug"}
	tf := &testFed{localFed: f, t: t}
	for i := 1; i <= nodes; i++ {
		tf.names = append(tf.names, fmt.Sprintf("node-%d", i))
	}
	t.Cleanup(func() {
		f.stopAll()
		if t.Failed() {
			for _, n := range append([]string{"coordinator"}, tf.names...) {
				t.Log(tail(f.logPath(n), 25))
			}
		}
	})
	return tf
}

func (f *testFed) startAll() {
	f.t.Helper()
	if err := f.startCoordinator(); err != nil {
		f.t.Fatal(err)
	}
	for _, n := range f.names {
		if err := f.startNode(n); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *testFed) wait(timeout time.Duration, what string, ok func(fedStatus) bool) fedStatus {
	f.t.Helper()
	s, err := f.waitStatus(timeout, 5*time.Millisecond, ok)
	if err != nil {
		f.t.Fatalf("waiting for %s: %v", what, err)
	}
	return s
}

// finish waits for every running node to exit cleanly (the session is
// over), then stops the coordinator.
func (f *testFed) finish(timeout time.Duration) {
	f.t.Helper()
	deadline := time.After(timeout)
	for _, n := range f.names {
		p := f.proc(n)
		select {
		case <-p.done:
			if p.err != nil {
				f.t.Fatalf("%s exited with %v", n, p.err)
			}
		case <-deadline:
			s, _ := f.status()
			f.t.Fatalf("%s still running after %v; coordinator %+v", n, timeout, s)
		}
	}
	h, err := f.history()
	if err != nil {
		f.t.Fatal(err)
	}
	f.final = h
	if err := f.signal("coordinator", syscall.SIGTERM); err == nil {
		<-f.proc("coordinator").done
	}
}

// roundInfo returns round r of the coordinator's history (from its store,
// through a fresh coordinator process's view: here, /rounds while running).
func (f *testFed) roundOf(r fl.Round) (outcome string, leader fl.NodeID, included []fl.NodeID) {
	f.t.Helper()
	h := f.final
	if h == nil {
		var err error
		if h, err = f.history(); err != nil {
			f.t.Fatal(err)
		}
	}
	for _, ri := range h.History {
		if ri.Round == r {
			return ri.Outcome, ri.Leader, ri.Included
		}
	}
	return "", "", nil
}

// exportAll exports every node's model and checks they are all the model of
// round want, equal, finite, and of the expected size.
func (f *testFed) exportAll(want fl.Round) fl.Vector {
	f.t.Helper()
	var first fl.Vector
	for _, n := range f.names {
		kit, err := pki.LoadKit(f.kit(n))
		if err != nil {
			f.t.Fatal(err)
		}
		key, err := store.LoadOrCreateKey(f.kit(n))
		if err != nil {
			f.t.Fatal(err)
		}
		exp, err := node.Export(context.Background(), kit, f.kit(n), f.state(n), key)
		if err != nil {
			f.t.Fatalf("%s: export: %v", n, err)
		}
		if exp.Round != want {
			f.t.Errorf("%s holds the model of round %d, want %d", n, exp.Round, want)
		}
		if !exp.Model.Finite() || len(exp.Model) != (24*32+32)+(32*4+4) {
			f.t.Errorf("%s: model of %d values, finite %v", n, len(exp.Model), exp.Model.Finite())
		}
		if first == nil {
			first = exp.Model
		} else if !slices.Equal(first, exp.Model) {
			f.t.Errorf("%s holds another final model than node-1", n)
		}
	}
	return first
}

// verifyAudit runs `cloister audit verify` over the whole federation and
// returns every log's summary.
func (f *testFed) verifyAudit(commits int) map[string]audit.Summary {
	f.t.Helper()
	cmd := exec.Cmd{Path: f.exe, Args: []string{"cloister", "audit", "verify", f.dir}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		f.t.Fatalf("cloister audit verify: %v\n%s", err, out)
	}
	kit, err := pki.LoadKit(f.kit(pki.CoordinatorDir))
	if err != nil {
		f.t.Fatal(err)
	}
	man := kit.Manifest
	res, err := audit.VerifyDir(filepath.Join(f.dir, "state"), audit.Federation{Keys: audit.Keys(man.AuditKeys()), Coordinator: man.Coordinator.Name})
	if err != nil {
		f.t.Fatal(err)
	}
	sums := map[string]audit.Summary{}
	for _, r := range res {
		name := filepath.Base(filepath.Dir(r.Path))
		sums[name] = r.Summary
	}
	if got := sums["coordinator"].Rounds; got != commits {
		f.t.Errorf("the coordinator's log commits %d rounds, want %d", got, commits)
	}
	return sums
}

// reveals counts the Revealed records of round r in a log, by revealer.
func reveals(t *testing.T, path string, r fl.Round) map[fl.NodeID]int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[fl.NodeID]int{}
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		rec, err := audit.ParseRecord(line)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Kind == audit.Revealed && rec.Data.Round == r {
			out[rec.Revealer()]++
		}
	}
	return out
}

func TestFaultNodeKilledMidCollection(t *testing.T) {
	f := newTestFed(t, 4, 2, 4, 1000)
	f.startAll()
	// Round 2, collecting: kill a node that is neither the leader nor done training.
	s := f.wait(3*time.Minute, "round 2 collecting", func(s fedStatus) bool { return s.Round == 2 && s.Phase == "collect" })
	victim := "node-4"
	if s.Leader == fl.NodeID(victim) {
		victim = "node-3"
	}
	if err := f.kill(victim); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed %s in round 2 (leader %s)", victim, s.Leader)
	f.wait(2*time.Minute, "round 2 to end", func(s fedStatus) bool { return s.Round > 2 || s.Phase == "done" })
	outcome, _, included := f.roundOf(2)
	if outcome != "committed" || slices.Contains(included, fl.NodeID(victim)) || len(included) != 3 {
		t.Fatalf("round 2: %s with %v, want committed without %s", outcome, included, victim)
	}
	// Restart it: it rejoins and is included again.
	if err := f.startNode(victim); err != nil {
		t.Fatal(err)
	}
	f.finish(4 * time.Minute)
	outcome, _, included = f.roundOf(4)
	if outcome != "committed" || !slices.Contains(included, fl.NodeID(victim)) {
		t.Errorf("round 4: %s with %v, want %s back in", outcome, included, victim)
	}
	f.exportAll(4)
	f.verifyAudit(4)
}

func TestFaultLeaderKilledAfterReveal(t *testing.T) {
	f := newTestFed(t, 4, 2, 8, 200)
	f.startAll()
	var killed fl.NodeID
	var r fl.Round
	for attempt := 0; attempt < 6 && killed == ""; attempt++ {
		// Catch a round in its commit phase: the reveal is done and the
		// Open result is with the leader.
		s := f.wait(3*time.Minute, "a commit phase", func(s fedStatus) bool { return s.Phase == "commit" && s.Round > r })
		if err := f.kill(string(s.Leader)); err != nil {
			t.Fatal(err)
		}
		f.wait(2*time.Minute, "the round to end", func(x fedStatus) bool { return x.Round > s.Round || x.Phase == "done" })
		outcome, leader, _ := f.roundOf(s.Round)
		if outcome == "committed" && leader != s.Leader {
			killed, r = s.Leader, s.Round
			t.Logf("round %d: leader %s killed after the reveal; %s committed", r, killed, leader)
		} else {
			t.Logf("round %d: %s by %s before the kill landed; again", s.Round, outcome, leader)
			r = s.Round
		}
		if err := f.startNode(string(s.Leader)); err != nil {
			t.Fatal(err)
		}
	}
	if killed == "" {
		t.Skip("could not catch a leader between reveal and commit (the machine is too fast or too loaded)")
	}
	f.finish(5 * time.Minute)
	// Every revealer revealed once in round r: its ledger and its log say so,
	// and so does the coordinator's log.
	coord := reveals(t, filepath.Join(f.state("coordinator"), "audit.log"), r)
	if len(coord) != 2 {
		t.Errorf("coordinator's log: reveals of round %d %v, want 2 revealers once each", r, coord)
	}
	for id, n := range coord {
		if n != 1 {
			t.Errorf("coordinator's log: %s revealed %d times in round %d", id, n, r)
		}
		own := reveals(t, filepath.Join(f.state(string(id)), "audit.log"), r)
		if own[id] > 1 {
			t.Errorf("%s's log: %d reveals in round %d", id, own[id], r)
		}
		if n := ledgerReveals(t, f, string(id), r); n != 1 {
			t.Errorf("%s's ledger: %d reveals in round %d, want 1", id, n, r)
		}
	}
	if coord[killed] != 1 {
		t.Errorf("the killed leader %s did not reveal in round %d: %v", killed, r, coord)
	}
	f.exportAll(8)
	f.verifyAudit(8)
}

// ledgerReveals reads a node's reveal ledger (its store) for round r.
func ledgerReveals(t *testing.T, f *testFed, name string, r fl.Round) int {
	t.Helper()
	kit, err := pki.LoadKit(f.kit(name))
	if err != nil {
		t.Fatal(err)
	}
	key, err := store.LoadOrCreateKey(f.kit(name))
	if err != nil {
		t.Fatal(err)
	}
	db, err := store.Open(filepath.Join(f.state(name), node.DBFile))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	h, _ := kit.Manifest.Hash()
	if _, err := db.Node(h[:], key).Revealed(context.Background(), r); err != nil {
		return 0
	}
	return 1 // the ledger holds at most one reveal per round by construction
}

func TestFaultCoordinatorRestart(t *testing.T) {
	f := newTestFed(t, 3, 2, 4, 1000)
	f.startAll()
	s := f.wait(3*time.Minute, "round 2 collecting", func(s fedStatus) bool { return s.Round == 2 && s.Phase == "collect" })
	if err := f.kill("coordinator"); err != nil {
		t.Fatal(err)
	}
	t.Logf("killed the coordinator in round %d (%s)", s.Round, s.Phase)
	if err := f.startCoordinator(); err != nil {
		t.Fatal(err)
	}
	f.finish(5 * time.Minute)
	// A fresh coordinator process on the same state: still done, same commits.
	if err := f.startCoordinator(); err != nil {
		t.Fatal(err)
	}
	h, err := f.history()
	if err != nil {
		t.Fatal(err)
	}
	committed := map[fl.Round]int{}
	aborted := 0
	for _, ri := range h.History {
		switch ri.Outcome {
		case "committed":
			committed[ri.Round]++
		case "aborted":
			aborted++
		}
	}
	if h.Phase != "done" || h.Commits != 4 || len(committed) != 4 || aborted != 1 {
		t.Errorf("after the restart: phase %s, %d commits, committed rounds %v, %d aborted; want done, 4, 4 distinct, 1 (round 2)",
			h.Phase, h.Commits, committed, aborted)
	}
	f.signal("coordinator", syscall.SIGTERM)
	<-f.proc("coordinator").done
	var last fl.Round
	for r := range committed {
		last = max(last, r)
	}
	f.exportAll(last)
	f.verifyAudit(4)
}

// TestAuditVerifyNamesEditedRecord edits a node's log (a changed record)
// and has the coordinator rewrite its own, validly re-signed and
// re-chained with its audit key, with round 1's commit stripped of its
// leader's cosignature: audit verify names both.
func TestAuditVerifyNamesEditedRecord(t *testing.T) {
	f := newTestFed(t, 3, 2, 2, 1)
	f.startAll()
	f.finish(3 * time.Minute)
	f.verifyAudit(2)
	ckit, err := pki.LoadKit(f.kit(pki.CoordinatorDir))
	if err != nil {
		t.Fatal(err)
	}
	cpath := filepath.Join(f.state("coordinator"), "audit.log")
	leader := stripCosign(t, cpath, ckit.AuditKey, 1)
	// Edit one record of node-2's log: change a digest.
	path := filepath.Join(f.state("node-2"), "audit.log")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := bytes.Split(b, []byte("\n"))
	edited := -1
	for i, l := range lines {
		var rec map[string]any
		if json.Unmarshal(l, &rec) == nil && rec["kind"] == string(audit.Committed) {
			lines[i] = bytes.Replace(l, []byte(`"round":1`), []byte(`"round":9`), 1)
			edited = i
			break
		}
	}
	if edited < 0 {
		t.Fatal("no committed record in node-2's log")
	}
	if err := os.WriteFile(path, bytes.Join(lines, []byte("\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Cmd{Path: f.exe, Args: []string{"cloister", "audit", "verify", f.dir}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("audit verify passed an edited log:\n%s", out)
	}
	want := fmt.Sprintf("line %d", edited+1)
	if !strings.Contains(string(out), "node-2") || !strings.Contains(string(out), want) || !strings.Contains(string(out), "FAIL") {
		t.Errorf("audit verify output does not name %s %s:\n%s", path, want, out)
	}
	want = fmt.Sprintf("FAIL %s: audit: %s line", cpath, cpath)
	reason := fmt.Sprintf("commit not cosigned by its leader: round 1 committed without the cosignature of its leader %s", leader)
	if !strings.Contains(string(out), want) || !strings.Contains(string(out), reason) {
		t.Errorf("audit verify output does not name the uncosigned commit (%q, %q):\n%s", want, reason, out)
	}
	t.Logf("%s", out)
}

// stripCosign rewrites the audit log at path as its writer could, with its
// key: round r's committed record without its cosignature, and every
// record from there on re-chained and re-signed. It returns r's leader.
func stripCosign(t *testing.T, path string, key ed25519.PrivateKey, r fl.Round) fl.NodeID {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	var prev audit.Digest
	var leader fl.NodeID
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		rec, err := audit.ParseRecord(line)
		if err != nil {
			t.Fatal(err)
		}
		if rec.Kind == audit.Committed && rec.Data.Round == r {
			if rec.Cosign == nil || rec.Cosign.Signer != rec.Data.Leader {
				t.Fatalf("round %d's commit in %s is not cosigned by its leader: %+v", r, path, rec)
			}
			rec.Cosign, leader = nil, rec.Data.Leader
		}
		if rec.Seq > 1 {
			rec.Prev = prev
		}
		if prev, err = rec.Hash(); err != nil {
			t.Fatal(err)
		}
		rec.Sig = ed25519.Sign(key, prev[:])
		enc, err := json.Marshal(rec)
		if err != nil {
			t.Fatal(err)
		}
		out.Write(append(enc, '\n'))
	}
	if leader == "" {
		t.Fatalf("no commit of round %d in %s", r, path)
	}
	if err := os.WriteFile(path, out.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return leader
}

// TestDemoBlind runs `cloister demo` with the nodes dumping their plaintext
// updates, exports the final model, and checks that no 32-byte window of the
// model or of any update (float64 and float32, little- and big-endian)
// occurs anywhere under the coordinator's state directory or in its log.
func TestDemoBlind(t *testing.T) {
	preset := "Agg128"
	if testing.Short() {
		preset = "InsecureTest"
	}
	csv := blobsCSV(t, 1200, 24, 4)
	dir := filepath.Join(t.TempDir(), "demo")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Cmd{Path: exe, Args: []string{"cloister", "demo", "--nodes", "3", "--threshold", "2", "--rounds", "3",
		"--preset", preset, "--data", "csv:" + csv + ":label=y", "--partition", "dirichlet:0.5", "--hidden", "32",
		"--keep", dir, "--insecure-dump-updates", "--json", filepath.Join(t.TempDir(), "demo.json")}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cloister demo: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	model := filepath.Join(t.TempDir(), "model.json")
	cmd = exec.Cmd{Path: exe, Args: []string{"cloister", "model", "export", "--kit", filepath.Join(dir, "fed", "node-1"),
		"--state", filepath.Join(dir, "state", "node-1"), "--out", model}}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("cloister model export: %v\n%s", err, out)
	}
	var exp node.Exported
	b, err := os.ReadFile(model)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &exp); err != nil {
		t.Fatal(err)
	}
	if exp.Round != 3 || len(exp.Model) == 0 {
		t.Fatalf("exported round %d with %d values", exp.Round, len(exp.Model))
	}
	wins := map[[32]byte]string{}
	blindscan.Windows(exp.Model, "final model", wins)
	nUpdates := 0
	filepath.WalkDir(filepath.Join(dir, "updates"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		v := make(fl.Vector, len(raw)/8)
		for i := range v {
			v[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
		}
		blindscan.Windows(v, path, wins)
		nUpdates++
		return nil
	})
	if nUpdates != 9 {
		t.Fatalf("%d updates dumped, want 9 (3 nodes, 3 rounds)", nUpdates)
	}
	// Positive control: the scan finds the model in its binary encoding.
	var enc []byte
	for _, x := range exp.Model {
		enc = binary.LittleEndian.AppendUint64(enc, math.Float64bits(x))
	}
	if len(blindscan.Scan(enc, wins)) == 0 {
		t.Fatal("positive control: the scan does not find the model in its own encoding")
	}
	var hits []string
	for _, p := range []string{filepath.Join(dir, "state", "coordinator"), filepath.Join(dir, "logs", "coordinator.txt")} {
		h, err := blindscan.ScanPath(p, wins)
		if err != nil {
			t.Fatal(err)
		}
		hits = append(hits, h...)
	}
	t.Logf("%d windows of the final model and %d updates; %d hits", len(wins), nUpdates, len(hits))
	if len(hits) > 0 {
		t.Errorf("the coordinator holds plaintext: %v", hits[:min(5, len(hits))])
	}
}
