package plain_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
)

// Example shows what plain is: the protect protocol with nothing hidden. A
// runtime prints the Warning; the uploaded payload holds the update in the
// clear, after a 62-byte header. The whole flow, for any mode, is in
// package protect's example.
func Example() {
	var s protect.Scheme = plain.Scheme{}
	fmt.Println(plain.Warning)
	lim := s.Capacity()
	fmt.Printf("MaxAbs 2^53: %v, MaxError: %v, MaxDim: %d\n", lim.MaxAbs == 1<<53, lim.MaxError, lim.MaxDim)

	// A session of one member, threshold 1.
	sess := protect.Group{ID: []byte("baseline run 7"), Members: []fl.NodeID{"lab"}, Threshold: 1}
	rng := rand.NewChaCha8([32]byte{})
	p, _ := s.NewParty(sess, "lab", rng)
	h, _ := s.NewHelper(sess)
	ann, _ := p.Announce()
	anns := map[fl.NodeID][]byte{"lab": ann}
	d, _ := p.Deal(anns)
	setup, _ := h.Setup(anns, map[fl.NodeID][]byte{"lab": d.Public})
	if err := p.Accept(setup, d.Private); err != nil {
		fmt.Println(err)
	}

	// The payload is the update, in the clear.
	upload, _ := p.Protect(1, fl.Vector{0.25, -4}, 12)
	fmt.Printf("%d bytes: %d of header, 8 per value\n", len(upload), len(upload)-16)

	// Bytes of another kind, or from another session, are refused.
	_, err := h.Aggregate(1, map[fl.NodeID][]byte{"lab": setup})
	fmt.Println(err)
	// Output:
	// plain: WARNING: aggregation mode "plain" protects nothing: the coordinator sees every update, weight and sum in the clear. Use it for baselines and research only, never with real data.
	// MaxAbs 2^53: true, MaxError: 0, MaxDim: 16777216
	// 78 bytes: 62 of header, 8 per value
	// plain: protected update from lab: a setup, want a protected update: protect: payload from another group or parameter set
}
