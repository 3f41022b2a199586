package secagg

import (
	"errors"
	"fmt"
	"io"
)

// Shamir secret sharing over GF(2¹⁶).
//
// A 128-bit seed is 8 field elements (big-endian 16-bit words); each is
// shared with its own random polynomial of degree t−1, so a share of a seed
// is also 8 elements, 16 bytes. The share of the member at sorted index i is
// the polynomials' values at x = i+1, so a group can have up to 65,535
// members. The field is GF(2)[x]/(x¹⁶ + x⁵ + x³ + x² + 1) (polynomial
// 0x1002D, which is primitive: 2 generates the multiplicative group, see
// TestField), with log and exp tables.

const (
	fieldPoly  = 0x1002D // x¹⁶ + x⁵ + x³ + x² + 1
	fieldOrder = 1<<16 - 1
	seedLen    = 16 // bytes in a seed, and in a share of one
	seedWords  = seedLen / 2
)

// seed is a 128-bit secret: an AES-128 key for the mask PRG.
type seed [seedLen]byte

var (
	gfExp [2 * fieldOrder]uint16
	gfLog [1 << 16]uint16
)

func init() {
	x := uint32(1)
	for i := range fieldOrder {
		gfExp[i] = uint16(x)
		gfExp[i+fieldOrder] = uint16(x)
		gfLog[x] = uint16(i)
		x <<= 1
		if x&(1<<16) != 0 {
			x ^= fieldPoly
		}
	}
}

func gfMul(a, b uint16) uint16 {
	if a == 0 || b == 0 {
		return 0
	}
	return gfExp[int(gfLog[a])+int(gfLog[b])]
}

// gfInv returns 1/a for a ≠ 0.
func gfInv(a uint16) uint16 { return gfExp[fieldOrder-int(gfLog[a])] }

// gfMulSlow multiplies carry-less and reduces bit by bit: the table-free
// reference the tests hold the tables to.
func gfMulSlow(a, b uint16) uint16 {
	var p uint32
	for i := range 16 {
		if b>>i&1 == 1 {
			p ^= uint32(a) << i
		}
	}
	for i := 31; i >= 16; i-- {
		if p>>i&1 == 1 {
			p ^= fieldPoly << (i - 16)
		}
	}
	return uint16(p)
}

// splitter deals seeds to n members with threshold t.
type splitter struct {
	n, t int
	coef []uint16 // scratch: t−1 random coefficients per word
	rbuf []byte
}

func newSplitter(n, t int) (*splitter, error) {
	if t < 1 || t > n || n > fieldOrder {
		return nil, fmt.Errorf("secagg: Shamir sharing %d of %d: want 1 ≤ t ≤ n ≤ %d", t, n, fieldOrder)
	}
	return &splitter{n: n, t: t, coef: make([]uint16, (t-1)*seedWords), rbuf: make([]byte, 2*(t-1)*seedWords)}, nil
}

// split writes the share of member i (x = i+1) of s to out[i*stride:], 16
// bytes each, drawing the polynomial's coefficients from rand.
func (sp *splitter) split(s seed, rand io.Reader, out []byte, stride int) error {
	if _, err := io.ReadFull(rand, sp.rbuf); err != nil {
		return fmt.Errorf("secagg: drawing Shamir coefficients: %w", err)
	}
	for i := range sp.coef {
		sp.coef[i] = uint16(sp.rbuf[2*i])<<8 | uint16(sp.rbuf[2*i+1])
	}
	deg := sp.t - 1
	for i := range sp.n {
		x := uint16(i + 1)
		lx := int(gfLog[x])
		o := out[i*stride : i*stride+seedLen]
		for w := range seedWords {
			// Horner: a_{t-1} x^{t-1} + … + a_1 x + secret.
			var y uint16
			cs := sp.coef[w*deg : (w+1)*deg]
			for j := deg - 1; j >= 0; j-- {
				y ^= cs[j]
				if y != 0 {
					y = gfExp[int(gfLog[y])+lx]
				}
			}
			y ^= uint16(s[2*w])<<8 | uint16(s[2*w+1])
			o[2*w], o[2*w+1] = byte(y>>8), byte(y)
		}
	}
	return nil
}

// lagrange returns the coefficients λ_j that interpolate, at x = 0, the
// values at xs (distinct, nonzero): secret = Σ λ_j·y_j.
func lagrange(xs []uint16) ([]uint16, error) {
	lam := make([]uint16, len(xs))
	for j, xj := range xs {
		if xj == 0 {
			return nil, errors.New("secagg: Shamir abscissa 0")
		}
		num, den := uint16(1), uint16(1)
		for m, xm := range xs {
			if m == j {
				continue
			}
			if xm == xj {
				return nil, fmt.Errorf("secagg: Shamir abscissa %d twice", xj)
			}
			num = gfMul(num, xm)
			den = gfMul(den, xm^xj)
		}
		lam[j] = gfMul(num, gfInv(den))
	}
	return lam, nil
}

// combine interpolates a seed from the shares ys[j] (16 bytes each) at the
// abscissae whose Lagrange coefficients are lam.
func combine(lam []uint16, ys [][]byte) seed {
	var s seed
	for w := range seedWords {
		var acc uint16
		for j, l := range lam {
			y := uint16(ys[j][2*w])<<8 | uint16(ys[j][2*w+1])
			acc ^= gfMul(l, y)
		}
		s[2*w], s[2*w+1] = byte(acc>>8), byte(acc)
	}
	return s
}
