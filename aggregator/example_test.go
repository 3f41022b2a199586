package aggregator_test

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/cloisterfl/cloister/aggregator"
	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/pki"
)

// Example provisions a federation of mode tee, whose manifest names the
// aggregator and its own attestation policy, and makes the aggregator from
// its kit, on a simulated TEE that the policy allows. Run then dials the
// coordinator (cloister aggregator --kit DIR --coordinator ADDR --tee sim).
func Example() {
	dir, _ := os.MkdirTemp("", "tee")
	defer os.RemoveAll(dir)
	image := [48]byte{0xa6} // the aggregator image's sim measurement
	policy := &attest.Policy{Formats: []string{attest.FormatSim}, AllowSim: true, MaxAge: attest.Duration(time.Hour),
		Measurements: map[string][]string{attest.FormatSim: {hex.EncodeToString(image[:])}}}
	err := pki.InitFederation(filepath.Join(dir, "fed"), pki.InitOptions{Nodes: 5, Threshold: 3, Mode: federation.ModeTEE,
		Rule: "median", DP: &federation.DP{Clip: 1}, AggregatorAttestation: policy}, time.Now(), nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	kit, err := pki.LoadKit(filepath.Join(dir, "fed", pki.DefaultAggregator))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("aggregator:", kit.Manifest.Aggregator.Name, "rule:", kit.Manifest.Rule)
	a, err := aggregator.New(aggregator.Config{Kit: kit, TEE: attest.NewSimTEE(image, "")})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("members seal to a key of", len(a.Key()), "bytes")
	_, err = aggregator.New(aggregator.Config{Kit: kit})
	fmt.Println(err != nil)
	// Output:
	// aggregator: aggregator rule: median:f=1
	// members seal to a key of 1216 bytes
	// true
}
