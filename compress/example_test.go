package compress_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
)

// A node compresses its update with top-k and error feedback: what it does
// not send now, it sends later (coordinate 4 goes out in round 2 carrying
// two rounds' worth, 0.3 + 0.3).
func Example() {
	scheme, err := compress.Parse("topk:0.25")
	if err != nil {
		panic(err)
	}
	enc := scheme.NewEncoder() // one per node: it keeps the residual
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 1; round <= 3; round++ {
		update := fl.Vector{0.5, -0.1, 0.05, 0.2, 0.3, -0.4, 0.02, 0.1}
		payload, err := enc.Encode(update, rng)
		if err != nil {
			panic(err)
		}
		wire, _ := payload.MarshalBinary()
		got, _ := compress.Decode(wire, len(update)) // on the receiver
		fmt.Printf("round %d: %d bytes (dense %d): %.2f\n", round, len(wire), 4*len(update), got)
	}
	// Output:
	// round 1: 25 bytes (dense 32): [0.50 0.00 0.00 0.00 0.00 -0.40 0.00 0.00]
	// round 2: 25 bytes (dense 32): [0.50 0.00 0.00 0.00 0.60 0.00 0.00 0.00]
	// round 3: 25 bytes (dense 32): [0.00 0.00 0.00 0.60 0.00 -0.80 0.00 0.00]
}

// A fixed-point Quantizer for secure aggregation: 100 nodes' clipped
// updates (every element at most 1) summed modulo 2³² without overflow.
func ExampleQuantizer() {
	q, err := compress.NewQuantizer(1<<16, 32, 100)
	if err != nil {
		panic(err)
	}
	fmt.Printf("accepts |x| ≤ %.2f\n", q.MaxAbs())
	sum := make([]uint64, 2)
	for range 100 {
		enc, err := q.Encode(fl.Vector{1, -0.25}, nil)
		if err != nil {
			panic(err)
		}
		q.Add(sum, enc)
	}
	total, _ := q.Decode(sum)
	fmt.Println(total)
	// Output:
	// accepts |x| ≤ 327.68
	// [100 -25]
}
