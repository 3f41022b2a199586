package secaggbench_test

import (
	"testing"

	"github.com/cloisterfl/cloister/secagg/secaggbench"
)

// TestRun: a small run checks its own sum (Run fails past the preset's
// error bound) and reports sane figures.
func TestRun(t *testing.T) {
	rep, err := secaggbench.Run(secaggbench.Config{Params: 2000, Nodes: 12, Dropout: 0.25, Neighbours: 5, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Included != 9 || rep.SelfMasks != 9 || rep.PairMasks == 0 || rep.UploadBytesPerParam < 4 || rep.FloorS <= 0 {
		t.Errorf("report %+v", rep)
	}
	t.Logf("%+v", rep)
	if _, err := secaggbench.Run(secaggbench.Config{Params: 100, Nodes: 10, Threshold: 9, Dropout: 0.3}); err == nil {
		t.Errorf("7 included with t = 9: want an error (the round would abort)")
	}
}
