package node

import (
	"fmt"
	"io"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/tee"
)

// Mode tee: the node seals its updates to the aggregator's HPKE key, and
// only to a key its own keyring verified in the aggregator's relayed
// evidence against the manifest's aggregator policy (keyring's
// RequireAggregator, VerifyAggregator). The engine checks that evidence
// with the other members' (round.NodeConfig.Aggregator) and audits each
// verdict; a failed check refuses the key setup with its reason.

// setupAggregator makes the keyring verify the aggregator's evidence.
func (n *Node) setupAggregator() error {
	agg := n.manifest().Aggregator
	if agg == nil {
		return nil
	}
	v, err := attest.NewVerifier(n.manifest().AggregatorAttestation, n.cfg.Roots)
	if err != nil {
		return fmt.Errorf("node: the manifest's aggregator attestation policy: %w", err)
	}
	return n.keys.RequireAggregator(fl.NodeID(agg.Name), agg.AuditKey, v)
}

// teeScheme is a node's scheme in mode tee: protect/tee's, with the
// aggregator key read from the keyring when a party is made. Without a
// verified key there is no party, and the node refuses the key setup with
// the keyring's reason (no evidence, refused evidence, too old).
type teeScheme struct {
	tee.Scheme // the manifest's rule; no key
	ring       *keyring.Ring
	now        func() time.Time
}

func (s teeScheme) keyed() (tee.Scheme, error) {
	key, err := s.ring.AggregatorKey(s.now())
	if err != nil {
		return tee.Scheme{}, fmt.Errorf("node: no aggregator key to seal to: %w", err)
	}
	k := s.Scheme
	k.Key = key
	return k, nil
}

func (s teeScheme) NewParty(g protect.Group, self fl.NodeID, rand io.Reader) (protect.Party, error) {
	k, err := s.keyed()
	if err != nil {
		return nil, err
	}
	return k.NewParty(g, self, rand)
}

func (s teeScheme) LoadParty(g protect.Group, self fl.NodeID, state []byte, rand io.Reader) (protect.Party, error) {
	k, err := s.keyed()
	if err != nil {
		return nil, err
	}
	return k.LoadParty(g, self, state, rand)
}
