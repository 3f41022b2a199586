package main

import (
	"strings"
	"testing"
)

// TestDemoTEE runs a tiny `cloister demo --tee sim` whose nodes re-attest
// every 100ms: the summary and the JSON report how many re-attestations
// the nodes made and their mean cost.
func TestDemoTEE(t *testing.T) {
	out, res := runTinyDemo(t, "--rounds", "8", "--tee", "sim", "--attest-every", "100ms")
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
