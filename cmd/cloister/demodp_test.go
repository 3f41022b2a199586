package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoDP runs a tiny `cloister demo` with DP on: σ = 1, C = 1 and a
// budget of ε = 8 cover 2 of the 3 rounds asked for, so the coordinator
// stops after round 2. The progress lines show ε, the JSON carries it per
// round and in total, the plot has an ε panel, and the logs verify.
func TestDemoDP(t *testing.T) {
	tmp := t.TempDir()
	dir, svg := filepath.Join(tmp, "demo"), filepath.Join(tmp, "demo.svg")
	out, res := runTinyDemo(t, "--rounds", "3", "--dp-noise", "1", "--clip", "1", "--epsilon", "8", "--delta", "1e-5",
		"--keep", dir, "--plot", svg)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dashboard: http://127.0.0.1:", "privacy budget ε = 8 covers 2 rounds", "round  2/3  accuracy", "  ε 7.0",
		"stopped by the privacy budget: 2 of 3 rounds committed", "privacy: ε = 7.0"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	e := res.EpsilonPerRound
	if res.Rounds != 2 || len(e) != 2 || !(e[0] > 4 && e[1] > e[0] && e[1] <= 8) || res.EpsilonTotal != e[1] {
		t.Errorf("rounds %d, epsilon per round %v, total %v", res.Rounds, e, res.EpsilonTotal)
	}
	if p := res.DP; p == nil || p.NoiseMultiplier != 1 || p.Clip != 1 || p.Budget != 8 || p.Delta != 1e-5 || p.MaxRound != 2 || !p.Exhausted {
		t.Errorf("dp %+v", res.DP)
	}
	if s, err := os.ReadFile(svg); err != nil || !strings.Contains(string(s), "ε spent") {
		t.Errorf("the plot has no ε panel (%v)", err)
	}
	cmd := exec.Cmd{Path: exe, Args: []string{"cloister", "audit", "verify", dir}}
	out, err = cmd.CombinedOutput()
	if err != nil {
		t.Errorf("cloister audit verify: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	if n := strings.Count(string(out), "ε spent 7.0"); n != 4 {
		t.Errorf("%d logs say ε spent 7.0…, want all 4", n)
	}
}

// runTinyDemo runs `cloister demo` on 3 nodes (t = 2, InsecureTest,
// softmax on blob data split IID, one local epoch) with extra flags, and
// returns its output and its JSON.
func runTinyDemo(t *testing.T, extra ...string) ([]byte, demoResult) {
	t.Helper()
	csv := blobsCSV(t, 600, 12, 3)
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	jsonPath := filepath.Join(t.TempDir(), "demo.json")
	args := append([]string{"cloister", "demo", "--nodes", "3", "--threshold", "2", "--preset", "InsecureTest",
		"--model", "softmax", "--local-epochs", "1", "--data", "csv:" + csv + ":label=y", "--partition", "iid",
		"--json", jsonPath, "--timeout", "5m"}, extra...) // a stuck demo fails the test, not the package's timeout
	cmd := exec.Cmd{Path: exe, Args: args}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("cloister demo: %v\n%s", err, out)
	}
	t.Logf("%s", out)
	var res demoResult
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return out, res
}
