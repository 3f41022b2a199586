package pki

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/lenprefix"
)

// Hello evidence.
//
// A node announces its ephemeral process keys (an HPKE key peers seal to,
// an Ed25519 key that signs what it seals) in the evidence of its Hello,
// signed with its long-lived audit key, which the manifest lists. With a
// TEE, the envelope also carries the TEE evidence (package attest) whose
// report data binds these keys to the node's TLS session with the
// coordinator. The coordinator checks it before it admits the node; every
// member checks it again when the coordinator relays it. The envelope lives
// here, not in package node, because both daemons read it.
//
//	evidence = label ‖ session ‖ node ‖ issued (unix ns) ‖ hpke_pub ‖ sign_pub ‖ tee ‖ sig
//	sig      = Ed25519(audit key of node, everything before it)
//
// with every field but issued u64-length-prefixed (big-endian).

// labelEvidence starts every envelope.
const labelEvidence = "cloister/node/v1/session-keys"

// MaxHello bounds the size of a Hello evidence envelope.
const MaxHello = 64 << 10

var (
	// ErrHello: Hello evidence that does not decode, is not the named
	// member's, is for another session, or whose signature does not verify
	// under the member's audit key from the manifest.
	ErrHello = errors.New("pki: bad Hello evidence")
)

// Hello is the evidence envelope a node sends in its Hello: its process keys and
// TEE evidence, signed with its audit key.
type Hello struct {
	Session []byte    // the federation session (manifest hash)
	Node    fl.NodeID // the member the keys belong to
	Issued  time.Time // when the process made the keys; newer keys replace older ones
	HPKE    []byte    // HPKE public key (MLKEM768X25519)
	Sign    []byte    // Ed25519 public key for sealed payloads
	TEE     []byte    // TEE evidence (attest envelope) bound to these keys and the TLS session; empty without a TEE
	Sig     []byte    // Ed25519 signature by the member's audit key over Signed()
}

// Signed returns the bytes the audit key signs: the encoding without Sig.
func (e *Hello) Signed() []byte {
	var w lenprefix.Writer
	w.String(labelEvidence)
	w.Bytes(e.Session)
	w.String(string(e.Node))
	w.U64(uint64(e.Issued.UnixNano()))
	w.Bytes(e.HPKE)
	w.Bytes(e.Sign)
	w.Bytes(e.TEE)
	return w.B
}

// SignWith sets Sig with the member's audit key and returns the encoding.
func (e *Hello) SignWith(auditKey ed25519.PrivateKey) []byte {
	e.Sig = ed25519.Sign(auditKey, e.Signed())
	return e.Marshal()
}

// Marshal encodes the evidence.
func (e *Hello) Marshal() []byte {
	w := lenprefix.Writer{B: e.Signed()}
	w.Bytes(e.Sig)
	return w.B
}

// ParseHello decodes evidence without checking its signature; see
// [VerifyHello].
func ParseHello(b []byte) (*Hello, error) {
	if len(b) > MaxHello {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrHello, len(b), MaxHello)
	}
	r := lenprefix.NewReader(b)
	var e Hello
	label := r.String()
	e.Session = r.Bytes()
	e.Node = fl.NodeID(r.String())
	ns := r.U64()
	e.HPKE, e.Sign, e.TEE, e.Sig = r.Bytes(), r.Bytes(), r.Bytes(), r.Bytes()
	if err := r.End(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHello, err)
	}
	if label != labelEvidence {
		return nil, fmt.Errorf("%w: not a session-key envelope", ErrHello)
	}
	if ns > 1<<62 {
		return nil, fmt.Errorf("%w: impossible time", ErrHello)
	}
	e.Issued = time.Unix(0, int64(ns))
	return &e, nil
}

// VerifyHello decodes member id's evidence and checks it names id and
// session, carries an Ed25519 signing key, and is signed by audit, id's
// audit key from the manifest. It checks neither the HPKE key's form nor
// the TEE evidence: that is the job of the keyring and of package attest.
func VerifyHello(b []byte, id fl.NodeID, session []byte, audit ed25519.PublicKey) (*Hello, error) {
	e, err := ParseHello(b)
	if err != nil {
		return nil, err
	}
	switch {
	case len(audit) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: %s has no audit key in the manifest", ErrHello, id)
	case e.Node != id:
		return nil, fmt.Errorf("%w: evidence of %q relayed as %s's", ErrHello, e.Node, id)
	case !bytes.Equal(e.Session, session):
		return nil, fmt.Errorf("%w: evidence of %s is for session %x", ErrHello, id, e.Session)
	case len(e.Sign) != ed25519.PublicKeySize:
		return nil, fmt.Errorf("%w: signing key of %s has %d bytes", ErrHello, id, len(e.Sign))
	case !ed25519.Verify(audit, e.Signed(), e.Sig):
		return nil, fmt.Errorf("%w: the signature on %s's evidence does not verify under its audit key", ErrHello, id)
	}
	return e, nil
}
