package tee

import (
	"bytes"
	"crypto/hpke"
	"errors"
	"fmt"
	"io"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// target is an HPKE key pair: the group key results are sealed to.
type target struct {
	seed   [seedLen]byte
	priv   hpke.PrivateKey
	public []byte        // the target public key payload
	hash   [hashLen]byte // of public
}

// NewTarget returns a fresh target, derived from 32 bytes of rand.
func (Scheme) NewTarget(rand io.Reader) (protect.Target, error) {
	if rand == nil {
		return nil, errors.New("tee: nil random source")
	}
	var seed [seedLen]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("tee: drawing a target key: %w", err)
	}
	return newTarget(seed)
}

// LoadTarget restores a target from its MarshalBinary secret.
func (Scheme) LoadTarget(secret []byte) (protect.Target, error) {
	r, err := openFixed(secret, kindTargetSecret, targetSecretLen, "target secret key")
	if err != nil {
		return nil, err
	}
	var seed [seedLen]byte
	copy(seed[:], r.Take(seedLen))
	if err := r.Done(); err != nil {
		return nil, err
	}
	return newTarget(seed)
}

func newTarget(seed [seedLen]byte) (*target, error) {
	priv, err := kem().DeriveKeyPair(seed[:])
	if err != nil {
		return nil, fmt.Errorf("tee: deriving a target key: %w", err)
	}
	b := newPayload(kindTargetPublic, targetPublicLen)
	b = append(b, priv.PublicKey().Bytes()...)
	return &target{seed: seed, priv: priv, public: b, hash: hashOf("target", b)}, nil
}

// parseTargetPublic checks a target public key and returns its hash and key.
func parseTargetPublic(b []byte) ([hashLen]byte, hpke.PublicKey, error) {
	r, err := openFixed(b, kindTargetPublic, targetPublicLen, "target public key")
	if err != nil {
		return [hashLen]byte{}, nil, err
	}
	raw := r.Take(publicLen)
	if err := r.Done(); err != nil {
		return [hashLen]byte{}, nil, err
	}
	key, err := kem().NewPublicKey(raw)
	if err != nil {
		return [hashLen]byte{}, nil, malformed("target public key", "not an ML-KEM-768+X25519 key: %v", err)
	}
	return hashOf("target", b), key, nil
}

func (t *target) Public() []byte { return bytes.Clone(t.public) }

func (t *target) MarshalBinary() ([]byte, error) {
	b := newPayload(kindTargetSecret, targetSecretLen)
	return append(b, t.seed[:]...), nil
}

// sealResult seals sum to the target: the result names the target's hash
// and length in the clear, and they are the HPKE info.
func sealResult(tgt [hashLen]byte, key hpke.PublicKey, sum protect.Sum) ([]byte, error) {
	b := newPayload(kindResult, resultFixed+sealedLen(len(sum.Vector)))
	b = append(b, tgt[:]...)
	b = payload.AppendU32(b, len(sum.Vector))
	pt := make([]byte, 0, 8+8*len(sum.Vector))
	pt = payload.AppendF64(pt, sum.Weight)
	pt = payload.AppendF64s(pt, sum.Vector)
	ct, err := hpke.Seal(key, kdf(), aead(), b, pt)
	clear(pt)
	if err != nil {
		return nil, fmt.Errorf("tee: sealing the result: %w", err)
	}
	return append(b, ct...), nil
}

// Decrypt opens a result sealed to this target.
func (t *target) Decrypt(result []byte) (protect.Sum, error) {
	r, err := open(result, kindResult, "result")
	if err != nil {
		return protect.Sum{}, err
	}
	tgt := r.Hash()
	count := r.count()
	if r.Err == nil && len(r.B) != sealedLen(count) {
		r.Err = malformed("result", "declares %d values, whose sealing takes %d bytes, but %d bytes follow", count, sealedLen(count), len(r.B))
	}
	sealed := r.Take(sealedLen(count))
	if err := r.Done(); err != nil {
		return protect.Sum{}, err
	}
	if tgt != t.hash {
		return protect.Sum{}, foreign("result", "sealed to another target key")
	}
	info := result[:headerLen+resultFixed]
	pt, err := hpke.Open(t.priv, kdf(), aead(), info, sealed)
	if err != nil {
		return protect.Sum{}, malformed("result", "does not open with this target's key (altered)")
	}
	defer clear(pt)
	return decodeSum(compress.Scheme{}, pt, count, limitMaxParties*limitMaxAbs, "result")
}
