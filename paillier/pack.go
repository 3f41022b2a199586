package paillier

import (
	"fmt"
	"math/big"
)

// Packing puts several signed fixed-point integers in one plaintext, as
// BatchCrypt and FATE do: Pack writes q_0, …, q_{k−1} as the integer
// Σ q_j·2^(w·j) (w = slot bits) reduced mod n, a balanced-digit number.
// Sums of packed plaintexts are packed sums, as long as every digit's sum
// stays below 2^(w−1) in absolute value: the caller bounds its inputs so.
// Negative digits borrow from the next one; Unpack undoes it exactly.
type Packing struct {
	SlotBits int
	Slots    int
}

// Pack returns Σ q_j·2^(w·j) mod n for the given digits (at most Slots,
// each |q_j| < 2^(w−1)).
func (k Packing) Pack(q []int64, n *big.Int) *big.Int {
	x := new(big.Int)
	var d big.Int
	for j := len(q) - 1; j >= 0; j-- {
		x.Lsh(x, uint(k.SlotBits))
		x.Add(x, d.SetInt64(q[j]))
	}
	if x.Sign() < 0 {
		x.Add(x, n)
	}
	return x
}

// Unpack reads count digits of a plaintext x (0 ≤ x < n) into out. It
// refuses (ErrMalformed) a plaintext that is not a packed sum: one whose
// centered value does not fit Slots digits, or with a digit above bound
// in absolute value. A random plaintext (from a wrong decryption share)
// passes with probability about 2^(w·Slots+1)/n.
func (k Packing) Unpack(x, n *big.Int, count int, bound *big.Int, out []int64) error {
	if count > k.Slots || len(out) < count {
		return fmt.Errorf("paillier: unpacking %d digits of %d slots", count, k.Slots)
	}
	v := new(big.Int).Set(x)
	half := new(big.Int).Rsh(n, 1)
	if v.Cmp(half) > 0 {
		v.Sub(v, n)
	}
	w := uint(k.SlotBits)
	mask := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), w), big.NewInt(1))
	halfSlot := int64(1) << (w - 1)
	var d big.Int
	for j := range k.Slots {
		d.And(v, mask) // two's complement for negative v
		digit := d.Int64()
		if digit >= halfSlot {
			digit -= 2 * halfSlot
		}
		v.Sub(v, d.SetInt64(digit))
		v.Rsh(v, w)
		if d.SetInt64(digit).CmpAbs(bound) > 0 {
			return fmt.Errorf("%w: digit %d of a plaintext is %d, above the bound %v", ErrMalformed, j, digit, bound)
		}
		if j < count {
			out[j] = digit
		} else if digit != 0 {
			return fmt.Errorf("%w: unused digit %d of a plaintext is %d", ErrMalformed, j, digit)
		}
	}
	if v.Sign() != 0 {
		return fmt.Errorf("%w: a plaintext exceeds its %d slots", ErrMalformed, k.Slots)
	}
	return nil
}
