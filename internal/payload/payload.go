// Package payload reads the framed payloads of the aggregation modes that
// frame their own (protect/plain, protect/tee, paillier, secagg): a header of a magic,
// a version and a kind, then a body read field by field with a sticky
// error, so that a decoder checks one error after its reads and never
// indexes past the end of hostile bytes.
package payload

import (
	"encoding/binary"
	"math"
)

// Errf makes the error of a malformed or foreign input named what; each
// mode wraps its own sentinels (protect.ErrMalformed, protect.ErrForeign)
// and prefix.
type Errf func(what, format string, args ...any) error

// Format is a mode's payload header: Magic, then Version, then a kind in
// 1 … Kinds−1. Name names the format in errors ("plain", "paillier").
type Format struct {
	Name      string
	Magic     string
	Version   byte
	Kinds     byte
	Malformed Errf
	Foreign   Errf
	KindName  func(byte) string
}

// HeaderLen is the length of f's header.
func (f Format) HeaderLen() int { return len(f.Magic) + 2 }

// Append appends f's header for kind k to b.
func (f Format) Append(b []byte, k byte) []byte {
	b = append(b, f.Magic...)
	return append(b, f.Version, k)
}

// Open checks the header of b and returns a reader of a body of kind want.
// A well-formed header of another kind is Foreign; anything else wrong is
// Malformed.
func (f Format) Open(b []byte, want byte, what string) (*Reader, error) {
	n := len(f.Magic)
	switch {
	case len(b) == 0:
		return nil, f.Malformed(what, "empty")
	case len(b) < f.HeaderLen():
		return nil, f.Malformed(what, "%d bytes, shorter than the %d-byte header", len(b), f.HeaderLen())
	case string(b[:n]) != f.Magic:
		return nil, f.Malformed(what, "not a %s payload (starts %x)", f.Name, b[:n])
	case b[n] != f.Version:
		return nil, f.Malformed(what, "format version %d, want %d", b[n], f.Version)
	}
	k := b[n+1]
	if k < 1 || k >= f.Kinds {
		return nil, f.Malformed(what, "unknown payload kind %d", k)
	}
	if k != want {
		return nil, f.Foreign(what, "a %v, want a %v", f.KindName(k), f.KindName(want))
	}
	return &Reader{What: what, B: b[f.HeaderLen():], Malformed: f.Malformed}, nil
}

// OpenFixed is Open for kinds whose body has a fixed length.
func (f Format) OpenFixed(b []byte, want byte, bodyLen int, what string) (*Reader, error) {
	r, err := f.Open(b, want, what)
	if err != nil {
		return nil, err
	}
	if len(r.B) != bodyLen {
		return nil, f.Malformed(what, "a %v body has %d bytes, got %d", f.KindName(want), bodyLen, len(r.B))
	}
	return r, nil
}

// MaxIndex is the largest count or index U32 accepts, so that counts are
// non-negative ints on every platform.
const MaxIndex = math.MaxInt32

// Reader reads a body. Reads past the end set a sticky Err and return zero
// values; callers check Err before they trust what they read.
type Reader struct {
	What      string // names the input in errors
	B         []byte // what is left
	Err       error
	Malformed Errf
}

// Done reports the sticky error, or bytes left after the last field.
func (r *Reader) Done() error {
	if r.Err != nil {
		return r.Err
	}
	if len(r.B) != 0 {
		return r.Malformed(r.What, "%d trailing bytes", len(r.B))
	}
	return nil
}

// Take returns the next n bytes (capacity n), or nil past the end.
func (r *Reader) Take(n int) []byte {
	if r.Err != nil {
		return nil
	}
	if n < 0 || n > len(r.B) {
		r.Err = r.Malformed(r.What, "truncated: need %d more bytes, have %d", n, len(r.B))
		return nil
	}
	p := r.B[:n:n]
	r.B = r.B[n:]
	return p
}

// U32 reads a big-endian count or index; above MaxIndex it is malformed.
func (r *Reader) U32() int {
	p := r.Take(4)
	if p == nil {
		return 0
	}
	v := binary.BigEndian.Uint32(p)
	if v > MaxIndex {
		r.Err = r.Malformed(r.What, "count or index %d out of range", v)
		return 0
	}
	return int(v)
}

// U64 reads a big-endian uint64.
func (r *Reader) U64() uint64 {
	p := r.Take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

// F64 reads a big-endian float64.
func (r *Reader) F64() float64 { return math.Float64frombits(r.U64()) }

// Hash reads a 32-byte digest.
func (r *Reader) Hash() (h [32]byte) {
	copy(h[:], r.Take(32))
	return h
}

// AppendU32 appends v as a big-endian uint32 (a count or member index).
func AppendU32(b []byte, v int) []byte { return binary.BigEndian.AppendUint32(b, uint32(v)) }

// AppendU64 appends v big-endian.
func AppendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// AppendF64 appends v as a big-endian IEEE 754 binary64.
func AppendF64(b []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(b, math.Float64bits(v))
}

// AppendF64s appends each value of v with AppendF64.
func AppendF64s(b []byte, v []float64) []byte {
	for _, x := range v {
		b = AppendF64(b, x)
	}
	return b
}
