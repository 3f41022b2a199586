package tee_test

import (
	"fmt"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/tee"
)

// Example runs one round of mode tee with three members, one of them an
// attacker: the nodes seal to the aggregator's key, the coordinator
// concatenates what it cannot read, two members sign the reveal, and the
// aggregator takes the median inside and seals it to the group's target.
func Example() {
	rng := rand.NewChaCha8([32]byte{})
	id, _ := tee.NewIdentity(rng) // the aggregator's; a node has only its attested public key
	node := tee.Scheme{Key: id.PublicKey().Bytes()}
	coordinator := tee.Scheme{}
	aggregator := tee.Scheme{Identity: id, Rule: "median:f=1"}

	sess := protect.Group{ID: []byte("example"), Members: []fl.NodeID{"a", "b", "c"}, Threshold: 2}
	h, _ := coordinator.NewHelper(sess)
	target, _ := node.NewTarget(rng) // the group key, held by members
	parties := map[fl.NodeID]protect.Party{}
	anns := map[fl.NodeID][]byte{}
	for _, m := range sess.Members {
		parties[m], _ = node.NewParty(sess, m, rng)
		anns[m], _ = parties[m].Announce()
	}
	publics, private := map[fl.NodeID][]byte{}, map[fl.NodeID]map[fl.NodeID][]byte{}
	for _, m := range sess.Members {
		d, _ := parties[m].Deal(anns)
		publics[m] = d.Public
		for to, b := range d.Private {
			if private[to] == nil {
				private[to] = map[fl.NodeID][]byte{}
			}
			private[to][m] = b
		}
	}
	setup, _ := h.Setup(anns, publics)
	for _, m := range sess.Members {
		_ = parties[m].Accept(setup, private[m])
	}
	agg, err := aggregator.NewAggregator(sess, setup)
	if err != nil {
		fmt.Println(err)
		return
	}

	updates := map[fl.NodeID]fl.Vector{"a": {1, 2}, "b": {1.2, 1.8}, "c": {-50, 90}}
	sealed := map[fl.NodeID][]byte{}
	for m, v := range updates {
		sealed[m], _ = parties[m].Protect(1, v, 1) // weight 1: wΔ = Δ
	}
	all, _ := h.Aggregate(1, sealed)
	req := protect.RevealRequest{Round: 1, Aggregate: all, Revealers: []fl.NodeID{"a", "b"}, Target: target.Public()}
	shares := map[fl.NodeID][]byte{}
	for _, m := range req.Revealers {
		shares[m], _ = parties[m].Reveal(req, &protect.MemLedger{})
	}
	_, err = h.Open(req, shares)
	fmt.Println("coordinator:", err)
	res, err := agg.Open(req, shares)
	if err != nil {
		fmt.Println(err)
		return
	}
	sum, _ := target.Decrypt(res)
	fmt.Printf("weight %v, median %v\n", sum.Weight, fl.Vector{sum.Vector[0] / sum.Weight, sum.Vector[1] / sum.Weight})
	// Output:
	// coordinator: tee: open of round 1: only the attested aggregator can open sealed updates: protect: key setup has not completed
	// weight 3, median [1 2]
}
