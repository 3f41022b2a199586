package paillier

import (
	"errors"
	"fmt"
	"io"
	"math/big"
)

// ThresholdKey is the public part of a t-of-l threshold key (Damgård–Jurik
// with s = 1, after Shoup): the modulus n = pq of safe primes p = 2p'+1,
// q = 2q'+1, the threshold T, the number of shares L and Δ = L!.
type ThresholdKey struct {
	PublicKey
	T, L  int
	delta *big.Int
}

// MaxShares bounds L, so that Δ = L! stays small next to n.
const MaxShares = 1000

// NewThresholdKey checks the parameters and returns the public threshold
// key.
func NewThresholdKey(n *big.Int, t, l int) (*ThresholdKey, error) {
	if l < 1 || l > MaxShares || t < 1 || t > l {
		return nil, fmt.Errorf("paillier: threshold %d of %d shares, want 1 ≤ t ≤ l ≤ %d", t, l, MaxShares)
	}
	pk, err := NewPublicKey(n)
	if err != nil {
		return nil, err
	}
	delta := big.NewInt(1)
	for i := 2; i <= l; i++ {
		delta.Mul(delta, big.NewInt(int64(i)))
	}
	return &ThresholdKey{PublicKey: *pk, T: t, L: l, delta: delta}, nil
}

// KeyShare is party Index's share (1 ≤ Index ≤ L) of the decryption
// exponent d, where d ≡ 0 mod p'q' and d ≡ 1 mod n.
type KeyShare struct {
	Key   *ThresholdKey
	Index int
	S     *big.Int
}

// Deal splits sk into l shares of which any t decrypt, with the
// polynomial's coefficients drawn from rand. sk's primes must be safe
// primes (GenerateKey draws them). The dealer must erase sk afterwards:
// whoever holds it decrypts everything.
func Deal(sk *PrivateKey, t, l int, rand io.Reader) (*ThresholdKey, []*KeyShare, error) {
	tk, err := NewThresholdKey(sk.N, t, l)
	if err != nil {
		return nil, nil, err
	}
	pp := new(big.Int).Rsh(sk.p, 1)
	qq := new(big.Int).Rsh(sk.q, 1)
	if !pp.ProbablyPrime(20) || !qq.ProbablyPrime(20) {
		return nil, nil, errors.New("paillier: Deal needs safe primes")
	}
	m := new(big.Int).Mul(pp, qq)
	nm := new(big.Int).Mul(sk.N, m)
	// d = m · (m⁻¹ mod n): d ≡ 0 mod m, d ≡ 1 mod n.
	minv := new(big.Int).ModInverse(m, sk.N)
	if minv == nil {
		return nil, nil, errors.New("paillier: p'q' not invertible mod n")
	}
	coeffs := []*big.Int{new(big.Int).Mul(m, minv)}
	// The polynomial and the factors of p'q' are the private key too:
	// overwritten before Deal returns (best effort in Go's memory).
	defer func() {
		for _, x := range append(coeffs, pp, qq, m, nm, minv) {
			clear(x.Bits())
		}
	}()
	for range t - 1 {
		a, err := randInt(rand, nm)
		if err != nil {
			return nil, nil, err
		}
		coeffs = append(coeffs, a)
	}
	return tk, dealShares(tk, coeffs, nm), nil
}

// dealShares evaluates the polynomial at 1..L modulo nm.
func dealShares(tk *ThresholdKey, coeffs []*big.Int, nm *big.Int) []*KeyShare {
	shares := make([]*KeyShare, tk.L)
	for i := 1; i <= tk.L; i++ {
		x := big.NewInt(int64(i))
		s := new(big.Int)
		for j := len(coeffs) - 1; j >= 0; j-- { // Horner
			s.Mul(s, x)
			s.Add(s, coeffs[j])
			s.Mod(s, nm)
		}
		shares[i-1] = &KeyShare{Key: tk, Index: i, S: s}
	}
	return shares
}

// Check reports whether the share fits its key: 1 ≤ Index ≤ L and
// 0 ≤ S < n² (S lies below n·p'q' < n²).
func (s *KeyShare) Check() error {
	if s.Key == nil || s.S == nil || s.Index < 1 || s.Index > s.Key.L || s.S.Sign() < 0 || s.S.Cmp(s.Key.N2) >= 0 {
		return fmt.Errorf("%w: key share out of range", ErrMalformed)
	}
	return nil
}

// Decrypt returns this party's decryption share of c: c^(2Δ·S) mod n².
func (s *KeyShare) Decrypt(c *big.Int) (*big.Int, error) {
	if err := s.Key.CheckCiphertext(c); err != nil {
		return nil, err
	}
	e := new(big.Int).Mul(s.S, s.Key.delta)
	e.Lsh(e, 1)
	return new(big.Int).Exp(c, e, s.Key.N2), nil
}

// Combine returns the plaintext of the ciphertext whose decryption shares
// are given, keyed by share index: at least T of them (ErrShares). With
// c_i = c^(2Δs_i), Π c_i^(2μ_i) = c^(4Δ²d) = 1 + 4Δ²·m·n mod n², where
// μ_i = Δ·λ_i is the Lagrange coefficient at 0 times Δ (an integer), so
// m = L(·)·(4Δ²)⁻¹ mod n. Combine cannot tell a wrong share: the result
// is then a random number mod n; callers check the plaintext's range.
func (tk *ThresholdKey) Combine(shares map[int]*big.Int) (*big.Int, error) {
	if len(shares) < tk.T {
		return nil, fmt.Errorf("%w: %d shares, need %d", ErrShares, len(shares), tk.T)
	}
	idx := make([]int64, 0, len(shares))
	for i, c := range shares {
		if i < 1 || i > tk.L {
			return nil, fmt.Errorf("%w: share index %d outside 1..%d", ErrShares, i, tk.L)
		}
		if err := tk.CheckCiphertext(c); err != nil {
			return nil, fmt.Errorf("share %d: %w", i, err)
		}
		idx = append(idx, int64(i))
	}
	acc := big.NewInt(1)
	for _, i := range idx {
		num := new(big.Int).Set(tk.delta)
		den := big.NewInt(1)
		for _, j := range idx {
			if j == i {
				continue
			}
			num.Mul(num, big.NewInt(j))
			den.Mul(den, big.NewInt(j-i))
		}
		mu := new(big.Int).Quo(num, den) // exact: Δ·λ_i is an integer
		mu.Lsh(mu, 1)
		base := shares[int(i)]
		if mu.Sign() < 0 {
			base = new(big.Int).ModInverse(base, tk.N2)
			mu.Neg(mu)
		}
		acc.Mul(acc, new(big.Int).Exp(base, mu, tk.N2))
		acc.Mod(acc, tk.N2)
	}
	m := tk.l(acc)
	f := new(big.Int).Mul(tk.delta, tk.delta)
	f.Lsh(f, 2)
	f.ModInverse(f, tk.N)
	m.Mul(m, f)
	return m.Mod(m, tk.N), nil
}
