package mhe

import (
	"math"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/multiparty"
	"github.com/tuneinsight/lattigo/v6/ring"
	"github.com/tuneinsight/lattigo/v6/schemes/bgv"
	"github.com/tuneinsight/lattigo/v6/schemes/ckks"

	"github.com/cloisterfl/cloister/fl"
)

// TestCandidates measures the candidate encodings that README.md compares,
// on the same machine in the same run. It is slow; run it with
//
//	MHE_CANDIDATES=1 go test -run TestCandidates -v ./mhe
//
// For each candidate: log2 QP, wire bytes per parameter, raw Lattigo
// encode+encrypt time (one thread), Protect time (one worker), and the
// precision of a whole round (n = 10 updates clipped to L2 norm 1, t = 6
// revealers) after flooding.
func TestCandidates(t *testing.T) {
	if os.Getenv("MHE_CANDIDATES") == "" {
		t.Skip("set MHE_CANDIDATES=1 to measure the candidates (slow)")
	}
	const (
		n, tt = 10, 6
		d     = 100_000
		reps  = 7 // timings: the minimum of reps runs (the machine is shared)
	)
	ci := []uint64{1152921504606748673, 1152921504606683137} // ≡ 1 mod 2^15
	base := Agg128.Literal()
	lits := []PresetLiteral{}
	for _, c := range []struct {
		name string
		rt   ring.Type
		enc  Encoding
	}{
		{"CandStdCoefficients", ring.Standard, Coefficients},
		{"CandCICoefficients", ring.ConjugateInvariant, Coefficients},
		{"CandStdSlots", ring.Standard, Slots},
		{"CandCISlots", ring.ConjugateInvariant, Slots},
	} {
		l := base
		l.Name, l.Ring, l.Encoding = c.name, c.rt, c.enc
		if c.rt == ring.ConjugateInvariant {
			l.Q = ci
		}
		lits = append(lits, l)
	}
	t.Logf("| candidate | log2 QP | B/param (wire) | raw encode+encrypt s/1M (1 thread) | Protect s/1M (1 worker) | flooding σ | precision bits (n=%d, t=%d) |", n, tt)
	t.Logf("|---|---|---|---|---|---|---|")
	type cand struct {
		p         *Preset
		pa        *Party
		v         fl.Vector
		bytes     float64
		bits      float64
		prot, raw float64
	}
	var cs []*cand
	for _, l := range lits {
		p, err := NewPresetFromLiteral(l)
		if err != nil {
			t.Fatal(err)
		}
		f := newFixture(t, p, n, tt)
		rng := rand.New(rand.NewPCG(5, 5))
		in := map[fl.NodeID]fl.Vector{}
		w := map[fl.NodeID]float64{}
		want := make(fl.Vector, d)
		for _, m := range f.sess.Members {
			in[m], w[m] = randomVector(rng, d, 1), 1
			want.Add(1, in[m])
		}
		sum, _ := f.round(t, 1, in, w, f.sess.Members[:tt])
		pa := f.parties[f.sess.Members[0]].(*Party)
		pa.sch, _ = New(p, Workers(1))
		c := &cand{p: p, pa: pa, v: in[f.sess.Members[0]], bits: -math.Log2(maxErr(t, sum, want, float64(n))), prot: math.Inf(1), raw: math.Inf(1)}
		cs = append(cs, c)
	}
	// Timings, interleaved across candidates, the minimum of reps runs.
	for range reps {
		for _, c := range cs {
			start := time.Now()
			up, err := c.pa.Protect(nextBenchRound(), c.v, 1)
			if err != nil {
				t.Fatal(err)
			}
			c.prot = min(c.prot, time.Since(start).Seconds()/d*1e6)
			c.bytes = float64(len(up)) / d
			c.raw = min(c.raw, rawEncryptCKKS(t, c.p, c.pa.pk, c.v))
		}
	}
	for _, c := range cs {
		l := c.p.lit
		t.Logf("| %s (%s ring, %s) | %.0f | %.2f | %.3f | %.3f | 2^%v | %.1f |", l.Name, ringName(l.Ring), l.Encoding,
			c.p.params.LogQP(), c.bytes, c.raw, c.prot, l.LogFlood, c.bits)
	}
	bgvCandidate(t, n, tt, d, reps, 28, 71, 1099511480321) // T ≈ 2^40, ≡ 1 mod 2^14
	bgvCandidate(t, n, tt, d, reps, 19, 79, bgvT31)        // T ≈ 2^31, ≡ 1 mod 2^14
}

// bgvT31 is a prime ≈ 2^31, ≡ 1 mod 2^14.
var bgvT31 = func() uint64 {
	g := ring.NewNTTFriendlyPrimesGenerator(31, 1<<14)
	p, err := g.NextDownstreamPrime()
	if err != nil {
		panic(err)
	}
	return p
}()

func rawEncryptCKKS(t *testing.T, p *Preset, pk *rlwe.PublicKey, v fl.Vector) float64 {
	ecd := ckks.NewEncoder(p.params, 53)
	enc := rlwe.NewEncryptor(p.params, pk)
	pt := ckks.NewPlaintext(p.params, p.params.MaxLevel())
	pt.IsBatched = p.lit.Encoding == Slots
	pt.Scale = rlwe.NewScale(math.Exp2(float64(p.encodeLogScale)))
	ct := p.newCiphertext(p.params.MaxLevel())
	vals := make([]float64, p.slots)
	var cplx []complex128
	if pt.IsBatched && p.lit.Ring == ring.Standard {
		cplx = make([]complex128, p.slots/2)
	}
	k := p.ciphertexts(len(v))
	start := time.Now()
	for i := range k {
		clear(vals)
		copy(vals, v[min(i*p.slots, len(v)):min((i+1)*p.slots, len(v))])
		var err error
		if cplx != nil {
			for j := range cplx {
				cplx[j] = complex(vals[2*j], vals[2*j+1])
			}
			err = ecd.Encode(cplx, pt)
		} else {
			err = ecd.Encode(vals, pt)
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := enc.Encrypt(pt, ct); err != nil {
			t.Fatal(err)
		}
	}
	return time.Since(start).Seconds() / float64(len(v)) * 1e6
}

// bgvCandidate measures BGV on fixed-point integers quantized at
// 2^-logFrac in the coefficients (plaintext modulus T), with Lattigo
// directly: t additive key shares, encryption of n updates under their
// collective key, addition, t flooded public-key-switch shares, decryption.
// Decryption is exact, so T·(flooding of up to 1000 revealers) must stay
// below Q/2: with T ≈ 2^40 (28 fractional bits) σ can be at most 2^71, 8
// bits less than Agg128's 2^79; with σ = 2^79, T ≈ 2^31 leaves 19
// fractional bits.
func bgvCandidate(t *testing.T, n, tt, d, reps, logFrac int, logFlood float64, T uint64) {
	params, err := bgv.NewParametersFromLiteral(bgv.ParametersLiteral{
		LogN:             13,
		Q:                Agg128.Literal().Q,
		PlaintextModulus: T,
	})
	if err != nil {
		t.Fatal(err)
	}
	N := params.N()
	kg := rlwe.NewKeyGenerator(params)
	shares := make([]*rlwe.SecretKey, tt)
	sk := rlwe.NewSecretKey(params)
	for i := range shares {
		shares[i] = kg.GenSecretKeyNew()
		params.RingQ().Add(sk.Value.Q, shares[i].Value.Q, sk.Value.Q)
	}
	pk := kg.GenPublicKeyNew(sk)
	tsk := kg.GenSecretKeyNew()
	tpk := kg.GenPublicKeyNew(tsk)
	ecd := bgv.NewEncoder(params)
	enc := rlwe.NewEncryptor(params, pk)
	eval := bgv.NewEvaluator(params, nil)
	k := (d + N) / N
	rng := rand.New(rand.NewPCG(5, 5))
	want := make(fl.Vector, d)
	sum := make([]*rlwe.Ciphertext, k)
	encT := math.Inf(1)
	q := make([]int64, N)
	pt := bgv.NewPlaintext(params, params.MaxLevel())
	pt.IsBatched = false
	for j := range n + reps - 1 {
		v := randomVector(rng, d, 1)
		if j < n {
			want.Add(1, v)
		}
		start := time.Now()
		for i := range k {
			clear(q)
			for c := range N {
				if x := i*N + c; x < d {
					q[c] = int64(math.Round(v[x] * math.Exp2(float64(logFrac))))
				}
			}
			if err := ecd.Encode(q, pt); err != nil {
				t.Fatal(err)
			}
			ct := bgv.NewCiphertext(params, 1, params.MaxLevel())
			if err := enc.Encrypt(pt, ct); err != nil {
				t.Fatal(err)
			}
			if j >= n {
				continue // timing only
			}
			if j == 0 {
				sum[i] = ct
			} else if err := eval.Add(sum[i], ct, sum[i]); err != nil {
				t.Fatal(err)
			}
		}
		encT = min(encT, time.Since(start).Seconds())
	}
	sigma := math.Exp2(logFlood)
	pcks, err := multiparty.NewPublicKeySwitchProtocol(params, ring.DiscreteGaussian{Sigma: sigma, Bound: 16 * sigma})
	if err != nil {
		t.Fatal(err)
	}
	dec := rlwe.NewDecryptor(params, tsk)
	worst := 0.0
	out := make([]int64, N)
	for i := range k {
		acc, sh := pcks.AllocateShare(params.MaxLevel()), pcks.AllocateShare(params.MaxLevel())
		for j, s := range shares {
			if j == 0 {
				pcks.GenShare(s, tpk, sum[i], &acc)
				continue
			}
			pcks.GenShare(s, tpk, sum[i], &sh)
			if err := pcks.AggregateShares(acc, sh, &acc); err != nil {
				t.Fatal(err)
			}
		}
		res := bgv.NewCiphertext(params, 1, params.MaxLevel())
		pcks.KeySwitch(sum[i], acc, res)
		rpt := dec.DecryptNew(res)
		if err := ecd.Decode(rpt, out); err != nil {
			t.Fatal(err)
		}
		for c := range N {
			if x := i*N + c; x < d {
				worst = max(worst, math.Abs(float64(out[c])/math.Exp2(float64(logFrac))-want[x]))
			}
		}
	}
	t.Logf("| BGV fixed point 2^-%d (T≈2^%.0f, standard ring, coefficients) | %.0f | %.2f | %.3f | — | 2^%v | %.1f |", logFrac,
		math.Log2(float64(T)), params.LogQP(), float64(k*N*2*120/8)/float64(d), encT/float64(d)*1e6, logFlood, -math.Log2(worst))
}
