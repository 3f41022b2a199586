package mhe

import (
	"math"
	"math/big"
	"testing"

	"github.com/tuneinsight/lattigo/v6/core/rlwe"
	"github.com/tuneinsight/lattigo/v6/ring"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// The key-recovery attack of Li and Micciancio (Lattigo SECURITY.md): a
// ciphertext (c0, c1) decrypts to pt = c0 + c1·s, so whoever sees the raw
// plaintext pt computes s = (pt − c0)·c1⁻¹ in the NTT domain. These tests
// run it on the first prime, where s (small) is determined.

// recoverKey returns (pt − c0)·c1⁻¹ mod q0, in the NTT domain.
func recoverKey(r *ring.Ring, pt, c0, c1 ring.Poly) ring.Poly {
	r = r.AtLevel(0)
	q := r.SubRings[0].Modulus
	x := r.NewPoly()
	r.Sub(pt, c0, x)
	inv := r.NewPoly()
	for i, c := range c1.Coeffs[0] {
		inv.Coeffs[0][i] = ring.ModExp(c, q-2, q) // c1 is invertible w.h.p.
	}
	r.MulCoeffsBarrett(x, inv, x)
	return x
}

// agree counts the coefficients where a and b agree mod q0.
func agree(a, b ring.Poly) int {
	n := 0
	for i := range a.Coeffs[0] {
		if a.Coeffs[0][i] == b.Coeffs[0][i] {
			n++
		}
	}
	return n
}

// collectiveKey returns s = Σ s_i in the NTT domain (not Montgomery), at
// level 0, from the parties of f.
func collectiveKey(t *testing.T, f *fixture) ring.Poly {
	p := f.sch.p
	r := p.params.RingQ().AtLevel(0)
	s := r.NewPoly()
	for _, m := range f.sess.Members {
		r.Add(s, f.parties[m].(*Party).sk.Value.Q, s)
	}
	r.IMForm(s, s)
	return s
}

func TestFloodingPositiveControl(t *testing.T) {
	p := InsecureTest
	f := newFixture(t, p, 3, 2)
	N := p.params.N()
	s := collectiveKey(t, f)

	// A fresh encryption under the collective public key, and its raw
	// decryption (before any decoding or rounding).
	pa := f.parties[f.sess.Members[0]].(*Party)
	enc := rlwe.NewEncryptor(p.params, pa.pk)
	e := p.newEncoder()
	for i := range e.vals {
		e.vals[i] = math.Sin(float64(i))
	}
	pt, err := e.encode(p.params.MaxLevel(), true)
	if err != nil {
		t.Fatal(err)
	}
	ct := p.newCiphertext(p.params.MaxLevel())
	if err := enc.Encrypt(pt, ct); err != nil {
		t.Fatal(err)
	}
	sk := rlwe.NewSecretKey(p.params)
	for _, m := range f.sess.Members {
		p.params.RingQ().Add(sk.Value.Q, f.parties[m].(*Party).sk.Value.Q, sk.Value.Q)
	}
	raw := rlwe.NewPlaintext(p.params, p.params.MaxLevel())
	rlwe.NewDecryptor(p.params, sk).Decrypt(ct, raw)

	got := recoverKey(p.params.RingQ(), raw.Value, ct.Value[0], ct.Value[1])
	if n := agree(got, s); n != N {
		t.Fatalf("positive control: the attack on an unflooded raw decryption recovered %d of %d key coefficients, want all", n, N)
	}
	t.Logf("unflooded raw plaintext: the attack recovers the collective key exactly (%d/%d coefficients)", N, N)
}

func TestFloodingDefeatsKeyRecovery(t *testing.T) {
	p := testPreset()
	f := newFixture(t, p, 3, 2)
	N := p.params.N()
	s := collectiveKey(t, f)
	level := p.params.MaxLevel()

	in := map[fl.NodeID]fl.Vector{}
	w := map[fl.NodeID]float64{}
	d := N - 1 // one ciphertext, every coefficient used
	for i, m := range f.sess.Members {
		v := make(fl.Vector, d)
		for j := range v {
			v[j] = math.Sin(float64(i*d + j))
		}
		in[m], w[m] = v, 1
	}
	sum, req := f.round(t, 1, in, w, f.sess.Members[:2])

	agg := p.newCiphertext(level)
	_, elems, err := parse("aggregate", req.Aggregate, maxCiphertexts+1)
	if err != nil {
		t.Fatal(err)
	}
	// The aggregate is (Σc0, a) under s_S, here S = all members: s_S = s.
	if err := p.unpackPoly("aggregate", elems[1], agg.Value[0], level); err != nil {
		t.Fatal(err)
	}
	if err := p.uploadA(f.parties[f.sess.Members[0]].(*Party).sess, 1, 0, agg.Value[1]); err != nil {
		t.Fatal(err)
	}

	// 1. What Decrypt publishes: the decoded, flooded, rounded values,
	// re-encoded at the aggregate's scale.
	e := p.newEncoder()
	copy(e.vals, sum.Vector)
	e.vals[d] = sum.Weight
	pub, err := e.encode(level, true)
	if err != nil {
		t.Fatal(err)
	}
	got := recoverKey(p.params.RingQ(), pub.Value, agg.Value[0], agg.Value[1])
	if n := agree(got, s); n > N/1000+1 {
		t.Errorf("published values: the attack recovered %d of %d key coefficients", n, N)
	} else {
		t.Logf("published values: the attack recovers %d/%d key coefficients (chance level)", n, N)
	}

	// 2. The strongest view: the coordinator and the target holder collude
	// and decrypt the key-switched aggregate (Open's result, shares and
	// aggregate rescaled to the first prime) before decoding. Lifted back
	// by q1, what they get is c0 + c1·s + flooding (+ rescale rounding),
	// not c0 + c1·s.
	tgt := f.target.(*Target)
	shares := map[fl.NodeID][]byte{}
	for _, m := range req.Revealers {
		if shares[m], err = f.parties[m].Reveal(req, &protect.MemLedger{}); err != nil {
			t.Fatal(err)
		}
	}
	res, err := f.helper.Open(req, shares)
	if err != nil {
		t.Fatal(err)
	}
	_, es, err := parse("result", res, maxCiphertexts)
	if err != nil {
		t.Fatal(err)
	}
	switched := p.newCiphertext(0)
	if err := p.unpackCiphertext("result", es[0], switched); err != nil {
		t.Fatal(err)
	}
	raw0 := rlwe.NewPlaintext(p.params, 0)
	rlwe.NewDecryptor(p.params, tgt.sk).Decrypt(switched, raw0)
	r := p.params.RingQ()
	r0 := r.AtLevel(0)
	r0.INTT(raw0.Value, raw0.Value)
	lifted := make([]*big.Int, N)
	for i := range lifted {
		lifted[i] = new(big.Int)
	}
	r0.PolyToBigintCentered(raw0.Value, 1, lifted)
	q1 := new(big.Int).SetUint64(p.lit.Q[1])
	for _, c := range lifted {
		c.Mul(c, q1)
	}
	raw := r.NewPoly()
	r.SetCoefficientsBigint(lifted, raw)
	r.NTT(raw, raw)
	got = recoverKey(r, raw, agg.Value[0], agg.Value[1])
	if n := agree(got, s); n > N/1000+1 {
		t.Errorf("flooded raw plaintext: the attack recovered %d of %d key coefficients", n, N)
	} else {
		t.Logf("flooded raw plaintext: the attack recovers %d/%d key coefficients (chance level)", n, N)
	}

	// The residual pt − (c0 + c1·s) is the flooding: measure its size.
	exact := rlwe.NewPlaintext(p.params, level)
	skc := rlwe.NewSecretKey(p.params)
	for _, m := range f.sess.Members {
		r.Add(skc.Value.Q, f.parties[m].(*Party).sk.Value.Q, skc.Value.Q)
	}
	rlwe.NewDecryptor(p.params, skc).Decrypt(agg, exact)
	diff := r.NewPoly()
	r.Sub(raw, exact.Value, diff)
	r.INTT(diff, diff)
	coeffs := make([]*big.Int, N)
	for i := range coeffs {
		coeffs[i] = new(big.Int)
	}
	r.PolyToBigintCentered(diff, 1, coeffs)
	var ss float64
	for _, c := range coeffs {
		x, _ := new(big.Float).SetInt(c).Float64()
		ss += x * x
	}
	sd := math.Sqrt(ss / float64(N))
	want := p.FloodSigma() * math.Sqrt(float64(len(req.Revealers)))
	t.Logf("flooding in the published plaintext: sd 2^%.2f, expected σ·√t = 2^%.2f", math.Log2(sd), math.Log2(want))
	if math.Abs(math.Log2(sd)-math.Log2(want)) > 0.2 {
		t.Errorf("flooding sd 2^%.2f, want about 2^%.2f", math.Log2(sd), math.Log2(want))
	}
}
