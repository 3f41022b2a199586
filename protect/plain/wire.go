package plain

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
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
	kindCompressed
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
	kindCompressed:   "compressed update",
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

// values checks that exactly count float64 values remain, each finite and
// at most bound in absolute value, and returns their raw bytes. It allocates
// nothing.
func (r *reader) values(count int, bound float64) []byte {
	if r.Err != nil {
		return nil
	}
	if len(r.B) != 8*count {
		r.Err = malformed(r.What, "declares %d values, which take %d bytes, but %d bytes follow", count, 8*count, len(r.B))
		return nil
	}
	raw := r.Take(8 * count)
	for i := range count {
		x := math.Float64frombits(binary.BigEndian.Uint64(raw[8*i:]))
		if !finiteWithin(x, bound) {
			r.Err = malformed(r.What, "value %d is %v, outside ±%v", i, x, bound)
			return nil
		}
	}
	return raw
}

// compressed decodes the rest of the body, a payload of scheme c for
// count values (exactly c.WireSize(count) bytes, checked before anything
// is allocated), and checks that every value is at most bound in absolute
// value.
func (r *reader) compressed(c compress.Scheme, count int, bound float64) fl.Vector {
	if r.Err != nil {
		return nil
	}
	if want := c.WireSize(count); len(r.B) != want {
		r.Err = malformed(r.What, "declares %d values, which %s takes %d bytes for, but %d bytes follow", count, c, want, len(r.B))
		return nil
	}
	v, err := c.Decode(r.Take(len(r.B)), count)
	if err != nil {
		r.Err = malformed(r.What, "%v", err)
		return nil
	}
	if i := slices.IndexFunc(v, func(x float64) bool { return !finiteWithin(x, bound) }); i >= 0 {
		r.Err = malformed(r.What, "value %d is %v, outside ±%v", i, v[i], bound)
		return nil
	}
	return v
}

// count reads a vector length and checks it against MaxDim.
func (r *reader) count() int {
	n := r.U32()
	if r.Err == nil && n > limitMaxDim {
		r.Err = malformed(r.What, "declares %d values, more than the %d allowed", n, limitMaxDim)
	}
	return n
}

// weight reads a summed or single weight: finite, non-negative, at most bound.
func (r *reader) weight(bound float64) float64 {
	w := r.F64()
	if r.Err == nil && (!finiteWithin(w, bound) || w < 0) {
		r.Err = malformed(r.What, "weight %v outside [0, %v]", w, bound)
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

// format is this mode's payload header (internal/payload).
var format = payload.Format{Name: "plain", Magic: magic, Version: version, Kinds: byte(kindEnd),
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
