package node

import (
	"crypto/ed25519"
	"crypto/tls"
	"errors"
	"fmt"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
)

// Amendments.
//
// The coordinator relays an amended manifest when it takes effect
// (round.KindAmend). The node checks it itself (checkAmendment, the
// engine's NodeConfig.Amend): signed by the federation CA, of this session,
// a higher serial, amending only what may be amended
// (federation.CheckAmendment), and within this node's own policy
// (Config.MinThreshold; its Config.MaxEpsilon keeps applying to every
// round whatever ε budget the amendment sets) and message limit. A forged
// or non-amending manifest is rejected (audited) and changes nothing; one
// that this node's policy refuses makes it leave the federation, audited,
// rather than run under it. When the engine puts the terms in force
// (NodeReady.Terms), the node adopts the manifest: the members' audit keys
// (for their evidence, uploads and round records), the privacy budget, the
// weight cap, and, if the amendment renewed this node's certificate, the
// renewed credential from its kit directory.

// manifest returns the manifest in force.
func (n *Node) manifest() *federation.Manifest { return n.man.Load() }

// memberKeys verifies members' signatures with the audit keys of the
// manifest in force (round.Verifier) and resolves every party's audit key
// for the audit log (audit.KeyResolver).
type memberKeys struct{ n *Node }

func (k memberKeys) Verify(signer fl.NodeID, msg, sig []byte) error {
	p, ok := k.n.manifest().Member(signer)
	if !ok {
		return fmt.Errorf("%s is not a member", signer)
	}
	return keyring.Verifier{signer: p.AuditKey}.Verify(signer, msg, sig)
}

func (k memberKeys) PublicKey(name string) (ed25519.PublicKey, error) {
	if key, ok := k.n.manifest().AuditKeys()[name]; ok {
		return key, nil
	}
	// Wrapping ErrUnknownSigner lets a log reopen past cosignatures of
	// members an amendment removed (audit.Open skips those; audit verify
	// takes the keys of every manifest of the session).
	return nil, fmt.Errorf("%w: no audit key for %q in the manifest in force", audit.ErrUnknownSigner, name)
}

// checkAmendment is the engine's NodeConfig.Amend.
func (n *Node) checkAmendment(current, next []byte) (round.Terms, error) {
	cur, err := federation.Verify(current, n.cfg.Kit.CA)
	if err != nil {
		return round.Terms{}, fmt.Errorf("the manifest in force: %w", err)
	}
	m, err := federation.Verify(next, n.cfg.Kit.CA)
	if err != nil {
		return round.Terms{}, err
	}
	ch, err := federation.CheckAmendment(cur, m)
	if err != nil {
		return round.Terms{}, err
	}
	if err := (federation.Policy{MinThreshold: n.cfg.MinThreshold}).Check(m); err != nil {
		return round.Terms{}, fmt.Errorf("%w: %w", round.ErrRefused, err)
	}
	fed, err := n.resolve(m)
	if err != nil {
		return round.Terms{}, fmt.Errorf("%w: manifest serial %d: %w", round.ErrRefused, m.Serial, err)
	}
	return fed.Terms(next, ch.String()), nil
}

// resolve resolves manifest m with this node's overrides and message
// limit.
func (n *Node) resolve(m *federation.Manifest) (*federation.Federation, error) {
	return federation.Resolve(m, federation.Overrides{Scheme: n.cfg.Scheme, MaxMessage: n.cfg.Limits.MaxMessage, MaxEpsilon: n.cfg.MaxEpsilon})
}

// adopt makes the manifest of terms in force the node's.
func (n *Node) adopt(t *round.Terms) error {
	m, err := federation.Verify(t.Manifest, n.cfg.Kit.CA)
	if err != nil {
		return fmt.Errorf("node: the manifest in force (serial %d): %w", t.Serial, err)
	}
	old := n.manifest()
	if m.Serial == old.Serial {
		return nil
	}
	fed, err := n.resolve(m)
	if err != nil {
		return fmt.Errorf("node: the manifest in force (serial %d): %w", t.Serial, err)
	}
	b, err := newBudget(fed.Budget, n.log)
	if err != nil {
		return err
	}
	if b != nil && n.budget != nil {
		b.spent = n.budget.spent
	}
	n.budget = b
	n.rcfg = n.rcfg.WithTerms(*t)
	n.man.Store(m)
	if n.keys != nil {
		n.keys.SetAuditKeys(auditKeys(m))
	}
	if n.tr != nil {
		n.tr.members.Store(int64(len(m.Members)))
	}
	if err := n.renewed(old, m); err != nil {
		n.log.Error("cannot take the renewed certificate; the coordinator will refuse this node's next connection", "err", err)
	}
	n.log.Info("manifest amendment in force", "serial", m.Serial, "change", t.Summary, "members", len(m.Members), "threshold", m.Threshold)
	return nil
}

// renewed loads this node's renewed credential from its kit directory when
// the manifest lists a new certificate for it.
func (n *Node) renewed(old, m *federation.Manifest) error {
	was, _ := old.Member(n.self)
	now, ok := m.Member(n.self)
	if !ok || was.Fingerprint == now.Fingerprint {
		return nil
	}
	if n.cfg.KitDir == "" {
		return errors.New("node: no kit directory to load the renewed certificate from")
	}
	k, err := pki.LoadKit(n.cfg.KitDir)
	if err != nil {
		return err
	}
	if fp := pki.Fingerprint(k.Credential.Cert); fp != now.Fingerprint {
		return fmt.Errorf("node: the certificate in %s is sha256 %s, manifest serial %d lists %s", n.cfg.KitDir, fp, m.Serial, now.Fingerprint)
	}
	c := k.Credential.TLSCertificate()
	n.cred.Store(&c)
	n.log.Info("renewed certificate in use from the next connection", "fingerprint", now.Fingerprint, "not_after", k.Credential.Cert.NotAfter)
	return nil
}

// clientCertificate is the TLS configuration's GetClientCertificate: the
// credential in force (renewed by an amendment).
func (n *Node) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return n.cred.Load(), nil
}

func auditKeys(m *federation.Manifest) map[fl.NodeID]ed25519.PublicKey {
	keys := make(map[fl.NodeID]ed25519.PublicKey, len(m.Members))
	for _, p := range m.Members {
		keys[fl.NodeID(p.Name)] = p.AuditKey
	}
	return keys
}
