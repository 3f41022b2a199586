package mhe

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Reveal: a revealer's share of the included set's sum, the randomness
// precomputed for it, and the reveal request it reads.

// Reveal returns this party's share of the public key switch
// (multiparty.PublicKeySwitchProtocol) that moves req.Aggregate, the
// ciphertexts (Σc0, a) under s_S for the aggregate's included set S, to
// req.Target, flooded with noise of σ = Preset.FloodSigma() (floodSampler).
// The party adds the Shamir shares it holds of the
// members of S into its share of s_S and turns that into an additive share
// for exactly req.Revealers (multiparty.Combiner).
//
// Every input is validated first. Then (req.Round, req.Digest()) is recorded
// in l; if that fails (ErrRevealed for a second reveal in a round) Reveal
// returns the error and no share. Only then is the share computed, with the
// randomness Precompute made, if any (taken, used for this share and
// erased, whatever happens), and fresh randomness for the rest.
func (pa *Party) Reveal(req protect.RevealRequest, l protect.Ledger) ([]byte, error) {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	if pa.stage != stageReady {
		return nil, fmt.Errorf("mhe: Reveal: %w", protect.ErrNotReady)
	}
	if l == nil {
		return nil, errors.New("mhe: Reveal without a ledger")
	}
	p, ss := pa.p, pa.sess
	rv, err := readRequest(p, ss, req)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(rv.revealers, pa.self) {
		return nil, fmt.Errorf("mhe: %s is not among the revealers: %w", ss.sorted[pa.self], protect.ErrForeign)
	}
	// The set is the key: the share switches s_S for the S the aggregate
	// names, so S must be the set the runtime verified.
	named := make([]fl.NodeID, len(rv.included))
	for i, j := range rv.included {
		named[i] = ss.sorted[j]
	}
	if !req.InsecureTrustAggregateSet {
		want := slices.Sorted(slices.Values(req.Included))
		if len(want) == 0 {
			return nil, fmt.Errorf("mhe: Reveal without the included set the runtime verified (RevealRequest.Included): %w", protect.ErrRange)
		}
		if !slices.Equal(named, want) {
			return nil, fmt.Errorf("mhe: the aggregate is of the set %v, the included set is %v: %w", named, want, protect.ErrForeign)
		}
	}

	// Σc0's residues are range-checked before the ledger records the
	// reveal: a request it rejects records nothing (protect.Party), so one
	// malformed aggregate cannot spend the revealer's one reveal of the
	// round. The share itself reads only a.
	level := p.params.MaxLevel()
	scratch := p.params.RingQ().AtLevel(level).NewPoly()
	for _, c := range rv.cts {
		if err := p.unpackPoly("aggregate", c, scratch, level); err != nil {
			return nil, err
		}
	}
	if err := l.Record(req.Round, req.Digest()); err != nil {
		return nil, fmt.Errorf("mhe: recording the reveal of round %d: %w", req.Round, err)
	}
	pre := pa.pre
	pa.pre = nil
	defer pre.erase()

	thr := multiparty.NewThresholdizer(p.params)
	tsk := thr.AllocateThresholdSecretShare()
	for _, j := range rv.included {
		if err := thr.AggregateShares(tsk, pa.tshares[j], &tsk); err != nil {
			return nil, fmt.Errorf("mhe: combining the threshold shares of the included set: %w", err)
		}
	}
	points := make([]multiparty.ShamirPublicPoint, len(rv.revealers))
	for i, j := range rv.revealers {
		points[i] = point(j)
	}
	cmb := multiparty.NewCombiner(p.params, point(pa.self), points, ss.t)
	sk := rlwe.NewSecretKey(p.params)
	err = cmb.GenAdditiveShare(points, point(pa.self), tsk, sk)
	tsk.Q.Zero()
	if err != nil {
		return nil, fmt.Errorf("mhe: combining the threshold share: %w", err)
	}
	defer sk.Value.Q.Zero()

	k := len(rv.cts)
	size := p.ctSize(0)
	h := p.header(kindRevealShare, 0, 1)
	h.session, h.sender, h.round, h.aux, h.bind = ss.hash, uint16(pa.self), uint64(req.Round), rv.dim, rv.bind
	out, body := payload(h, k, size)
	ws, err := pa.revealWorkers(k)
	if err != nil {
		return nil, err
	}
	ringQ := p.params.RingQ().AtLevel(level)
	usable := pre.usable(rv.targetID)
	err = parallel(len(ws), k, func(w, i int) error {
		wk := ws[w]
		// The share reads only a (Value[1]); Σc0 was range-checked above.
		if err := p.uploadA(ss, req.Round, i, wk.ct.Value[1]); err != nil {
			return err
		}
		share := &wk.share
		if i < usable {
			// The precomputed share of the zero key: u·pk + flooding.
			// What is left is s·a, one product and one addition.
			share = &pre.shares[i]
			ringQ.MulCoeffsMontgomeryThenAdd(wk.ct.Value[1], sk.Value.Q, share.Value[0])
		} else {
			wk.ks.genShare(sk, rv.target, wk.ct, share)
		}
		dst := body[i*size : i*size : (i+1)*size]
		// Rescaled to the first prime, as Open rescales the switched
		// sum: half the bytes, and a public function of the share.
		p.rescale(share.Value[0])
		p.rescale(share.Value[1])
		dst = p.packPoly(dst, share.Value[0], 0)
		p.packPoly(dst, share.Value[1], 0)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// rescale divides pol (NTT domain, top level) by the primes above the first,
// rounding, as ckks.Evaluator.Rescale does; the result is pol's residues
// at level 0. Rescaling each share and the aggregate apart and adding them
// equals rescaling their sum up to one rounding per term (≤ 1/2 each,
// times the target key for the c1 parts): ≈ 2^-40 of the result's scale
// for t ≤ 1000, against the flooding's 2^-20.
func (p *Preset) rescale(pol ring.Poly) {
	for l := p.params.MaxLevel(); l > 0; l-- {
		p.params.RingQ().AtLevel(l).DivRoundByLastModulusNTT(pol, pol)
	}
}

// precomputed holds the part of one reveal's key-switch shares that does not
// depend on the aggregate: for each of the first len(shares) ciphertexts,
// Lattigo's PublicKeySwitchProtocol.GenShare with the zero secret key plus
// the flooding (keySwitcher.genShare), i.e. (u·pk0 + e0 + E, u·pk1 + e1)
// under the target key. Used by one
// Reveal, then erased; it is never marshaled, so a restarted party has none.
type precomputed struct {
	target [16]byte
	shares []multiparty.PublicKeySwitchShare
}

// usable returns how many leading ciphertexts pc covers for the target.
func (pc *precomputed) usable(target [16]byte) int {
	if pc == nil || pc.target != target {
		return 0
	}
	return len(pc.shares)
}

// erase zeroes every polynomial of pc.
func (pc *precomputed) erase() {
	if pc == nil {
		return
	}
	for i := range pc.shares {
		pc.shares[i].Value[0].Zero()
		pc.shares[i].Value[1].Zero()
	}
	pc.shares = nil
}

// DefaultPrecomputeLimit bounds the memory of Precompute: 64 MiB, the reveal
// randomness of 256 ciphertexts of Agg128 (2 million values).
const DefaultPrecomputeLimit = 64 << 20

// Precompute makes, ahead of the next Reveal, the randomness of its shares
// for vectors of d values revealed to target (Target.Public()): the
// encryption randomness of the switch and the flooding, which do not depend
// on the aggregate (protect.Precomputer). A runtime calls it while it waits
// for a round's reveal request, from another goroutine if it likes: the
// work runs outside the party's lock. At most the scheme's PrecomputeLimit
// bytes are kept; the ciphertexts beyond are computed in Reveal as before.
// The next Reveal takes what Precompute made, uses it for its share and
// erases it; a second Precompute replaces (and erases) the first. Nothing
// of it is persisted: Party.MarshalBinary leaves it out.
func (pa *Party) Precompute(target []byte, d int) error {
	return pa.precompute(target, d, pa.sch.precompute)
}

var _ protect.Precomputer = (*Party)(nil)

func (pa *Party) precompute(target []byte, d, limit int) error {
	pa.mu.Lock()
	ready := pa.stage == stageReady
	pa.mu.Unlock()
	if !ready {
		return fmt.Errorf("mhe: Precompute: %w", protect.ErrNotReady)
	}
	p := pa.p
	if d < 1 || d > p.lit.MaxDim {
		return fmt.Errorf("mhe: Precompute for %d values, 1..%d: %w", d, p.lit.MaxDim, protect.ErrRange)
	}
	pk, err := readTargetPublic(p, target)
	if err != nil {
		return fmt.Errorf("mhe: Precompute: %w", err)
	}
	level := p.params.MaxLevel()
	per := 2 * (level + 1) * p.params.N() * 8
	k := min(p.ciphertexts(d), limit/per)
	if k < 1 {
		return fmt.Errorf("mhe: Precompute limit of %d bytes is below one ciphertext's %d: %w", limit, per, protect.ErrRange)
	}
	pc := &precomputed{target: targetID(target), shares: make([]multiparty.PublicKeySwitchShare, k)}
	type worker struct {
		ks *keySwitcher
		ct *rlwe.Ciphertext
	}
	ws := make([]*worker, pa.sch.workersFor(k))
	pa.mu.Lock() // pa.rand is the party's: Reveal reads it under the lock
	for i := range ws {
		ks, err := p.newKeySwitcher(pa.rand)
		if err != nil {
			pa.mu.Unlock()
			return err
		}
		ws[i] = &worker{ks: ks, ct: p.newCiphertext(level)}
	}
	pa.mu.Unlock()
	zero := rlwe.NewSecretKey(p.params) // GenShare adds a·0: only u·pk and the noise remain
	err = parallel(len(ws), k, func(w, i int) error {
		pc.shares[i] = ws[w].ks.pcks.AllocateShare(level)
		ws[w].ks.genShare(zero, pk, ws[w].ct, &pc.shares[i])
		return nil
	})
	if err != nil {
		pc.erase()
		return err
	}
	pa.mu.Lock()
	defer pa.mu.Unlock()
	pa.pre.erase()
	pa.pre = pc
	return nil
}

// Precomputed reports how many ciphertexts' reveal randomness the party
// holds for target (0 if none): for tests and metrics.
func (pa *Party) Precomputed(target []byte) int {
	pa.mu.Lock()
	defer pa.mu.Unlock()
	return pa.pre.usable(targetID(target))
}

// request is a validated RevealRequest.
type request struct {
	revealers []int           // indices, in the order of req.Revealers
	included  []int           // the aggregate's included set S, ascending
	target    *rlwe.PublicKey // the key the result is switched to
	targetID  [16]byte        // binding of the result to the target
	dim       uint32          // vector length
	cts       [][]byte        // the aggregate's packed ciphertexts
	bind      [16]byte        // binding of the shares to the request
}

// readRequest validates every part of a reveal request.
func readRequest(p *Preset, ss *session, req protect.RevealRequest) (*request, error) {
	rv := &request{}
	var err error
	if rv.revealers, err = ss.revealers(req.Revealers); err != nil {
		return nil, err
	}
	if rv.target, err = readTargetPublic(p, req.Target); err != nil {
		return nil, fmt.Errorf("mhe: reveal request: %w", err)
	}
	rv.targetID = targetID(req.Target)
	level := p.params.MaxLevel()
	h, elems, err := parse("aggregate", req.Aggregate, maxCiphertexts+1)
	if err != nil {
		return nil, err
	}
	round := uint64(req.Round)
	if err := (expect{kind: kindAggregate, preset: p, session: &ss.hash, round: &round, level: level, degree: 0}).check("aggregate", h); err != nil {
		return nil, err
	}
	if h.sender != noSender || h.bind != [16]byte{} {
		return nil, malformed("aggregate", "nonzero sender or binding")
	}
	if rv.included, err = checkAggregateFrame(p, ss, h, elems); err != nil {
		return nil, err
	}
	rv.dim, rv.cts = h.aux, elems[1:]

	b := sha256.New()
	b.Write([]byte("cloister/mhe reveal v1\x00"))
	b.Write(ss.hash[:])
	b.Write(be64(round))
	d := req.Digest()
	b.Write(d[:])
	b.Write(rv.targetID[:])
	for _, j := range rv.revealers {
		b.Write(be64(uint64(j)))
	}
	copy(rv.bind[:], b.Sum(nil))
	return rv, nil
}

// checkAggregateFrame checks the included-member bitmap (element 0) and
// the ciphertext count and sizes (one polynomial each); it returns the
// indices of the summed inputs, ascending.
func checkAggregateFrame(p *Preset, ss *session, h header, elems [][]byte) ([]int, error) {
	if int64(h.aux) > int64(p.lit.MaxDim) {
		return nil, malformed("aggregate", "vector length %d above %d", h.aux, p.lit.MaxDim)
	}
	k := p.ciphertexts(int(h.aux))
	if len(elems) != k+1 {
		return nil, malformed("aggregate", "%d elements for a vector of %d values, want %d", len(elems), h.aux, k+1)
	}
	bm := elems[0]
	if len(bm) != (ss.n+7)/8 {
		return nil, malformed("aggregate", "member bitmap of %d bytes, want %d", len(bm), (ss.n+7)/8)
	}
	var included []int
	for i := range len(bm) * 8 {
		if bm[i/8]>>(i%8)&1 != 0 {
			if i >= ss.n {
				return nil, malformed("aggregate", "bitmap names member %d of %d", i, ss.n)
			}
			included = append(included, i)
		}
	}
	if len(included) < 1 || len(included) > p.lit.MaxParties {
		return nil, malformed("aggregate", "%d summed inputs", len(included))
	}
	if err := checkLengths("aggregate", elems[1:], p.polySize(p.params.MaxLevel())); err != nil {
		return nil, err
	}
	return included, nil
}

func be64(v uint64) []byte {
	return []byte{byte(v >> 56), byte(v >> 48), byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}
