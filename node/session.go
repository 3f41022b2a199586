package node

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/fl"
)

// Session keys.
//
// Every node process makes fresh session keys when it starts: an HPKE key
// pair (ML-KEM-768 + X25519) that peers seal payloads to, and an Ed25519 key
// that authenticates what it seals. It announces their public halves in the
// evidence of its Hello, signed with its long-lived audit key, which the
// manifest lists. Every peer checks that signature itself (VerifyPeer); the
// coordinator only relays the evidence. Later, TEE evidence bound to the TLS
// session will travel in the same envelope (Evidence.TEE).
//
// Signatures the round engine asks for (uploads, round records) use the
// audit key, not the session key: the coordinator verifies them from the
// manifest alone, and a round record stays verifiable after the session.

// Domain-separation labels.
const (
	labelEvidence = "cloister/node/v1/session-keys"
	labelSealInfo = "cloister/node/v1/seal-info"
	labelSealSig  = "cloister/node/v1/seal-sig"
)

// MaxEvidence bounds the size of a Hello evidence envelope.
const MaxEvidence = 64 << 10

var (
	// ErrEvidence: relayed evidence that does not decode, is not the named
	// member's, is for another session, or whose signature does not verify
	// under the member's audit key from the manifest.
	ErrEvidence = errors.New("node: bad session-key evidence")
	// ErrStaleEvidence: evidence older than evidence already accepted for the
	// same member (a replay of an earlier process's keys).
	ErrStaleEvidence = errors.New("node: evidence older than the member's current keys")
	// ErrNoPeerKey: a payload to or from a member whose session keys are not
	// known (it has not said Hello since this process started).
	ErrNoPeerKey = errors.New("node: no session key for member")
)

// kem, kdf and aead are the HPKE suite every payload is sealed with.
func kem() hpke.KEM   { return hpke.MLKEM768X25519() }
func kdf() hpke.KDF   { return hpke.HKDFSHA256() }
func aead() hpke.AEAD { return hpke.AES256GCM() }

// Evidence is the envelope a node sends in its Hello: its session keys,
// signed with its audit key.
type Evidence struct {
	Session []byte    // the federation session (manifest hash)
	Node    fl.NodeID // the member the keys belong to
	Issued  time.Time // when the process made them; a newer one replaces an older one
	HPKE    []byte    // HPKE public key (MLKEM768X25519)
	Sign    []byte    // Ed25519 public key for sealed payloads
	TEE     []byte    // TEE evidence bound to these keys (reserved; empty)
	Sig     []byte    // Ed25519 signature by the member's audit key over signed()
}

func (e *Evidence) signed() []byte {
	var w wbuf
	w.str(labelEvidence)
	w.bytes(e.Session)
	w.str(string(e.Node))
	w.u64(uint64(e.Issued.UnixNano()))
	w.bytes(e.HPKE)
	w.bytes(e.Sign)
	w.bytes(e.TEE)
	return w.b
}

// Marshal encodes the evidence.
func (e *Evidence) Marshal() []byte {
	var w wbuf
	w.b = e.signed()
	w.bytes(e.Sig)
	return w.b
}

// ParseEvidence decodes evidence without checking its signature.
func ParseEvidence(b []byte) (*Evidence, error) {
	if len(b) > MaxEvidence {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrEvidence, len(b), MaxEvidence)
	}
	r := rbuf{b: b}
	var e Evidence
	label := r.str()
	e.Session = r.bytes()
	e.Node = fl.NodeID(r.str())
	ns := r.u64()
	e.HPKE, e.Sign, e.TEE, e.Sig = r.bytes(), r.bytes(), r.bytes(), r.bytes()
	if err := r.end(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrEvidence, err)
	}
	if label != labelEvidence {
		return nil, fmt.Errorf("%w: not a session-key envelope", ErrEvidence)
	}
	if ns > 1<<62 {
		return nil, fmt.Errorf("%w: impossible time", ErrEvidence)
	}
	e.Issued = time.Unix(0, int64(ns))
	return &e, nil
}

// SessionKeys are a node process's ephemeral keys.
type SessionKeys struct {
	hpke hpke.PrivateKey
	sign ed25519.PrivateKey
}

// NewSessionKeys makes fresh session keys. The HPKE key always comes from
// the system's secure source (crypto/hpke takes no reader); the Ed25519
// key from random (nil: crypto/rand).
func NewSessionKeys(random io.Reader) (*SessionKeys, error) {
	if random == nil {
		random = rand.Reader
	}
	k, err := kem().GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("node: HPKE key: %w", err)
	}
	_, s, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, fmt.Errorf("node: session signing key: %w", err)
	}
	return &SessionKeys{hpke: k, sign: s}, nil
}

// Evidence returns the keys' evidence for member self of session, signed
// with the member's audit key.
func (k *SessionKeys) Evidence(session []byte, self fl.NodeID, auditKey ed25519.PrivateKey, now time.Time) []byte {
	e := &Evidence{Session: bytes.Clone(session), Node: self, Issued: now,
		HPKE: k.hpke.PublicKey().Bytes(), Sign: bytes.Clone(k.sign.Public().(ed25519.PublicKey))}
	e.Sig = ed25519.Sign(auditKey, e.signed())
	return e.Marshal()
}

// peer is what a node knows of another member's session keys.
type peer struct {
	hpke   hpke.PublicKey
	sign   ed25519.PublicKey
	issued time.Time
}

// Keyring holds this node's session keys and the members' announced keys.
// It implements round.Sealer and provides round.NodeConfig.VerifyPeer. It is
// safe for concurrent use.
type Keyring struct {
	session []byte
	self    fl.NodeID
	own     *SessionKeys
	audit   map[fl.NodeID]ed25519.PublicKey // members' audit keys, from the manifest

	mu    sync.Mutex
	peers map[fl.NodeID]peer
}

// NewKeyring returns the keyring of member self, whose own keys are own and
// whose evidence is ownEvidence; audit holds every member's audit key.
func NewKeyring(session []byte, self fl.NodeID, own *SessionKeys, audit map[fl.NodeID]ed25519.PublicKey) *Keyring {
	kr := &Keyring{session: bytes.Clone(session), self: self, own: own, audit: audit, peers: make(map[fl.NodeID]peer)}
	kr.peers[self] = peer{hpke: own.hpke.PublicKey(), sign: own.sign.Public().(ed25519.PublicKey)}
	return kr
}

// VerifyPeer checks member id's relayed evidence: it must decode, name id
// and this session, carry a valid HPKE key, and be signed by id's audit key
// from the manifest. Evidence newer than the member's current keys replaces
// them; the same evidence again is accepted; older evidence is refused
// (ErrStaleEvidence), so a coordinator cannot roll a member back to the keys
// of an earlier process.
func (kr *Keyring) VerifyPeer(id fl.NodeID, b []byte) error {
	e, err := ParseEvidence(b)
	if err != nil {
		return err
	}
	pub, ok := kr.audit[id]
	switch {
	case !ok:
		return fmt.Errorf("%w: %s is not a member", ErrEvidence, id)
	case e.Node != id:
		return fmt.Errorf("%w: evidence of %q relayed as %s's", ErrEvidence, e.Node, id)
	case !bytes.Equal(e.Session, kr.session):
		return fmt.Errorf("%w: evidence of %s is for session %x", ErrEvidence, id, e.Session)
	case len(e.Sign) != ed25519.PublicKeySize:
		return fmt.Errorf("%w: signing key of %s has %d bytes", ErrEvidence, id, len(e.Sign))
	case !ed25519.Verify(pub, e.signed(), e.Sig):
		return fmt.Errorf("%w: the signature on %s's evidence does not verify under its audit key", ErrEvidence, id)
	}
	hk, err := kem().NewPublicKey(e.HPKE)
	if err != nil {
		return fmt.Errorf("%w: HPKE key of %s: %v", ErrEvidence, id, err)
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if cur, ok := kr.peers[id]; ok && id != kr.self {
		switch {
		case e.Issued.Before(cur.issued):
			return fmt.Errorf("%w: %s's evidence of %s, current keys from %s", ErrStaleEvidence, id,
				e.Issued.UTC().Format(time.RFC3339Nano), cur.issued.UTC().Format(time.RFC3339Nano))
		case e.Issued.Equal(cur.issued):
			if !bytes.Equal(cur.hpke.Bytes(), hk.Bytes()) || !bytes.Equal(cur.sign, e.Sign) {
				return fmt.Errorf("%w: %s announced two key sets at the same time", ErrEvidence, id)
			}
			return nil
		}
	}
	if id == kr.self {
		// Our own evidence, relayed back: it must be our current keys.
		if !bytes.Equal(hk.Bytes(), kr.own.hpke.PublicKey().Bytes()) {
			return fmt.Errorf("%w: relayed evidence of this node holds another process's keys", ErrStaleEvidence)
		}
		return nil
	}
	kr.peers[id] = peer{hpke: hk, sign: bytes.Clone(e.Sign), issued: e.Issued}
	return nil
}

// sealInfo is the HPKE info string: it binds a payload to the session, its
// sender and its recipient. The round engine's envelope inside binds the
// purpose (a dealt share, the group key) and the key epoch.
func (kr *Keyring) sealInfo(from, to fl.NodeID) []byte {
	var w wbuf
	w.str(labelSealInfo)
	w.bytes(kr.session)
	w.str(string(from))
	w.str(string(to))
	return w.b
}

func sealSigned(info, pt []byte) []byte {
	var w wbuf
	w.str(labelSealSig)
	w.bytes(info)
	w.bytes(pt)
	return w.b
}

// Seal implements round.Sealer: HPKE (MLKEM768X25519, HKDF-SHA256,
// AES-256-GCM) to to's announced session key, of this node's session-key
// signature over (info, plaintext) followed by the plaintext.
func (kr *Keyring) Seal(to fl.NodeID, pt []byte) ([]byte, error) {
	kr.mu.Lock()
	p, ok := kr.peers[to]
	kr.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrNoPeerKey, to)
	}
	info := kr.sealInfo(kr.self, to)
	sig := ed25519.Sign(kr.own.sign, sealSigned(info, pt))
	inner := make([]byte, 0, len(sig)+len(pt))
	inner = append(append(inner, sig...), pt...)
	return hpke.Seal(p.hpke, kdf(), aead(), info, inner)
}

// Open implements round.Sealer: it opens a payload from sealed to this node
// and checks from's session-key signature.
func (kr *Keyring) Open(from fl.NodeID, ct []byte) ([]byte, error) {
	kr.mu.Lock()
	p, ok := kr.peers[from]
	kr.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrNoPeerKey, from)
	}
	info := kr.sealInfo(from, kr.self)
	inner, err := hpke.Open(kr.own.hpke, kdf(), aead(), info, ct)
	if err != nil {
		return nil, fmt.Errorf("node: opening a payload from %s: %w", from, err)
	}
	if len(inner) < ed25519.SignatureSize {
		return nil, fmt.Errorf("node: payload from %s is too short", from)
	}
	sig, pt := inner[:ed25519.SignatureSize], inner[ed25519.SignatureSize:]
	if !ed25519.Verify(p.sign, sealSigned(info, pt), sig) {
		return nil, fmt.Errorf("node: payload was not sealed by %s's session key", from)
	}
	return pt, nil
}

// AuditSigner signs with a member's audit key: round.Signer.
type AuditSigner struct{ Key ed25519.PrivateKey }

// Sign implements round.Signer.
func (s AuditSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.Key, msg), nil }

// AuditVerifier checks signatures with the members' audit keys from the
// manifest: round.Verifier.
type AuditVerifier map[fl.NodeID]ed25519.PublicKey

// Verify implements round.Verifier.
func (v AuditVerifier) Verify(signer fl.NodeID, msg, sig []byte) error {
	pub, ok := v[signer]
	if !ok {
		return fmt.Errorf("node: %s has no audit key in the manifest", signer)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("node: signature of %s does not verify", signer)
	}
	return nil
}

// GCMBox is AES-256-GCM with a random 96-bit nonce prepended to the
// ciphertext: round.ModelBox. Models are sealed under one group key for the
// whole session; with random nonces that is safe for far more than 2^32
// seals, far beyond any session.
type GCMBox struct{}

// KeySize implements round.ModelBox.
func (GCMBox) KeySize() int { return 32 }

func (GCMBox) aead(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("node: model key of %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal implements round.ModelBox.
func (b GCMBox) Seal(key, pt, ad []byte) ([]byte, error) {
	a, err := b.aead(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, a.NonceSize(), a.NonceSize()+len(pt)+a.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return a.Seal(nonce, nonce, pt, ad), nil
}

// Open implements round.ModelBox.
func (b GCMBox) Open(key, ct, ad []byte) ([]byte, error) {
	a, err := b.aead(key)
	if err != nil {
		return nil, err
	}
	if len(ct) < a.NonceSize()+a.Overhead() {
		return nil, errors.New("node: sealed model too short")
	}
	return a.Open(nil, ct[:a.NonceSize()], ct[a.NonceSize():], ad)
}

// wbuf and rbuf are a length-prefixed codec (big-endian u64 lengths).
type wbuf struct{ b []byte }

func (w *wbuf) u64(v uint64)   { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *wbuf) bytes(p []byte) { w.u64(uint64(len(p))); w.b = append(w.b, p...) }
func (w *wbuf) str(s string)   { w.bytes([]byte(s)) }

type rbuf struct {
	b   []byte
	err error
}

func (r *rbuf) u64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = errors.New("truncated")
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

func (r *rbuf) bytes() []byte {
	n := r.u64()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("length %d exceeds the %d bytes left", n, len(r.b))
		return nil
	}
	p := bytes.Clone(r.b[:n])
	r.b = r.b[n:]
	return p
}

func (r *rbuf) str() string { return string(r.bytes()) }

func (r *rbuf) end() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return r.err
}
