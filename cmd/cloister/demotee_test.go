package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoTEE runs a tiny `cloister demo --tee sim` whose nodes re-attest
// every 100ms: the summary and the JSON report how many re-attestations
// the nodes made and their mean cost.
func TestDemoTEE(t *testing.T) {
	csv := blobsCSV(t, 600, 12, 3)
	tmp := t.TempDir()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	jsonPath := filepath.Join(tmp, "demo.json")
	cmd := exec.Cmd{Path: exe, Args: []string{"cloister", "demo", "--nodes", "3", "--threshold", "2", "--rounds", "8",
		"--preset", "InsecureTest", "--model", "softmax", "--local-epochs", "1", "--data", "csv:" + csv + ":label=y",
		"--partition", "iid", "--tee", "sim", "--attest-every", "100ms", "--json", jsonPath}}
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
	if res.Rounds != 8 {
		t.Errorf("%d rounds committed, want 8", res.Rounds)
	}
	// Admission, key setup and 8 rounds take several times 100ms (each
	// node defers its re-attestation while a key setup is under way).
	if res.Reattestations < 3 || !(res.NodeSeconds["reattest"] > 0) {
		t.Errorf("%d re-attestations, mean %v s: want several, with a cost", res.Reattestations, res.NodeSeconds["reattest"])
	}
	for _, want := range []string{"WARNING: --tee sim is a SIMULATED TEE", "re-attestation: ", "privacy: differential privacy off"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
}
