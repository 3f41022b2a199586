package protecttest

import (
	"bytes"
	"crypto/sha256"
	"fmt"
)

// A Mutation is a hostile variant of a valid payload.
type Mutation struct {
	// Name says what was done, for failure messages: "truncated to 17 of
	// 120 bytes", "header byte 4 xor 0x01".
	Name  string
	Bytes []byte
	// MayPass marks a variant a scheme may accept: a flipped byte after the
	// header, which a payload without an integrity check (a ciphertext, a
	// float) cannot notice. It must still not panic.
	MayPass bool
}

// Mutations returns the hostile variants of valid that every entry point
// must reject without panicking:
//
//   - nil, empty, and 9 garbage bytes;
//   - every prefix of a payload of up to 512 bytes; for a longer one, the
//     prefixes up to 256 bytes, 64 lengths spread over the rest, and the
//     last 32;
//   - the payload with one trailing zero byte, the payload twice, and as
//     many zero bytes as the payload has;
//   - each of the first headerLen bytes xor 0x01 and xor 0xff;
//
// followed by variants marked MayPass: one byte xor 0xff at every position
// after the header (at 256 spread positions for a long payload).
func Mutations(valid []byte, headerLen int) []Mutation {
	n := len(valid)
	garbage := sha256.Sum256(append([]byte("protecttest garbage\x00"), valid...))
	ms := []Mutation{
		{Name: "nil", Bytes: nil},
		{Name: "empty", Bytes: []byte{}},
		{Name: "9 garbage bytes", Bytes: garbage[:9]},
	}
	for _, k := range cuts(n) {
		ms = append(ms, Mutation{Name: fmt.Sprintf("truncated to %d of %d bytes", k, n), Bytes: bytes.Clone(valid[:k])})
	}
	ms = append(ms,
		Mutation{Name: "one trailing zero byte", Bytes: append(bytes.Clone(valid), 0)},
		Mutation{Name: "the payload twice", Bytes: append(bytes.Clone(valid), valid...)},
		Mutation{Name: fmt.Sprintf("%d zero bytes", n), Bytes: make([]byte, n)},
	)
	for i := range min(headerLen, n) {
		for _, x := range []byte{0x01, 0xff} {
			b := bytes.Clone(valid)
			b[i] ^= x
			ms = append(ms, Mutation{Name: fmt.Sprintf("header byte %d xor %#02x", i, x), Bytes: b})
		}
	}
	for _, i := range spread(headerLen, n, 256) {
		b := bytes.Clone(valid)
		b[i] ^= 0xff
		ms = append(ms, Mutation{Name: fmt.Sprintf("body byte %d xor 0xff", i), Bytes: b, MayPass: true})
	}
	return ms
}

// cuts returns the truncation lengths tried for a payload of n bytes, in
// ascending order, excluding 0 (the "empty" mutation) and n.
func cuts(n int) []int {
	if n <= 512 {
		return spread(1, n, n)
	}
	var ks []int
	ks = append(ks, spread(1, 256, 256)...)
	ks = append(ks, spread(256, n-32, 64)...)
	return append(ks, spread(n-32, n, 32)...)
}

// spread returns up to k distinct integers spread evenly over [lo, hi),
// ascending.
func spread(lo, hi, k int) []int {
	if hi <= lo || k <= 0 {
		return nil
	}
	w := hi - lo
	if k >= w {
		out := make([]int, w)
		for i := range out {
			out[i] = lo + i
		}
		return out
	}
	out := make([]int, 0, k)
	for i := range k {
		x := lo + i*w/k
		if len(out) == 0 || out[len(out)-1] != x {
			out = append(out, x)
		}
	}
	return out
}
