package node

import (
	"crypto/x509"
	"fmt"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/transport"
)

// Revocation.
//
// With Config.CRL, the node's TLS configuration refuses a coordinator whose
// certificate the CRL in force revokes (every handshake), and the loop
// re-reads the CRL file every 2 s (crlPoll). Each member
// the CRL revokes (by the certificate fingerprint the manifest lists) is
// distrusted (round.Node.Distrust, reason "certificate revoked"), audited
// as attestation-failed: the node refuses to deal, reveal, train or lead
// with it in its key epoch, whatever the coordinator does, and its relayed
// evidence fails (verifyPeer), so no evidence ends the distrust. If the
// coordinator itself is revoked, the node drops its connection; the next
// handshake is refused. A forged or stale CRL is refused with a logged
// error naming the file; the CRL in force stays.

// crlPoll is how often the node re-reads its CRL file.
const crlPoll = 2 * time.Second

func (n *Node) revokedHandshake(cert *x509.Certificate) bool {
	if !n.cfg.CRL.Revoked(cert) {
		return false
	}
	id, _ := pki.Identify(cert)
	n.log.Warn("refused a handshake: the peer's certificate is revoked", "peer", id.String(), "crl", n.cfg.CRL.List().String())
	return true
}

// revokedMember returns why the party with this certificate fingerprint is
// revoked, or "".
func (n *Node) revokedMember(fingerprint string) string {
	if n.cfg.CRL == nil || !n.cfg.CRL.RevokedFingerprint(fingerprint) {
		return ""
	}
	return fmt.Sprintf("certificate revoked (%s)", n.cfg.CRL.List())
}

// checkRevocations re-reads the CRL (every crlPoll) and distrusts the
// members it revokes; it closes conn if the coordinator is revoked.
func (n *Node) checkRevocations(now time.Time, conn *transport.Conn) {
	if n.cfg.CRL == nil || now.Sub(n.crlPolled) < crlPoll {
		return
	}
	n.crlPolled = now
	l, err := n.cfg.CRL.Reload()
	if err != nil {
		n.log.Error("revocation list refused", "file", n.cfg.CRL.Path(), "err", err)
	}
	if l != nil {
		n.log.Warn("revocation list loaded", "file", n.cfg.CRL.Path(), "crl", l.String())
	}
	for _, p := range n.manifest().Members {
		if reason := n.revokedMember(p.Fingerprint); reason != "" && string(n.self) != p.Name {
			n.rn.Distrust(fl.NodeID(p.Name), reason) // a no-op once it is in the state
		}
	}
	if conn != nil && n.revokedMember(n.manifest().Coordinator.Fingerprint) != "" {
		n.log.Warn("dropping the connection: the coordinator's certificate is revoked", "coordinator", n.manifest().Coordinator.Name)
		conn.Close()
	}
}
