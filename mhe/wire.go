package mhe

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"

	"github.com/tuneinsight/lattigo/v6/ring"

	"github.com/cloisterfl/cloister/protect"
)

// The wire format (version 2). Every payload is
//
//	offset size field
//	0      4    magic "CLMH"
//	4      1    version (2; version 1 sent updates and aggregates as
//	            public-key ciphertexts of two polynomials, and is refused)
//	5      1    kind
//	6      1    log2 N of the polynomials in the body (0 if none)
//	7      1    level of the polynomials (number of primes − 1; 0xff if none)
//	8      1    degree: polynomials per element − 1 (0xff if none)
//	9      1    reserved, zero
//	10     2    sender: index of the sender in the sorted member list (0xffff: none)
//	12     16   preset hash
//	28     16   session hash (zero for target keys)
//	44     8    round (zero outside rounds)
//	52     4    aux: vector length d, or the recipient index of a private dealing
//	56     16   binding: hash of what the payload answers (reveal request, target key)
//	72     4    count: number of elements
//	76     4·count lengths of the elements
//	...         the elements, back to back
//
// All integers are little-endian. A decoder checks every header field and
// that each declared length equals the exact size the preset implies for the
// kind and that the lengths add up to the remaining bytes, before it reads a
// single coefficient. Polynomial residues mod q_i are packed in
// bitlen(q_i) bits each, in coefficient order; a residue ≥ q_i is rejected.
// No byte from the network ever reaches a Lattigo UnmarshalBinary or
// ReadFrom: their length prefixes are trusted and 9 hostile bytes can make
// them allocate without bound.

const (
	wireVersion    = 2
	headerSize     = 76
	noSender       = 0xffff
	noLevel        = 0xff
	maxCiphertexts = 2048
)

var magic = [4]byte{'C', 'L', 'M', 'H'}

type kind uint8

const (
	kindAnnouncement kind = iota + 1
	kindPublicDealing
	kindPrivateDealing
	kindSetup
	kindUpdate
	kindAggregate
	kindRevealShare
	kindResult
	kindPartyState
	kindTargetPublic
	kindTargetSecret
)

func (k kind) String() string {
	switch k {
	case kindAnnouncement:
		return "announcement"
	case kindPublicDealing:
		return "public dealing"
	case kindPrivateDealing:
		return "private dealing"
	case kindSetup:
		return "setup"
	case kindUpdate:
		return "update"
	case kindAggregate:
		return "aggregate"
	case kindRevealShare:
		return "reveal share"
	case kindResult:
		return "result"
	case kindPartyState:
		return "party state"
	case kindTargetPublic:
		return "target public key"
	case kindTargetSecret:
		return "target secret key"
	}
	return fmt.Sprintf("kind %d", uint8(k))
}

type header struct {
	kind    kind
	logN    uint8
	level   uint8
	degree  uint8
	sender  uint16
	preset  [16]byte
	session [16]byte
	round   uint64
	aux     uint32
	bind    [16]byte
}

// FormatError reports bytes that are not a well-formed payload. It wraps
// protect.ErrMalformed.
type FormatError struct {
	What   string // the payload, e.g. "update"
	Reason string
}

func (e *FormatError) Error() string {
	return fmt.Sprintf("mhe: malformed %s: %s", e.What, e.Reason)
}

// Unwrap returns protect.ErrMalformed.
func (e *FormatError) Unwrap() error { return protect.ErrMalformed }

// ParamsMismatchError reports a well-formed payload made for other
// parameters (preset, ring degree, level, degree), another session, round,
// kind or sender. It wraps protect.ErrForeign.
type ParamsMismatchError struct {
	What  string // the payload, e.g. "update"
	Field string // e.g. "preset", "level", "round"
	Want  string
	Got   string
}

func (e *ParamsMismatchError) Error() string {
	return fmt.Sprintf("mhe: %s has %s %s, want %s", e.What, e.Field, e.Got, e.Want)
}

// Unwrap returns protect.ErrForeign.
func (e *ParamsMismatchError) Unwrap() error { return protect.ErrForeign }

func malformed(what, format string, a ...any) error {
	return &FormatError{What: what, Reason: fmt.Sprintf(format, a...)}
}

func mismatch(what, field string, want, got any) error {
	return &ParamsMismatchError{What: what, Field: field, Want: fmt.Sprint(want), Got: fmt.Sprint(got)}
}

// appendHeader writes h and the element lengths.
func appendHeader(b []byte, h header, lengths []int) []byte {
	b = append(b, magic[:]...)
	b = append(b, wireVersion, byte(h.kind), h.logN, h.level, h.degree, 0)
	b = binary.LittleEndian.AppendUint16(b, h.sender)
	b = append(b, h.preset[:]...)
	b = append(b, h.session[:]...)
	b = binary.LittleEndian.AppendUint64(b, h.round)
	b = binary.LittleEndian.AppendUint32(b, h.aux)
	b = append(b, h.bind[:]...)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(lengths)))
	for _, l := range lengths {
		b = binary.LittleEndian.AppendUint32(b, uint32(l))
	}
	return b
}

// encode assembles a payload from a header and its elements.
func encode(h header, elems ...[]byte) []byte {
	lengths := make([]int, len(elems))
	total := headerSize + 4*len(elems)
	for i, e := range elems {
		lengths[i] = len(e)
		total += len(e)
	}
	b := appendHeader(make([]byte, 0, total), h, lengths)
	for _, e := range elems {
		b = append(b, e...)
	}
	return b
}

// parse reads the header and splits the body into elements. It checks the
// framing only: magic, version, reserved byte, count ≤ maxCount, and that
// the lengths add up to exactly the remaining bytes. It allocates only the
// element slice headers, bounded by maxCount and by len(b).
func parse(what string, b []byte, maxCount int) (header, [][]byte, error) {
	var h header
	if len(b) < headerSize {
		return h, nil, malformed(what, "%d bytes, shorter than the %d-byte header", len(b), headerSize)
	}
	if [4]byte(b[0:4]) != magic {
		return h, nil, malformed(what, "bad magic %q", b[0:4])
	}
	if b[4] == 1 {
		return h, nil, mismatch(what, "wire version", "2 (one-polynomial uploads under each member's key share)",
			"1 (an older cloister's public-key uploads, or a party state or group key it saved: its key shares cannot be converted, so a federation that upgrades starts a new session: cloister init, new state directories)")
	}
	if b[4] != wireVersion {
		return h, nil, malformed(what, "unknown version %d", b[4])
	}
	if b[9] != 0 {
		return h, nil, malformed(what, "reserved byte is %d", b[9])
	}
	h.kind = kind(b[5])
	h.logN, h.level, h.degree = b[6], b[7], b[8]
	h.sender = binary.LittleEndian.Uint16(b[10:])
	copy(h.preset[:], b[12:28])
	copy(h.session[:], b[28:44])
	h.round = binary.LittleEndian.Uint64(b[44:])
	h.aux = binary.LittleEndian.Uint32(b[52:])
	copy(h.bind[:], b[56:72])
	count := binary.LittleEndian.Uint32(b[72:])
	if uint64(count) > uint64(maxCount) {
		return h, nil, malformed(what, "%d elements, at most %d allowed", count, maxCount)
	}
	rest := uint64(len(b) - headerSize)
	if rest < 4*uint64(count) {
		return h, nil, malformed(what, "truncated: %d elements declared, %d bytes left", count, rest)
	}
	rest -= 4 * uint64(count)
	var sum uint64
	for i := range int(count) {
		sum += uint64(binary.LittleEndian.Uint32(b[headerSize+4*i:]))
	}
	if sum != rest {
		return h, nil, malformed(what, "elements declare %d bytes, %d present", sum, rest)
	}
	elems := make([][]byte, count)
	off := headerSize + 4*int(count)
	for i := range elems {
		l := int(binary.LittleEndian.Uint32(b[headerSize+4*i:]))
		elems[i] = b[off : off+l : off+l]
		off += l
	}
	return h, elems, nil
}

// expect checks the fields of a parsed header that the caller fixes.
type expect struct {
	kind    kind
	preset  *Preset
	session *[16]byte // nil: not checked
	round   *uint64   // nil: not checked
	sender  *uint16   // nil: not checked
	level   int       // level of the polynomials, −1: no polynomials
	degree  int       // polys per element − 1, −1: no polynomials
	bind    *[16]byte // nil: not checked
}

func (e expect) check(what string, h header) error {
	if h.preset != e.preset.hash {
		return mismatch(what, "preset", fmt.Sprintf("%s (%x)", e.preset.lit.Name, e.preset.hash[:4]), fmt.Sprintf("%x", h.preset[:4]))
	}
	if h.kind != e.kind {
		return mismatch(what, "kind", e.kind, h.kind)
	}
	wantLogN, wantLevel, wantDegree := uint8(e.preset.lit.LogN), uint8(noLevel), uint8(noLevel)
	if e.level < 0 {
		wantLogN = 0
	} else {
		wantLevel, wantDegree = uint8(e.level), uint8(e.degree)
	}
	if h.logN != wantLogN {
		return mismatch(what, "ring degree log2 N", wantLogN, h.logN)
	}
	if h.level != wantLevel {
		return mismatch(what, "level", wantLevel, h.level)
	}
	if h.degree != wantDegree {
		return mismatch(what, "degree", wantDegree, h.degree)
	}
	if e.session != nil && h.session != *e.session {
		return mismatch(what, "session", fmt.Sprintf("%x", e.session[:4]), fmt.Sprintf("%x", h.session[:4]))
	}
	if e.round != nil && h.round != *e.round {
		return mismatch(what, "round", *e.round, h.round)
	}
	if e.sender != nil && h.sender != *e.sender {
		return mismatch(what, "sender index", *e.sender, h.sender)
	}
	if e.bind != nil && h.bind != *e.bind {
		return mismatch(what, "binding", fmt.Sprintf("%x", e.bind[:4]), fmt.Sprintf("%x", h.bind[:4]))
	}
	return nil
}

// header returns a header for the preset with the polynomial shape set.
func (p *Preset) header(k kind, level, degree int) header {
	h := header{kind: k, preset: p.hash, sender: noSender, level: noLevel, degree: noLevel}
	if level >= 0 {
		h.logN, h.level, h.degree = uint8(p.lit.LogN), uint8(level), uint8(degree)
	}
	return h
}

// polySize is the packed size of one polynomial at level.
func (p *Preset) polySize(level int) int {
	n := 0
	for _, q := range p.lit.Q[:level+1] {
		n += p.params.N() * bits.Len64(q-1) / 8
	}
	return n
}

// packPoly appends the residues of pol (levels 0..level) to b.
func (p *Preset) packPoly(b []byte, pol ring.Poly, level int) []byte {
	for i, q := range p.lit.Q[:level+1] {
		w := uint(bits.Len64(q - 1))
		n := p.params.N() * int(w) / 8
		b = slices.Grow(b, n)[:len(b)+n]
		dst := b[len(b)-n:]
		if w != 60 { // pack60 writes every byte; the generic packer ORs
			clear(dst)
		}
		packResidues(dst, pol.Coeffs[i], w)
	}
	return b
}

// unpackPoly fills pol (levels 0..level) from b, which must have exactly
// polySize(level) bytes. It rejects residues ≥ q_i.
func (p *Preset) unpackPoly(what string, b []byte, pol ring.Poly, level int) error {
	if len(b) != p.polySize(level) {
		return malformed(what, "polynomial of %d bytes, want %d", len(b), p.polySize(level))
	}
	for i, q := range p.lit.Q[:level+1] {
		w := uint(bits.Len64(q - 1))
		n := p.params.N() * int(w) / 8
		if !unpackResidues(pol.Coeffs[i][:p.params.N()], b[:n], w, q) {
			return malformed(what, "a residue is not below q%d", i)
		}
		b = b[n:]
	}
	return nil
}

// packResidues writes each value of c, in w ≤ 64 bits, least significant
// bit first, into dst, which has exactly len(c)·w/8 bytes and must be zero
// unless w = 60 and len(c) is even.
func packResidues(dst []byte, c []uint64, w uint) {
	if w == 60 && len(c)%2 == 0 {
		pack60(dst, c)
		return
	}
	packResiduesGeneric(dst, c, w)
}

func packResiduesGeneric(dst []byte, c []uint64, w uint) {
	for i, v := range c {
		o := uint(i) * w
		bi, sh := o>>3, o&7
		if int(bi)+9 <= len(dst) {
			binary.LittleEndian.PutUint64(dst[bi:], binary.LittleEndian.Uint64(dst[bi:])|v<<sh)
			if sh+w > 64 {
				dst[bi+8] |= byte(v >> (64 - sh))
			}
			continue
		}
		for j := range w { // the last few values
			if v>>j&1 != 0 {
				dst[(o+j)>>3] |= 1 << ((o + j) & 7)
			}
		}
	}
}

// unpackResidues reads len(c) values of w ≤ 64 bits from b (exactly
// len(c)·w/8 bytes) and reports whether all are below q.
func unpackResidues(c []uint64, b []byte, w uint, q uint64) bool {
	if w == 60 && len(c)%2 == 0 && len(b) == len(c)/2*15 {
		return unpack60(c, b, q)
	}
	mask := ^uint64(0) >> (64 - w)
	bad := false
	for i := range c {
		o := uint(i) * w
		bi, sh := o>>3, o&7
		var v uint64
		if int(bi)+9 <= len(b) {
			v = binary.LittleEndian.Uint64(b[bi:]) >> sh
			if sh+w > 64 {
				v |= uint64(b[bi+8]) << (64 - sh)
			}
			v &= mask
		} else {
			for j := range w {
				v |= uint64(b[(o+j)>>3]>>((o+j)&7)&1) << j
			}
		}
		c[i] = v
		bad = bad || v >= q
	}
	return !bad
}

// pack60 and unpack60 are packResidues and unpackResidues for 60-bit
// residues (the primes of the presets): two values per 15 bytes.
func pack60(dst []byte, c []uint64) {
	dst = dst[:len(c)/2*15]
	for i, j := 0, 0; i+1 < len(c); i, j = i+2, j+15 {
		v0, v1 := c[i], c[i+1]
		b := dst[j : j+15 : j+15]
		binary.LittleEndian.PutUint64(b[0:8], v0|v1<<60)
		binary.LittleEndian.PutUint64(b[7:15], v0>>56|v1<<4)
	}
}

func unpack60(c []uint64, b []byte, q uint64) bool {
	const mask = 1<<60 - 1
	bad := false
	for i, j := 0, 0; i+1 < len(c); i, j = i+2, j+15 {
		x := b[j : j+15 : j+15]
		v0 := binary.LittleEndian.Uint64(x[0:8]) & mask
		v1 := binary.LittleEndian.Uint64(x[7:15]) >> 4
		c[i], c[i+1] = v0, v1
		if v0 >= q || v1 >= q {
			bad = true
		}
	}
	return !bad
}
