package paillier

import (
	"errors"
	"math/big"
	mrand "math/rand/v2"
	"testing"
)

func bigS(t testing.TB, s string) *big.Int {
	t.Helper()
	x, ok := new(big.Int).SetString(s, 10)
	if !ok {
		t.Fatalf("bad number %q", s)
	}
	return x
}

// The vectors below were computed independently with Python's integers
// (pow and math.factorial), from safe primes p = 2·72451456160483+1 and
// q = 2·109244660996813+1, a 2-of-… polynomial d + a1·x + a2·x² mod n·p'q'
// with a1 = 123456789123456789 and a2 = 987654321987654321, l = 5, t = 3.
const (
	katP    = "144902912320967"
	katQ    = "218489321993627"
	katMsg  = 31337
	katR    = 424242
	katC    = "879955663609707121170025620172579178020152257099217361439"
	katPart = "251179505232803094421595091344359942636688089466285663620"
)

var katShares = []string{
	"144146108813658354169026352816227642133547876051918101862",
	"144146108813658354169026352816227642136634295807004521614",
	"144146108813658354169026352816227642141696024206066250008",
	"144146108813658354169026352816227642148733061249103287044",
	"144146108813658354169026352816227642157745406936115632722",
}

func TestKnownAnswer(t *testing.T) {
	p, q := bigS(t, katP), bigS(t, katQ)
	sk, err := NewPrivateKey(p, q)
	if err != nil {
		t.Fatal(err)
	}
	c := sk.encryptWith(big.NewInt(katMsg), big.NewInt(katR))
	if c.Cmp(bigS(t, katC)) != 0 {
		t.Fatalf("Enc(%d; r=%d) = %v, want %s", katMsg, katR, c, katC)
	}
	m, err := sk.Decrypt(c)
	if err != nil || m.Int64() != katMsg {
		t.Fatalf("Dec = %v, %v", m, err)
	}
	// The threshold key with the vector's coefficients.
	tk, err := NewThresholdKey(sk.N, 3, 5)
	if err != nil {
		t.Fatal(err)
	}
	pp, qq := new(big.Int).Rsh(p, 1), new(big.Int).Rsh(q, 1)
	mm := new(big.Int).Mul(pp, qq)
	nm := new(big.Int).Mul(sk.N, mm)
	d := new(big.Int).Mul(mm, new(big.Int).ModInverse(mm, sk.N))
	shares := dealShares(tk, []*big.Int{d, big.NewInt(123456789123456789), big.NewInt(987654321987654321)}, nm)
	for i, s := range shares {
		if s.S.Cmp(bigS(t, katShares[i])) != 0 {
			t.Fatalf("share %d = %v, want %s", i+1, s.S, katShares[i])
		}
	}
	part, err := shares[2].Decrypt(c)
	if err != nil || part.Cmp(bigS(t, katPart)) != 0 {
		t.Fatalf("decryption share 3 = %v, %v, want %s", part, err, katPart)
	}
	for _, set := range [][]int{{1, 3, 5}, {2, 4, 5}, {1, 2, 3, 4}} {
		parts := map[int]*big.Int{}
		for _, i := range set {
			parts[i], _ = shares[i-1].Decrypt(c)
		}
		m, err := tk.Combine(parts)
		if err != nil || m.Int64() != katMsg {
			t.Fatalf("Combine(%v) = %v, %v", set, m, err)
		}
	}
}

// testKey draws a small dealt key (256-bit n: fast, NOT SECURE).
func testKey(t testing.TB, tt, l int, seed uint64) (*PrivateKey, *ThresholdKey, []*KeyShare) {
	t.Helper()
	r := mrand.NewChaCha8([32]byte{byte(seed)})
	sk, err := GenerateKey(256, r)
	if err != nil {
		t.Fatal(err)
	}
	tk, shares, err := Deal(sk, tt, l, r)
	if err != nil {
		t.Fatal(err)
	}
	return sk, tk, shares
}

// subsets calls f with every subset of {1..l} of size k.
func subsets(l, k int, f func([]int)) {
	var rec func(start int, cur []int)
	rec = func(start int, cur []int) {
		if len(cur) == k {
			f(cur)
			return
		}
		for i := start; i <= l; i++ {
			rec(i+1, append(cur, i))
		}
	}
	rec(1, nil)
}

func TestThresholdProperties(t *testing.T) {
	sk, tk, shares := testKey(t, 3, 5, 1)
	r := mrand.NewChaCha8([32]byte{9})
	a, _ := randInt(r, sk.N)
	b, _ := randInt(r, sk.N)
	ca, err := sk.Encrypt(a, r)
	if err != nil {
		t.Fatal(err)
	}
	cb, _ := sk.Encrypt(b, r)
	sum := sk.Add(nil, ca, cb)
	want := new(big.Int).Add(a, b)
	want.Mod(want, sk.N)
	if m, _ := sk.Decrypt(sum); m.Cmp(want) != 0 {
		t.Fatal("homomorphic addition fails under the whole key")
	}
	parts := map[int]*big.Int{}
	for _, s := range shares {
		parts[s.Index], err = s.Decrypt(sum)
		if err != nil {
			t.Fatal(err)
		}
	}
	for k := 3; k <= 5; k++ {
		subsets(5, k, func(set []int) {
			sub := map[int]*big.Int{}
			for _, i := range set {
				sub[i] = parts[i]
			}
			m, err := tk.Combine(sub)
			if err != nil || m.Cmp(want) != 0 {
				t.Errorf("shares %v: %v, %v", set, m, err)
			}
		})
	}
	subsets(5, 2, func(set []int) {
		sub := map[int]*big.Int{set[0]: parts[set[0]], set[1]: parts[set[1]]}
		if _, err := tk.Combine(sub); !errors.Is(err, ErrShares) {
			t.Errorf("two shares %v: %v, want ErrShares", set, err)
		}
	})
	// A share of another ciphertext spoils the result.
	other, _ := shares[0].Decrypt(ca)
	m, err := tk.Combine(map[int]*big.Int{1: other, 2: parts[2], 3: parts[3]})
	if err == nil && m.Cmp(want) == 0 {
		t.Error("a wrong share gave the right plaintext")
	}
	if _, err := tk.Combine(map[int]*big.Int{0: parts[1], 2: parts[2], 3: parts[3]}); !errors.Is(err, ErrShares) {
		t.Errorf("share index 0: %v", err)
	}
}

func TestCiphertextRange(t *testing.T) {
	sk, _, _ := testKey(t, 1, 1, 2)
	c, _ := sk.Encrypt(big.NewInt(5), mrand.NewChaCha8([32]byte{}))
	good := sk.AppendCiphertext(nil, c)
	if _, err := sk.ParseCiphertext(good); err != nil {
		t.Fatal(err)
	}
	multP := new(big.Int).Mul(sk.p, big.NewInt(3))
	for name, b := range map[string][]byte{
		"short":    good[1:],
		"long":     append(good, 0),
		"zero":     make([]byte, len(good)),
		"n²":       sk.AppendCiphertext(nil, sk.N2),
		"above n²": sk.AppendCiphertext(nil, new(big.Int).Add(sk.N2, one))[:len(good)],
		"factor":   sk.AppendCiphertext(nil, multP),
	} {
		if name == "above n²" {
			b = make([]byte, len(good))
			for i := range b {
				b[i] = 0xff
			}
		}
		if _, err := sk.ParseCiphertext(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v, want ErrMalformed", name, err)
		}
	}
	if _, err := sk.Encrypt(sk.N, mrand.NewChaCha8([32]byte{})); !errors.Is(err, ErrMalformed) {
		t.Errorf("plaintext n: %v", err)
	}
}

func TestSafePrime(t *testing.T) {
	r := mrand.NewChaCha8([32]byte{3})
	for _, bits := range []int{16, 64, 128} {
		p, err := SafePrime(r, bits)
		if err != nil {
			t.Fatal(err)
		}
		q := new(big.Int).Rsh(p, 1)
		if p.BitLen() != bits || !p.ProbablyPrime(20) || !q.ProbablyPrime(20) {
			t.Fatalf("SafePrime(%d) = %v", bits, p)
		}
	}
}

func FuzzParseCiphertext(f *testing.F) {
	sk, _, _ := testKey(f, 1, 1, 2)
	c, _ := sk.Encrypt(big.NewInt(5), mrand.NewChaCha8([32]byte{}))
	f.Add(sk.AppendCiphertext(nil, c))
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := sk.ParseCiphertext(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatal(err)
			}
			return
		}
		if _, err := sk.Decrypt(c); err != nil {
			t.Fatal(err)
		}
	})
}
