package secagg_test

import (
	"crypto/rand"
	"fmt"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/secagg"
)

// Three members set up, two of them upload, two reveal; the target opens
// the sum of the two uploads.
func Example() {
	s, _ := secagg.New(secagg.Q32)
	ids := []fl.NodeID{"a", "b", "c"}
	g := protect.Group{ID: []byte("example"), Members: ids, Threshold: 2}
	parties := map[fl.NodeID]protect.Party{}
	anns := map[fl.NodeID][]byte{}
	for _, id := range ids {
		parties[id], _ = s.NewParty(g, id, rand.Reader)
		anns[id], _ = parties[id].Announce()
	}
	pubs, privs := map[fl.NodeID][]byte{}, map[fl.NodeID]map[fl.NodeID][]byte{}
	for _, id := range ids {
		d, _ := parties[id].Deal(anns) // each Private payload is sealed to its recipient by the runtime
		pubs[id] = d.Public
		for to, b := range d.Private {
			if privs[to] == nil {
				privs[to] = map[fl.NodeID][]byte{}
			}
			privs[to][id] = b
		}
	}
	h, _ := s.NewHelper(g)
	setup, _ := h.Setup(anns, pubs)
	for _, id := range ids {
		if err := parties[id].Accept(setup, privs[id]); err != nil {
			fmt.Println(err)
		}
	}
	target, _ := s.NewTarget(rand.Reader)

	ups := map[fl.NodeID][]byte{}
	ups["a"], _ = parties["a"].Protect(1, fl.Vector{0.5, -1}, 1)
	ups["b"], _ = parties["b"].Protect(1, fl.Vector{0.25, 2}, 1) // c drops out
	agg, _ := h.Aggregate(1, ups)
	req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: []fl.NodeID{"a", "b"}, Target: target.Public(), Uploads: ups}
	shares := map[fl.NodeID][]byte{}
	for _, id := range req.Revealers {
		shares[id], _ = parties[id].Reveal(req, &protect.MemLedger{})
	}
	res, _ := h.Open(req, shares) // still masked: only the target opens it
	sum, err := target.Decrypt(res)
	fmt.Println(sum.Vector, sum.Weight, err)
	// Output: [0.75 1] 2 <nil>
}
