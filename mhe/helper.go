package mhe

import (
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Helper is the coordinator side of the scheme: it implements
// protect.Helper. It holds no secret. Its methods are deterministic
// functions of their inputs, so a node holding the same signed inputs can
// recompute (and check) any output.
type Helper struct {
	sch  *Scheme
	p    *Preset
	sess *session
}

var _ protect.Helper = (*Helper)(nil)

// Needed returns the threshold t.
func (hp *Helper) Needed() int { return hp.sess.t }

// Setup checks every announcement and public dealing and returns the setup:
// every member's collective-key share (multiparty.PublicKeyGenShare), in
// sorted member order. Each party recomputes the collective public key from
// them itself (PublicKeyGenProtocol.AggregateShares and GenPublicKey), so a
// coordinator cannot substitute a key, and checks that its own share is
// there unchanged. The setup has n·N·Σ bitlen(q_i)/8 bytes of shares
// (123 kB per member for Agg128).
func (hp *Helper) Setup(anns, publics map[fl.NodeID][]byte) ([]byte, error) {
	p, ss := hp.p, hp.sess
	nonces, err := readAnnouncements(p, ss, anns)
	if err != nil {
		return nil, err
	}
	bind := crsBinding(crsSeed(p, ss, nonces))
	level := p.params.MaxLevel()
	elems := make([][]byte, ss.n)
	poly := p.params.RingQ().NewPoly()
	for id, b := range publics {
		i, err := ss.member("public dealing", id)
		if err != nil {
			return nil, err
		}
		what := fmt.Sprintf("public dealing from %s", id)
		h, es, err := parse(what, b, 1)
		if err != nil {
			return nil, err
		}
		sender := uint16(i)
		if err := (expect{kind: kindPublicDealing, preset: p, session: &ss.hash, sender: &sender, level: level, degree: 0, bind: &bind}).check(what, h); err != nil {
			return nil, err
		}
		if h.round != 0 || h.aux != 0 || len(es) != 1 {
			return nil, malformed(what, "want one key share and zero round and aux")
		}
		if err := p.unpackPoly(what, es[0], poly, level); err != nil {
			return nil, err
		}
		elems[i] = es[0]
	}
	for i, m := range ss.sorted {
		if elems[i] == nil {
			return nil, fmt.Errorf("mhe: no public dealing from %s (%d of %d present)", m, len(publics), ss.n)
		}
	}
	h := p.header(kindSetup, level, 0)
	h.session, h.bind = ss.hash, bind
	return encode(h, elems...), nil
}

// Aggregate checks every update of round r (preset, ring degree, level,
// session, round, sender, vector length, sizes, residues) and returns their
// homomorphic sum, with a bitmap of the included members. At most
// MaxParties inputs (ErrRange).
func (hp *Helper) Aggregate(r fl.Round, protected map[fl.NodeID][]byte) ([]byte, error) {
	p, ss := hp.p, hp.sess
	if len(protected) == 0 {
		return nil, errors.New("mhe: nothing to aggregate")
	}
	if len(protected) > p.lit.MaxParties {
		return nil, fmt.Errorf("mhe: %d inputs, at most %d: %w", len(protected), p.lit.MaxParties, protect.ErrRange)
	}
	level := p.params.MaxLevel()
	size := p.polySize(level)
	round := uint64(r)
	inputs := make([][][]byte, 0, len(protected))
	bitmap := make([]byte, (ss.n+7)/8)
	dim := -1
	for _, id := range ss.sorted { // sorted: deterministic sums and errors
		b, ok := protected[id]
		if !ok {
			continue
		}
		i := ss.index[id]
		what := fmt.Sprintf("update from %s", id)
		h, elems, err := parse(what, b, maxCiphertexts)
		if err != nil {
			return nil, err
		}
		sender := uint16(i)
		if err := (expect{kind: kindUpdate, preset: p, session: &ss.hash, round: &round, sender: &sender, level: level, degree: 0}).check(what, h); err != nil {
			return nil, err
		}
		if h.bind != [16]byte{} {
			return nil, malformed(what, "nonzero binding")
		}
		if int64(h.aux) > int64(p.lit.MaxDim) {
			return nil, malformed(what, "vector length %d above %d", h.aux, p.lit.MaxDim)
		}
		if dim >= 0 && int(h.aux) != dim {
			return nil, mismatch(what, "vector length", dim, h.aux)
		}
		dim = int(h.aux)
		if k := p.ciphertexts(dim); len(elems) != k {
			return nil, malformed(what, "%d ciphertexts for %d values, want %d", len(elems), dim, k)
		}
		if err := checkLengths(what, elems, size); err != nil {
			return nil, err
		}
		inputs = append(inputs, elems)
		bitmap[i/8] |= 1 << (i % 8)
	}
	if len(inputs) != len(protected) {
		for id := range protected {
			if _, err := ss.member("update", id); err != nil {
				return nil, err
			}
		}
	}

	k := p.ciphertexts(dim)
	h := p.header(kindAggregate, level, 0)
	h.session, h.round, h.aux = ss.hash, round, uint32(dim)
	lengths := make([]int, k+1)
	lengths[0] = len(bitmap)
	for i := 1; i <= k; i++ {
		lengths[i] = size
	}
	out := appendHeader(make([]byte, 0, headerSize+4*(k+1)+len(bitmap)+k*size), h, lengths)
	out = append(out, bitmap...)
	body := out[len(out) : len(out)+k*size]
	out = out[:len(out)+k*size]

	type worker struct{ acc, tmp ring.Poly }
	ws := make([]*worker, hp.sch.workersFor(k))
	for i := range ws {
		ws[i] = &worker{acc: p.params.RingQ().NewPoly(), tmp: p.params.RingQ().NewPoly()}
	}
	ringQ := p.params.RingQ().AtLevel(level)
	// Stream: each worker sums ciphertext i over all inputs, so memory stays
	// at two polynomials per worker whatever the number of inputs. Each
	// input is c0 = −a·s_j + e_j + m_j in the NTT domain, all with the
	// round's a: the sum is the c0 of (Σc0, a) under Σ s_j.
	err := parallel(len(ws), k, func(w, i int) error {
		wk := ws[w]
		for j, in := range inputs {
			dst := wk.acc
			if j > 0 {
				dst = wk.tmp
			}
			if err := p.unpackPoly("update", in[i], dst, level); err != nil {
				return fmt.Errorf("mhe: input %d: %w", j, err)
			}
			if j > 0 {
				ringQ.Add(wk.acc, wk.tmp, wk.acc)
			}
		}
		p.packPoly(body[i*size:i*size:(i+1)*size], wk.acc, level)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Open checks the request and exactly one reveal share from each of
// req.Revealers, sums the shares (PublicKeySwitchProtocol.AggregateShares),
// applies them to the aggregate (KeySwitch), and rescales the result to the
// first prime: the result is a set of ciphertexts under req.Target. Fewer
// shares than the threshold give ErrNotEnoughShares.
func (hp *Helper) Open(req protect.RevealRequest, shares map[fl.NodeID][]byte) ([]byte, error) {
	p, ss := hp.p, hp.sess
	rv, err := readRequest(p, ss, req)
	if err != nil {
		return nil, err
	}
	isRevealer := make(map[int]bool, len(rv.revealers))
	for _, j := range rv.revealers {
		isRevealer[j] = true
	}
	for id := range shares {
		i, err := ss.member("reveal share", id)
		if err != nil {
			return nil, err
		}
		if !isRevealer[i] {
			return nil, fmt.Errorf("mhe: reveal share from %s, who is not a revealer: %w", id, protect.ErrForeign)
		}
	}
	if len(shares) < ss.t {
		return nil, fmt.Errorf("mhe: %d reveal shares, %d needed: %w", len(shares), ss.t, protect.ErrNotEnoughShares)
	}
	level := p.params.MaxLevel()
	size := p.ctSize(0)
	k := len(rv.cts)
	round := uint64(req.Round)
	in := make([][][]byte, len(rv.revealers))
	for x, j := range rv.revealers {
		id := ss.sorted[j]
		what := fmt.Sprintf("reveal share from %s", id)
		h, elems, err := parse(what, shares[id], maxCiphertexts)
		if err != nil {
			return nil, err
		}
		sender := uint16(j)
		if err := (expect{kind: kindRevealShare, preset: p, session: &ss.hash, round: &round, sender: &sender, level: 0, degree: 1, bind: &rv.bind}).check(what, h); err != nil {
			return nil, err
		}
		if h.aux != rv.dim || len(elems) != k {
			return nil, malformed(what, "%d shares for %d values, want %d", len(elems), h.aux, k)
		}
		if err := checkLengths(what, elems, size); err != nil {
			return nil, err
		}
		in[x] = elems
	}

	outSize := p.ctSize(0)
	h := p.header(kindResult, 0, 1)
	h.session, h.round, h.aux, h.bind = ss.hash, round, rv.dim, rv.targetID
	lengths := make([]int, k)
	for i := range lengths {
		lengths[i] = outSize
	}
	out := appendHeader(make([]byte, 0, headerSize+4*k+k*outSize), h, lengths)
	body := out[len(out) : len(out)+k*outSize]
	out = out[:len(out)+k*outSize]

	type worker struct {
		acc, tmp multiparty.PublicKeySwitchShare // level 0
		c0       ring.Poly                       // top level
		res      *rlwe.Ciphertext                // level 0
	}
	pcks, err := multiparty.NewPublicKeySwitchProtocol(p.params, p.flood)
	if err != nil {
		return nil, fmt.Errorf("mhe: key switch: %w", err)
	}
	ws := make([]*worker, hp.sch.workersFor(k))
	for i := range ws {
		ws[i] = &worker{acc: pcks.AllocateShare(0), tmp: pcks.AllocateShare(0), c0: p.params.RingQ().NewPoly(), res: p.newCiphertext(0)}
	}
	half := p.polySize(0)
	ring0 := p.params.RingQ().AtLevel(0)
	// Each share comes rescaled to the first prime (Reveal); the aggregate
	// Σc0 is rescaled here, and the switched ciphertext is
	// (Σc0' + Σh0', Σh1') under the target key, at level 0
	// (PublicKeySwitchProtocol.KeySwitch after the rescale).
	err = parallel(len(ws), k, func(w, i int) error {
		wk := ws[w]
		for x, elems := range in {
			dst := &wk.acc
			if x > 0 {
				dst = &wk.tmp
			}
			what := fmt.Sprintf("reveal share from %s", ss.sorted[rv.revealers[x]])
			if err := p.unpackPoly(what, elems[i][:half], dst.Value[0], 0); err != nil {
				return err
			}
			if err := p.unpackPoly(what, elems[i][half:], dst.Value[1], 0); err != nil {
				return err
			}
			if x > 0 {
				if err := pcks.AggregateShares(wk.acc, wk.tmp, &wk.acc); err != nil {
					return fmt.Errorf("mhe: %s: %w", what, err)
				}
			}
		}
		if err := p.unpackPoly("aggregate", rv.cts[i], wk.c0, level); err != nil {
			return err
		}
		p.rescale(wk.c0)
		ring0.Add(wk.c0, wk.acc.Value[0], wk.res.Value[0])
		wk.res.Value[1].CopyLvl(0, wk.acc.Value[1])
		p.packCiphertext(body[i*outSize:i*outSize:(i+1)*outSize], wk.res)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
