package round

import "bytes"

// SetEvidence replaces the attestation evidence this node sends in its
// Hello (NodeConfig.Evidence). The daemon calls it when the evidence must
// change: a new connection to bind it to, or new session keys. It takes
// effect at the next Hello; call Reconnect to say Hello at once.
func (n *Node) SetEvidence(evidence []byte) {
	n.cfg.Evidence = bytes.Clone(evidence)
}
