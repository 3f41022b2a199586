package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cloisterfl/cloister/protect"
)

// The wire format: a 6-byte header (magic "CLSA", version 1, kind) and a
// body whose length the kind, the group and the counts it declares fix
// exactly. Integers are big-endian; packed vectors are little-endian words
// of the preset's width. See the package documentation for the layouts.
const (
	magic     = "CLSA"
	version   = 1
	headerLen = len(magic) + 2
	hashLen   = sha256.Size
	keyLen    = 32 // X25519 keys, contributions, pair and round keys
	boxLen    = keyLen + keyLen + 16
	maxCount  = 1<<31 - 1
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
	kindEnd
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

// Fixed lengths (after the header).
const (
	announcementLen = hashLen + 4 + keyLen               // group, member, X25519 public key
	publicLen       = hashLen + 4 + hashLen              // group, dealer, transcript
	privateLen      = hashLen + 4 + 4 + hashLen + keyLen // group, dealer, recipient, transcript, contribution
	setupLen        = hashLen + hashLen                  // group, transcript
	targetLen       = keyLen
	protectedFixed  = 2*hashLen + 8 + 4 + 4 // group, transcript, round, member, words
	aggregateFixed  = 2*hashLen + 8 + 4 + 4 // group, transcript, round, words, included
	shareFixed      = hashLen + 8 + 4 + 3*hashLen + boxLen + 4 + 4
	resultFixed     = hashLen + hashLen + 8 + 4 + 4 + 4 // target, group, round, words, included, boxes
	boxEntryLen     = 4 + boxLen                        // revealer, box
)

func malformed(what, format string, args ...any) error {
	return fmt.Errorf("secagg: %s: %s: %w", what, fmt.Sprintf(format, args...), protect.ErrMalformed)
}

func foreign(what, format string, args ...any) error {
	return fmt.Errorf("secagg: %s: %s: %w", what, fmt.Sprintf(format, args...), protect.ErrForeign)
}

func newPayload(k kind, n int) []byte {
	b := make([]byte, 0, headerLen+n)
	b = append(b, magic...)
	return append(b, version, byte(k))
}

func appendU32(b []byte, v int) []byte    { return binary.BigEndian.AppendUint32(b, uint32(v)) }
func appendU64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

// appendWords packs w at width bytes a word (little-endian), reducing
// modulo 2^(8·width).
func appendWords(b []byte, w []uint64, width int) []byte {
	off := len(b)
	b = append(b, make([]byte, len(w)*width)...)
	out := b[off:]
	if width == 4 {
		for i, x := range w {
			binary.LittleEndian.PutUint32(out[4*i:], uint32(x))
		}
	} else {
		for i, x := range w {
			binary.LittleEndian.PutUint64(out[8*i:], x)
		}
	}
	return b
}

func readWords(b []byte, width int) []uint64 {
	w := make([]uint64, len(b)/width)
	if width == 4 {
		for i := range w {
			w[i] = uint64(binary.LittleEndian.Uint32(b[4*i:]))
		}
	} else {
		for i := range w {
			w[i] = binary.LittleEndian.Uint64(b[8*i:])
		}
	}
	return w
}

// reader decodes one payload. Reads past the end set a sticky error and
// return zero values; callers check err before they trust what they read.
type reader struct {
	what string
	b    []byte
	err  error
}

// open checks the header of b. A well-formed header of another kind is
// ErrForeign; anything else wrong is ErrMalformed.
func open(b []byte, want kind, what string) (*reader, error) {
	switch {
	case len(b) == 0:
		return nil, malformed(what, "empty")
	case len(b) < headerLen:
		return nil, malformed(what, "%d bytes, shorter than the %d-byte header", len(b), headerLen)
	case string(b[:len(magic)]) != magic:
		return nil, malformed(what, "bad magic %q", b[:len(magic)])
	case b[len(magic)] != version:
		return nil, malformed(what, "version %d, want %d", b[len(magic)], version)
	}
	k := kind(b[len(magic)+1])
	switch {
	case k < 1 || k >= kindEnd:
		return nil, malformed(what, "unknown kind %d", byte(k))
	case k != want:
		return nil, foreign(what, "a %s, want a %s", k, want)
	}
	return &reader{what: what, b: b[headerLen:]}, nil
}

// openFixed opens a payload whose body has exactly n bytes.
func openFixed(b []byte, want kind, n int, what string) (*reader, error) {
	r, err := open(b, want, what)
	if err != nil {
		return nil, err
	}
	if len(r.b) != n {
		return nil, malformed(what, "body of %d bytes, want %d", len(r.b), n)
	}
	return r, nil
}

func (r *reader) take(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || n > len(r.b) {
		r.err = malformed(r.what, "truncated: %d bytes needed, %d left", n, len(r.b))
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u32() int {
	b := r.take(4)
	if b == nil {
		return 0
	}
	v := binary.BigEndian.Uint32(b)
	if v > maxCount {
		r.err = malformed(r.what, "count or index %d out of range", v)
		return 0
	}
	return int(v)
}

func (r *reader) u64() uint64 {
	b := r.take(8)
	if b == nil {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

func (r *reader) hash() (h [32]byte) {
	copy(h[:], r.take(32))
	return h
}

// left returns how many bytes remain.
func (r *reader) left() int { return len(r.b) }

func (r *reader) done() error {
	if r.err != nil {
		return r.err
	}
	if len(r.b) != 0 {
		return malformed(r.what, "%d trailing bytes", len(r.b))
	}
	return nil
}
