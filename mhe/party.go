package mhe

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/ring/ringqp"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"
	"github.com/tuneinsight/lattigo/v6/utils/structs"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Party is the node side of the scheme: it implements protect.Party. Its
// methods are safe for concurrent use (they serialize).
type Party struct {
	sch  *Scheme
	p    *Preset
	sess *session
	self int
	rand io.Reader

	mu         sync.Mutex
	stage      stage
	nonce      [32]byte
	sk         *rlwe.SecretKey                // additive share s_i of the collective key
	crsSeed    [32]byte                       // from Deal
	ownPublic  [32]byte                       // SHA-256 of our public dealing's key share
	tshares    []multiparty.ShamirSecretShare // P_j(α_self): our Shamir share of every dealer j's s_j, in sorted member order
	pk         *rlwe.PublicKey                // the collective public key (only the baseline ProtectPublicKey uses it)
	protected  fl.Round                       // the newest round protected, if didProtect
	didProtect bool

	pre *precomputed // reveal randomness made ahead (Precompute), used once; never persisted

	pw []*protectWorker // kept across calls
	bw []*baselineWorker
	rw []*revealWorker
}

type stage uint8

const (
	stageFresh stage = iota // announced (or not yet)
	stageDealt              // Deal returned
	stageReady              // Accept succeeded
)

var _ protect.Party = (*Party)(nil)

// Announce returns this party's announcement: its 32-byte nonce, which
// enters the common reference string.
func (pa *Party) Announce() ([]byte, error) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	h := pa.p.header(kindAnnouncement, -1, -1)
	h.session, h.sender = pa.sess.hash, uint16(pa.self)
	return encode(h, pa.nonce[:]), nil
}

// readAnnouncements checks that anns holds exactly one valid announcement
// per member and returns the nonces in sorted member order.
func readAnnouncements(p *Preset, ss *session, anns map[fl.NodeID][]byte) ([][32]byte, error) {
	nonces := make([][32]byte, ss.n)
	for id, b := range anns {
		i, err := ss.member("announcement", id)
		if err != nil {
			return nil, err
		}
		what := fmt.Sprintf("announcement from %s", id)
		h, elems, err := parse(what, b, 1)
		if err != nil {
			return nil, err
		}
		sender := uint16(i)
		if err := (expect{kind: kindAnnouncement, preset: p, session: &ss.hash, sender: &sender, level: -1}).check(what, h); err != nil {
			return nil, err
		}
		if h.round != 0 || h.aux != 0 || h.bind != [16]byte{} || len(elems) != 1 || len(elems[0]) != 32 {
			return nil, malformed(what, "want one 32-byte nonce and zero round, aux and binding")
		}
		nonces[i] = [32]byte(elems[0])
	}
	if len(anns) != ss.n {
		for _, m := range ss.sorted {
			if _, ok := anns[m]; !ok {
				return nil, fmt.Errorf("mhe: no announcement from %s (%d of %d present)", m, len(anns), ss.n)
			}
		}
	}
	return nonces, nil
}

// Deal returns this party's setup contributions: the Public part is its
// share of the collective public key (multiparty.PublicKeyGenProtocol) on
// the common random polynomial derived from all the announcements. Private
// holds one Shamir share (threshold t) of this party's secret key share per
// member (multiparty.Thresholdizer), the dealer included. Lattigo's
// threshold scheme works for every 1 ≤ t ≤ n, so t = n uses it too (one
// code path; Combiner then yields the n-of-n additive shares). Both
// payloads are bound to this setup run (the CRS seed).
//
// THE PRIVATE PAYLOADS ARE SECRET KEY MATERIAL IN THE CLEAR. The runtime
// MUST seal each one to its recipient (HPKE) before it leaves the node; the
// coordinator only relays the sealed blobs. Deal may be called once.
func (pa *Party) Deal(anns map[fl.NodeID][]byte) (protect.Dealing, error) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	if pa.stage != stageFresh {
		return protect.Dealing{}, errors.New("mhe: Deal called twice: a second key share for the same CRS is never sent")
	}
	nonces, err := readAnnouncements(pa.p, pa.sess, anns)
	if err != nil {
		return protect.Dealing{}, err
	}
	if nonces[pa.self] != pa.nonce {
		return protect.Dealing{}, fmt.Errorf("mhe: our own announcement was altered: %w", protect.ErrForeign)
	}
	seed := crsSeed(pa.p, pa.sess, nonces)
	a, err := crp(pa.p, seed)
	if err != nil {
		return protect.Dealing{}, err
	}
	params := pa.p.params
	level := params.MaxLevel()

	ckg := multiparty.NewPublicKeyGenProtocol(params)
	share := ckg.AllocateShare()
	ckg.GenShare(pa.sk, a, &share)
	elem := pa.p.packPoly(nil, share.Value.Q, level)
	bind := crsBinding(seed)
	h := pa.p.header(kindPublicDealing, level, 0)
	h.session, h.sender, h.bind = pa.sess.hash, uint16(pa.self), bind
	d := protect.Dealing{Public: encode(h, elem)}

	// The Shamir polynomial S_i(X) = s_i + a_1 X + … + a_{t−1} X^{t−1},
	// its coefficients drawn from our injected randomness (as
	// Thresholdizer.GenShamirPolynomial does from its own PRNG).
	prng, err := keyedPRNG(pa.rand)
	if err != nil {
		return protect.Dealing{}, err
	}
	us := ringqp.NewUniformSampler(prng, *params.RingQP())
	coeffs := make([]ringqp.Poly, pa.sess.t)
	coeffs[0] = *pa.sk.Value.CopyNew()
	for i := 1; i < len(coeffs); i++ {
		coeffs[i] = params.RingQP().NewPoly()
		us.Read(coeffs[i])
	}
	poly := multiparty.ShamirPolynomial{Value: structs.Vector[ringqp.Poly](coeffs)}
	thr := multiparty.NewThresholdizer(params)
	sh := thr.AllocateThresholdSecretShare()
	d.Private = make(map[fl.NodeID][]byte, pa.sess.n)
	for j, m := range pa.sess.sorted {
		thr.GenShamirSecretShare(point(j), poly, &sh)
		h := pa.p.header(kindPrivateDealing, level, 0)
		h.session, h.sender, h.aux, h.bind = pa.sess.hash, uint16(pa.self), uint32(j), bind
		d.Private[m] = encode(h, pa.p.packPoly(nil, sh.Q, level))
	}
	for i := range coeffs {
		coeffs[i].Q.Zero()
	}
	pa.crsSeed = seed
	pa.ownPublic = sha256.Sum256(elem)
	pa.stage = stageDealt
	return d, nil
}

// Accept completes the setup. It recomputes the collective public key from
// every member's key share in setup (checking that ours is there, unchanged)
// and keeps the Shamir share dealt to it by each member, per dealer (a reveal
// combines those of the included set).
// private must hold exactly one payload per member, made in this setup run.
func (pa *Party) Accept(setup []byte, private map[fl.NodeID][]byte) error {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	switch pa.stage {
	case stageFresh:
		return fmt.Errorf("mhe: Accept before Deal: %w", protect.ErrNotReady)
	case stageReady:
		return errors.New("mhe: Accept called twice")
	}
	p, params, level := pa.p, pa.p.params, pa.p.params.MaxLevel()
	shares, err := readSetup(p, pa.sess, setup, crsBinding(pa.crsSeed))
	if err != nil {
		return err
	}
	if sha256.Sum256(shares[pa.self]) != pa.ownPublic {
		return fmt.Errorf("mhe: setup does not carry our key share: %w", protect.ErrForeign)
	}
	ckg := multiparty.NewPublicKeyGenProtocol(params)
	sum, tmp := ckg.AllocateShare(), ckg.AllocateShare()
	for i, b := range shares {
		if err := p.unpackPoly("setup", b, tmp.Value.Q, level); err != nil {
			return err
		}
		if i == 0 {
			sum.Value.Copy(tmp.Value)
		} else {
			ckg.AggregateShares(sum, tmp, &sum)
		}
	}
	a, err := crp(p, pa.crsSeed)
	if err != nil {
		return err
	}
	pk := rlwe.NewPublicKey(params)
	ckg.GenPublicKey(sum, a, pk)

	bind := crsBinding(pa.crsSeed)
	thr := multiparty.NewThresholdizer(params)
	tshares := make([]multiparty.ShamirSecretShare, pa.sess.n)
	for id, b := range private {
		i, err := pa.sess.member("private dealing", id)
		if err != nil {
			return err
		}
		what := fmt.Sprintf("private dealing from %s", id)
		h, elems, err := parse(what, b, 1)
		if err != nil {
			return err
		}
		sender := uint16(i)
		if err := (expect{kind: kindPrivateDealing, preset: p, session: &pa.sess.hash, sender: &sender, level: level, degree: 0}).check(what, h); err != nil {
			return err
		}
		if h.aux != uint32(pa.self) {
			return mismatch(what, "recipient index", pa.self, h.aux)
		}
		if h.bind != bind {
			return mismatch(what, "setup run (CRS binding)", fmt.Sprintf("%x", bind[:4]), fmt.Sprintf("%x", h.bind[:4]))
		}
		if h.round != 0 || len(elems) != 1 {
			return malformed(what, "want one share and zero round")
		}
		sh := thr.AllocateThresholdSecretShare()
		if err := p.unpackPoly(what, elems[0], sh.Q, level); err != nil {
			return err
		}
		tshares[i] = sh
	}
	if len(private) != pa.sess.n {
		for _, m := range pa.sess.sorted {
			if _, ok := private[m]; !ok {
				return fmt.Errorf("mhe: no private dealing from %s (%d of %d present)", m, len(private), pa.sess.n)
			}
		}
	}
	// Each dealer's share is kept on its own: a reveal combines those of
	// the round's included set (see Reveal).
	pa.pk, pa.tshares, pa.stage = pk, tshares, stageReady
	return nil
}

// readSetup returns the n key shares of a setup payload, in sorted member
// order, after checking its framing and sizes.
func readSetup(p *Preset, ss *session, b []byte, bind [16]byte) ([][]byte, error) {
	level := p.params.MaxLevel()
	h, elems, err := parse("setup", b, ss.n)
	if err != nil {
		return nil, err
	}
	if err := (expect{kind: kindSetup, preset: p, session: &ss.hash, level: level, degree: 0, bind: &bind}).check("setup", h); err != nil {
		return nil, err
	}
	if h.sender != noSender || h.round != 0 || h.aux != 0 {
		return nil, malformed("setup", "nonzero sender, round or aux")
	}
	if len(elems) != ss.n {
		return nil, malformed("setup", "%d key shares for %d members", len(elems), ss.n)
	}
	if err := checkLengths("setup", elems, p.polySize(level)); err != nil {
		return nil, err
	}
	return elems, nil
}

// Protect encrypts v ‖ weight for round r under this party's own key share
// s_i, as one polynomial per ciphertext: c0 = −a·s_i + e + m, with the
// round's common polynomial a (uploadA: fixed by the session, the round and
// the ciphertext's index, so the coordinator's sum over the included set S
// is (Σc0, a) under s_S = Σ_{i∈S} s_i) and fresh Gaussian noise e from the
// party's secret randomness. Value i goes to slot i mod Slots of ciphertext
// i / Slots, the weight to slot d. It refuses values that are not finite or
// exceed MaxAbs, and weights outside [0, MaxAbs] (ErrRange), and a round at
// or below one it already protected (protect.ErrProtected): a second upload under
// the same a would disclose the difference of the two updates.
func (pa *Party) Protect(r fl.Round, v fl.Vector, weight float64) ([]byte, error) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	if err := pa.checkProtect(v, weight); err != nil {
		return nil, err
	}
	if pa.didProtect && r <= pa.protected {
		return nil, fmt.Errorf("mhe: Protect for round %d, this party protected round %d (a second upload under the round's common polynomial would disclose the difference): %w", r, pa.protected, protect.ErrProtected)
	}
	p := pa.p
	h := p.header(kindUpdate, p.params.MaxLevel(), 0)
	h.session, h.sender, h.round, h.aux = pa.sess.hash, uint16(pa.self), uint64(r), uint32(len(v))
	out, err := pa.encryptSecret(h, r, v, weight)
	if err != nil {
		return nil, err
	}
	pa.protected, pa.didProtect = r, true
	return out, nil
}

// checkProtect checks the stage and the inputs of a Protect.
func (pa *Party) checkProtect(v fl.Vector, weight float64) error {
	if pa.stage != stageReady {
		return fmt.Errorf("mhe: Protect: %w", protect.ErrNotReady)
	}
	p := pa.p
	if len(v) > p.lit.MaxDim {
		return fmt.Errorf("mhe: vector of %d values, at most %d: %w", len(v), p.lit.MaxDim, protect.ErrRange)
	}
	for i, x := range v {
		if !(math.Abs(x) <= p.lit.MaxAbs) {
			return fmt.Errorf("mhe: value %d is %v, outside ±%v: %w", i, x, p.lit.MaxAbs, protect.ErrRange)
		}
	}
	if !(weight >= 0 && weight <= p.lit.MaxAbs) {
		return fmt.Errorf("mhe: weight %v outside [0, %v]: %w", weight, p.lit.MaxAbs, protect.ErrRange)
	}
	return nil
}

// ProtectPublicKey is the wire version 1 upload, kept as a benchmark
// baseline only (mhebench): v ‖ weight encrypted under the collective
// public key, two polynomials per ciphertext. Helper.Aggregate refuses its
// payloads (degree 1); it does not count as the round's upload.
func (pa *Party) ProtectPublicKey(r fl.Round, v fl.Vector, weight float64) ([]byte, error) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	if err := pa.checkProtect(v, weight); err != nil {
		return nil, err
	}
	p := pa.p
	h := p.header(kindUpdate, p.params.MaxLevel(), 1)
	h.session, h.sender, h.round, h.aux = pa.sess.hash, uint16(pa.self), uint64(r), uint32(len(v))
	return pa.encryptPublic(h, v, weight)
}

// uploadA writes into a the common polynomial of ciphertext chunk of round
// r's uploads, in the NTT domain: Lattigo's uniform sampler on AES-256-CTR
// keyed with H(session hash ‖ round ‖ chunk) (ctrPRNG). The session
// hash covers the preset, the group ID (the session and key epoch for the
// round engine), the threshold and the members, so a never repeats for
// one key share s_i and round.
func (p *Preset) uploadA(ss *session, r fl.Round, chunk int, a ring.Poly) error {
	h := sha256.New()
	h.Write([]byte("cloister/mhe upload a v2\x00"))
	h.Write(ss.hash[:])
	h.Write(be64(uint64(r)))
	h.Write(be64(uint64(chunk)))
	prng, err := newCTRPRNG([32]byte(h.Sum(nil)))
	if err != nil {
		return err
	}
	ring.NewUniformSampler(prng, p.params.RingQ()).AtLevel(p.params.MaxLevel()).Read(a)
	return nil
}

// protectWorker holds one worker's Lattigo objects for Protect; they are
// not safe for concurrent use. A party keeps them across calls (its methods
// are serialized).
type protectWorker struct {
	enc   *encoder
	xe    ring.Sampler // the encryption noise, on AES-CTR keyed from the party's randomness
	a, c0 ring.Poly
}

// baselineWorker holds one worker's objects for ProtectPublicKey.
type baselineWorker struct {
	enc  *encoder
	encr *rlwe.Encryptor
	ct   *rlwe.Ciphertext
}

// revealWorker holds one worker's Lattigo objects for Reveal.
type revealWorker struct {
	ks    *keySwitcher
	ct    *rlwe.Ciphertext
	share multiparty.PublicKeySwitchShare
}

// protectWorkers returns at least n workers (up to the scheme's limit).
func (pa *Party) protectWorkers(n int) ([]*protectWorker, error) {
	p := pa.p
	for len(pa.pw) < pa.sch.workersFor(n) {
		var key [32]byte
		if _, err := io.ReadFull(pa.rand, key[:]); err != nil {
			return nil, fmt.Errorf("mhe: reading randomness: %w", err)
		}
		prng, err := newCTRPRNG(key)
		if err != nil {
			return nil, err
		}
		xe, err := ring.NewSampler(prng, p.params.RingQ(), p.params.Xe(), false)
		if err != nil {
			return nil, fmt.Errorf("mhe: noise sampler: %w", err)
		}
		pa.pw = append(pa.pw, &protectWorker{enc: p.newEncoder(), xe: xe, a: p.params.RingQ().NewPoly(), c0: p.params.RingQ().NewPoly()})
	}
	return pa.pw[:pa.sch.workersFor(n)], nil
}

func (pa *Party) baselineWorkers(n int) []*baselineWorker {
	p := pa.p
	for len(pa.bw) < pa.sch.workersFor(n) {
		pa.bw = append(pa.bw, &baselineWorker{enc: p.newEncoder(), encr: rlwe.NewEncryptor(p.params, pa.pk), ct: p.newUpdateCiphertext(p.params.MaxLevel())})
	}
	return pa.bw[:pa.sch.workersFor(n)]
}

func (pa *Party) revealWorkers(n int) ([]*revealWorker, error) {
	p := pa.p
	level := p.params.MaxLevel()
	for len(pa.rw) < pa.sch.workersFor(n) {
		ks, err := p.newKeySwitcher(pa.rand)
		if err != nil {
			return nil, err
		}
		pa.rw = append(pa.rw, &revealWorker{ks: ks, ct: p.newCiphertext(level), share: ks.pcks.AllocateShare(level)})
	}
	return pa.rw[:pa.sch.workersFor(n)], nil
}

// payload allocates a payload of k elements of size bytes each after the
// header h, and returns it with its body.
func payload(h header, k, size int) (out, body []byte) {
	lengths := make([]int, k)
	for i := range lengths {
		lengths[i] = size
	}
	out = appendHeader(make([]byte, 0, headerSize+4*k+k*size), h, lengths)
	body = out[len(out) : len(out)+k*size]
	return out[:len(out)+k*size], body
}

// fill copies the values of chunk i of v ‖ weight into vals.
func (p *Preset) fill(vals []float64, v fl.Vector, weight float64, i int) {
	S := p.slots
	clear(vals)
	lo, hi := i*S, min((i+1)*S, len(v))
	if lo < hi {
		copy(vals, v[lo:hi])
	}
	if d := len(v); d >= lo && d < lo+S {
		vals[d-lo] = weight
	}
}

// encryptSecret encrypts v ‖ weight under the party's key share, one
// polynomial per ciphertext, in the NTT domain: c0 = NTT(m + e) − a·s_i.
// One NTT per ciphertext (the public-key encryption took three), no
// ternary u, one Gaussian instead of two; the helper adds the uploads as
// they are.
func (pa *Party) encryptSecret(h header, r fl.Round, v fl.Vector, weight float64) ([]byte, error) {
	p := pa.p
	level := p.params.MaxLevel()
	ringQ := p.params.RingQ().AtLevel(level)
	k := p.ciphertexts(len(v))
	size := p.polySize(level)
	out, body := payload(h, k, size)
	ws, err := pa.protectWorkers(k)
	if err != nil {
		return nil, err
	}
	err = parallel(len(ws), k, func(w, i int) error {
		wk := ws[w]
		p.fill(wk.enc.vals, v, weight, i)
		pt, err := wk.enc.encode(level, false)
		if err != nil {
			return err
		}
		wk.xe.AtLevel(level).Read(wk.c0)
		ringQ.Add(wk.c0, pt.Value, wk.c0)
		ringQ.NTT(wk.c0, wk.c0)
		if err := p.uploadA(pa.sess, r, i, wk.a); err != nil {
			return err
		}
		ringQ.MulCoeffsMontgomeryThenSub(wk.a, pa.sk.Value.Q, wk.c0)
		p.packPoly(body[i*size:i*size:(i+1)*size], wk.c0, level)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// encryptPublic encrypts v ‖ weight under the collective public key (the
// wire version 1 upload, ProtectPublicKey), in the coefficient domain:
// three NTTs per ciphertext (u, and back for u·pk0 and u·pk1).
func (pa *Party) encryptPublic(h header, v fl.Vector, weight float64) ([]byte, error) {
	p := pa.p
	level := p.params.MaxLevel()
	k := p.ciphertexts(len(v))
	size := p.ctSize(level)
	out, body := payload(h, k, size)
	ws := pa.baselineWorkers(k)
	err := parallel(len(ws), k, func(w, i int) error {
		wk := ws[w]
		p.fill(wk.enc.vals, v, weight, i)
		pt, err := wk.enc.encode(level, false)
		if err != nil {
			return err
		}
		if err := wk.encr.Encrypt(pt, wk.ct); err != nil {
			return fmt.Errorf("mhe: encrypting: %w", err)
		}
		p.packCiphertext(body[i*size:i*size:(i+1)*size], wk.ct)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// encoder turns Slots float64 values into a plaintext at scale Δ.
type encoder struct {
	p    *Preset
	ecd  *ckks.Encoder
	pt   *rlwe.Plaintext
	vals []float64
	cplx []complex128
}

func (p *Preset) newEncoder() *encoder {
	e := &encoder{p: p, ecd: ckks.NewEncoder(p.params, 53), vals: make([]float64, p.slots)}
	e.pt = ckks.NewPlaintext(p.params, p.params.MaxLevel())
	if p.lit.Encoding == Slots && p.lit.Ring == ring.Standard {
		e.cplx = make([]complex128, p.params.MaxSlots())
	}
	return e
}

// encode encodes e.vals at scale 2^encodeLogScale, where MaxAbs·scale fits
// a uint64 (Lattigo's fast path), then multiplies by the integer
// 2^(LogScale−encodeLogScale) to reach Δ. With ntt the plaintext is in the
// NTT domain, as the preset's aggregates and results are; without, it stays
// in the coefficient domain, as Protect's updates are (see encryptVector).
func (e *encoder) encode(level int, ntt bool) (*rlwe.Plaintext, error) {
	p := e.p
	pt := e.pt
	pt.Resize(0, level)
	pt.IsNTT = ntt
	pt.IsBatched = p.lit.Encoding == Slots
	pt.LogDimensions = p.params.LogMaxDimensions()
	pt.Scale = rlwe.NewScale(math.Exp2(float64(p.encodeLogScale)))
	var err error
	if e.cplx != nil {
		for j := range e.cplx {
			e.cplx[j] = complex(e.vals[2*j], e.vals[2*j+1])
		}
		err = e.ecd.Encode(e.cplx, pt)
	} else {
		err = e.ecd.Encode(e.vals, pt)
	}
	if err != nil {
		return nil, fmt.Errorf("mhe: encoding: %w", err)
	}
	if step := p.lit.LogScale - p.encodeLogScale; step > 0 {
		p.params.RingQ().AtLevel(level).MulScalar(pt.Value, uint64(1)<<step, pt.Value)
	}
	pt.Scale = rlwe.NewScale(math.Exp2(float64(p.lit.LogScale)))
	return pt, nil
}
