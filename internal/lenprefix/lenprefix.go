// Package lenprefix is the length-prefixed binary encoding of Cloister's own
// small formats (the Hello evidence envelope, sealing labels, the node's
// stored keys, and the bytes the round engine signs, seals and boxes):
// big-endian u64 integers, byte strings as a u64 length followed by the
// bytes, and fixed-size fields (digests) as raw bytes. A reader checks every length against what is left,
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

// Raw appends p without a length: for fixed-size fields such as digests,
// which the reader reads back with [Reader.Raw] and the same size.
func (w *Writer) Raw(p []byte) { w.B = append(w.B, p...) }

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
		r.Fail(errors.New("truncated"))
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}

// Bytes reads a byte string (a copy; nil if it is empty).
func (r *Reader) Bytes() []byte {
	n := r.U64()
	if r.err != nil {
		return nil
	}
	if n > uint64(len(r.b)) {
		r.Fail(fmt.Errorf("length %d exceeds the %d bytes left", n, len(r.b)))
		return nil
	}
	return r.take(int(n))
}

// Raw reads n bytes written by [Writer.Raw] (a copy; nil if n is 0).
func (r *Reader) Raw(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.Fail(errors.New("truncated"))
		return nil
	}
	return r.take(n)
}

func (r *Reader) take(n int) []byte {
	var p []byte
	if n > 0 {
		p = bytes.Clone(r.b[:n])
	}
	r.b = r.b[n:]
	return p
}

// Err returns the first error so far, without End's check for leftover
// bytes.
func (r *Reader) Err() error { return r.err }

// Len returns the number of bytes left to read.
func (r *Reader) Len() int { return len(r.b) }

// Fail records err as the reader's error, unless it already has one: for
// checks of the caller's own (a length bound, a label), so that End reports
// the first problem.
func (r *Reader) Fail(err error) {
	if r.err == nil {
		r.err = err
	}
}

// String reads a string.
func (r *Reader) String() string { return string(r.Bytes()) }

// End returns the first error, or an error if bytes are left over.
func (r *Reader) End() error {
	if r.err == nil && len(r.b) != 0 {
		r.Fail(fmt.Errorf("%d trailing bytes", len(r.b)))
	}
	return r.err
}
