package secagg

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/sha256"
	"fmt"
	"io"
	"math"

	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// target is the group key: an X25519 key pair. Revealers seal the round's
// group mask key to its public key (an ECIES box: ephemeral X25519,
// HKDF-SHA256, AES-256-GCM); Decrypt opens the boxes and removes the
// included members' group masks.
type target struct {
	p   *Preset
	sk  []byte
	pub targetPublic
}

// targetPublic is a parsed target public key.
type targetPublic struct {
	key *ecdh.PublicKey
	id  [32]byte // hash of the key: what shares and results bind
}

func newTargetPublic(pub []byte) (targetPublic, error) {
	k, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return targetPublic{}, err
	}
	h := sha256.New()
	h.Write([]byte("cloister/secagg/v1 target"))
	h.Write(pub)
	var id [32]byte
	h.Sum(id[:0])
	return targetPublic{key: k, id: id}, nil
}

func parseTargetPublic(b []byte, what string) (targetPublic, error) {
	r, err := openFixed(b, kindTargetPublic, targetLen, what)
	if err != nil {
		return targetPublic{}, err
	}
	pub := r.Take(keyLen)
	if err := r.done(); err != nil {
		return targetPublic{}, err
	}
	t, err := newTargetPublic(pub)
	if err != nil {
		return targetPublic{}, malformed(what, "X25519 key: %v", err)
	}
	return t, nil
}

// NewTarget draws a target key pair from rand.
func (s *Scheme) NewTarget(rand io.Reader) (protect.Target, error) {
	if rand == nil {
		return nil, fmt.Errorf("secagg: nil random source")
	}
	sk := make([]byte, keyLen)
	if _, err := io.ReadFull(rand, sk); err != nil {
		return nil, fmt.Errorf("secagg: drawing the target key: %w", err)
	}
	return newTarget(s.p, sk)
}

func newTarget(p *Preset, sk []byte) (*target, error) {
	k, err := ecdh.X25519().NewPrivateKey(sk)
	if err != nil {
		return nil, malformed("target secret key", "%v", err)
	}
	pub, err := newTargetPublic(k.PublicKey().Bytes())
	if err != nil {
		return nil, malformed("target secret key", "%v", err)
	}
	return &target{p: p, sk: bytes.Clone(sk), pub: pub}, nil
}

// LoadTarget restores a target from Target.MarshalBinary.
func (s *Scheme) LoadTarget(secret []byte) (protect.Target, error) {
	r, err := openFixed(secret, kindTargetSecret, targetLen, "target secret key")
	if err != nil {
		return nil, err
	}
	sk := r.Take(keyLen)
	if err := r.done(); err != nil {
		return nil, err
	}
	return newTarget(s.p, sk)
}

func (t *target) Public() []byte {
	b := newPayload(kindTargetPublic, targetLen)
	return append(b, t.pub.key.Bytes()...)
}

func (t *target) MarshalBinary() ([]byte, error) {
	b := newPayload(kindTargetSecret, targetLen)
	return append(b, t.sk...), nil
}

// boxAD is what a box binds besides the keys: the group, the round and
// the revealer.
func boxAD(group [32]byte, round uint64, revealer int) []byte {
	b := append([]byte("cloister/secagg/v1 box"), group[:]...)
	b = payload.AppendU64(b, round)
	return payload.AppendU32(b, revealer)
}

func boxAEAD(shared, eph []byte, to targetPublic) (cipher.AEAD, error) {
	k := expand(extract(append(bytes.Clone(eph), to.key.Bytes()...), shared), info("box"))
	c, err := aes.NewCipher(k[:])
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(c)
}

// seal seals key to the target: eph ‖ AES-256-GCM(key). The AEAD key is
// used once (a fresh ephemeral key), so the nonce is zero.
func seal(to targetPublic, key [32]byte, group [32]byte, round uint64, revealer int, rand io.Reader) ([]byte, error) {
	esk := make([]byte, keyLen)
	if _, err := io.ReadFull(rand, esk); err != nil {
		return nil, fmt.Errorf("secagg: drawing an ephemeral key: %w", err)
	}
	e, err := ecdh.X25519().NewPrivateKey(esk)
	if err != nil {
		return nil, fmt.Errorf("secagg: ephemeral key: %w", err)
	}
	shared, err := e.ECDH(to.key)
	if err != nil {
		return nil, malformed("reveal request target", "X25519: %v", err)
	}
	eph := e.PublicKey().Bytes()
	aead, err := boxAEAD(shared, eph, to)
	if err != nil {
		return nil, fmt.Errorf("secagg: box: %w", err)
	}
	nonce := make([]byte, aead.NonceSize())
	return aead.Seal(eph, nonce, key[:], boxAD(group, round, revealer)), nil
}

func (t *target) open(box []byte, group [32]byte, round uint64, revealer int) ([32]byte, error) {
	var key [32]byte
	sk, err := ecdh.X25519().NewPrivateKey(t.sk)
	if err != nil {
		return key, err
	}
	eph := box[:keyLen]
	pk, err := ecdh.X25519().NewPublicKey(eph)
	if err != nil {
		return key, err
	}
	shared, err := sk.ECDH(pk)
	if err != nil {
		return key, err
	}
	aead, err := boxAEAD(shared, eph, t.pub)
	if err != nil {
		return key, err
	}
	pt, err := aead.Open(nil, make([]byte, aead.NonceSize()), box[keyLen:], boxAD(group, round, revealer))
	if err != nil {
		return key, err
	}
	copy(key[:], pt)
	return key, nil
}

// Decrypt opens every revealer's box (they must agree on the round key),
// removes the included members' group masks and decodes the fixed-point
// sum.
func (t *target) Decrypt(result []byte) (protect.Sum, error) {
	w, err := t.words(result)
	if err != nil {
		return protect.Sum{}, err
	}
	return decode(w, t.p), nil
}

// words returns the unmasked sum of a result, as words modulo 2^64 (the
// low Bits bits are the sum modulo 2^Bits).
func (t *target) words(result []byte) ([]uint64, error) {
	const what = "result"
	r, err := open(result, kindResult, what)
	if err != nil {
		return nil, err
	}
	tid, group, round := r.Hash(), r.Hash(), r.U64()
	words, k := r.U32(), r.U32()
	if r.Err != nil {
		return nil, r.Err
	}
	if tid != t.pub.id {
		return nil, foreign(what, "opened to another target")
	}
	// The rest: k indices, a box count, the boxes and the words; the
	// preset's width is one of 4 or 8.
	if words < 2 || k < 1 || k > r.left()/4 {
		return nil, malformed(what, "%d words and %d included members in %d bytes", words, k, r.left())
	}
	inc := make([]int, k)
	for i := range inc {
		inc[i] = r.U32()
		if r.Err == nil && i > 0 && inc[i] <= inc[i-1] {
			return nil, malformed(what, "included members not ascending")
		}
	}
	nb := r.U32()
	if r.Err != nil {
		return nil, r.Err
	}
	if nb < 1 || nb > r.left()/boxEntryLen {
		return nil, malformed(what, "%d boxes in %d bytes", nb, r.left())
	}
	var rk [32]byte
	for i := range nb {
		rev, box := r.U32(), r.Take(boxLen)
		if r.Err != nil {
			return nil, r.Err
		}
		key, err := t.open(box, group, round, rev)
		if err != nil {
			return nil, malformed(what, "the box of revealer %d does not open: %v", rev, err)
		}
		if i > 0 && key != rk {
			return nil, malformed(what, "the revealers sealed different round keys")
		}
		rk = key
	}
	width := t.p.width()
	if words > t.p.caps.MaxDim+1 || r.left() != words*width {
		return nil, malformed(what, "%d bytes for %d words of %d bytes", r.left(), words, width)
	}
	packed := r.Take(words * width)
	if err := r.done(); err != nil {
		return nil, err
	}
	sum := readWords(packed, width)
	gen := newPRG(width)
	for _, v := range inc {
		if err := gen.add(sum, memberMask(rk, v), -1); err != nil {
			return nil, err
		}
	}
	return sum, nil
}

// decode reads the words as two's-complement integers modulo 2^Bits and
// scales them by 2^-Frac; the last is the weight.
func decode(w []uint64, p *Preset) protect.Sum {
	bits := uint(p.lit.Bits)
	scale := math.Ldexp(1, -p.lit.Frac)
	v := make([]float64, len(w))
	for i, x := range w {
		// Sign-extend from bits to 64.
		v[i] = float64(int64(x<<(64-bits))>>(64-bits)) * scale
	}
	return protect.Sum{Vector: v[:len(v)-1], Weight: v[len(v)-1]}
}
