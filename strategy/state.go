package strategy

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
)

// State encoding, version 1, all integers little-endian:
//
//	magic   "CLST" (4 bytes)
//	version 1 (1 byte)
//	spec    uint16 length, then the canonical spec (String()) in UTF-8
//	step    uint64: rounds applied so far
//	count   uint8: number of vectors
//	vectors count × (uint64 length, then length float64 bits)
//
// The spec pins the strategy and its hyperparameters: state written by
// "fedadam:lr=0.1,…" is rejected by a strategy configured differently.

const (
	stateMagic   = "CLST"
	stateVersion = 1
)

// stateSize is the length of marshalState's output with count vectors of
// d values each.
func stateSize(spec string, count, d int) int {
	return 4 + 1 + 2 + len(spec) + 8 + 1 + count*(8+8*d)
}

func marshalState(spec string, step uint64, vecs ...fl.Vector) []byte {
	n := 4 + 1 + 2 + len(spec) + 8 + 1
	for _, v := range vecs {
		n += 8 + 8*len(v)
	}
	b := make([]byte, 0, n)
	b = append(b, stateMagic...)
	b = append(b, stateVersion)
	b = binary.LittleEndian.AppendUint16(b, uint16(len(spec)))
	b = append(b, spec...)
	b = binary.LittleEndian.AppendUint64(b, step)
	b = append(b, byte(len(vecs)))
	for _, v := range vecs {
		b = binary.LittleEndian.AppendUint64(b, uint64(len(v)))
		for _, x := range v {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
	}
	return b
}

// unmarshalState decodes state written for spec with exactly count vectors.
// The vectors are either all empty (no round applied yet) or all of one
// length, and all finite.
func unmarshalState(data []byte, spec string, count int) (step uint64, vecs []fl.Vector, err error) {
	fail := func(format string, a ...any) (uint64, []fl.Vector, error) {
		return 0, nil, fmt.Errorf("%w: %s", ErrState, fmt.Sprintf(format, a...))
	}
	if len(data) < 5 || string(data[:4]) != stateMagic {
		return fail("not Cloister strategy state")
	}
	if data[4] != stateVersion {
		return fail("version %d, want %d", data[4], stateVersion)
	}
	r := data[5:]
	if len(r) < 2 {
		return fail("truncated")
	}
	sl := int(binary.LittleEndian.Uint16(r))
	r = r[2:]
	if len(r) < sl {
		return fail("truncated")
	}
	if got := string(r[:sl]); got != spec {
		return fail("written by %q, this strategy is %q", got, spec)
	}
	r = r[sl:]
	if len(r) < 9 {
		return fail("truncated")
	}
	step = binary.LittleEndian.Uint64(r)
	if int(r[8]) != count {
		return fail("%d vectors, want %d", r[8], count)
	}
	r = r[9:]
	dim := -1
	for i := 0; i < count; i++ {
		if len(r) < 8 {
			return fail("truncated")
		}
		n := binary.LittleEndian.Uint64(r)
		r = r[8:]
		if n > uint64(len(r)/8) {
			return fail("vector %d claims %d values, %d bytes remain", i, n, len(r))
		}
		if dim >= 0 && int(n) != dim {
			return fail("vector %d has %d values, vector 0 has %d", i, n, dim)
		}
		dim = int(n)
		var v fl.Vector
		if n > 0 {
			v = make(fl.Vector, n)
			for j := range v {
				v[j] = math.Float64frombits(binary.LittleEndian.Uint64(r[8*j:]))
			}
			if j := firstNonFinite(v); j >= 0 {
				return fail("vector %d value %d is %v", i, j, v[j])
			}
		}
		r = r[8*n:]
		vecs = append(vecs, v)
	}
	if len(r) != 0 {
		return fail("%d trailing bytes", len(r))
	}
	return step, vecs, nil
}
