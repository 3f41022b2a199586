package mhebench_test

import (
	"fmt"

	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/mhe/mhebench"
)

// Example measures a small federation on the insecure test preset (as
// `cloister bench mhe --params 2000 --nodes 3 --preset InsecureTest` does);
// the timings vary, the shape of the report does not.
func Example() {
	r, err := mhebench.Run(mhebench.Config{Params: 2000, Nodes: 3, Preset: mhe.InsecureTest, Seed: 1})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.Preset, r.Params, r.Nodes, r.Threshold, r.MaxAbsError <= r.MaxErrorBound)
	// Output: InsecureTest 2000 3 2 true
}
