package paillier

import (
	"errors"
	"fmt"
	"io"
	"math/big"
)

// smallPrimes are the odd primes below 2^12, for the sieve.
var smallPrimes = func() []uint64 {
	var ps []uint64
	for n := uint64(3); n < 1<<12; n += 2 {
		prime := true
		for _, p := range ps {
			if p*p > n {
				break
			}
			if n%p == 0 {
				prime = false
				break
			}
		}
		if prime {
			ps = append(ps, n)
		}
	}
	return ps
}()

// SafePrime returns a prime p = 2p'+1 of exactly bits bits with p' prime,
// drawn from rand. It searches upward from a random odd p' with the top
// two bits set, sieving both p' and 2p'+1 by the primes below 4096 before
// any modular exponentiation, then checks p with a base-2 Fermat test and
// both with Miller–Rabin (20 rounds) and Baillie–PSW (math/big's
// ProbablyPrime).
func SafePrime(rand io.Reader, bits int) (*big.Int, error) {
	if bits < 16 {
		return nil, fmt.Errorf("paillier: safe prime of %d bits, want at least 16", bits)
	}
	qbits := bits - 1
	buf := make([]byte, (qbits+7)/8)
	two := big.NewInt(2)
	for range 1 << 16 {
		if _, err := io.ReadFull(rand, buf); err != nil {
			return nil, fmt.Errorf("paillier: reading randomness: %w", err)
		}
		if extra := uint(len(buf)*8 - qbits); extra > 0 {
			buf[0] &= byte(0xff >> extra)
		}
		q := new(big.Int).SetBytes(buf)
		q.SetBit(q, qbits-1, 1)
		q.SetBit(q, qbits-2, 1)
		q.SetBit(q, 0, 1)
		// q ≡ 1 mod 2 and we keep p = 2q+1 ≡ 3 mod 4; step by 2.
		res := make([]uint64, len(smallPrimes))
		var mod big.Int
		for i, sp := range smallPrimes {
			res[i] = mod.Mod(q, new(big.Int).SetUint64(sp)).Uint64()
		}
		for delta := uint64(0); delta < 1<<20; delta += 2 {
			ok := true
			for i, sp := range smallPrimes {
				r := (res[i] + delta) % sp
				// q ≡ 0 or 2q+1 ≡ 0 (q ≡ (sp−1)/2) mod sp.
				if r == 0 || r == (sp-1)/2 {
					ok = false
					break
				}
			}
			if !ok {
				continue
			}
			cand := new(big.Int).Add(q, new(big.Int).SetUint64(delta))
			if cand.BitLen() != qbits {
				break
			}
			p := new(big.Int).Lsh(cand, 1)
			p.Add(p, one)
			// Fermat base 2 on p: cheap and rejects almost every composite.
			pm1 := new(big.Int).Sub(p, one)
			if new(big.Int).Exp(two, pm1, p).Cmp(one) != 0 {
				continue
			}
			if cand.ProbablyPrime(20) && p.ProbablyPrime(20) {
				return p, nil
			}
		}
	}
	return nil, errors.New("paillier: no safe prime found")
}
