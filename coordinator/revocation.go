package coordinator

import (
	"crypto/x509"
	"fmt"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
)

// Revocation.
//
// With Config.CRL, the coordinator's TLS configuration asks the CRL in
// force about every handshake (pki.Options.Revoked: a revoked node's
// handshake is refused, resumed or not, and the transport re-checks the
// peer at every new stream). The loop re-reads the CRL file every
// CRLPoll. A new CRL that verifies and supersedes the one in force takes
// effect at once: each member it revokes is excluded (round.Coordinator.
// Exclude, reason "certificate revoked", audited as node-dropped), which
// re-keys it out at the next round boundary, and its stream is dropped. A
// forged or stale CRL is refused with an error naming the file, logged; the
// CRL in force stays. Refused handshakes of a revoked member are logged by
// the transport and audited (node-refused) at most once per member per
// minute, with their count.

// CRLPoll is how often the coordinator and the nodes re-read their CRL file.
const CRLPoll = 2 * time.Second

// revocation is the coordinator's revocation state.
type revocation struct {
	mu      sync.Mutex
	refused map[fl.NodeID]int // handshakes refused since the last audit record, by member

	// Owned by the loop.
	last    time.Time // the last poll
	soon    bool      // a round aborted: read the CRL at the next tick, not a CRLPoll after the last
	audited map[fl.NodeID]time.Time
}

// revokedHandshake is the TLS configuration's pki.Options.Revoked.
func (c *Coordinator) revokedHandshake(cert *x509.Certificate) bool {
	if !c.cfg.CRL.Revoked(cert) {
		return false
	}
	if id, err := pki.NodeID(cert); err == nil {
		c.rev.mu.Lock()
		if c.rev.refused == nil {
			c.rev.refused = make(map[fl.NodeID]int)
		}
		c.rev.refused[id]++
		c.rev.mu.Unlock()
	}
	return true
}

// revoked reports whether member id's certificate (as the manifest lists
// it) is revoked by the CRL in force.
func (c *Coordinator) revoked(id fl.NodeID) bool {
	if c.cfg.CRL == nil {
		return false
	}
	p, ok := c.member(id)
	return ok && c.cfg.CRL.RevokedFingerprint(p.Fingerprint)
}

// checkRevocations re-reads the CRL file (every CRLPoll, and at the next
// tick after a round aborted: members that read a new CRL before the
// coordinator refuse rounds that include the member it revokes), excludes
// the members it revokes and audits refused handshakes.
func (c *Coordinator) checkRevocations(now time.Time) {
	if c.cfg.CRL == nil || (now.Sub(c.rev.last) < CRLPoll && !c.rev.soon) {
		return
	}
	c.rev.last, c.rev.soon = now, false
	l, err := c.cfg.CRL.Reload()
	if err != nil {
		c.log.Error("revocation list refused", "file", c.cfg.CRL.Path(), "err", err)
	}
	if l != nil {
		c.log.Warn("revocation list loaded", "file", c.cfg.CRL.Path(), "crl", l.String())
	}
	excluded := c.rc.Status().Exclusions
	for _, id := range c.manifest().Nodes() {
		if !c.revoked(id) {
			continue
		}
		reason := fmt.Sprintf("certificate revoked (%s)", c.cfg.CRL.List())
		if _, done := excluded[id]; !done {
			c.log.Warn("excluding a member: its certificate is revoked", "member", id, "reason", reason)
			if a := c.att[id]; a != nil {
				c.exclude(id, a, reason)
			} else {
				c.rc.Exclude(id, reason)
			}
		}
		if c.srv.Drop(id, fmt.Errorf("%w: %s", pki.ErrRevoked, reason)) {
			c.log.Warn("dropped a revoked member's stream", "member", id)
		}
	}
	c.rev.mu.Lock()
	refused := c.rev.refused
	c.rev.refused = nil
	c.rev.mu.Unlock()
	for id, n := range refused {
		if t, ok := c.rev.audited[id]; ok && now.Sub(t) < time.Minute {
			c.rev.mu.Lock()
			if c.rev.refused == nil {
				c.rev.refused = make(map[fl.NodeID]int)
			}
			c.rev.refused[id] += n // counted into the next record
			c.rev.mu.Unlock()
			continue
		}
		if c.rev.audited == nil {
			c.rev.audited = make(map[fl.NodeID]time.Time)
		}
		c.rev.audited[id] = now
		c.rc.Refuse(id, fmt.Sprintf("TLS handshake refused %d time(s): certificate revoked", n), nil)
	}
}
