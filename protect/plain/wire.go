package plain

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// The wire format. Every payload is a 6-byte header (magic, version, kind)
// followed by a body whose length is fixed by the kind and the counts it
// declares; see the package documentation for the layouts.
const (
	magic     = "CLPL"
	version   = 1
	headerLen = len(magic) + 2
	hashLen   = sha256.Size
)

type kind byte

const (
	kindAnnouncement kind = 1 + iota
	kindPublic
	kindPrivate
	kindSetup
	kindProtected
	kindAggregate
	kindShare
	kindResult
	kindTargetPublic
	kindTargetSecret
	kindPartyState
	kindEnd // first unknown kind
)

var kindNames = [...]string{
	kindAnnouncement: "announcement",
	kindPublic:       "public dealing",
	kindPrivate:      "private dealing",
	kindSetup:        "setup",
	kindProtected:    "protected update",
	kindAggregate:    "aggregate",
	kindShare:        "reveal share",
	kindResult:       "result",
	kindTargetPublic: "target public key",
	kindTargetSecret: "target secret key",
	kindPartyState:   "party state",
}

func (k kind) String() string {
	if k >= 1 && k < kindEnd {
		return kindNames[k]
	}
	return fmt.Sprintf("kind %d", byte(k))
}

// Fixed body sizes (after the header).
const (
	announcementLen = hashLen + 4 + nonceLen      // session, member, nonce
	publicLen       = hashLen + 4 + hashLen       // session, dealer, transcript
	privateLen      = hashLen + 4 + 4 + hashLen   // session, dealer, recipient, transcript
	setupLen        = hashLen + hashLen           // session, transcript
	shareLen        = hashLen + 8 + 4 + 3*hashLen // session, round, revealer, digest, revealer set, target
	targetLen       = idLen                       // target id
	partyStateLen   = hashLen + 4 + hashLen       // session, self, transcript
	protectedFixed  = hashLen + 8 + 4 + 4 + 8     // session, round, member, count, weight
	aggregateFixed  = hashLen + 8 + 4 + 4 + 8     // session, round, count, included, weight
	resultFixed     = hashLen + 4 + 8             // target, count, weight
	nonceLen        = 32                          // announcement nonce
	idLen           = 32                          // target id
	maxIndex        = 1<<31 - 1                   // largest count or index on the wire
)

func malformed(what, format string, args ...any) error {
	return fmt.Errorf("plain: %s: %s: %w", what, fmt.Sprintf(format, args...), protect.ErrMalformed)
}

func foreign(what, format string, args ...any) error {
	return fmt.Errorf("plain: %s: %s: %w", what, fmt.Sprintf(format, args...), protect.ErrForeign)
}

// newPayload starts a payload of kind k with room for a body of n bytes.
func newPayload(k kind, n int) []byte {
	b := make([]byte, 0, headerLen+n)
	b = append(b, magic...)
	return append(b, version, byte(k))
}

func appendU32(b []byte, v int) []byte    { return binary.BigEndian.AppendUint32(b, uint32(v)) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }
func appendF64(b []byte, v float64) []byte {
	return binary.BigEndian.AppendUint64(b, math.Float64bits(v))
}

func appendVector(b []byte, v fl.Vector) []byte {
	for _, x := range v {
		b = appendF64(b, x)
	}
	return b
}

// reader decodes one payload. Reads past the end set a sticky error and
// return zero values; callers check err before they trust what they read.
type reader struct {
	what string // names the input in errors
	b    []byte
	err  error
}

// open checks the header of b and returns a reader for a body of kind want.
// A well-formed header of another kind is ErrForeign; anything else wrong is
// ErrMalformed.
func open(b []byte, want kind, what string) (*reader, error) {
	switch {
	case len(b) == 0:
		return nil, malformed(what, "empty")
	case len(b) < headerLen:
		return nil, malformed(what, "%d bytes, shorter than the %d-byte header", len(b), headerLen)
	case string(b[:len(magic)]) != magic:
		return nil, malformed(what, "not a plain payload (starts %x)", b[:len(magic)])
	case b[len(magic)] != version:
		return nil, malformed(what, "format version %d, want %d", b[len(magic)], version)
	}
	k := kind(b[len(magic)+1])
	if k < 1 || k >= kindEnd {
		return nil, malformed(what, "unknown payload kind %d", byte(k))
	}
	if k != want {
		return nil, foreign(what, "a %v, want a %v", k, want)
	}
	return &reader{what: what, b: b[headerLen:]}, nil
}

// openFixed is open for kinds whose body has a fixed length.
func openFixed(b []byte, want kind, bodyLen int, what string) (*reader, error) {
	r, err := open(b, want, what)
	if err != nil {
		return nil, err
	}
	if len(r.b) != bodyLen {
		return nil, malformed(what, "a %v body has %d bytes, got %d", want, bodyLen, len(r.b))
	}
	return r, nil
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = malformed(r.what, "truncated: need %d more bytes, have %d", n, len(r.b))
		return nil
	}
	p := r.b[:n:n]
	r.b = r.b[n:]
	return p
}

// u32 reads a count or index. Values above 2³¹−1 are malformed, so counts
// are non-negative ints on every platform.
func (r *reader) u32() int {
	p := r.take(4)
	if p == nil {
		return 0
	}
	v := binary.BigEndian.Uint32(p)
	if v > maxIndex {
		r.err = malformed(r.what, "count or index %d out of range", v)
		return 0
	}
	return int(v)
}

func (r *reader) u64() uint64 {
	p := r.take(8)
	if p == nil {
		return 0
	}
	return binary.BigEndian.Uint64(p)
}

func (r *reader) f64() float64 { return math.Float64frombits(r.u64()) }

func (r *reader) hash() (h [hashLen]byte) {
	copy(h[:], r.take(hashLen))
	return h
}

// done reports the sticky error, or trailing bytes.
func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return malformed(r.what, "%d trailing bytes", len(r.b))
	}
	return nil
}

// values checks that exactly count float64 values remain, each finite and
// at most bound in absolute value, and returns their raw bytes. It allocates
// nothing.
func (r *reader) values(count int, bound float64) []byte {
	if r.err != nil {
		return nil
	}
	if len(r.b) != 8*count {
		r.err = malformed(r.what, "declares %d values, which take %d bytes, but %d bytes follow", count, 8*count, len(r.b))
		return nil
	}
	raw := r.take(8 * count)
	for i := range count {
		x := math.Float64frombits(binary.BigEndian.Uint64(raw[8*i:]))
		if !finiteWithin(x, bound) {
			r.err = malformed(r.what, "value %d is %v, outside ±%v", i, x, bound)
			return nil
		}
	}
	return raw
}

// count reads a vector length and checks it against MaxDim.
func (r *reader) count() int {
	n := r.u32()
	if r.err == nil && n > limitMaxDim {
		r.err = malformed(r.what, "declares %d values, more than the %d allowed", n, limitMaxDim)
	}
	return n
}

// weight reads a summed or single weight: finite, non-negative, at most bound.
func (r *reader) weight(bound float64) float64 {
	w := r.f64()
	if r.err == nil && (!finiteWithin(w, bound) || w < 0) {
		r.err = malformed(r.what, "weight %v outside [0, %v]", w, bound)
	}
	return w
}

func finiteWithin(x, bound float64) bool { return math.Abs(x) <= bound } // false for NaN

// decodeValues decodes raw bytes checked by reader.values.
func decodeValues(raw []byte) fl.Vector {
	v := make(fl.Vector, len(raw)/8)
	for i := range v {
		v[i] = math.Float64frombits(binary.BigEndian.Uint64(raw[8*i:]))
	}
	return v
}

// addValues adds raw values checked by reader.values to sum.
func addValues(sum fl.Vector, raw []byte) {
	for i := range sum {
		sum[i] += math.Float64frombits(binary.BigEndian.Uint64(raw[8*i:]))
	}
}

// hashOf is a domain-separated SHA-256.
func hashOf(domain string, parts ...[]byte) [hashLen]byte {
	h := sha256.New()
	h.Write([]byte("cloister/protect/plain/v1/" + domain + "\x00"))
	for _, p := range parts {
		h.Write(p)
	}
	var out [hashLen]byte
	h.Sum(out[:0])
	return out
}
