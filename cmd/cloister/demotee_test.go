package main

import (
	"strings"
	"testing"
)

// TestDemoTEE runs a tiny `cloister demo --tee sim` whose nodes re-attest
// every 200ms: the summary and the JSON report how many re-attestations
// the nodes made and their mean cost.
func TestDemoTEE(t *testing.T) {
	// 200ms: several re-attestations in a run of one to two seconds; at 100ms a
	// heavily loaded machine re-attested faster than it could run a round.
	out, res := runTinyDemo(t, "--rounds", "12", "--tee", "sim", "--attest-every", "200ms")
	if res.Rounds != 12 {
		t.Errorf("%d rounds committed, want 12", res.Rounds)
	}
	// Admission, key setup and 12 rounds take several times 200ms (each
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
