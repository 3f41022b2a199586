package paillier

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/sha256"
	"fmt"
	"io"
	"math"
	"math/big"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// target is the group key: an X25519 key pair. Revealers seal their
// decryption shares to it (ephemeral X25519, HKDF-SHA256, AES-256-GCM);
// Decrypt opens them, combines them and unpacks the sum.
type target struct {
	p   *Preset
	sk  []byte
	pub targetPublic
}

type targetPublic struct {
	key *ecdh.PublicKey
	id  [hashLen]byte
}

func newTargetPublic(pub []byte) (targetPublic, error) {
	k, err := ecdh.X25519().NewPublicKey(pub)
	if err != nil {
		return targetPublic{}, err
	}
	return targetPublic{key: k, id: hashOf("target", pub)}, nil
}

func parseTargetPublic(b []byte, what string) (targetPublic, error) {
	r, err := openFixed(b, kindTargetPublic, targetLen, what)
	if err != nil {
		return targetPublic{}, err
	}
	pub := r.Take(keyLen)
	if err := r.Done(); err != nil {
		return targetPublic{}, err
	}
	t, err := newTargetPublic(pub)
	if err != nil {
		return targetPublic{}, malformed(what, "X25519 key: %v", err)
	}
	return t, nil
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

func (t *target) Public() []byte {
	return append(newPayload(kindTargetPublic, targetLen), t.pub.key.Bytes()...)
}

func (t *target) MarshalBinary() ([]byte, error) {
	return append(newPayload(kindTargetSecret, targetLen), t.sk...), nil
}

func boxAEAD(shared, eph []byte, to *ecdh.PublicKey) (cipher.AEAD, error) {
	k, err := hkdf.Key(sha256.New, shared, append(bytes.Clone(eph), to.Bytes()...), "cloister/paillier/v1 box key", 32)
	if err != nil {
		return nil, err
	}
	c, err := aes.NewCipher(k)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(c)
}

// seal seals msg to the target: eph ‖ AES-256-GCM(msg). The AEAD key is
// used once (a fresh ephemeral key), so the nonce is zero.
func seal(to targetPublic, msg, ad []byte, rand io.Reader) ([]byte, error) {
	esk := make([]byte, keyLen)
	if _, err := io.ReadFull(rand, esk); err != nil {
		return nil, fmt.Errorf("drawing an ephemeral key: %w", err)
	}
	e, err := ecdh.X25519().NewPrivateKey(esk)
	if err != nil {
		return nil, err
	}
	shared, err := e.ECDH(to.key)
	if err != nil {
		return nil, malformed("reveal request target", "X25519: %v", err)
	}
	eph := e.PublicKey().Bytes()
	aead, err := boxAEAD(shared, eph, to.key)
	if err != nil {
		return nil, err
	}
	return aead.Seal(eph, make([]byte, aead.NonceSize()), msg, ad), nil
}

func (t *target) open(box, ad []byte) ([]byte, error) {
	sk, err := ecdh.X25519().NewPrivateKey(t.sk)
	if err != nil {
		return nil, err
	}
	eph := box[:keyLen]
	pk, err := ecdh.X25519().NewPublicKey(eph)
	if err != nil {
		return nil, err
	}
	shared, err := sk.ECDH(pk)
	if err != nil {
		return nil, err
	}
	aead, err := boxAEAD(shared, eph, t.pub.key)
	if err != nil {
		return nil, err
	}
	return aead.Open(nil, make([]byte, aead.NonceSize()), box[keyLen:], ad)
}

// Decrypt opens every revealer's box, combines the decryption shares of
// each ciphertext (Lagrange in the exponent) and unpacks the plaintexts.
// A plaintext that is not a packed sum in range (a wrong share, a forged
// result) is refused with ErrMalformed.
func (t *target) Decrypt(result []byte) (protect.Sum, error) {
	const what = "result"
	r, err := open(result, kindResult, what)
	if err != nil {
		return protect.Sum{}, err
	}
	tid, group, digest, set := r.Hash(), r.Hash(), r.Hash(), r.Hash()
	round := fl.Round(r.U64())
	dim, members, thr := r.U32(), r.U32(), r.U32()
	if r.Err != nil {
		return protect.Sum{}, r.Err
	}
	if tid != t.pub.id {
		return protect.Sum{}, foreign(what, "opened to another target")
	}
	pr := t.p
	if dim < 1 || dim > pr.caps.MaxDim || members < 1 || members > pr.caps.MaxParties || thr < 1 || thr > members {
		return protect.Sum{}, malformed(what, "%d values, %d members, threshold %d", dim, members, thr)
	}
	ks, ct := pr.keySize(), 2*pr.keySize()
	k := pr.ciphertexts(dim)
	boxLen := boxOverhead + k*ct
	if len(r.B) != resultLen(ks, thr, boxLen)-(4*hashLen+8+4+4+4) {
		return protect.Sum{}, malformed(what, "%d bytes for %d boxes of %d values", len(r.B), thr, dim)
	}
	n := new(big.Int).SetBytes(r.Take(ks))
	if n.BitLen() != pr.lit.KeyBits || n.Bit(0) == 0 {
		return protect.Sum{}, malformed(what, "a modulus of %d bits", n.BitLen())
	}
	tk, err := NewThresholdKey(n, thr, members)
	if err != nil {
		return protect.Sum{}, malformed(what, "%v", err)
	}
	parts := make([]map[int]*big.Int, k)
	for i := range parts {
		parts[i] = make(map[int]*big.Int, thr)
	}
	prev := -1
	for range thr {
		rev, box := r.U32(), r.Take(boxLen)
		if r.Err != nil {
			return protect.Sum{}, r.Err
		}
		if rev <= prev || rev >= members {
			return protect.Sum{}, malformed(what, "revealer %d out of order or range", rev)
		}
		prev = rev
		pt, err := t.open(box, boxAD(group, round, rev, digest, set, tid))
		if err != nil {
			return protect.Sum{}, malformed(what, "the box of revealer %d does not open: %v", rev, err)
		}
		for i := range k {
			c := new(big.Int).SetBytes(pt[i*ct : (i+1)*ct])
			if err := tk.CheckCiphertext(c); err != nil {
				return protect.Sum{}, malformed(what, "decryption share %d of revealer %d: %v", i, rev, err)
			}
			parts[i][rev+1] = c
		}
		clear(pt)
	}
	if err := r.Done(); err != nil {
		return protect.Sum{}, err
	}
	digits := make([]int64, dim+1)
	pack := Packing{SlotBits: pr.lit.SlotBits, Slots: pr.slots}
	err = parallel(k, func(i int) error {
		m, err := tk.Combine(parts[i])
		if err != nil {
			return err
		}
		lo, hi := i*pr.slots, min((i+1)*pr.slots, dim+1)
		if err := pack.Unpack(m, n, hi-lo, pr.bound, digits[lo:hi]); err != nil {
			return fmt.Errorf("plaintext %d (a wrong decryption share?): %w", i, err)
		}
		return nil
	})
	if err != nil {
		return protect.Sum{}, malformed(what, "%v", err)
	}
	scale := math.Ldexp(1, -pr.lit.Frac)
	v := make(fl.Vector, dim)
	for i := range v {
		v[i] = float64(digits[i]) * scale
	}
	return protect.Sum{Vector: v, Weight: float64(digits[dim]) * scale}, nil
}
