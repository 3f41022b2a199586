package coordinator

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"os"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/keyring"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
)

// Amendments.
//
// The admin amends a running federation by signing a new manifest of the
// same session (`cloister ca amend`, `cloister ca issue`, `cloister ca
// renew`: federation.Amend) and putting it in the coordinator's kit. The
// loop re-reads Config.ManifestFile every CRLPoll. A manifest that
// verifies under the federation CA, amends the one in force
// (federation.CheckAmendment) and fits the running message limit is handed
// to the engine (round.Coordinator.Amend), which puts it in force at the
// next round boundary and relays it to the members; each member checks it
// itself. From then until it takes effect, members it adds may connect (TLS
// admits the certificates of both manifests) and wait. When it takes
// effect (CoordinatorReady.Terms), the coordinator adopts it: members'
// certificates and audit keys, the privacy budget, the planned rounds; the
// streams of removed members are dropped. A manifest that does not verify
// or does not amend the one in force is refused with an error naming the
// file, logged once; the manifest in force stays.

// manifest returns the manifest in force.
func (c *Coordinator) manifest() *federation.Manifest { return c.man.Load() }

// admissible returns the manifests whose members TLS admits.
func (c *Coordinator) admissible() []*federation.Manifest {
	ms := []*federation.Manifest{c.manifest()}
	if p := c.pending.Load(); p != nil {
		ms = append(ms, p)
	}
	return ms
}

// member returns member id as the manifest in force lists it, or as a
// scheduled amendment does.
func (c *Coordinator) member(id fl.NodeID) (federation.Principal, bool) {
	for _, m := range c.admissible() {
		if p, ok := m.Member(id); ok {
			return p, true
		}
	}
	return federation.Principal{}, false
}

// memberKeys verifies members' signatures (round.Verifier) with the audit
// keys of the manifests in force and scheduled, and resolves every
// party's audit key for the audit log (audit.KeyResolver).
type memberKeys struct{ c *Coordinator }

func (k memberKeys) Verify(signer fl.NodeID, msg, sig []byte) error {
	p, ok := k.c.member(signer)
	if !ok {
		return fmt.Errorf("%s is not a member", signer)
	}
	return keyring.Verifier{signer: p.AuditKey}.Verify(signer, msg, sig)
}

func (k memberKeys) PublicKey(name string) (ed25519.PublicKey, error) {
	for _, m := range k.c.admissible() {
		if key, ok := m.AuditKeys()[name]; ok {
			return key, nil
		}
	}
	// Wrapping ErrUnknownSigner lets a log reopen past cosignatures of
	// members an amendment removed (audit.Open skips those; audit verify
	// takes the keys of every manifest of the session).
	return nil, fmt.Errorf("%w: no audit key for %q in the manifest in force", audit.ErrUnknownSigner, name)
}

// amendWatch is the loop's view of ManifestFile.
type amendWatch struct {
	last time.Time // the last poll
	seen []byte    // the file's content at the last poll
}

// checkAmendment re-reads the manifest file (every CRLPoll) and schedules
// an amendment it finds.
func (c *Coordinator) checkAmendment(now time.Time) {
	if c.cfg.ManifestFile == "" || now.Sub(c.amend.last) < CRLPoll {
		return
	}
	c.amend.last = now
	b, err := os.ReadFile(c.cfg.ManifestFile)
	if err != nil || bytes.Equal(b, c.amend.seen) {
		return // a file being replaced is read again at the next poll
	}
	c.amend.seen = b
	if err := c.schedule(b); err != nil {
		c.log.Error("manifest amendment refused; the manifest in force stays", "file", c.cfg.ManifestFile, "err", err)
	}
}

// schedule checks a signed manifest and, if it amends the one in force,
// hands it to the engine.
func (c *Coordinator) schedule(signed []byte) error {
	m, err := federation.Verify(signed, c.cfg.Kit.CA)
	if err != nil {
		return err
	}
	cur := c.manifest()
	if m.Serial <= cur.Serial {
		return nil // the manifest in force, or an older one: nothing to do
	}
	if p := c.pending.Load(); p != nil && m.Serial <= p.Serial {
		return nil
	}
	t, err := c.terms(cur, m, signed)
	if err != nil {
		return err
	}
	if err := c.rc.Amend(t); err != nil {
		return err
	}
	c.pending.Store(m)
	c.log.Info("manifest amendment scheduled for the next round boundary", "serial", m.Serial, "change", t.Summary)
	return nil
}

// terms checks that next amends cur and fits this coordinator's message
// limit, and returns the engine's terms for it.
func (c *Coordinator) terms(cur, next *federation.Manifest, signed []byte) (round.Terms, error) {
	ch, err := federation.CheckAmendment(cur, next)
	if err != nil {
		return round.Terms{}, err
	}
	fed, err := federation.Resolve(next, federation.Overrides{Scheme: c.cfg.Scheme, MaxMessage: c.cfg.Limits.MaxMessage})
	if err != nil {
		return round.Terms{}, fmt.Errorf("manifest serial %d: %w", next.Serial, err)
	}
	if fed.Budget != nil && fed.Budget.MaxRound == 0 {
		return round.Terms{}, fmt.Errorf("manifest serial %d: the ε budget %v does not cover a single round", next.Serial, next.DP.Epsilon)
	}
	return fed.Terms(signed, ch.String()), nil
}

// adopt makes terms the engine put in force the daemon's: the manifest,
// its budget and planned rounds; removed members' streams are dropped.
func (c *Coordinator) adopt(t *round.Terms) error {
	m, err := federation.Verify(t.Manifest, c.cfg.Kit.CA)
	if err != nil {
		return fmt.Errorf("coordinator: the manifest in force (serial %d): %w", t.Serial, err)
	}
	old := c.manifest()
	if m.Serial == old.Serial {
		return nil
	}
	fed, err := federation.Resolve(m, federation.Overrides{Scheme: c.cfg.Scheme, MaxMessage: c.cfg.Limits.MaxMessage})
	if err != nil {
		return fmt.Errorf("coordinator: the manifest in force (serial %d): %w", t.Serial, err)
	}
	b, err := newBudget(fed.Budget, m)
	if err != nil {
		return err
	}
	if b != nil && c.budget != nil {
		b.spent = c.budget.spent
	}
	c.budget = b
	c.rcfg = c.rcfg.WithTerms(*t)
	c.man.Store(m)
	if p := c.pending.Load(); p != nil && p.Serial <= m.Serial {
		c.pending.Store(nil)
	}
	for _, id := range old.Nodes() {
		if _, ok := m.Member(id); !ok {
			delete(c.att, id)
			c.removed = append(c.removed, id) // its stream is dropped once the amendment is sent
		}
	}
	c.log.Info("manifest amendment in force", "serial", m.Serial, "change", t.Summary, "members", len(m.Members),
		"threshold", m.Threshold, "rounds", t.Rounds)
	c.setAttestStatus()
	return nil
}

// dropRemoved drops the streams of the members the amendment just sent
// removed.
func (c *Coordinator) dropRemoved() {
	for _, id := range c.removed {
		if c.srv.Drop(id, fmt.Errorf("%w: removed from the federation", pki.ErrNotMember)) {
			c.log.Info("dropped a removed member's stream", "member", id)
		}
	}
	c.removed = nil
}

// restoreTerms makes the terms a restarted engine runs under the daemon's
// (the kit's manifest may be newer: it is scheduled again by the watch).
func (c *Coordinator) restoreTerms(st round.CoordinatorState) error {
	if st.Terms != nil && len(st.Terms.Manifest) > 0 {
		if err := c.adopt(st.Terms); err != nil {
			return err
		}
	}
	if st.Pending != nil {
		m, err := federation.Verify(st.Pending.Manifest, c.cfg.Kit.CA)
		if err != nil {
			return fmt.Errorf("coordinator: the scheduled amendment (serial %d): %w", st.Pending.Serial, err)
		}
		c.pending.Store(m)
	}
	return nil
}
