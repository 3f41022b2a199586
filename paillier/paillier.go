package paillier

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// Sentinel errors callers branch on.
var (
	// ErrMalformed: bytes or numbers that are not a valid value of the key
	// (wrong size, out of range, not a unit).
	ErrMalformed = errors.New("paillier: malformed value")
	// ErrShares: too few or inconsistent decryption shares.
	ErrShares = errors.New("paillier: cannot combine the decryption shares")
)

var one = big.NewInt(1)

// PublicKey is a Paillier public key with generator g = n+1: the
// encryption of m is (1+n)^m · r^n = (1 + m·n) · r^n mod n².
type PublicKey struct {
	N  *big.Int
	N2 *big.Int
	// size is the length of n in bytes; ciphertexts take 2·size.
	size int
}

// NewPublicKey checks n (odd, at least 64 bits) and returns the key.
func NewPublicKey(n *big.Int) (*PublicKey, error) {
	if n == nil || n.Sign() <= 0 || n.Bit(0) == 0 || n.BitLen() < 64 {
		return nil, fmt.Errorf("%w: modulus must be odd and of at least 64 bits", ErrMalformed)
	}
	return &PublicKey{N: new(big.Int).Set(n), N2: new(big.Int).Mul(n, n), size: (n.BitLen() + 7) / 8}, nil
}

// Size is the length of n in bytes.
func (pk *PublicKey) Size() int { return pk.size }

// CiphertextSize is the length of an encoded ciphertext: 2·Size.
func (pk *PublicKey) CiphertextSize() int { return 2 * pk.size }

// Fingerprint is SHA-256 of the key's modulus: what payloads bind to
// refuse the values of another key.
func (pk *PublicKey) Fingerprint() [32]byte {
	h := sha256.New()
	h.Write([]byte("cloister/paillier/v1 public key"))
	h.Write(pk.N.Bytes())
	var f [32]byte
	h.Sum(f[:0])
	return f
}

// randomUnit draws r uniformly from Z*_n.
func (pk *PublicKey) randomUnit(rand io.Reader) (*big.Int, error) {
	for range 100 {
		r, err := randInt(rand, pk.N)
		if err != nil {
			return nil, err
		}
		if r.Sign() > 0 && new(big.Int).GCD(nil, nil, r, pk.N).Cmp(one) == 0 {
			return r, nil
		}
	}
	return nil, errors.New("paillier: the random source gives no unit of Z_n")
}

// Encrypt encrypts m, 0 ≤ m < n, with randomness from rand.
func (pk *PublicKey) Encrypt(m *big.Int, rand io.Reader) (*big.Int, error) {
	if m.Sign() < 0 || m.Cmp(pk.N) >= 0 {
		return nil, fmt.Errorf("%w: plaintext outside [0, n)", ErrMalformed)
	}
	r, err := pk.randomUnit(rand)
	if err != nil {
		return nil, err
	}
	return pk.encryptWith(m, r), nil
}

// RandomUnits draws k units of Z*_n from rand, in order: the randomness
// of k encryptions, drawn before they are computed in parallel.
func (pk *PublicKey) RandomUnits(rand io.Reader, k int) ([]*big.Int, error) {
	out := make([]*big.Int, k)
	for i := range out {
		var err error
		if out[i], err = pk.randomUnit(rand); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// EncryptWith encrypts m (0 ≤ m < n, unchecked) with the randomness r, a
// unit from RandomUnits.
func (pk *PublicKey) EncryptWith(m, r *big.Int) *big.Int { return pk.encryptWith(m, r) }

// encryptWith encrypts m with the randomness r.
func (pk *PublicKey) encryptWith(m, r *big.Int) *big.Int {
	c := new(big.Int).Exp(r, pk.N, pk.N2)
	gm := new(big.Int).Mul(m, pk.N)
	gm.Add(gm, one)
	c.Mul(c, gm)
	return c.Mod(c, pk.N2)
}

// Add returns the ciphertext of the sum of the plaintexts of a and b
// (mod n): a·b mod n². It may reuse dst.
func (pk *PublicKey) Add(dst, a, b *big.Int) *big.Int {
	if dst == nil {
		dst = new(big.Int)
	}
	dst.Mul(a, b)
	return dst.Mod(dst, pk.N2)
}

// CheckCiphertext reports whether c is a ciphertext of this key's
// space: 0 < c < n² and gcd(c, n) = 1.
func (pk *PublicKey) CheckCiphertext(c *big.Int) error {
	if c.Sign() <= 0 || c.Cmp(pk.N2) >= 0 {
		return fmt.Errorf("%w: ciphertext outside (0, n²)", ErrMalformed)
	}
	if new(big.Int).GCD(nil, nil, c, pk.N).Cmp(one) != 0 {
		return fmt.Errorf("%w: ciphertext shares a factor with n", ErrMalformed)
	}
	return nil
}

// AppendCiphertext appends c as exactly CiphertextSize big-endian bytes.
func (pk *PublicKey) AppendCiphertext(b []byte, c *big.Int) []byte {
	off := len(b)
	b = append(b, make([]byte, pk.CiphertextSize())...)
	c.FillBytes(b[off:])
	return b
}

// ParseCiphertext reads exactly CiphertextSize bytes and checks the value
// (CheckCiphertext).
func (pk *PublicKey) ParseCiphertext(b []byte) (*big.Int, error) {
	if len(b) != pk.CiphertextSize() {
		return nil, fmt.Errorf("%w: ciphertext of %d bytes, want %d", ErrMalformed, len(b), pk.CiphertextSize())
	}
	c := new(big.Int).SetBytes(b)
	if err := pk.CheckCiphertext(c); err != nil {
		return nil, err
	}
	return c, nil
}

// PrivateKey is a whole Paillier key, for tests and the dealer: λ = lcm
// (p−1, q−1) and μ = λ⁻¹ mod n.
type PrivateKey struct {
	PublicKey
	p, q       *big.Int
	lambda, mu *big.Int
}

// NewPrivateKey builds the key of distinct odd primes p and q.
func NewPrivateKey(p, q *big.Int) (*PrivateKey, error) {
	if p.Cmp(q) == 0 {
		return nil, errors.New("paillier: p = q")
	}
	n := new(big.Int).Mul(p, q)
	pk, err := NewPublicKey(n)
	if err != nil {
		return nil, err
	}
	p1, q1 := new(big.Int).Sub(p, one), new(big.Int).Sub(q, one)
	g := new(big.Int).GCD(nil, nil, p1, q1)
	lambda := new(big.Int).Mul(p1, q1)
	lambda.Div(lambda, g)
	mu := new(big.Int).ModInverse(lambda, n)
	if mu == nil {
		return nil, errors.New("paillier: λ is not invertible mod n")
	}
	return &PrivateKey{PublicKey: *pk, p: new(big.Int).Set(p), q: new(big.Int).Set(q), lambda: lambda, mu: mu}, nil
}

// GenerateKey draws a key whose modulus has bits bits, from two safe
// primes of bits/2 bits each (so that it can be dealt; see Deal).
func GenerateKey(bits int, rand io.Reader) (*PrivateKey, error) {
	if bits < 64 || bits%2 != 0 {
		return nil, fmt.Errorf("paillier: modulus of %d bits, want an even number of at least 64", bits)
	}
	for {
		p, err := SafePrime(rand, bits/2)
		if err != nil {
			return nil, err
		}
		q, err := SafePrime(rand, bits/2)
		if err != nil {
			return nil, err
		}
		if p.Cmp(q) == 0 {
			continue
		}
		if new(big.Int).Mul(p, q).BitLen() != bits {
			continue
		}
		return NewPrivateKey(p, q)
	}
}

// L is (x−1)/n.
func (pk *PublicKey) l(x *big.Int) *big.Int {
	r := new(big.Int).Sub(x, one)
	return r.Div(r, pk.N)
}

// Decrypt returns the plaintext of c: L(c^λ mod n²)·μ mod n.
func (sk *PrivateKey) Decrypt(c *big.Int) (*big.Int, error) {
	if err := sk.CheckCiphertext(c); err != nil {
		return nil, err
	}
	m := sk.l(new(big.Int).Exp(c, sk.lambda, sk.N2))
	m.Mul(m, sk.mu)
	return m.Mod(m, sk.N), nil
}

// randInt draws uniformly from [0, max) by rejection, reading only from
// rand (crypto/rand.Int may not read deterministically).
func randInt(rand io.Reader, max *big.Int) (*big.Int, error) {
	bits := max.BitLen()
	buf := make([]byte, (bits+7)/8)
	x := new(big.Int)
	for range 1000 {
		if _, err := io.ReadFull(rand, buf); err != nil {
			return nil, fmt.Errorf("paillier: reading randomness: %w", err)
		}
		if extra := uint(len(buf)*8 - bits); extra > 0 {
			buf[0] &= byte(0xff >> extra)
		}
		x.SetBytes(buf)
		if x.Cmp(max) < 0 {
			return x, nil
		}
	}
	return nil, errors.New("paillier: the random source is stuck")
}
