package compress

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/cloisterfl/cloister/fl"
)

// Sparse is a vector of length N of which only the values at Index are
// non-zero. Index is strictly increasing.
type Sparse struct {
	N     int
	Index []uint32
	Value []float32
}

// Len returns N.
func (s *Sparse) Len() int { return s.N }

// Vector returns the dense vector.
func (s *Sparse) Vector() fl.Vector {
	v := make(fl.Vector, s.N)
	for j, i := range s.Index {
		v[i] = float64(s.Value[j])
	}
	return v
}

// WireSize returns 9 + 8·len(Index).
func (s *Sparse) WireSize() int { return 9 + 8*len(s.Index) }

// MarshalBinary encodes 'S', N and the count (uint32 each), the indices
// (uint32) and the values (float32), little-endian.
func (s *Sparse) MarshalBinary() ([]byte, error) {
	if len(s.Index) != len(s.Value) || s.N < 0 || s.N > MaxLen {
		return nil, fmt.Errorf("%w: sparse vector of length %d with %d indices and %d values", ErrFormat, s.N, len(s.Index), len(s.Value))
	}
	b := header(tagSparse, s.N, s.WireSize())
	b = binary.LittleEndian.AppendUint32(b, uint32(len(s.Index)))
	for _, i := range s.Index {
		b = binary.LittleEndian.AppendUint32(b, i)
	}
	for _, x := range s.Value {
		b = appendFloat32(b, x)
	}
	return b, nil
}

// UnmarshalBinary decodes MarshalBinary's output. Indices must be strictly
// increasing and below N, values finite.
func (s *Sparse) UnmarshalBinary(data []byte) error {
	n, err := readHeader(data, tagSparse, "sparse")
	if err != nil {
		return err
	}
	if len(data) < 9 {
		return fmt.Errorf("%w: sparse payload of %d bytes, shorter than its header", ErrFormat, len(data))
	}
	k := int(binary.LittleEndian.Uint32(data[5:9]))
	if k > n || len(data) != 9+8*k {
		return fmt.Errorf("%w: sparse payload of length %d with %d entries has %d bytes", ErrFormat, n, k, len(data))
	}
	idx := make([]uint32, k)
	vals := make([]float32, k)
	for j := range idx {
		idx[j] = binary.LittleEndian.Uint32(data[9+4*j:])
		if int(idx[j]) >= n || (j > 0 && idx[j] <= idx[j-1]) {
			return fmt.Errorf("%w: sparse index %d at entry %d is out of order or beyond length %d", ErrFormat, idx[j], j, n)
		}
		x, ok := readFloat32(data[9+4*k+4*j:])
		if !ok {
			return fmt.Errorf("%w: sparse value at entry %d is not finite", ErrFormat, j)
		}
		vals[j] = x
	}
	s.N, s.Index, s.Value = n, idx, vals
	return nil
}

// TopK is top-k sparsification with error feedback: each Encode sends the
// k = ⌈F·d⌉ largest-magnitude coordinates of residual + update and keeps
// the rest as the next residual. One TopK belongs to one node.
type TopK struct {
	frac     float64
	limit    float64 // bound on |residual + update|; 0: float32's range
	residual fl.Vector
}

// NewTopK returns a top-k encoder sending the fraction frac in (0, 1] of
// the coordinates, with an empty residual.
func NewTopK(frac float64) (*TopK, error) {
	if !(frac > 0 && frac <= 1) {
		return nil, fmt.Errorf("%w: top-k fraction %v outside (0, 1]", ErrSpec, frac)
	}
	return &TopK{frac: frac}, nil
}

// K returns how many of d coordinates are sent: ⌈F·d⌉, at least 1 when d > 0.
func (t *TopK) K(d int) int {
	if d == 0 {
		return 0
	}
	return min(d, max(1, int(math.Ceil(t.frac*float64(d)-1e-9))))
}

// Residual returns a copy of what has not been sent yet (nil before the
// first Encode).
func (t *TopK) Residual() fl.Vector { return t.residual.Clone() }

// Encode adds v to the residual, sends the K largest-magnitude coordinates
// (ties broken by the lower index) rounded to float32, and keeps the rest,
// rounding error included, as the new residual. A v whose length differs
// from earlier ones is an error wrapping fl.ErrDimension. On error the
// residual is unchanged.
func (t *TopK) Encode(v fl.Vector, _ *rand.Rand) (Payload, error) {
	if t.residual != nil && len(v) != len(t.residual) {
		return nil, fmt.Errorf("top-k: update of length %d after %d: %w", len(v), len(t.residual), fl.ErrDimension)
	}
	if err := checkFloat32(v); err != nil {
		return nil, err
	}
	acc := v.Clone()
	if t.residual != nil {
		acc.Add(1, t.residual)
		if err := checkFloat32(acc); err != nil {
			return nil, fmt.Errorf("top-k: update plus residual: %w", err)
		}
	}
	if t.limit > 0 {
		if i := slices.IndexFunc(acc, func(x float64) bool { return math.Abs(x) > t.limit }); i >= 0 {
			return nil, fmt.Errorf("%w: top-k: update plus residual is %g at element %d, beyond %g", ErrRange, acc[i], i, t.limit)
		}
	}
	k := t.K(len(acc))
	mags := make([]float64, len(acc))
	for i, x := range acc {
		mags[i] = math.Abs(x)
	}
	slices.Sort(mags)
	var thr float64
	if k > 0 {
		thr = mags[len(mags)-k]
	}
	above := 0
	for _, x := range acc {
		if math.Abs(x) > thr {
			above++
		}
	}
	ties := k - above // coordinates equal to the threshold to send, lowest index first
	s := &Sparse{N: len(acc), Index: make([]uint32, 0, k), Value: make([]float32, 0, k)}
	for i, x := range acc {
		a := math.Abs(x)
		if a < thr || (a == thr && ties == 0) {
			continue
		}
		if a == thr {
			ties--
		}
		f := float32(x)
		s.Index = append(s.Index, uint32(i))
		s.Value = append(s.Value, f)
		acc[i] = x - float64(f)
	}
	t.residual = acc
	return s, nil
}
