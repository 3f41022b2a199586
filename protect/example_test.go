package protect_test

import (
	"errors"
	"fmt"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
)

// Example runs a session of three members with threshold 2, in mode plain,
// the way the round engine does: setup, then one round in which a member
// drops out and two members reveal. Every mode is driven the same way; only
// the Scheme changes. Errors are ignored for brevity; a runtime checks
// every one.
func Example() {
	var scheme protect.Scheme = plain.Scheme{}
	sess := protect.Group{ID: []byte("manifest hash, key epoch 1"), Members: []fl.NodeID{"alice", "bob", "carol"}, Threshold: 2}
	rng := rand.NewChaCha8([32]byte{}) // crypto/rand.Reader in production

	helper, _ := scheme.NewHelper(sess) // on the coordinator
	target, _ := scheme.NewTarget(rng)  // the group key, known to members only
	parties := map[fl.NodeID]protect.Party{}
	for _, id := range sess.Members {
		parties[id], _ = scheme.NewParty(sess, id, rng) // on each node
	}

	// Setup. 1: announce; the coordinator relays the announcements to all.
	anns := map[fl.NodeID][]byte{}
	for id, p := range parties {
		anns[id], _ = p.Announce()
	}
	// 2: deal. Public parts go to the coordinator; each private part is
	// sealed to its recipient and relayed.
	publics := map[fl.NodeID][]byte{}
	private := map[fl.NodeID]map[fl.NodeID][]byte{} // recipient → dealer → payload
	for dealer, p := range parties {
		d, _ := p.Deal(anns)
		publics[dealer] = d.Public
		for to, b := range d.Private {
			if private[to] == nil {
				private[to] = map[fl.NodeID][]byte{}
			}
			private[to][dealer] = b
		}
	}
	// 3: the coordinator combines; 4: every party accepts.
	setup, _ := helper.Setup(anns, publics)
	for id, p := range parties {
		if err := p.Accept(setup, private[id]); err != nil {
			fmt.Println(err)
		}
	}

	// Round 1. Carol drops out; Alice and Bob protect their weighted updates.
	const round fl.Round = 1
	uploads := map[fl.NodeID][]byte{}
	uploads["alice"], _ = parties["alice"].Protect(round, fl.Vector{1, 2, 3}, 10)
	uploads["bob"], _ = parties["bob"].Protect(round, fl.Vector{0.5, 0, -1}, 30)
	agg, _ := helper.Aggregate(round, uploads)

	// Exactly Needed() revealers, fixed before any share is made. Each
	// records the reveal in its ledger before it answers.
	req := protect.RevealRequest{Round: round, Aggregate: agg, Revealers: []fl.NodeID{"alice", "carol"}, Target: target.Public()}
	ledgers := map[fl.NodeID]*protect.MemLedger{"alice": {}, "carol": {}}
	shares := map[fl.NodeID][]byte{}
	for _, id := range req.Revealers {
		shares[id], _ = parties[id].Reveal(req, ledgers[id])
	}
	result, _ := helper.Open(req, shares)
	sum, _ := target.Decrypt(result) // by the round's leader

	fmt.Println("revealers needed:", helper.Needed())
	fmt.Println("sum:", sum.Vector, "weight:", sum.Weight)

	// A second reveal in the same round is refused.
	_, err := parties["alice"].Reveal(req, ledgers["alice"])
	fmt.Println(err != nil && errors.Is(err, protect.ErrRevealed))
	// Output:
	// revealers needed: 2
	// sum: [1.5 2 2] weight: 40
	// true
}
