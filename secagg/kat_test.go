package secagg

import (
	"bytes"
	"crypto/hkdf"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"testing"
)

// TestField checks the GF(2¹⁶) tables against bitwise multiplication and
// that 2 generates the whole multiplicative group (the polynomial is
// primitive).
func TestField(t *testing.T) {
	seen := make(map[uint16]bool, fieldOrder)
	for i := range fieldOrder {
		seen[gfExp[i]] = true
	}
	if len(seen) != fieldOrder || seen[0] {
		t.Fatalf("2 generates %d elements, want all %d nonzero ones", len(seen), fieldOrder)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		a, b := uint16(rng.Uint32()), uint16(rng.Uint32())
		if got, want := gfMul(a, b), gfMulSlow(a, b); got != want {
			t.Fatalf("%#x·%#x = %#x by the tables, %#x bitwise", a, b, got, want)
		}
		if a != 0 && gfMul(a, gfInv(a)) != 1 {
			t.Fatalf("%#x·%#x ≠ 1", a, gfInv(a))
		}
	}
}

// TestShamirVectors: shares of the seed 00 01 … 0f with t = 3 among 5, the
// coefficients read from the bytes 100, 101, …, 131, as computed by
// testdata/kat.py (bitwise GF(2¹⁶) arithmetic, independent of the tables).
func TestShamirVectors(t *testing.T) {
	want := []string{
		"02030001060704050a0b08090e0f0c0d",
		"517a7b50654e2f04391213380d260576",
		"53787952674c2d063b10113a0f240774",
		"f72605d45382e01dbe434cb11ae72509",
		"f52407d65180e21fbc414eb318e5270b",
	}
	var s seed
	for i := range s {
		s[i] = byte(i)
	}
	coef := make([]byte, 32)
	for i := range coef {
		coef[i] = byte(100 + i)
	}
	sp, err := newSplitter(5, 3)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]byte, 5*seedLen)
	if err := sp.split(s, bytes.NewReader(coef), out, seedLen); err != nil {
		t.Fatal(err)
	}
	for i, w := range want {
		if got := hex.EncodeToString(out[i*seedLen : (i+1)*seedLen]); got != w {
			t.Errorf("share at x=%d: %s, want %s", i+1, got, w)
		}
	}
	// Any 3 of them give the seed back; 2 do not.
	for _, xs := range [][]uint16{{1, 2, 3}, {5, 3, 1}, {2, 4, 5}} {
		lam, err := lagrange(xs)
		if err != nil {
			t.Fatal(err)
		}
		ys := make([][]byte, len(xs))
		for j, x := range xs {
			ys[j] = out[int(x-1)*seedLen : int(x)*seedLen]
		}
		if got := combine(lam, ys); got != s {
			t.Errorf("shares at %v combine to %x, want %x", xs, got, s)
		}
	}
	lam, _ := lagrange([]uint16{1, 2})
	if got := combine(lam, [][]byte{out[:seedLen], out[seedLen : 2*seedLen]}); got == s {
		t.Errorf("2 of 3 shares gave the seed back")
	}
	if _, err := lagrange([]uint16{1, 1}); err == nil {
		t.Errorf("lagrange accepted a repeated abscissa")
	}
	if _, err := newSplitter(3, 4); err == nil {
		t.Errorf("newSplitter accepted t > n")
	}
}

// TestShamirRandom: random seeds, group sizes and thresholds, any t shares.
func TestShamirRandom(t *testing.T) {
	src := rand.NewChaCha8([32]byte{9})
	rng := rand.New(src)
	for range 50 {
		n := 1 + rng.IntN(300)
		tt := 1 + rng.IntN(n)
		var s seed
		for i := range s {
			s[i] = byte(rng.Uint32())
		}
		sp, _ := newSplitter(n, tt)
		out := make([]byte, n*seedLen)
		if err := sp.split(s, src, out, seedLen); err != nil {
			t.Fatal(err)
		}
		perm := rng.Perm(n)[:tt]
		xs := make([]uint16, tt)
		ys := make([][]byte, tt)
		for j, i := range perm {
			xs[j], ys[j] = uint16(i+1), out[i*seedLen:(i+1)*seedLen]
		}
		lam, err := lagrange(xs)
		if err != nil {
			t.Fatal(err)
		}
		if got := combine(lam, ys); got != s {
			t.Fatalf("n=%d t=%d: combined %x, want %x", n, tt, got, s)
		}
	}
}

// TestPRGVectors: the mask of the seed 00 01 … 0f is AES-128-CTR's keystream
// from a zero IV (testdata/kat.py, with the Python cryptography package;
// also NIST-checkable), read as little-endian words.
func TestPRGVectors(t *testing.T) {
	var s seed
	for i := range s {
		s[i] = byte(i)
	}
	g := newPRG(4)
	ks, err := g.stream(s, 8)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(ks), "c6a13b37878f5b826f4f8162a1c8d8797346139595c0b41e497bbde365f42d0a"; got != want {
		t.Fatalf("keystream %s, want %s", got, want)
	}
	w := make([]uint64, 4)
	if err := g.add(w, s, 1); err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{926654918, 2187038599, 1652641647, 2044250273} {
		if w[i] != want {
			t.Errorf("32-bit word %d: %d, want %d", i, w[i], want)
		}
	}
	g64 := newPRG(8)
	w = make([]uint64, 2)
	if err := g64.add(w, s, -1); err != nil {
		t.Fatal(err)
	}
	for i, want := range []uint64{9393259258721313222, 8779988069026713455} {
		if w[i] != -want {
			t.Errorf("64-bit word %d: %d, want −%d", i, w[i], want)
		}
	}
}

// TestHKDF: extract and expand are RFC 5869's (test case 1, first block)
// and crypto/hkdf's.
func TestHKDF(t *testing.T) {
	ikm := bytes.Repeat([]byte{0x0b}, 22)
	salt, _ := hex.DecodeString("000102030405060708090a0b0c")
	inf, _ := hex.DecodeString("f0f1f2f3f4f5f6f7f8f9")
	prk := extract(salt, ikm)
	if got, want := hex.EncodeToString(prk[:]), "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"; got != want {
		t.Errorf("PRK %s, want %s", got, want)
	}
	okm := expand(prk, inf)
	if got, want := hex.EncodeToString(okm[:]), "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"; got != want {
		t.Errorf("OKM %s, want %s", got, want)
	}
	std, err := hkdf.Key(sha256.New, ikm, salt, string(inf), 32)
	if err != nil || !bytes.Equal(std, okm[:]) {
		t.Errorf("crypto/hkdf gives %x (%v), ours %x", std, err, okm)
	}
}
