package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
)

// TestDemoModeTEEReattest runs real processes in mode tee with
// --attest-every 200ms, which the demo passes to the aggregator process
// too: it re-attests with new keys, at round boundaries, and the
// coordinator verifies each of its new evidence and re-keys the members;
// the session commits its rounds.
func TestDemoModeTEEReattest(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a federation of real processes")
	}
	dir := filepath.Join(t.TempDir(), "demo")
	out, res := runTinyDemo(t, "--mode", "tee", "--min-cohort", "3", "--rounds", "12", "--dp-noise", "0", "--attest-every", "200ms", "--keep", dir)
	if res.Rounds != 12 {
		t.Errorf("%d rounds committed, want 12", res.Rounds)
	}
	// A rotation waits for a round boundary, so rounds are rarely lost to
	// it; on a loaded machine one can be (a rotation while the first key
	// setup ends), and the demo then runs one more. The fake-clock tests
	// (aggregator's TestReattest) check that none is.
	if n := bytes.Count(out, []byte(" aborted: ")); n > 0 {
		t.Logf("%d rounds aborted", n)
	}
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, "logs", name+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	rotations := bytes.Count(read("aggregator"), []byte("re-attested: new process keys, new evidence"))
	verified := bytes.Count(read("coordinator"), []byte("the aggregator's attestation verified"))
	t.Logf("the aggregator re-attested %d times with new keys; the coordinator verified %d of its Hellos", rotations, verified)
	if rotations < 1 || verified < rotations+1 {
		t.Errorf("%d re-attestations of the aggregator, %d verified by the coordinator: want at least one, each verified", rotations, verified)
	}
}
