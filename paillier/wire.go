package paillier

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cloisterfl/cloister/protect"
)

// The wire format. Every payload is a 6-byte header (magic, version, kind)
// followed by a body whose length is fixed by the kind and the counts it
// declares; see the package documentation for the layouts.
const (
	magic     = "CLPA"
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

func malformed(what, format string, args ...any) error {
	return fmt.Errorf("paillier: %s: %s: %w", what, fmt.Sprintf(format, args...), protect.ErrMalformed)
}

func foreign(what, format string, args ...any) error {
	return fmt.Errorf("paillier: %s: %s: %w", what, fmt.Sprintf(format, args...), protect.ErrForeign)
}

// newPayload starts a payload of kind k with room for a body of n bytes.
func newPayload(k kind, n int) []byte {
	b := make([]byte, 0, headerLen+n)
	b = append(b, magic...)
	return append(b, version, byte(k))
}

func appendU32(b []byte, v int) []byte    { return binary.BigEndian.AppendUint32(b, uint32(v)) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

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
		return nil, malformed(what, "not a paillier payload (starts %x)", b[:len(magic)])
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

// hashOf is a domain-separated SHA-256.
func hashOf(domain string, parts ...[]byte) [hashLen]byte {
	h := sha256.New()
	h.Write([]byte("cloister/paillier/v1/" + domain + "\x00"))
	for _, p := range parts {
		h.Write(p)
	}
	var out [hashLen]byte
	h.Sum(out[:0])
	return out
}
