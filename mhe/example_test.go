package mhe_test

import (
	"crypto/rand"
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/protect"
)

// A session of three members with threshold two, run in one process: setup,
// one round, a reveal by two members, and the decryption by the target.
func Example() {
	s, _ := mhe.New(mhe.InsecureTest) // mhe.Agg128 in production
	sess := protect.Group{ID: []byte("example"), Members: []fl.NodeID{"a", "b", "c"}, Threshold: 2}

	// Setup.
	parties := map[fl.NodeID]protect.Party{}
	anns := map[fl.NodeID][]byte{}
	for _, m := range sess.Members {
		parties[m], _ = s.NewParty(sess, m, rand.Reader)
		anns[m], _ = parties[m].Announce()
	}
	publics := map[fl.NodeID][]byte{}
	private := map[fl.NodeID]map[fl.NodeID][]byte{"a": {}, "b": {}, "c": {}}
	for _, m := range sess.Members {
		d, _ := parties[m].Deal(anns)
		publics[m] = d.Public
		for to, b := range d.Private { // seal b to `to` in a real deployment
			private[to][m] = b
		}
	}
	helper, _ := s.NewHelper(sess)
	setup, _ := helper.Setup(anns, publics)
	for _, m := range sess.Members {
		if err := parties[m].Accept(setup, private[m]); err != nil {
			fmt.Println(err)
		}
	}

	// A round.
	up := map[fl.NodeID][]byte{}
	for i, m := range sess.Members {
		up[m], _ = parties[m].Protect(1, fl.Vector{float64(i), 0.5}, 1)
	}
	agg, _ := helper.Aggregate(1, up)
	target, _ := s.NewTarget(rand.Reader)
	req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: []fl.NodeID{"c", "a"}, Target: target.Public(), Included: sess.Members}
	shares := map[fl.NodeID][]byte{}
	for _, m := range req.Revealers {
		shares[m], _ = parties[m].Reveal(req, &protect.MemLedger{})
	}
	res, _ := helper.Open(req, shares)
	sum, _ := target.Decrypt(res)
	round6 := func(x float64) float64 { return math.Round(x*1e6) / 1e6 }
	fmt.Println(round6(sum.Vector[0]), round6(sum.Vector[1]), round6(sum.Weight))
	// Output: 3 1.5 3
}
