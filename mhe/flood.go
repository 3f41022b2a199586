package mhe

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
)

// The flooding noise of a reveal share, sampled so that it smudges at every
// scale (README.md, "Sampling the flooding").
//
// Lattigo's GaussianSampler draws a standard normal by the ziggurat method
// from 31 random bits (x = j·w_i, j < 2^31) and scales it by σ: its
// samples lie on a lattice of spacing about 2^-22·σ, coarser than 1 as
// soon as σ exceeds about 2^22. Above 2^53 (with a bound above 2^64) it
// fills the low bits of |x·σ| with a uniform draw below |x·σ|/2^53, which
// covers about 2^-22 of each gap: at σ = 2^79 the noise is a comb of teeth
// about 2^26 wide, about 2^48 apart on average. The flooding argument needs
// the distribution of E and of E + δ to be close for every small δ, and a
// shift by δ moves a fraction δ/2^26 of each tooth into a gap: a
// statistical distance of about 2^-12.7 per coefficient for δ = 2^10 (the
// key-dependent noise of 1000 uploads), not the 2^-70 of a Gaussian of the
// same σ.
//
// floodSampler draws E = G·2^k + U instead: G a discrete Gaussian of σ_G =
// σ/2^k between 2^8 and 2^9 (from Lattigo's sampler, at a σ where its
// lattice is 2^-14 fine), U uniform over the 2^k integers in
// [−2^(k−1), 2^(k−1)) (from AES-256-CTR, in chunks of at most 40 bits). E's density is a
// staircase of steps 2^k wide following a Gaussian of σ: a shift by δ <
// 2^k moves δ/2^k of each step into its neighbour, so the statistical
// distance is δ/2^k·Σ_g|P(g)−P(g−1)|/2 ≈ δ/(σ·√(2π)), the Gaussian's own
// bound (the sampler's 2^-14 roughness adds about 2^-14·δ/2^k, below 1/16
// of it). It is also about three times faster than Lattigo's
// arbitrary-precision path, which allocated big integers for every
// coefficient.

// floodGaussianLog2 is log2 σ_G at least: G's standard deviation lies in
// [2^floodGaussianLog2, 2^(floodGaussianLog2+1)).
const floodGaussianLog2 = 8

// floodChunk is the widest uniform chunk of U, so that a chunk and its
// centring fit any 60-bit prime.
const floodChunk = 40

// floodSampler draws flooding noise into polynomials of one ring. Not safe
// for concurrent use: each worker has its own.
type floodSampler struct {
	ringQ  *ring.Ring
	g      ring.Sampler // G, Lattigo's discrete Gaussian of σ_G, coefficients mod q_i
	chunks []int        // the widths of U's chunks, most significant first; none: E = G
	prng   io.Reader    // the uniform chunks
	buf    []byte
	low    ring.Poly
}

// floodSplit returns k and σ_G for a flooding σ = 2^logSigma: k = 0 (E =
// G, Lattigo's sampler alone) only when σ is below 2^(floodGaussianLog2+1),
// where its lattice is fine.
func floodSplit(logSigma float64) (k int, sigmaG float64) {
	if logSigma < floodGaussianLog2+1 {
		return 0, math.Exp2(logSigma)
	}
	k = int(math.Floor(logSigma)) - floodGaussianLog2
	return k, math.Exp2(logSigma - float64(k))
}

// newFloodSampler returns a sampler of flooding noise of σ = 2^logSigma
// (bounded at 16σ, as the preset's room check assumes) for polynomials of
// ringQ, drawing its randomness from prng (a CSPRNG the caller keys).
func newFloodSampler(ringQ *ring.Ring, logSigma float64, prng io.Reader) (*floodSampler, error) {
	k, sigmaG := floodSplit(logSigma)
	g, err := ring.NewSampler(prng, ringQ, ring.DiscreteGaussian{Sigma: sigmaG, Bound: 16 * sigmaG}, false)
	if err != nil {
		return nil, fmt.Errorf("mhe: flooding sampler: %w", err)
	}
	f := &floodSampler{ringQ: ringQ, g: g, prng: prng, low: ringQ.NewPoly()}
	for k > 0 {
		c := min(k, floodChunk)
		f.chunks = append(f.chunks, c)
		k -= c
	}
	f.buf = make([]byte, 8*ringQ.N())
	return f, nil
}

// read draws E into pol (coefficient domain, standard form, pol's level
// at most the ring's).
func (f *floodSampler) read(pol ring.Poly) {
	r := f.ringQ.AtLevel(pol.Level())
	f.g.AtLevel(pol.Level()).Read(pol)
	for n, c := range f.chunks {
		// pol = pol·2^c + u − h, u uniform below 2^c, h = 2^(c−1) for the
		// first chunk (so that U = Σ chunks lies in [−2^(k−1), 2^(k−1)))
		// and 0 for the others.
		for i, s := range r.SubRings[:r.Level()+1] {
			s.MulScalarMontgomery(pol.Coeffs[i], ring.MForm(uint64(1)<<c%s.Modulus, s.Modulus, s.BRedConstant), pol.Coeffs[i])
		}
		if _, err := io.ReadFull(f.prng, f.buf); err != nil {
			panic(fmt.Sprintf("mhe: flooding randomness: %v", err)) // AES-CTR does not fail
		}
		mask, half := uint64(1)<<c-1, int64(0)
		if n == 0 {
			half = int64(1) << (c - 1)
		}
		for j := range r.N() {
			v := int64(leUint64(f.buf[8*j:])&mask) - half
			for i, s := range r.SubRings[:r.Level()+1] {
				q := s.Modulus
				switch x := uint64(-v) % q; {
				case v >= 0:
					f.low.Coeffs[i][j] = uint64(v) % q
				case x == 0:
					f.low.Coeffs[i][j] = 0
				default:
					f.low.Coeffs[i][j] = q - x
				}
			}
		}
		r.Add(pol, f.low, pol)
	}
}

func leUint64(b []byte) uint64 {
	return binary.LittleEndian.Uint64(b)
}

// keySwitcher is one worker's key-switch protocol, whose GenShare adds
// only the encryption noise of the parameters, and its flooding sampler.
type keySwitcher struct {
	pcks  multiparty.PublicKeySwitchProtocol
	flood *floodSampler
	noise ring.Poly // scratch for E
}

// newKeySwitcher returns a key switcher keyed from rand.
func (p *Preset) newKeySwitcher(rand io.Reader) (*keySwitcher, error) {
	xe, ok := p.params.Xe().(ring.DiscreteGaussian)
	if !ok {
		return nil, fmt.Errorf("mhe: key switch: encryption noise %T is not a discrete Gaussian", p.params.Xe())
	}
	pcks, err := multiparty.NewPublicKeySwitchProtocol(p.params, xe)
	if err != nil {
		return nil, fmt.Errorf("mhe: key switch: %w", err)
	}
	var key [32]byte
	if _, err := io.ReadFull(rand, key[:]); err != nil {
		return nil, fmt.Errorf("mhe: reading randomness: %w", err)
	}
	prng, err := newCTRPRNG(key)
	clear(key[:])
	if err != nil {
		return nil, err
	}
	f, err := newFloodSampler(p.params.RingQ(), p.lit.LogFlood, prng)
	if err != nil {
		return nil, err
	}
	return &keySwitcher{pcks: pcks, flood: f, noise: p.params.RingQ().NewPoly()}, nil
}

// genShare is multiparty.PublicKeySwitchProtocol.GenShare with the
// flooding drawn by floodSampler: (s·c1 + u·pk0 + e0 + E, u·pk1 + e1) for
// an NTT-domain ct at the share's level.
func (ks *keySwitcher) genShare(sk *rlwe.SecretKey, pk *rlwe.PublicKey, ct *rlwe.Ciphertext, share *multiparty.PublicKeySwitchShare) {
	ks.pcks.GenShare(sk, pk, ct, share)
	level := share.Value[0].Level()
	r := ks.flood.ringQ.AtLevel(level)
	e := ks.noise
	if e.Level() != level {
		e = r.NewPoly()
	}
	ks.flood.read(e)
	r.NTT(e, e)
	r.Add(share.Value[0], e, share.Value[0])
}
