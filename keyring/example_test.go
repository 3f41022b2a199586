package keyring_test

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
)

// Example shows the process keys of two members: each announces its
// keys in evidence signed with its audit key, the other verifies it against
// the audit key the manifest lists, and then they seal payloads to each
// other (HPKE, ML-KEM-768 + X25519) that only the recipient can open and
// that carry the sender's signature.
func Example() {
	session := []byte("manifest hash")
	auditPub := map[fl.NodeID]ed25519.PublicKey{}
	auditKey := map[fl.NodeID]ed25519.PrivateKey{}
	for _, id := range []fl.NodeID{"node-1", "node-2"} {
		pub, priv, _ := ed25519.GenerateKey(nil)
		auditPub[id], auditKey[id] = pub, priv
	}
	k1, _ := keyring.NewKeys(nil)
	k2, _ := keyring.NewKeys(nil)
	ring1 := keyring.New(session, "node-1", k1, auditPub)
	ring2 := keyring.New(session, "node-2", k2, auditPub)

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
