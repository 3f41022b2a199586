package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestDemoByzantine runs real processes: a tiny plain federation of 3
// nodes in which node-1 sends sign-flipped updates (×10). The mean is
// dragged away; the manifest's median (f=1 with a minimum cohort of 3)
// learns.
func TestDemoByzantine(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two federations of real processes")
	}
	args := []string{"--mode", "plain", "--min-cohort", "3", "--rounds", "5", "--dp-noise", "0", "--insecure-attack", "sign-flip:scale=10"}
	out, mean := runTinyDemo(t, args...)
	for _, want := range []string{"WARNING: --insecure-attack: node-1 … node-1 are Byzantine attackers (sign-flip:scale=10)"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	out, median := runTinyDemo(t, append(args, "--rule", "median")...)
	if !strings.Contains(string(out), "rule median:f=1") {
		t.Errorf("output lacks the rule, median:f=1")
	}
	if median.Rule != "median:f=1" || median.Attack != "sign-flip:scale=10" || median.Byzantine != 1 || mean.Rule != "" {
		t.Errorf("JSON: rule %q attack %q byzantine %d (mean run: rule %q)", median.Rule, median.Attack, median.Byzantine, mean.Rule)
	}
	t.Logf("final accuracy with one sign-flip attacker of 3: mean %.3f, median %.3f", mean.FinalAccuracy, median.FinalAccuracy)
	if median.FinalAccuracy < 0.8 {
		t.Errorf("median: final accuracy %.3f, want ≥ 0.8 on separable blobs", median.FinalAccuracy)
	}
	if mean.FinalAccuracy > median.FinalAccuracy-0.3 {
		t.Errorf("mean: final accuracy %.3f against the median's %.3f: the attacker should drag the mean down", mean.FinalAccuracy, median.FinalAccuracy)
	}
}

// TestDemoCompressed runs real processes in modes plain and tee with
// compressed updates (top-k with error feedback, and q8 inside the seal
// under tee, where the aggregator decompresses and applies the median):
// each learns, and uploads less than the same federation uncompressed.
func TestDemoCompressed(t *testing.T) {
	if testing.Short() {
		t.Skip("runs federations of real processes")
	}
	for _, c := range []struct{ mode, compress, rule string }{
		{"plain", "topk:0.3", ""},
		{"tee", "q8", "median"},
	} {
		args := []string{"--mode", c.mode, "--min-cohort", "3", "--rounds", "6", "--dp-noise", "0"}
		if c.rule != "" {
			args = append(args, "--rule", c.rule)
		}
		_, dense := runTinyDemo(t, args...)
		out, res := runTinyDemo(t, append(args, "--compress", c.compress)...)
		if !strings.Contains(string(out), "updates compressed with "+c.compress) || res.Compress != c.compress || dense.Compress != "" {
			t.Errorf("%s, %s: the output or the JSON (%q) lacks the compression", c.mode, c.compress, res.Compress)
		}
		if res.Rounds != 6 || res.FinalAccuracy < 0.8 {
			t.Errorf("%s, %s: %d rounds, final accuracy %.3f, want 6 and ≥ 0.8 on separable blobs", c.mode, c.compress, res.Rounds, res.FinalAccuracy)
		}
		for i, up := range res.BytesUpPerRound {
			if i < len(dense.BytesUpPerRound) && up >= dense.BytesUpPerRound[i] {
				t.Errorf("%s, %s: round %d uploaded %d bytes, uncompressed %d", c.mode, c.compress, i+1, up, dense.BytesUpPerRound[i])
			}
		}
		t.Logf("%s, %s: final accuracy %.3f (uncompressed %.3f), bytes up per round %v (uncompressed %v)", c.mode, c.compress,
			res.FinalAccuracy, dense.FinalAccuracy, res.BytesUpPerRound, dense.BytesUpPerRound)
	}
}

// TestDemoModeTEE runs real processes in mode tee: the demo spawns the
// aggregator (cloister aggregator on the simulated TEE) beside the
// coordinator and 3 nodes, of which node-1 sends sign-flipped updates
// (×10); the aggregator's median learns.
func TestDemoModeTEE(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a federation of real processes")
	}
	keep := filepath.Join(t.TempDir(), "demo")
	out, res := runTinyDemo(t, "--mode", "tee", "--min-cohort", "3", "--rounds", "5", "--dp-noise", "0",
		"--insecure-attack", "sign-flip:scale=10", "--rule", "median", "--keep", keep)
	for _, want := range []string{"mode tee", "rule median:f=1", "aggregator runs on a SIMULATED TEE"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q", want)
		}
	}
	if res.Rounds != 5 || res.Rule != "median:f=1" {
		t.Errorf("JSON: %d rounds, rule %q", res.Rounds, res.Rule)
	}
	if res.FinalAccuracy < 0.8 {
		t.Errorf("median in mode tee: final accuracy %.3f, want ≥ 0.8 on separable blobs", res.FinalAccuracy)
	}
	// The aggregator's own signed audit log verifies with the others and
	// holds the 5 rounds it opened.
	var stdout, stderr strings.Builder
	if err := run([]string{"audit", "verify", "--kit", filepath.Join(keep, "fed", "coordinator"), filepath.Join(keep, "state")}, nil, &stdout, &stderr); err != nil {
		t.Fatalf("audit verify: %v\n%s%s", err, stdout.String(), stderr.String())
	}
	line := ""
	for _, l := range strings.Split(stdout.String(), "\n") {
		if strings.Contains(l, filepath.Join(keep, "state", "aggregator", "audit.log")+": ") {
			line = l
		}
	}
	if !strings.HasPrefix(line, "ok ") || !strings.Contains(line, " 5 reveals") {
		t.Errorf("audit verify did not verify the aggregator's log with its 5 rounds opened:\n%s", stdout.String())
	}
}

// TestDemoBackdoorSuccess runs real processes on a slice of Fashion-MNIST
// in which node-1 of 3 plants a boosted backdoor: the demo exports the final
// model from an honest node and measures how often it answers the target
// on triggered test images. Under the mean the backdoor takes over; the
// median (f=1) keeps it near what an honest model answers.
func TestDemoBackdoorSuccess(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two federations of real processes")
	}
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"); err != nil {
		t.Skip("dataset-fashion-mnist is not installed")
	}
	data := filepath.Join(t.TempDir(), "fmnist")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]uint32{"train-images-idx3-ubyte": 3000, "train-labels-idx1-ubyte": 3000,
		"t10k-images-idx3-ubyte": 1000, "t10k-labels-idx1-ubyte": 1000} {
		idxPrefix(t, "/usr/share/datasets/fashion-mnist/"+name+".gz", filepath.Join(data, name), n)
	}
	args := []string{"--mode", "plain", "--data", "fashion-mnist:" + data, "--min-cohort", "3", "--rounds", "4",
		"--lr", "0.02", "--dp-noise", "0", "--insecure-attack", "backdoor", "--byzantine", "1"}
	out, mean := runTinyDemo(t, args...)
	if !strings.Contains(string(out), "backdoor success") || mean.BackdoorSuccess == nil {
		t.Fatalf("the demo did not measure the backdoor (JSON %v)", mean.BackdoorSuccess)
	}
	_, median := runTinyDemo(t, append(args, "--rule", "median")...)
	if median.BackdoorSuccess == nil {
		t.Fatal("the median's run did not measure the backdoor")
	}
	m, md := *mean.BackdoorSuccess, *median.BackdoorSuccess
	t.Logf("backdoor success: mean %.3f (accuracy %.3f), median %.3f (accuracy %.3f)", m, mean.FinalAccuracy, md, median.FinalAccuracy)
	if m < 0.5 || md > 0.3 || m < md+0.3 {
		t.Errorf("backdoor success: mean %.3f, median %.3f; want the mean taken over (≥ 0.5) and the median not (≤ 0.3)", m, md)
	}
}
