// Package keyring holds a member's process keys and what both daemons
// seal, sign and verify with: [Keys] (a process's HPKE and Ed25519 keys,
// announced in its Hello evidence), [Ring] (the members' keys, sealing
// payloads end to end between members, checking their evidence and TEE
// evidence), [Box] (AES-256-GCM under the group model key), and [Signer]
// and [Verifier] (the audit keys the manifest lists, for uploads and round
// records). See docs/PROTOCOL.md §2 and docs/ARCHITECTURE.md.
package keyring

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ed25519"
	"crypto/hpke"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/lenprefix"
	"github.com/cloisterfl/cloister/pki"
)

// Process keys.
//
// Every node process makes fresh process keys when it starts, and again at
// every scheduled re-attestation: an HPKE key pair (ML-KEM-768 + X25519)
// that peers seal payloads to, and an Ed25519 key that authenticates what
// it seals. It announces their public halves in the evidence of its Hello
// ([pki.Hello]), signed with its long-lived audit key, which the
// manifest lists. With a TEE, the envelope carries TEE evidence whose
// report data binds these keys to the node's TLS session with the
// coordinator and the coordinator's nonce (attest.ReportData). Every peer
// checks the envelope and the TEE evidence itself (VerifyPeer); the
// coordinator checks them before admitting the node, and relays them.
//
// Signatures the round engine asks for (uploads, round records) use the
// audit key, not the process key: the coordinator verifies them from the
// manifest alone, and a round record stays verifiable after the session.

// Domain-separation labels.
const (
	labelSealInfo = "cloister/node/v1/seal-info"
	labelSealSig  = "cloister/node/v1/seal-sig"
)

var (
	// ErrStaleEvidence: evidence older than evidence already accepted for the
	// same member (a replay of an earlier process's keys).
	ErrStaleEvidence = errors.New("keyring: evidence older than the member's current keys")
	// ErrNoPeerKey: a payload to or from a member whose process keys are not
	// known (it has not said Hello since this process started).
	ErrNoPeerKey = errors.New("keyring: no process key for member")
	// ErrNoTEE: the manifest requires TEE evidence and a member's Hello
	// evidence carries none.
	ErrNoTEE = errors.New("keyring: no TEE evidence")
)

// kem, kdf and aead are the HPKE suite every payload is sealed with.
func kem() hpke.KEM   { return hpke.MLKEM768X25519() }
func kdf() hpke.KDF   { return hpke.HKDFSHA256() }
func aead() hpke.AEAD { return hpke.AES256GCM() }

// Keys are a node process's ephemeral keys. A node makes new ones
// when it starts and at every scheduled re-attestation.
type Keys struct {
	hpke hpke.PrivateKey
	sign ed25519.PrivateKey
}

// Binding returns the attestation binding of these keys to a TLS session
// (its exported keying material ekm) and the coordinator's nonce: what the
// node's TEE evidence must vouch for.
func (k *Keys) Binding(nonce, ekm []byte) attest.Binding {
	return attest.Binding{Nonce: bytes.Clone(nonce), EKM: bytes.Clone(ekm),
		HPKEPub: k.hpke.PublicKey().Bytes(), SignPub: bytes.Clone(k.sign.Public().(ed25519.PublicKey))}
}

// NewKeys makes fresh process keys. The HPKE key always comes from
// the system's secure source (crypto/hpke takes no reader); the Ed25519
// key from random (nil: crypto/rand).
func NewKeys(random io.Reader) (*Keys, error) {
	if random == nil {
		random = rand.Reader
	}
	k, err := kem().GenerateKey()
	if err != nil {
		return nil, fmt.Errorf("keyring: HPKE key: %w", err)
	}
	_, s, err := ed25519.GenerateKey(random)
	if err != nil {
		return nil, fmt.Errorf("keyring: session signing key: %w", err)
	}
	return &Keys{hpke: k, sign: s}, nil
}

// Evidence returns the keys' Hello evidence ([pki.Hello]) for member
// self of session, made at issued, with the TEE evidence tee (nil without
// a TEE), signed with the member's audit key.
func (k *Keys) Evidence(session []byte, self fl.NodeID, auditKey ed25519.PrivateKey, issued time.Time, tee []byte) []byte {
	e := &pki.Hello{Session: bytes.Clone(session), Node: self, Issued: issued,
		HPKE: k.hpke.PublicKey().Bytes(), Sign: bytes.Clone(k.sign.Public().(ed25519.PublicKey)), TEE: bytes.Clone(tee)}
	return e.SignWith(auditKey)
}

// peer is what a node knows of another member's process keys.
type peer struct {
	hpke hpke.PublicKey
	sign ed25519.PublicKey
	// prevSign is its signing key before its last rotation: payloads it
	// signed with it may be in flight (nil: none).
	prevSign ed25519.PublicKey
	issued   time.Time
	claims   *attest.Claims // of its TEE evidence; nil without attestation
}

// Ring holds this node's process keys and the members' announced keys.
// It implements round.Sealer and provides round.NodeConfig.VerifyPeer. It is
// safe for concurrent use.
type Ring struct {
	session []byte
	self    fl.NodeID
	audit   map[fl.NodeID]ed25519.PublicKey // members' audit keys, from the manifest (guarded by mu)
	tee     *attest.Verifier                // nil: the manifest requires no TEE evidence
	now     func() time.Time

	mu    sync.Mutex
	own   *Keys
	prev  *Keys // the keys before the last rotation: payloads sealed to them may be in flight
	peers map[fl.NodeID]peer
	// failed: the newest issue time of a member's signed evidence whose TEE
	// evidence failed: evidence issued before it is not taken again.
	failed map[fl.NodeID]time.Time
	agg    *aggregator // mode tee's aggregator; nil: none (see RequireAggregator)
}

// New returns the keyring of member self, whose own keys are own;
// audit holds every member's audit key. Without a TEE verifier (nil) it
// checks the members' evidence against their audit keys only.
func New(session []byte, self fl.NodeID, own *Keys, audit map[fl.NodeID]ed25519.PublicKey) *Ring {
	kr := &Ring{session: bytes.Clone(session), self: self, own: own, audit: audit, peers: make(map[fl.NodeID]peer),
		failed: make(map[fl.NodeID]time.Time), now: time.Now}
	kr.peers[self] = peer{hpke: own.hpke.PublicKey(), sign: own.sign.Public().(ed25519.PublicKey)}
	return kr
}

// SetAuditKeys replaces the members' audit keys (a manifest amendment
// added or removed members).
func (kr *Ring) SetAuditKeys(audit map[fl.NodeID]ed25519.PublicKey) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.audit = audit
}

// RequireTEE makes the keyring check the TEE evidence in every member's
// Hello evidence with v (the manifest's policy), at the times now returns
// (nil: time.Now). Call it before the keyring is used.
func (kr *Ring) RequireTEE(v *attest.Verifier, now func() time.Time) {
	kr.tee = v
	if now != nil {
		kr.now = now
	}
}

// Rotate makes k this node's process keys. The previous keys still open
// payloads sealed to them (in flight when the node announced k), and
// payloads this node signed with them still verify, until the next
// rotation.
func (kr *Ring) Rotate(k *Keys) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	kr.prev, kr.own = kr.own, k
	kr.peers[kr.self] = peer{hpke: k.hpke.PublicKey(), sign: k.sign.Public().(ed25519.PublicKey),
		prevSign: kr.prev.sign.Public().(ed25519.PublicKey)}
}

// Own returns this node's current process keys.
func (kr *Ring) Own() *Keys {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	return kr.own
}

// VerifyPeer checks member id's relayed evidence (or, for the
// aggregator's name, the aggregator's: VerifyAggregator): it must decode, name id
// and this session, carry a valid HPKE key, and be signed by id's audit key
// from the manifest (pki.VerifyHello). When the manifest requires a TEE,
// the envelope's TEE evidence must pass the policy and bind exactly the
// announced keys (attest's VerifyRelayed: this node cannot know the
// member's TLS session with the coordinator, see SECURITY.md). Evidence
// newer than the member's current keys replaces them; the same keys again
// are accepted (with their new TEE evidence); older evidence is refused
// (ErrStaleEvidence), so a coordinator cannot roll a member back to the
// keys of an earlier process. Evidence issued before signed evidence of the
// member whose TEE evidence failed is refused too (ErrStaleEvidence): a
// coordinator cannot undo a failed re-attestation by relaying the
// attestation it superseded.
func (kr *Ring) VerifyPeer(id fl.NodeID, b []byte) error {
	kr.mu.Lock()
	pub, ok := kr.audit[id]
	isAgg := kr.agg != nil && kr.agg.name == id
	kr.mu.Unlock()
	if isAgg {
		return kr.VerifyAggregator(b)
	}
	if !ok {
		return fmt.Errorf("%w: %s is not a member", pki.ErrHello, id)
	}
	e, err := pki.VerifyHello(b, id, kr.session, pub)
	if err != nil {
		return err
	}
	hk, err := kem().NewPublicKey(e.HPKE)
	if err != nil {
		return fmt.Errorf("%w: HPKE key of %s: %v", pki.ErrHello, id, err)
	}
	claims, err := kr.verifyTEE(id, e)
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if err != nil {
		if id != kr.self && e.Issued.After(kr.failed[id]) {
			kr.failed[id] = e.Issued
		}
		return err
	}
	if f, ok := kr.failed[id]; ok && e.Issued.Before(f) {
		return fmt.Errorf("%w: %s's evidence of %s, and its evidence of %s failed its TEE check", ErrStaleEvidence, id,
			e.Issued.UTC().Format(time.RFC3339Nano), f.UTC().Format(time.RFC3339Nano))
	}
	if id == kr.self {
		// Our own evidence, relayed back: it must be our current keys.
		if !bytes.Equal(hk.Bytes(), kr.own.hpke.PublicKey().Bytes()) {
			return fmt.Errorf("%w: relayed evidence of this node holds other keys than its current ones", ErrStaleEvidence)
		}
		return nil
	}
	if cur, ok := kr.peers[id]; ok {
		switch {
		case e.Issued.Before(cur.issued):
			return fmt.Errorf("%w: %s's evidence of %s, current keys from %s", ErrStaleEvidence, id,
				e.Issued.UTC().Format(time.RFC3339Nano), cur.issued.UTC().Format(time.RFC3339Nano))
		case e.Issued.Equal(cur.issued):
			if !bytes.Equal(cur.hpke.Bytes(), hk.Bytes()) || !bytes.Equal(cur.sign, e.Sign) {
				return fmt.Errorf("%w: %s announced two key sets at the same time", pki.ErrHello, id)
			}
		}
	}
	np := peer{hpke: hk, sign: bytes.Clone(e.Sign), issued: e.Issued, claims: claims}
	if cur, ok := kr.peers[id]; ok {
		np.prevSign = cur.prevSign
		if !bytes.Equal(cur.sign, np.sign) {
			np.prevSign = cur.sign
		}
	}
	kr.peers[id] = np
	return nil
}

// verifyTEE checks the TEE evidence of e when the keyring requires it.
func (kr *Ring) verifyTEE(id fl.NodeID, e *pki.Hello) (*attest.Claims, error) {
	if kr.tee == nil {
		return nil, nil
	}
	if len(e.TEE) == 0 {
		return nil, fmt.Errorf("%w: %s's Hello evidence carries no TEE evidence, and the manifest requires it", ErrNoTEE, id)
	}
	te, err := attest.ParseEvidence(e.TEE)
	if err != nil {
		return nil, fmt.Errorf("TEE evidence of %s: %w", id, err)
	}
	// The nonce and the TLS keying material are the coordinator's and the
	// member's: taken from the evidence. The keys are the ones the member
	// signed with its audit key.
	want := attest.Binding{Nonce: te.Binding.Nonce, HPKEPub: e.HPKE, SignPub: e.Sign}
	claims, err := kr.tee.VerifyRelayed(e.TEE, want, kr.now())
	if err != nil {
		return nil, fmt.Errorf("TEE evidence of %s: %w", id, err)
	}
	return claims, nil
}

// Expired returns, for every member whose TEE evidence this keyring
// verified, an error wrapping attest.ErrTooOld if that evidence is older
// than the policy's MaxAge at now: the member did not re-attest in time.
func (kr *Ring) Expired(now time.Time) map[fl.NodeID]error {
	if kr.tee == nil {
		return nil
	}
	maxAge := time.Duration(kr.tee.Policy().MaxAge)
	kr.mu.Lock()
	defer kr.mu.Unlock()
	out := make(map[fl.NodeID]error)
	for id, p := range kr.peers {
		if id == kr.self || p.claims == nil {
			continue
		}
		if now.Sub(p.claims.Time) > maxAge {
			out[id] = fmt.Errorf("TEE evidence of %s: %w", id, &attest.AgeError{Time: p.claims.Time, Now: now, MaxAge: maxAge})
		}
	}
	return out
}

// PeerClaims returns the claims of member id's last verified TEE evidence.
func (kr *Ring) PeerClaims(id fl.NodeID) (*attest.Claims, bool) {
	kr.mu.Lock()
	defer kr.mu.Unlock()
	p, ok := kr.peers[id]
	if !ok || p.claims == nil {
		return nil, false
	}
	c := *p.claims
	return &c, true
}

// sealInfo is the HPKE info string: it binds a payload to the session, its
// sender and its recipient. The round engine's envelope inside binds the
// purpose (a dealt share, the group key) and the key epoch.
func (kr *Ring) sealInfo(from, to fl.NodeID) []byte {
	var w lenprefix.Writer
	w.String(labelSealInfo)
	w.Bytes(kr.session)
	w.String(string(from))
	w.String(string(to))
	return w.B
}

func sealSigned(info, pt []byte) []byte {
	var w lenprefix.Writer
	w.String(labelSealSig)
	w.Bytes(info)
	w.Bytes(pt)
	return w.B
}

// Seal implements round.Sealer: HPKE (MLKEM768X25519, HKDF-SHA256,
// AES-256-GCM) to to's announced process key, of this node's session-key
// signature over (info, plaintext) followed by the plaintext.
func (kr *Ring) Seal(to fl.NodeID, pt []byte) ([]byte, error) {
	kr.mu.Lock()
	p, ok := kr.peers[to]
	kr.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrNoPeerKey, to)
	}
	info := kr.sealInfo(kr.self, to)
	kr.mu.Lock()
	own := kr.own
	kr.mu.Unlock()
	sig := ed25519.Sign(own.sign, sealSigned(info, pt))
	inner := make([]byte, 0, len(sig)+len(pt))
	inner = append(append(inner, sig...), pt...)
	return hpke.Seal(p.hpke, kdf(), aead(), info, inner)
}

// Open implements round.Sealer: it opens a payload from sealed to this node
// and checks from's session-key signature, with its current signing key or
// the one before its last rotation (a payload it sealed before it
// re-attested, opened after its new keys arrived).
func (kr *Ring) Open(from fl.NodeID, ct []byte) ([]byte, error) {
	kr.mu.Lock()
	p, ok := kr.peers[from]
	own, prev := kr.own, kr.prev
	kr.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%w %s", ErrNoPeerKey, from)
	}
	info := kr.sealInfo(from, kr.self)
	inner, err := hpke.Open(own.hpke, kdf(), aead(), info, ct)
	if err != nil && prev != nil {
		// Sealed to the keys before the last rotation, in flight when the
		// node announced its new ones.
		var err2 error
		if inner, err2 = hpke.Open(prev.hpke, kdf(), aead(), info, ct); err2 == nil {
			err = nil
		}
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: opening a payload from %s: %w", from, err)
	}
	if len(inner) < ed25519.SignatureSize {
		return nil, fmt.Errorf("keyring: payload from %s is too short", from)
	}
	sig, pt := inner[:ed25519.SignatureSize], inner[ed25519.SignatureSize:]
	signed := sealSigned(info, pt)
	if !ed25519.Verify(p.sign, signed, sig) && (p.prevSign == nil || !ed25519.Verify(p.prevSign, signed, sig)) {
		return nil, fmt.Errorf("keyring: payload was not sealed by %s's process key", from)
	}
	return pt, nil
}

// Signer signs with a member's audit key: round.Signer.
type Signer struct{ Key ed25519.PrivateKey }

// Sign implements round.Signer.
func (s Signer) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.Key, msg), nil }

// Verifier checks signatures with the members' audit keys from the
// manifest: round.Verifier.
type Verifier map[fl.NodeID]ed25519.PublicKey

// Verify implements round.Verifier.
func (v Verifier) Verify(signer fl.NodeID, msg, sig []byte) error {
	pub, ok := v[signer]
	if !ok {
		return fmt.Errorf("%s has no audit key in the manifest", signer)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return fmt.Errorf("signature of %s does not verify under its audit key", signer)
	}
	return nil
}

// Box is AES-256-GCM with a random 96-bit nonce prepended to the
// ciphertext: round.ModelBox. Models are sealed under one group key for the
// whole session; with random nonces that is safe for far more than 2^32
// seals, far beyond any session.
type Box struct{}

// KeySize implements round.ModelBox.
func (Box) KeySize() int { return 32 }

func (Box) aead(key []byte) (cipher.AEAD, error) {
	if len(key) != 32 {
		return nil, fmt.Errorf("keyring: model key of %d bytes, want 32", len(key))
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// Seal implements round.ModelBox.
func (b Box) Seal(key, pt, ad []byte) ([]byte, error) {
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
func (b Box) Open(key, ct, ad []byte) ([]byte, error) {
	a, err := b.aead(key)
	if err != nil {
		return nil, err
	}
	if len(ct) < a.NonceSize()+a.Overhead() {
		return nil, errors.New("keyring: sealed model too short")
	}
	return a.Open(nil, ct[:a.NonceSize()], ct[a.NonceSize():], ad)
}
