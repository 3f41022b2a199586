package mhe

import (
	"crypto/rand"
	"math"
	"math/big"
	"testing"

	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/utils/sampling"
)

// floodIntegers draws polys polynomials with read over Agg128's ring and
// returns their coefficients as integers (CRT of the two primes, centred).
func floodIntegers(t *testing.T, polys int, read func(ring.Poly)) []*big.Int {
	t.Helper()
	r := Agg128.params.RingQ()
	if r.Level() != 1 {
		t.Fatalf("Agg128 has %d primes, the test reconstructs from 2", r.Level()+1)
	}
	q0, q1 := new(big.Int).SetUint64(r.SubRings[0].Modulus), new(big.Int).SetUint64(r.SubRings[1].Modulus)
	q := new(big.Int).Mul(q0, q1)
	half := new(big.Int).Rsh(q, 1)
	inv := new(big.Int).ModInverse(q0, q1)
	pol := r.NewPoly()
	var out []*big.Int
	for range polys {
		read(pol)
		for j := range r.N() {
			// E = r0 + q0·((r1 − r0)·q0⁻¹ mod q1), then into (−Q/2, Q/2].
			r0, r1 := new(big.Int).SetUint64(pol.Coeffs[0][j]), new(big.Int).SetUint64(pol.Coeffs[1][j])
			e := new(big.Int).Sub(r1, r0)
			e.Mul(e, inv).Mod(e, q1).Mul(e, q0).Add(e, r0)
			if e.Cmp(half) > 0 {
				e.Sub(e, q)
			}
			out = append(out, e)
		}
	}
	return out
}

// collisions counts the pairs of samples equal after dropping their low
// bits.
func collisions(es []*big.Int, low uint) int {
	seen := make(map[string]int, len(es))
	n := 0
	for _, e := range es {
		k := new(big.Int).Rsh(e, low).String()
		n += seen[k]
		seen[k]++
	}
	return n
}

// TestFloodSampler: the flooding noise has the preset's σ, mean 0 and
// bound, its low bits are uniform, and it is smooth at every scale: among
// 2^19 samples of σ = 2^79 no two agree above their 30 low bits (a
// Gaussian expects 2^-13 such pairs). Lattigo's own sampler at that σ,
// whose samples are a comb of teeth about 2^26 wide (flood.go), gives
// dozens: the reason floodSampler exists.
func TestFloodSampler(t *testing.T) {
	polys := 64 // 2^19 samples
	if testing.Short() {
		polys = 8
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		t.Fatal(err)
	}
	prng, err := newCTRPRNG([32]byte(key))
	if err != nil {
		t.Fatal(err)
	}
	r := Agg128.params.RingQ()
	fs, err := newFloodSampler(r, Agg128.lit.LogFlood, prng)
	if err != nil {
		t.Fatal(err)
	}
	k, sigmaG := floodSplit(Agg128.lit.LogFlood)
	if k != 71 || sigmaG != 256 {
		t.Fatalf("split of 2^79: k = %d, σ_G = %v; want 71, 256", k, sigmaG)
	}
	es := floodIntegers(t, polys, fs.read)

	sigma := Agg128.FloodSigma()
	bound := new(big.Float).SetFloat64(16*sigma + math.Exp2(float64(k)))
	var sum, sq float64
	bins := make([][16]int, 3) // E's bits 0-3, 40-43 and k-4..k-1
	for _, e := range es {
		f, _ := new(big.Float).SetInt(e).Float64()
		if new(big.Float).Abs(new(big.Float).SetInt(e)).Cmp(bound) > 0 {
			t.Fatalf("sample %v beyond the bound 16σ + 2^k", e)
		}
		sum += f / sigma
		sq += (f / sigma) * (f / sigma)
		m := new(big.Int).Mod(e, new(big.Int).Lsh(big.NewInt(1), uint(k))) // E mod 2^k ≥ 0
		for b, shift := range []uint{0, 40, uint(k) - 4} {
			bins[b][new(big.Int).Rsh(m, shift).Uint64()&15]++
		}
	}
	n := float64(len(es))
	mean, sd := sum/n, math.Sqrt(sq/n-(sum/n)*(sum/n))
	if math.Abs(mean) > 5/math.Sqrt(n) || math.Abs(sd-1) > 6/math.Sqrt(2*n) {
		t.Errorf("mean %.4fσ, standard deviation %.4fσ over %d samples: want 0 and 1", mean, sd, len(es))
	}
	for b, h := range bins {
		chi := 0.0
		for _, c := range h {
			d := float64(c) - n/16
			chi += d * d / (n / 16)
		}
		if chi > 50 { // 15 degrees of freedom: P(χ² > 50) ≈ 1e-5
			t.Errorf("bits of E mod 2^%d (bin set %d) not uniform: χ² = %.1f, counts %v", k, b, chi, h)
		}
	}
	if testing.Short() {
		return
	}
	if c := collisions(es, 30); c != 0 {
		t.Errorf("%d pairs of samples agree above their 30 low bits: the noise is not smooth", c)
	}
	// Lattigo's sampler at the same σ, for comparison.
	lprng, err := sampling.NewPRNG()
	if err != nil {
		t.Fatal(err)
	}
	ls := ring.NewGaussianSampler(lprng, r, ring.DiscreteGaussian{Sigma: sigma, Bound: 16 * sigma}, false)
	lc := collisions(floodIntegers(t, polys, ls.Read), 30)
	t.Logf("pairs agreeing above the 30 low bits among %d samples: floodSampler %d, Lattigo's GaussianSampler %d", len(es), 0, lc)
	if lc == 0 {
		t.Logf("Lattigo's sampler shows no comb at this size any more: recheck flood.go's analysis")
	}
}
