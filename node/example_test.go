package node_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
)

// ExampleKeyring shows the session keys of two members: each announces its
// keys in evidence signed with its audit key, the other verifies it against
// the audit key the manifest lists, and then they seal payloads to each
// other (HPKE, ML-KEM-768 + X25519) that only the recipient can open and
// that carry the sender's signature.
func ExampleKeyring() {
	session := []byte("manifest hash")
	auditPub := map[fl.NodeID]ed25519.PublicKey{}
	auditKey := map[fl.NodeID]ed25519.PrivateKey{}
	for _, id := range []fl.NodeID{"node-1", "node-2"} {
		pub, priv, _ := ed25519.GenerateKey(nil)
		auditPub[id], auditKey[id] = pub, priv
	}
	k1, _ := node.NewSessionKeys(nil)
	k2, _ := node.NewSessionKeys(nil)
	ring1 := node.NewKeyring(session, "node-1", k1, auditPub)
	ring2 := node.NewKeyring(session, "node-2", k2, auditPub)

	// The coordinator relays each member's Hello evidence; each peer checks it.
	now := time.Now()
	fmt.Println(ring1.VerifyPeer("node-2", k2.Evidence(session, "node-2", auditKey["node-2"], now, nil)))
	fmt.Println(ring2.VerifyPeer("node-1", k1.Evidence(session, "node-1", auditKey["node-1"], now, nil)))
	// Evidence signed by another member's audit key is refused.
	fmt.Println(ring1.VerifyPeer("node-2", k2.Evidence(session, "node-2", auditKey["node-1"], now, nil)) != nil)

	sealed, _ := ring1.Seal("node-2", []byte("a Shamir share"))
	opened, err := ring2.Open("node-1", sealed)
	fmt.Printf("%s %v\n", opened, err)
	// The same payload does not open as if node-2 had sent it to itself.
	_, err = ring2.Open("node-2", sealed)
	fmt.Println(err != nil)
	// Output:
	// <nil>
	// <nil>
	// true
	// a Shamir share <nil>
	// true
}

// ExampleNode_Run runs member node-1 of the federation `cloister init --dir
// fed` wrote, on its share of Fashion-MNIST, until the session is over.
func ExampleNode_Run() {
	kit, err := pki.LoadKit("fed/node-1")
	if err != nil {
		panic(err)
	}
	split, err := dataset.Open("fashion-mnist", dataset.Options{})
	if err != nil {
		panic(err)
	}
	key, err := store.LoadOrCreateKey("fed/node-1") // the at-rest key stays with the kit
	if err != nil {
		panic(err)
	}
	n, err := node.New(node.Config{Kit: kit, StateDir: "fed/node-1/state", AtRest: key,
		Train: split.Train, Test: split.Test})
	if err != nil {
		panic(err)
	}
	if err := n.Run(context.Background(), kit.Config.CoordinatorAddress); err != nil {
		panic(err)
	}
}
