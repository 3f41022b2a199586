// Package lenprefix is the length-prefixed binary encoding of Cloister's own
// small formats (the Hello evidence envelope, sealing labels, the node's
// stored keys): big-endian u64 integers, and byte strings as a u64 length
// followed by the bytes. A reader checks every length against what is left,
// so hostile input gives an error, never a panic or a large allocation.
package lenprefix

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
)

// Writer appends to B.
type Writer struct{ B []byte }

// U64 appends v.
func (w *Writer) U64(v uint64) { w.B = binary.BigEndian.AppendUint64(w.B, v) }

// Bytes appends len(p) and p.
func (w *Writer) Bytes(p []byte) { w.U64(uint64(len(p))); w.B = append(w.B, p...) }

// String appends len(s) and s.
func (w *Writer) String(s string) { w.Bytes([]byte(s)) }

// Reader reads what a Writer wrote. After the first error every read
// returns a zero value, and End reports the error.
type Reader struct {
	b   []byte
	err error
}

// NewReader returns a Reader of b.
func NewReader(b []byte) *Reader { return &Reader{b: b} }

// U64 reads an integer.
func (r *Reader) U64() uint64 {
	if r.err != nil {
		return 0
	}
	if len(r.b) < 8 {
		r.err = errors.New("truncated")
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// Bytes reads a byte string (a copy).
func (r *Reader) Bytes() []byte {
	n := r.U64()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.err = fmt.Errorf("length %d exceeds the %d bytes left", n, len(r.b))
		return nil
	}
	p := bytes.Clone(r.b[:n])
	r.b = r.b[n:]
	return p
}

// String reads a string.
func (r *Reader) String() string { return string(r.Bytes()) }

// End returns the first error, or an error if bytes are left over.
func (r *Reader) End() error {
	if r.err == nil && len(r.b) != 0 {
		r.err = fmt.Errorf("%d trailing bytes", len(r.b))
	}
	return r.err
}
