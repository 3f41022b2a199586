package keyring

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
)

// The aggregator of mode tee (package protect/tee) is not a member: it is
// in no cohort, holds no key share and is never a revealer or a leader. It
// opens the members' updates inside its TEE, so a node seals to its HPKE
// key only after verifying the aggregator's evidence itself, against the
// aggregator's own attestation policy from the manifest (another image
// than the members', so other measurements). See SECURITY.md.

var (
	// ErrNoAggregator: no verified evidence of the aggregator (it has not
	// said Hello, or the session has none).
	ErrNoAggregator = errors.New("keyring: no verified aggregator")
	// ErrAggregatorRefused: the aggregator's last evidence failed; the
	// error says why. A node seals nothing to it until evidence of new
	// keys, issued after the failure, passes.
	ErrAggregatorRefused = errors.New("keyring: the aggregator's evidence was refused")
)

// aggregator is what a keyring knows of the session's aggregator.
type aggregator struct {
	name  fl.NodeID
	audit ed25519.PublicKey
	tee   *attest.Verifier

	key    []byte         // the verified HPKE public key; nil: none
	issued time.Time      // of the evidence that announced key
	claims *attest.Claims // of that evidence
	failed time.Time      // issue time of the newest refused evidence
	reason error          // why it was refused
	// refused holds the digests of HPKE keys announced in refused
	// evidence: they are never taken again.
	refused map[[32]byte]bool
}

// RequireAggregator names the session's aggregator: its name (not a
// member's), its audit key and the verifier of its attestation policy,
// all from the manifest. The aggregator must attest: v is required. Call
// it before the keyring is used.
func (kr *Ring) RequireAggregator(name fl.NodeID, audit ed25519.PublicKey, v *attest.Verifier) error {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	switch {
	case name == "":
		return errors.New("keyring: the aggregator has no name")
	case kr.audit[name] != nil:
		return fmt.Errorf("keyring: the aggregator %q is a member", name)
	case len(audit) != ed25519.PublicKeySize:
		return fmt.Errorf("keyring: the aggregator %s has no audit key", name)
	case v == nil:
		return fmt.Errorf("keyring: the aggregator %s has no attestation policy: a node seals to an attested aggregator only", name)
	}
	kr.agg = &aggregator{name: name, audit: audit, tee: v, refused: make(map[[32]byte]bool)}
	return nil
}

// Aggregator returns the aggregator's name ("" if the session has none).
func (kr *Ring) Aggregator() fl.NodeID {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if kr.agg == nil {
		return ""
	}
	return kr.agg.name
}

// VerifyAggregator checks the aggregator's relayed Hello evidence: it must
// name the aggregator and this session, be signed by its audit key from
// the manifest, carry TEE evidence that passes the aggregator's policy
// (allowed format and measurement, not debug, TCB at least the floor,
// fresh) and binds exactly the announced keys. On success the announced
// HPKE key is what AggregatorKey returns. On failure the aggregator has no
// key in this keyring any more (ErrAggregatorRefused with the reason, until
// evidence of other keys issued after the failure passes), and the keys it
// announced are never taken again. Evidence older than the current keys'
// or than a refused one is ErrStaleEvidence, so a coordinator cannot roll
// the aggregator back to keys of an earlier process, or undo a refusal.
func (kr *Ring) VerifyAggregator(b []byte) error {
	kr.mu.Lock()
	a := kr.agg
	kr.mu.Unlock()
	if a == nil {
		return fmt.Errorf("%w: the session has no aggregator", ErrNoAggregator)
	}
	e, err := pki.VerifyHello(b, a.name, kr.session, a.audit)
	if err != nil {
		return fmt.Errorf("aggregator %s: %w", a.name, err)
	}
	hk, err := kem().NewPublicKey(e.HPKE)
	if err != nil {
		return fmt.Errorf("%w: HPKE key of the aggregator %s: %v", pki.ErrHello, a.name, err)
	}
	claims, terr := kr.verifyAggregatorTEE(a, e)
	digest := sha256.Sum256(e.HPKE)
	kr.mu.Lock()
	defer kr.mu.Unlock()
	switch {
	case !a.failed.IsZero() && e.Issued.Before(a.failed):
		return fmt.Errorf("%w: the aggregator's evidence of %s, and its evidence of %s was refused", ErrStaleEvidence,
			e.Issued.UTC().Format(time.RFC3339Nano), a.failed.UTC().Format(time.RFC3339Nano))
	case a.key != nil && e.Issued.Before(a.issued):
		return fmt.Errorf("%w: the aggregator's evidence of %s, its current keys are from %s", ErrStaleEvidence,
			e.Issued.UTC().Format(time.RFC3339Nano), a.issued.UTC().Format(time.RFC3339Nano))
	}
	if terr == nil && a.refused[digest] {
		terr = fmt.Errorf("the aggregator's HPKE key %x was announced in refused evidence before", digest[:6])
	}
	if terr != nil {
		a.key, a.claims, a.issued = nil, nil, time.Time{}
		a.failed, a.reason = e.Issued, terr
		a.refused[digest] = true
		return fmt.Errorf("%w: %w", ErrAggregatorRefused, terr)
	}
	a.key, a.issued, a.claims = hk.Bytes(), e.Issued, claims
	return nil
}

// verifyAggregatorTEE checks e's TEE evidence against the aggregator's
// policy, binding the keys e announces.
func (kr *Ring) verifyAggregatorTEE(a *aggregator, e *pki.Hello) (*attest.Claims, error) {
	if len(e.TEE) == 0 {
		return nil, fmt.Errorf("%w: the aggregator %s's Hello evidence carries no TEE evidence", ErrNoTEE, a.name)
	}
	te, err := attest.ParseEvidence(e.TEE)
	if err != nil {
		return nil, fmt.Errorf("TEE evidence of the aggregator %s: %w", a.name, err)
	}
	want := attest.Binding{Nonce: te.Binding.Nonce, HPKEPub: e.HPKE, SignPub: e.Sign}
	claims, err := a.tee.VerifyRelayed(e.TEE, want, kr.now())
	if err != nil {
		return nil, fmt.Errorf("TEE evidence of the aggregator %s: %w", a.name, err)
	}
	return claims, nil
}

// AggregatorKey returns the aggregator's verified HPKE public key, the
// key of protect/tee's Scheme, or why a node must not seal to it: no
// verified evidence (ErrNoAggregator), its last evidence refused
// (ErrAggregatorRefused, with the reason), or its evidence older than its
// policy's MaxAge at now (attest.ErrTooOld: it did not re-attest in time).
func (kr *Ring) AggregatorKey(now time.Time) ([]byte, error) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	a := kr.agg
	switch {
	case a == nil:
		return nil, fmt.Errorf("%w: the session has no aggregator", ErrNoAggregator)
	case a.reason != nil && a.key == nil:
		return nil, fmt.Errorf("%w: %w", ErrAggregatorRefused, a.reason)
	case a.key == nil:
		return nil, fmt.Errorf("%w: no evidence of the aggregator %s yet", ErrNoAggregator, a.name)
	}
	if maxAge := time.Duration(a.tee.Policy().MaxAge); maxAge > 0 && now.Sub(a.claims.Time) > maxAge {
		return nil, fmt.Errorf("TEE evidence of the aggregator %s: %w", a.name, &attest.AgeError{Time: a.claims.Time, Now: now, MaxAge: maxAge})
	}
	return bytes.Clone(a.key), nil
}

// PrivateHPKE returns the keys' HPKE private key. Only the aggregator
// uses it: it is the Identity of its protect/tee Scheme, opening the
// updates sealed to the key its evidence binds. Members' keys never leave
// their keyring.
func (k *Keys) PrivateHPKE() hpke.PrivateKey { return k.hpke }
