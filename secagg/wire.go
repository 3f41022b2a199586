package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"

	"github.com/cloisterfl/cloister/internal/payload"
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

// left returns how many bytes remain.
func (r *reader) left() int { return len(r.B) }

func (r *reader) done() error {
	if r.Err != nil {
		return r.Err
	}
	if len(r.B) != 0 {
		return malformed(r.What, "%d trailing bytes", len(r.B))
	}
	return nil
}

// format is this mode's payload header (internal/payload).
var format = payload.Format{Name: "secagg", Magic: magic, Version: version, Kinds: byte(kindEnd),
	Malformed: malformed, Foreign: foreign, KindName: func(k byte) string { return kind(k).String() }}

// reader reads one payload's body (payload.Reader), with this mode's
// own fields.
type reader struct{ *payload.Reader }

// open checks the header of b and returns a reader for a body of kind want.
func open(b []byte, want kind, what string) (*reader, error) {
	r, err := format.Open(b, byte(want), what)
	return &reader{r}, err
}

// openFixed is open for kinds whose body has a fixed length.
func openFixed(b []byte, want kind, bodyLen int, what string) (*reader, error) {
	r, err := format.OpenFixed(b, byte(want), bodyLen, what)
	return &reader{r}, err
}
