package paillier

import (
	"crypto/sha256"
	"fmt"

	"github.com/cloisterfl/cloister/internal/payload"
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

// format is this mode's payload header (internal/payload).
var format = payload.Format{Name: "paillier", Magic: magic, Version: version, Kinds: byte(kindEnd),
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
