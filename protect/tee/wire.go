package tee

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// The wire format. Every payload is a 6-byte header (magic, version, kind)
// followed by a body whose length is fixed by the kind, the session's
// member count and the counts it declares; see the package documentation
// for the layouts.
const (
	magic     = "CLTE"
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
	kindProtected:    "sealed update",
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

// The HPKE suite: ML-KEM-768 + X25519, HKDF-SHA256, AES-256-GCM, as for
// every other sealed payload of Cloister (package keyring).
const (
	encLen    = 1088 + 32 // MLKEM768X25519 encapsulated key
	tagLen    = 16        // AES-256-GCM
	publicLen = 1184 + 32 // MLKEM768X25519 public key
	seedLen   = 32        // target secret and signing seed
	sigLen    = 64        // Ed25519
	signPub   = 32        // Ed25519 public key
	nonceLen  = 32
)

// sealedLen is the length of an HPKE ciphertext of a weight and count values.
func sealedLen(count int) int { return encLen + 8 + 8*count + tagLen }

// Fixed body sizes (after the header).
const (
	announcementLen = hashLen + 4 + nonceLen + hashLen + signPub       // session, member, nonce, aggregator key, signing key
	dealingLen      = hashLen + 4 + hashLen                            // session, dealer, transcript
	privateLen      = hashLen + 4 + 4 + hashLen                        // session, dealer, recipient, transcript
	setupFixed      = hashLen + hashLen                                // session, transcript; then n announcements
	protectedFixed  = hashLen + hashLen + 8 + 4 + hashLen + 4          // session, transcript, round, member, aggregator key, count
	aggregateFixed  = hashLen + 8 + 4 + 4                              // session, round, count, k; then k sealed updates
	shareSigned     = hashLen + 8 + 4 + 3*hashLen                      // session, round, revealer, digest, revealer set, target
	shareLen        = shareSigned + sigLen                             // … and the revealer's signature
	resultFixed     = hashLen + 4                                      // target, count; then the sealed sum
	partyStateLen   = hashLen + 4 + hashLen + hashLen + seedLen        // session, self, transcript, aggregator key, signing seed
	targetPublicLen = publicLen                                        // HPKE public key
	targetSecretLen = seedLen                                          // HPKE key seed
	updateLenFixed  = headerLen + protectedFixed + encLen + 8 + tagLen // a sealed update of 0 values
	setupPer        = headerLen + announcementLen                      // one announcement in the setup
	infoLen         = headerLen + protectedFixed                       // a sealed update's envelope: its HPKE info
)

// bodyLen is the length of count values in a sealed update under the
// compression c: 8 bytes each, or c's exact payload size.
func bodyLen(c compress.Scheme, count int) int {
	if c.IsNone() {
		return 8 * count
	}
	return c.WireSize(count)
}

// updateLen is the length of a sealed update of count values under the
// compression c.
func updateLen(c compress.Scheme, count int) int { return updateLenFixed + bodyLen(c, count) }

// updateSealedLen is the length of the HPKE ciphertext in a sealed update
// of count values under the compression c.
func updateSealedLen(c compress.Scheme, count int) int {
	return encLen + 8 + bodyLen(c, count) + tagLen
}

func malformed(what, format string, args ...any) error {
	return fmt.Errorf("tee: %s: %s: %w", what, fmt.Sprintf(format, args...), protect.ErrMalformed)
}

func foreign(what, format string, args ...any) error {
	return fmt.Errorf("tee: %s: %s: %w", what, fmt.Sprintf(format, args...), protect.ErrForeign)
}

// newPayload starts a payload of kind k with room for a body of n bytes.
func newPayload(k kind, n int) []byte {
	b := make([]byte, 0, headerLen+n)
	b = append(b, magic...)
	return append(b, version, byte(k))
}

// count reads a vector length and checks it against MaxDim.
func (r *reader) count() int {
	n := r.U32()
	if r.Err == nil && n > limitMaxDim {
		r.Err = malformed(r.What, "declares %d values, more than the %d allowed", n, limitMaxDim)
	}
	return n
}

// decodeSum decodes an opened weight and count values under the
// compression c (a sum is never compressed), each finite and at most bound
// in absolute value, the weight non-negative.
func decodeSum(c compress.Scheme, pt []byte, count int, bound float64, what string) (protect.Sum, error) {
	if want := 8 + bodyLen(c, count); len(pt) != want {
		return protect.Sum{}, malformed(what, "opens to %d bytes, want %d", len(pt), want)
	}
	w := math.Float64frombits(binary.BigEndian.Uint64(pt))
	if !finiteWithin(w, bound) || w < 0 {
		return protect.Sum{}, malformed(what, "weight %v outside [0, %v]", w, bound)
	}
	var v fl.Vector
	if c.IsNone() {
		v = make(fl.Vector, count)
		for i := range v {
			v[i] = math.Float64frombits(binary.BigEndian.Uint64(pt[8+8*i:]))
		}
	} else {
		var err error
		if v, err = c.Decode(pt[8:], count); err != nil {
			return protect.Sum{}, malformed(what, "%v", err)
		}
	}
	for i := range v {
		if !finiteWithin(v[i], bound) {
			clear(v)
			return protect.Sum{}, malformed(what, "value %d is %v, outside ±%v", i, v[i], bound)
		}
	}
	return protect.Sum{Vector: v, Weight: w}, nil
}

func finiteWithin(x, bound float64) bool { return math.Abs(x) <= bound } // false for NaN

// hashOf is a domain-separated SHA-256.
func hashOf(domain string, parts ...[]byte) [hashLen]byte {
	h := sha256.New()
	h.Write([]byte("cloister/protect/tee/v1/" + domain + "\x00"))
	for _, p := range parts {
		h.Write(p)
	}
	var out [hashLen]byte
	h.Sum(out[:0])
	return out
}

// format is this mode's payload header (internal/payload).
var format = payload.Format{Name: "tee", Magic: magic, Version: version, Kinds: byte(kindEnd),
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
