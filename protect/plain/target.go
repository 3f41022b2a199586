package plain

import "github.com/cloisterfl/cloister/protect"

// target is an identifier posing as a key pair: results are bound to it,
// not hidden from anyone.
type target struct {
	id [idLen]byte
}

// Public returns the target's public key.
func (t *target) Public() []byte {
	b := newPayload(kindTargetPublic, targetLen)
	return append(b, t.id[:]...)
}

// MarshalBinary returns the target's "secret" key, which is its identifier.
func (t *target) MarshalBinary() ([]byte, error) {
	b := newPayload(kindTargetSecret, targetLen)
	return append(b, t.id[:]...), nil
}

// Decrypt reads a result opened to this target.
func (t *target) Decrypt(result []byte) (protect.Sum, error) {
	const what = "result"
	r, err := open(result, kindResult, what)
	if err != nil {
		return protect.Sum{}, err
	}
	tgt := r.Hash()
	count := r.count()
	weight := r.weight(limitMaxParties * limitMaxAbs)
	raw := r.values(count, limitMaxParties*limitMaxAbs)
	if err := r.Done(); err != nil {
		return protect.Sum{}, err
	}
	if want, _ := targetHash(t.Public()); tgt != want {
		return protect.Sum{}, foreign(what, "opened to another target key")
	}
	return protect.Sum{Vector: decodeValues(raw), Weight: weight}, nil
}

// targetHash checks a target public key and returns the hash that shares and
// results bind.
func targetHash(public []byte) ([hashLen]byte, error) {
	r, err := openFixed(public, kindTargetPublic, targetLen, "target public key")
	if err != nil {
		return [hashLen]byte{}, err
	}
	r.Take(idLen)
	if err := r.Done(); err != nil {
		return [hashLen]byte{}, err
	}
	return hashOf("target", public), nil
}
