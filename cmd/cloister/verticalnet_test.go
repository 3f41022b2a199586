package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/vertical"
)

// TestVerticalProcesses runs vertical learning as a consortium would: the
// admin deals the key into the kits, the coordinator runs the relay, and
// each party is its own process with its own kit and CSV, over mutual
// TLS. Each party's part of the model is exactly the in-process model's,
// the label party alone reads the held-out accuracy, and predict scores
// every shared row. A party with other settings is refused by name.
func TestVerticalProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	dir := t.TempDir()
	f, err := newLocalFed(dir, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.stopAll()
	pa, pb := writeHospitals(t, dir)
	da, db := "csv:"+pa+":id=patient:label=diagnosis", "csv:"+pb+":id=patient"
	const parties = "node-1,node-2"
	var out, errb bytes.Buffer
	if err := run([]string{"vertical", "deal", "--dir", filepath.Join(dir, "fed"), "--parties", parties, "--key-bits", "512"}, nil, &out, &errb); err != nil {
		t.Fatalf("deal: %v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "all-of-2 threshold Paillier key") {
		t.Fatalf("deal: %s", out.String())
	}
	if st, err := os.Stat(filepath.Join(f.kit("node-1"), verticalKeyFile)); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("node-1's share: %v %v", st, err)
	}
	// Dealing again would replace the key under the parties: refused.
	if err := run([]string{"vertical", "deal", "--dir", filepath.Join(dir, "fed"), "--parties", parties}, nil, &out, &errb); err == nil || !strings.Contains(err.Error(), "already holds a vertical key") {
		t.Fatalf("second deal: %v", err)
	}
	if err := f.start("relay", "vertical", "relay", "--kit", f.kit(pki.CoordinatorDir), "--parties", parties, "--log-format", "json"); err != nil {
		t.Fatal(err)
	}
	party := func(name, verb string, args ...string) {
		t.Helper()
		all := append([]string{"vertical", verb, "--kit", f.kit(name), "--parties", parties, "--timeout", "2m"}, args...)
		if err := f.start(name+"-"+verb, all...); err != nil {
			t.Fatal(err)
		}
	}
	wait := func(names ...string) map[string]string {
		t.Helper()
		logs := map[string]string{}
		for _, n := range names {
			p := f.proc(n)
			select {
			case <-p.done:
			case <-time.After(3 * time.Minute):
				t.Fatalf("%s did not end:\n%s", n, tail(f.logPath(n), 20))
			}
			b, _ := os.ReadFile(f.logPath(n))
			logs[n] = string(b)
			if p.err != nil {
				t.Fatalf("%s: %v\n%s", n, p.err, b)
			}
		}
		return logs
	}
	train := []string{"--epochs", "5", "--batch", "32"}
	m1, m2 := filepath.Join(dir, "m1.json"), filepath.Join(dir, "m2.json")
	party("node-2", "train", append([]string{"--data", db, "--model", m2}, train...)...)
	party("node-1", "train", append([]string{"--data", da, "--model", m1}, train...)...)
	logs := wait("node-1-train", "node-2-train")
	t.Logf("node-1:\n%s", logs["node-1-train"])
	for _, want := range []string{"psi: 216 IDs here; 192 shared by all 2 parties", "vertical (encrypted, 2 processes): test accuracy "} {
		if !strings.Contains(logs["node-1-train"], want) {
			t.Errorf("node-1's output lacks %q", want)
		}
	}
	if strings.Contains(logs["node-2-train"], "accuracy") || !strings.Contains(logs["node-2-train"], "only it reads the scores") {
		t.Errorf("node-2's output:\n%s", logs["node-2-train"])
	}

	// The same training in one process, with a key of its own: the same
	// models, the same accuracy.
	full := filepath.Join(dir, "full.json")
	out.Reset()
	if err := run(append([]string{"vertical", "train", "--data", da, "--data", db, "--model", full, "--key-bits", "512"}, train...), nil, &out, &errb); err != nil {
		t.Fatalf("in one process: %v\n%s", err, errb.String())
	}
	var whole vertical.Model
	readJSON(t, full, &whole)
	for i, path := range []string{m1, m2} {
		var part netModel
		readJSON(t, path, &part)
		want := whole.Parties[i]
		want.Name = part.Part.Name
		if !slices.Equal(part.Part.Weights, want.Weights) || part.Part.Intercept != want.Intercept || !slices.Equal(part.Part.Mean, want.Mean) {
			t.Errorf("party %d: over the relay %+v, in one process %+v", i+1, part.Part, want)
		}
	}
	acc := func(s, prefix string) string {
		for _, l := range strings.Split(s, "\n") {
			if v, ok := strings.CutPrefix(l, prefix); ok {
				return strings.Fields(v)[0]
			}
		}
		return ""
	}
	if a, b := acc(logs["node-1-train"], "vertical (encrypted, 2 processes): test accuracy "), acc(out.String(), "vertical (encrypted): test accuracy "); a == "" || a != b {
		t.Errorf("accuracy over the relay %q, in one process %q", a, b)
	}

	// Predict with each party's part.
	scores := filepath.Join(dir, "scores.csv")
	party("node-2", "predict", "--data", db, "--model", m2)
	party("node-1", "predict", "--data", da, "--model", m1, "--out", scores)
	wait("node-1-predict", "node-2-predict")
	b, err := os.ReadFile(scores)
	if err != nil || strings.Count(string(b), "\n") != 193 || !strings.HasPrefix(string(b), "id,score,probability\np000,") {
		t.Fatalf("scores: %v\n%.200s", err, b)
	}

	// A party with other settings: both are told, by name; nothing is
	// written.
	bad := filepath.Join(dir, "bad.json")
	if err := f.start("node-2-bad", "vertical", "train", "--kit", f.kit("node-2"), "--parties", parties, "--timeout", "1m", "--data", db, "--epochs", "4"); err != nil {
		t.Fatal(err)
	}
	if err := f.start("node-1-bad", "vertical", "train", "--kit", f.kit("node-1"), "--parties", parties, "--timeout", "1m", "--data", da, "--epochs", "5", "--model", bad); err != nil {
		t.Fatal(err)
	}
	for name, other := range map[string]string{"node-1-bad": "node-2", "node-2-bad": "node-1"} {
		p := f.proc(name)
		<-p.done
		b, _ := os.ReadFile(f.logPath(name))
		if p.err == nil || !strings.Contains(string(b), "session parameters differ: "+other+" opened session") || !strings.Contains(string(b), "same --parties and settings") {
			t.Errorf("%s: %v\n%s", name, p.err, b)
		}
	}
	if _, err := os.Stat(bad); err == nil {
		t.Errorf("a model was written")
	}

	// A party killed mid-training: the other stops at once, naming it.
	if err := f.start("node-2-killed", "vertical", "train", "--kit", f.kit("node-2"), "--parties", parties, "--timeout", "2m", "--data", db, "--epochs", "2000"); err != nil {
		t.Fatal(err)
	}
	if err := f.start("node-1-left", "vertical", "train", "--kit", f.kit("node-1"), "--parties", parties, "--timeout", "2m", "--data", da, "--epochs", "2000"); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(tail(f.logPath("node-2-killed"), 10), "training:") {
		select {
		case <-f.proc("node-2-killed").done:
			t.Fatalf("node-2 ended early:\n%s", tail(f.logPath("node-2-killed"), 20))
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err := f.kill("node-2-killed"); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	p := f.proc("node-1-left")
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("node-1 still waits 30 s after node-2 was killed")
	}
	b, _ = os.ReadFile(f.logPath("node-1-left"))
	if p.err == nil || !strings.Contains(string(b), "node-2, while this party waited for its") {
		t.Errorf("node-1 after node-2 was killed: %v\n%s", p.err, b)
	}
	t.Logf("node-1 stopped %.1fs after node-2 was killed:\n%s", time.Since(killed).Seconds(), b)
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
