package round

import "bytes"

// SetEvidence replaces the attestation evidence this node sends in its
// Hello (NodeConfig.Evidence). The daemon calls it when the evidence must
// change: a new connection to bind it to, or new process keys. It takes
// effect at the next Hello; call Reconnect to say Hello at once.
func (n *Node) SetEvidence(evidence []byte) {
	n.cfg.Evidence = bytes.Clone(evidence)
}

// Reattest says Hello with the evidence SetEvidence set, on a connection
// that stays up: a re-attestation (new process keys). The coordinator
// relays the new evidence to the other members and sends this node
// nothing, since it lost nothing. Unlike Reconnect, Reattest does not
// restart the idle clock, so a node that still waits for something says
// Hello again after Deadlines.Idle quiet ticks, as it would have.
func (n *Node) Reattest() {
	if n.st.Done {
		return
	}
	n.hello()
}
