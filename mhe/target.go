package mhe

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Target is an RLWE key pair that aggregates are revealed to (the
// federation's group key): it implements protect.Target. It is not bound to
// a session.
type Target struct {
	sch *Scheme
	p   *Preset
	sk  *rlwe.SecretKey
	pk  *rlwe.PublicKey
	pub []byte
	id  [16]byte
}

var _ protect.Target = (*Target)(nil)

// NewTarget generates a fresh target key pair. The secret comes from rand;
// the public key's uniform and error polynomials from Lattigo's key
// generator (which cannot take an injected PRNG).
func (s *Scheme) NewTarget(rand io.Reader) (protect.Target, error) {
	if rand == nil {
		return nil, errors.New("mhe: no randomness source")
	}
	prng, err := keyedPRNG(rand)
	if err != nil {
		return nil, err
	}
	sk, err := sampleSecretKey(s.p.params.Parameters, prng)
	if err != nil {
		return nil, err
	}
	pk := rlwe.NewKeyGenerator(s.p.params).GenPublicKeyNew(sk)
	return s.newTarget(sk, pk), nil
}

func (s *Scheme) newTarget(sk *rlwe.SecretKey, pk *rlwe.PublicKey) *Target {
	p := s.p
	level := p.params.MaxLevel()
	h := p.header(kindTargetPublic, level, 0)
	pub := encode(h, p.packPoly(nil, pk.Value[0].Q, level), p.packPoly(nil, pk.Value[1].Q, level))
	return &Target{sch: s, p: p, sk: sk, pk: pk, pub: pub, id: targetID(pub)}
}

// targetID binds a result to the target public key it is encrypted under.
func targetID(pub []byte) [16]byte {
	h := sha256.New()
	h.Write([]byte("cloister/mhe target v1\x00"))
	h.Write(pub)
	return [16]byte(h.Sum(nil))
}

// readTargetPublic decodes Target.Public bytes.
func readTargetPublic(p *Preset, b []byte) (*rlwe.PublicKey, error) {
	level := p.params.MaxLevel()
	h, elems, err := parse("target public key", b, 2)
	if err != nil {
		return nil, err
	}
	if err := (expect{kind: kindTargetPublic, preset: p, level: level, degree: 0}).check("target public key", h); err != nil {
		return nil, err
	}
	if h.session != [16]byte{} || h.sender != noSender || h.round != 0 || h.aux != 0 || h.bind != [16]byte{} || len(elems) != 2 {
		return nil, malformed("target public key", "want two polynomials and zero session, sender, round, aux and binding")
	}
	pk := rlwe.NewPublicKey(p.params)
	for i := range 2 {
		if err := p.unpackPoly("target public key", elems[i], pk.Value[i].Q, level); err != nil {
			return nil, err
		}
	}
	return pk, nil
}

// Public returns the public key for RevealRequest.Target.
func (t *Target) Public() []byte { return append([]byte(nil), t.pub...) }

// MarshalBinary returns the secret and public key. Seal it.
func (t *Target) MarshalBinary() ([]byte, error) {
	p := t.p
	level := p.params.MaxLevel()
	h := p.header(kindTargetSecret, level, 0)
	return encode(h, p.packPoly(nil, t.sk.Value.Q, level), p.packPoly(nil, t.pk.Value[0].Q, level),
		p.packPoly(nil, t.pk.Value[1].Q, level)), nil
}

// LoadTarget restores a target from Target.MarshalBinary. It checks that
// the public key belongs to the secret key.
func (s *Scheme) LoadTarget(secret []byte) (protect.Target, error) {
	p := s.p
	level := p.params.MaxLevel()
	const what = "target secret key"
	h, elems, err := parse(what, secret, 3)
	if err != nil {
		return nil, err
	}
	if err := (expect{kind: kindTargetSecret, preset: p, level: level, degree: 0}).check(what, h); err != nil {
		return nil, err
	}
	if h.session != [16]byte{} || h.sender != noSender || h.round != 0 || h.aux != 0 || h.bind != [16]byte{} || len(elems) != 3 {
		return nil, malformed(what, "want three polynomials and zero session, sender, round, aux and binding")
	}
	sk := rlwe.NewSecretKey(p.params)
	pk := rlwe.NewPublicKey(p.params)
	for i, dst := range []ring.Poly{sk.Value.Q, pk.Value[0].Q, pk.Value[1].Q} {
		if err := p.unpackPoly(what, elems[i], dst, level); err != nil {
			return nil, err
		}
	}
	if !keyPairMatches(p, sk, pk) {
		return nil, malformed(what, "the public key does not belong to the secret key")
	}
	return s.newTarget(sk, pk), nil
}

// keyPairMatches checks that pk0 + pk1·s is a small error, as it is for a
// public key of s.
func keyPairMatches(p *Preset, sk *rlwe.SecretKey, pk *rlwe.PublicKey) bool {
	rq := p.params.RingQ()
	e := rq.NewPoly()
	rq.MulCoeffsMontgomery(pk.Value[1].Q, sk.Value.Q, e)
	rq.Add(e, pk.Value[0].Q, e)
	rq.IMForm(e, e)
	rq.INTT(e, e)
	q := rq.SubRings[0].Modulus
	bound := uint64(1 << 20)
	for _, c := range e.Coeffs[0] {
		if c > bound && q-c > bound {
			return false
		}
	}
	return true
}

// Decrypt decrypts a result of Helper.Open made for this target and
// decodes it with DecodePublic at Preset.Literal().DecodePrec fractional
// bits. It returns the d-vector and the summed weight.
func (t *Target) Decrypt(result []byte) (protect.Sum, error) {
	p := t.p
	const what = "result"
	h, elems, err := parse(what, result, maxCiphertexts)
	if err != nil {
		return protect.Sum{}, err
	}
	if err := (expect{kind: kindResult, preset: p, level: 0, degree: 1, bind: &t.id}).check(what, h); err != nil {
		return protect.Sum{}, err
	}
	if h.sender != noSender {
		return protect.Sum{}, malformed(what, "nonzero sender")
	}
	if int64(h.aux) > int64(p.lit.MaxDim) {
		return protect.Sum{}, malformed(what, "vector length %d above %d", h.aux, p.lit.MaxDim)
	}
	d := int(h.aux)
	k := p.ciphertexts(d)
	if len(elems) != k {
		return protect.Sum{}, malformed(what, "%d ciphertexts for %d values, want %d", len(elems), d, k)
	}
	if err := checkLengths(what, elems, p.ctSize(0)); err != nil {
		return protect.Sum{}, err
	}
	all := make([]float64, k*p.slots)
	type worker struct {
		dec *rlwe.Decryptor
		dcd *decoder
		ct  *rlwe.Ciphertext
		pt  *rlwe.Plaintext
	}
	ws := make([]*worker, t.sch.workersFor(k))
	for i := range ws {
		ws[i] = &worker{dec: rlwe.NewDecryptor(p.params, t.sk), dcd: p.newDecoder(), ct: p.newCiphertext(0), pt: ckks.NewPlaintext(p.params, 0)}
	}
	S := p.slots
	err = parallel(len(ws), k, func(w, i int) error {
		wk := ws[w]
		if err := p.unpackCiphertext(what, elems[i], wk.ct); err != nil {
			return err
		}
		wk.dec.Decrypt(wk.ct, wk.pt)
		return wk.dcd.decode(wk.pt, all[i*S:(i+1)*S])
	})
	if err != nil {
		return protect.Sum{}, err
	}
	return protect.Sum{Vector: fl.Vector(all[:d:d]), Weight: all[d]}, nil
}

// decoder turns a decrypted plaintext into Slots float64 values.
type decoder struct {
	p    *Preset
	ecd  *ckks.Encoder
	cplx []complex128
}

func (p *Preset) newDecoder() *decoder {
	d := &decoder{p: p, ecd: ckks.NewEncoder(p.params, 53)}
	if p.lit.Encoding == Slots && p.lit.Ring == ring.Standard {
		d.cplx = make([]complex128, p.params.MaxSlots())
	}
	return d
}

// decode applies DecodePublic with DecodePrec bits. Lattigo rounds only
// batched plaintexts; for the coefficient encoding we apply the same
// rounding, ⌊x·2^prec⌉/2^prec, ourselves.
func (d *decoder) decode(pt *rlwe.Plaintext, out []float64) error {
	prec := float64(d.p.lit.DecodePrec)
	if d.cplx != nil {
		if err := d.ecd.DecodePublic(pt, d.cplx, prec); err != nil {
			return fmt.Errorf("mhe: decoding: %w", err)
		}
		for j, c := range d.cplx {
			out[2*j], out[2*j+1] = real(c), imag(c)
		}
		return nil
	}
	if err := d.ecd.DecodePublic(pt, out, prec); err != nil {
		return fmt.Errorf("mhe: decoding: %w", err)
	}
	if !pt.IsBatched {
		s := math.Exp2(prec)
		for j, x := range out {
			out[j] = math.Round(x*s) / s
		}
	}
	return nil
}
