package mhebench

import (
	"encoding/json"
	"os"
	"strconv"
	"testing"

	"github.com/cloisterfl/cloister/mhe"
)

func TestRun(t *testing.T) {
	rep, err := Run(Config{Params: 5000, Nodes: 3, Preset: mhe.InsecureTest})
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"cores", "encrypt_s_per_million", "raw_lattigo_encrypt_s_per_million",
		"aggregate_ms_per_party_per_million", "reveal_s_per_party_per_million", "bytes_per_param", "precision_bits"} {
		if _, ok := m[k]; !ok {
			t.Errorf("report has no %q: %s", k, b)
		}
	}
	if rep.PrecisionBits < 20 {
		t.Errorf("precision %.1f bits, want ≥ 20", rep.PrecisionBits)
	}
	if rep.BytesPerParam > 32 {
		t.Errorf("%.2f bytes per parameter, want ≤ 32", rep.BytesPerParam)
	}
	t.Logf("%s", b)
}

// TestRunReport prints the report for `MHEBENCH_PARAMS=1000000
// MHEBENCH_NODES=10 go test -run TestRunReport -v ./mhe/mhebench` (Agg128).
func TestRunReport(t *testing.T) {
	d, _ := strconv.Atoi(os.Getenv("MHEBENCH_PARAMS"))
	n, _ := strconv.Atoi(os.Getenv("MHEBENCH_NODES"))
	if d == 0 || n == 0 {
		t.Skip("set MHEBENCH_PARAMS and MHEBENCH_NODES")
	}
	rep, err := Run(Config{Params: d, Nodes: n})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.MarshalIndent(rep, "", "  ")
	t.Logf("%s", b)
}
