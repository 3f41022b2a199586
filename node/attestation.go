package node

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/transport"
)

// setupTEE checks the node's TEE against the manifest's attestation policy
// and makes the keyring verify the members' TEE evidence.
func (n *Node) setupTEE() error {
	pol := n.manifest().Attestation
	if !n.manifest().AttestationRequired() {
		n.log.Warn("ATTESTATION IS OFF: the manifest requires no TEE evidence; members join on their certificates " +
			"and audit keys alone, and nothing proves what code they run")
		if n.cfg.TEE != nil {
			n.log.Warn("the node has a TEE, and the manifest requires no evidence: not attesting", "tee", n.cfg.TEE.Format())
			n.cfg.TEE = nil
		}
		return nil
	}
	v, err := attest.NewVerifier(pol, n.cfg.Roots)
	if err != nil {
		return fmt.Errorf("node: the manifest's attestation policy: %w", err)
	}
	for _, w := range pol.Warnings() {
		n.log.Warn(w)
	}
	if n.cfg.TEE == nil {
		return fmt.Errorf("node: the manifest requires TEE evidence (formats %v): run the node in a TEE (--tee)", pol.Formats)
	}
	if !slices.Contains(pol.Formats, n.cfg.TEE.Format()) {
		return fmt.Errorf("node: the manifest allows TEE formats %v, this node's TEE is %s", pol.Formats, n.cfg.TEE.Format())
	}
	if pol.MaxAge > 0 && n.cfg.AttestEvery >= time.Duration(pol.MaxAge) {
		n.log.Warn("the node re-attests less often than the policy's maximum evidence age: the coordinator and its peers "+
			"will exclude it between re-attestations", "attest_every", n.cfg.AttestEvery, "max_age", pol.MaxAge)
	}
	n.keys.RequireTEE(v, nil)
	return nil
}

// helloEvidence makes this node's Hello evidence for keys, made at issued,
// on conn: with a TEE, evidence bound to nonce and conn's TLS session.
func (n *Node) helloEvidence(conn *transport.Conn, keys *keyring.Keys, issued time.Time, nonce []byte) ([]byte, error) {
	start := n.now()
	var tee []byte
	var err error
	if n.cfg.TEE != nil {
		tee, err = n.attest(conn, keys, nonce)
	}
	ev := keys.Evidence(n.session, n.self, n.cfg.Kit.AuditKey, issued, tee)
	n.stats.Attestations.Add(1)
	n.stats.AttestNanos.Add(uint64(n.now().Sub(start)))
	n.stats.AttestBytes.Add(uint64(len(tee)))
	return ev, err
}

func (n *Node) attest(conn *transport.Conn, keys *keyring.Keys, nonce []byte) ([]byte, error) {
	if len(nonce) == 0 {
		return nil, errors.New("node: the coordinator issued no attestation nonce (it requires no attestation?)")
	}
	ekm, err := attest.SessionEKM(conn.TLS())
	if err != nil {
		return nil, err
	}
	return attest.Attest(n.cfg.TEE, keys.Binding(nonce, ekm), n.now())
}

// verifyPeer is round's VerifyPeer hook: it checks a member's session-key
// evidence (and TEE evidence) and records the verdict for the audit log.
func (n *Node) verifyPeer(id fl.NodeID, ev []byte) error {
	start := n.now()
	if p, ok := n.manifest().Member(id); ok {
		if reason := n.revokedMember(p.Fingerprint); reason != "" {
			return fmt.Errorf("%s: %s", id, reason)
		}
	}
	err := n.keys.VerifyPeer(id, ev)
	n.stats.PeerChecks.Add(1)
	n.stats.PeerCheckNanos.Add(uint64(n.now().Sub(start)))
	if err != nil {
		n.stats.PeerFailures.Add(1)
		n.log.Warn("a member's evidence failed", "member", id, "err", err)
		return err
	}
	if c, ok := n.keys.PeerClaims(id); ok {
		delete(n.expired, id)
		n.log.Debug("a member's TEE evidence verified", "member", id, "format", c.Format, "measurement", c.Measurement,
			"tcb", c.TCB, "verify_s", n.now().Sub(start).Seconds())
	}
	return nil
}

// peerFormat names the evidence format of a member whose evidence verified,
// for its attestation-ok record.
func (n *Node) peerFormat(id fl.NodeID) string {
	if c, ok := n.keys.PeerClaims(id); ok {
		return c.Format
	}
	return "session-keys"
}

// checkExpiry distrusts the members whose verified TEE evidence is older
// than the policy's maximum age: they did not re-attest in time.
func (n *Node) checkExpiry(now time.Time) {
	for id, err := range n.keys.Expired(now) {
		c, _ := n.keys.PeerClaims(id)
		if t, ok := n.expired[id]; ok && c != nil && t.Equal(c.Time) {
			continue // already distrusted for this evidence
		}
		if c != nil {
			n.expired[id] = c.Time
		}
		n.distrust(id, err)
	}
}

// distrust tells the engine that member id's evidence expired: it keeps
// the member out of key setups and refuses to reveal or decrypt aggregates
// that include it, until the member's fresh evidence verifies. The engine's
// EventPeerDistrusted becomes the attestation-failed audit record.
func (n *Node) distrust(id fl.NodeID, err error) {
	n.log.Warn("distrusting a member", "member", id, "err", err)
	n.rn.Distrust(id, err.Error())
}

// inSetup reports whether a key setup this node takes part in is under
// way (its payloads are sealed to the node's current keys).
func (n *Node) inSetup() bool {
	st := n.rn.Status()
	return st.SetupEpoch > st.Epoch || st.Keyed && !st.GroupKey
}

// reattest starts a re-attestation: new keys at once if the coordinator
// issues no nonces (or the node is not connected), else a fresh nonce first.
func (n *Node) reattest(ctx context.Context, conn *transport.Conn, asking *bool, nonces chan<- challenged) {
	switch {
	case *asking:
	case conn == nil || conn.Nonce() == nil:
		// Not connected, or a coordinator that issues no nonces: new keys
		// now, announced at once or on the next connect.
		n.rotate(conn, nil)
	default:
		*asking = true
		go func() {
			cctx, cancel := context.WithTimeout(ctx, time.Minute)
			defer cancel()
			nonce, err := conn.Challenge(cctx)
			select {
			case nonces <- challenged{conn, nonce, err}:
			case <-ctx.Done():
			}
		}()
	}
}

// challenged is a fresh nonce the coordinator sent on conn.
type challenged struct {
	conn  *transport.Conn
	nonce []byte
	err   error
}

// hello makes the Hello evidence of keys on conn (bound to its TLS session
// and nonce, with a TEE) and says Hello: as a new connection, or, with
// reattest, as a re-attestation on a connection that stays up (the
// coordinator then re-sends nothing, and the engine's idle clock runs on).
func (n *Node) hello(conn *transport.Conn, keys *keyring.Keys, issued time.Time, nonce []byte, reattest bool) {
	ev, err := n.helloEvidence(conn, keys, issued, nonce)
	if err != nil {
		n.log.Error("cannot attest: the Hello carries no TEE evidence, and a coordinator that requires it will refuse this node", "err", err)
	}
	n.rn.SetEvidence(ev)
	if reattest {
		n.rn.Reattest()
	} else {
		n.rn.Reconnect()
	}
}

// rotate makes new process keys, attests them on conn with nonce (if
// connected), announces them in a Hello, and keeps the previous keys to
// open payloads sealed to them in flight.
func (n *Node) rotate(conn *transport.Conn, nonce []byte) {
	start := n.now()
	keys, err := keyring.NewKeys(n.cfg.Random)
	if err != nil {
		n.log.Error("cannot make new process keys; keeping the current ones", "err", err)
		return
	}
	issued := n.now()
	n.keys.Rotate(keys)
	n.keysIssued = issued
	n.stats.Rotations.Add(1)
	if conn == nil {
		n.rn.SetEvidence(keys.Evidence(n.session, n.self, n.cfg.Kit.AuditKey, issued, nil))
		n.log.Info("rotated the process keys; they are attested on the next connection")
		return
	}
	before := n.stats.AttestBytes.Load()
	n.hello(conn, keys, issued, nonce, true)
	took := n.now().Sub(start)
	n.stats.Reattested.Add(1)
	n.stats.ReattestNanos.Add(uint64(took))
	n.log.Info("re-attested: new process keys, new evidence", "format", n.teeFormat(), "rotate_s", took.Seconds(),
		"tee_bytes", n.stats.AttestBytes.Load()-before, "attestations", n.stats.Attestations.Load())
}

func (n *Node) teeFormat() string {
	if n.cfg.TEE == nil {
		return "none"
	}
	return n.cfg.TEE.Format()
}
