package tee

import (
	"bytes"
	"crypto/hpke"
	"errors"
	"fmt"
	"io"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/robust"
)

// Name is the mode's name in a federation manifest.
const Name = "tee"

const (
	limitMaxAbs = 1 << 53 // integers up to 2⁵³ are exact in float64
	// limitCompressed bounds the inputs of a compressing scheme, as in
	// package protect/plain.
	limitCompressed = 1 << 43
	limitMaxParties = 1 << 16
	limitMaxDim     = 1 << 24 // 128 MiB of float64 per update
)

// The HPKE suite of sealed updates and results.
func kem() hpke.KEM   { return hpke.MLKEM768X25519() }
func kdf() hpke.KDF   { return hpke.HKDFSHA256() }
func aead() hpke.AEAD { return hpke.AES256GCM() }

// Scheme is the tee mode. A node's scheme has the aggregator's attested
// Key; the aggregator's has its Identity; the coordinator's may have
// neither (its helper checks envelopes and concatenates, and cannot open).
type Scheme struct {
	// Key is the aggregator's HPKE public key (ML-KEM-768 + X25519, 1,216
	// bytes), as the runtime verified it in the aggregator's attestation
	// evidence. Every party seals its updates to it; NewParty needs it.
	Key []byte
	// Identity is the aggregator's HPKE private key. Only the aggregator
	// sets it; then Key may be empty (it is Identity's public key) and a
	// helper's Open opens the sealed updates. See [Scheme.NewAggregator].
	Identity hpke.PrivateKey
	// Rule, if not empty or "mean", is the robust rule the aggregator
	// applies instead of the sum: a spec of package robust ("median:f=1",
	// "krum:f=1", …), as in package protect/plain. Give f explicitly.
	Rule string
	// Compress, if not none, is how each party compresses its update
	// inside the seal (package compress: "topk:F" or "q8", as in package
	// protect/plain); the aggregator decompresses after it opens them.
	// Every side of a session must have the same.
	Compress compress.Scheme
}

var _ protect.Scheme = Scheme{}

// NewIdentity returns an aggregator key pair derived from 32 bytes of
// rand. A real aggregator uses the HPKE key its attestation evidence binds
// (package keyring); this is for tests and examples.
func NewIdentity(rand io.Reader) (hpke.PrivateKey, error) {
	if rand == nil {
		return nil, errors.New("tee: nil random source")
	}
	var seed [seedLen]byte
	if _, err := io.ReadFull(rand, seed[:]); err != nil {
		return nil, fmt.Errorf("tee: drawing an aggregator key: %w", err)
	}
	return kem().DeriveKeyPair(seed[:])
}

// KeyDigest returns the digest of an aggregator's public key that every
// sealed update names.
func KeyDigest(key []byte) [32]byte { return hashOf("aggregator key", key) }

// key returns the aggregator's public key the scheme names: Key, or
// Identity's. It checks that the two agree and that Key parses.
func (sc Scheme) key() ([]byte, error) {
	key := sc.Key
	if sc.Identity != nil {
		own := sc.Identity.PublicKey().Bytes()
		if key != nil && !bytes.Equal(key, own) {
			return nil, errors.New("tee: Scheme.Key is not the public key of Scheme.Identity")
		}
		key = own
	}
	if key == nil {
		return nil, nil
	}
	if _, err := kem().NewPublicKey(key); err != nil {
		return nil, fmt.Errorf("tee: aggregator key of %d bytes is not an ML-KEM-768+X25519 public key: %v", len(key), err)
	}
	return key, nil
}

// Name returns "tee".
func (Scheme) Name() string { return Name }

// Capacity returns tee's capacity: inputs up to 2⁵³, no encoding error, up
// to 2¹⁶ parties and 2²⁴ values.
func (sc Scheme) Capacity() protect.Capacity {
	c := protect.Capacity{MaxAbs: limitMaxAbs, MaxError: 0, MaxParties: limitMaxParties, MaxDim: limitMaxDim}
	if !sc.Compress.IsNone() {
		c.MaxAbs, c.Lossy = limitCompressed, sc.Compress.String()
	}
	return c
}

// Sizes returns the exact payload sizes for vectors of d values in a
// session of n members. An aggregate holds every included sealed update,
// so it is n times an update and a few bytes.
func (sc Scheme) Sizes(d, n int) (protect.Sizes, error) {
	if d < 1 || d > limitMaxDim {
		return protect.Sizes{}, fmt.Errorf("tee: sizes for %d values, at most %d: %w", d, limitMaxDim, protect.ErrRange)
	}
	if n < 1 || n > limitMaxParties {
		return protect.Sizes{}, fmt.Errorf("tee: sizes for %d members, at most %d: %w", n, limitMaxParties, protect.ErrRange)
	}
	return protect.Sizes{
		Announcement:   headerLen + announcementLen,
		PublicDealing:  headerLen + dealingLen,
		PrivateDealing: headerLen + privateLen,
		Setup:          headerLen + setupFixed + n*setupPer,
		Update:         updateLen(sc.Compress, d),
		Aggregate:      headerLen + aggregateFixed + n*updateLen(sc.Compress, d),
		Share:          headerLen + shareLen,
		Result:         headerLen + resultFixed + sealedLen(d),
		TargetPublic:   headerLen + targetPublicLen,
		TargetSecret:   headerLen + targetSecretLen,
	}, nil
}

// NewParty returns member self's party for session s. rand supplies the
// announcement nonce and the party's signing key; the HPKE encapsulation
// of each sealed update draws from crypto/rand.
func (sc Scheme) NewParty(s protect.Group, self fl.NodeID, rand io.Reader) (protect.Party, error) {
	sess, idx, err := newSession(s, self)
	if err != nil {
		return nil, err
	}
	if rand == nil {
		return nil, errors.New("tee: nil random source")
	}
	key, err := sc.partyKey()
	if err != nil {
		return nil, err
	}
	sess.cmp = sc.Compress
	return &party{sess: sess, self: idx, rand: rand, key: key, keyDigest: KeyDigest(key.Bytes()), enc: sc.encoder()}, nil
}

// encoder returns a fresh encoder of the scheme's compression (an empty
// top-k residual), or nil for none.
func (sc Scheme) encoder() *compress.Stream {
	if sc.Compress.IsNone() {
		return nil
	}
	return sc.Compress.NewStream(limitMaxAbs)
}

func (sc Scheme) partyKey() (hpke.PublicKey, error) {
	b, err := sc.key()
	if err != nil {
		return nil, err
	}
	if b == nil {
		return nil, errors.New("tee: a party needs the aggregator's attested key (Scheme.Key)")
	}
	return kem().NewPublicKey(b)
}

// LoadParty restores a party from its MarshalBinary state. The state must
// be for the same session, member and aggregator key.
func (sc Scheme) LoadParty(s protect.Group, self fl.NodeID, state []byte, rand io.Reader) (protect.Party, error) {
	sess, idx, err := newSession(s, self)
	if err != nil {
		return nil, err
	}
	if rand == nil {
		return nil, errors.New("tee: nil random source")
	}
	key, err := sc.partyKey()
	if err != nil {
		return nil, err
	}
	sess.cmp = sc.Compress
	p := &party{sess: sess, self: idx, rand: rand, key: key, keyDigest: KeyDigest(key.Bytes()), enc: sc.encoder()}
	if err := p.load(state); err != nil {
		return nil, err
	}
	return p, nil
}

// NewHelper returns a helper for session s: the coordinator's (without
// Identity: it checks and concatenates sealed updates and cannot open
// them), or the aggregator's (with Identity: its Open opens them, once a
// setup is known, from its own Setup or [Scheme.NewAggregator]). It refuses
// a Rule that package robust cannot read, or that no cohort of the
// session's members can satisfy.
func (sc Scheme) NewHelper(s protect.Group) (protect.Helper, error) {
	sess, _, err := newSession(s, "")
	if err != nil {
		return nil, err
	}
	key, err := sc.key()
	if err != nil {
		return nil, err
	}
	sess.cmp = sc.Compress
	h := &helper{sess: sess, identity: sc.Identity, setups: make(map[[hashLen]byte]setupInfo)}
	if key != nil {
		h.keyDigest, h.hasKey = KeyDigest(key), true
	}
	if sc.Rule != "" && sc.Rule != "mean" {
		if _, err := robust.Parse(sc.Rule, len(sess.Sorted)); err != nil {
			return nil, fmt.Errorf("tee: rule %q with the session's %d members: %w", sc.Rule, len(sess.Sorted), err)
		}
		h.rule = sc.Rule
	}
	return h, nil
}

// NewAggregator returns the aggregator's helper for session s, with the
// setup the coordinator broadcast (Helper.Setup's output). It checks that
// the setup's announcements hash to its transcript and that they name this
// aggregator's key, so the members' signing keys it trusts are the ones
// the members dealt on.
func (sc Scheme) NewAggregator(s protect.Group, setup []byte) (protect.Helper, error) {
	if sc.Identity == nil {
		return nil, errors.New("tee: the aggregator needs its identity (Scheme.Identity)")
	}
	hh, err := sc.NewHelper(s)
	if err != nil {
		return nil, err
	}
	h := hh.(*helper)
	transcript, info, err := h.sess.parseSetup(setup)
	if err != nil {
		return nil, err
	}
	if info.keyDigest != h.keyDigest {
		return nil, foreign("setup", "its members seal to aggregator key %x, this aggregator's is %x", info.keyDigest[:6], h.keyDigest[:6])
	}
	h.setups[transcript] = info
	return h, nil
}

// session is a checked protect.Group (payload.Members), with the
// compression its updates travel under.
type session struct {
	payload.Members
	cmp compress.Scheme
}

// newSession checks s and, unless self is empty, that self is a member,
// whose index it returns.
func newSession(s protect.Group, self fl.NodeID) (*session, int, error) {
	if err := s.Validate(); err != nil {
		return nil, 0, fmt.Errorf("tee: %w", err)
	}
	if len(s.Members) > limitMaxParties {
		return nil, 0, fmt.Errorf("tee: session has %d members, at most %d allowed: %w", len(s.Members), limitMaxParties, protect.ErrRange)
	}
	sess := &session{Members: payload.Members{Sorted: s.Sorted(), T: s.Threshold, Mode: "tee", Noun: "session", Malformed: malformed, Foreign: foreign}}
	var b []byte
	b = payload.AppendU32(b, len(s.ID))
	b = append(b, s.ID...)
	b = payload.AppendU32(b, s.Threshold)
	b = payload.AppendU32(b, len(sess.Sorted))
	for _, m := range sess.Sorted {
		b = payload.AppendU32(b, len(m))
		b = append(b, m...)
	}
	sess.Digest = hashOf("session", b)
	idx := -1
	if self != "" {
		var err error
		if idx, err = sess.Index(self, "self"); err != nil {
			return nil, 0, err
		}
	}
	return sess, idx, nil
}

// ed25519Key is a member's public signing key.
type ed25519Key [signPub]byte

// setupInfo is what a setup fixes for the aggregator: the aggregator key
// every member seals to, and each member's signing key, in member order.
type setupInfo struct {
	keyDigest [hashLen]byte
	keys      []ed25519Key
}

// transcript checks one announcement per member, all naming the same
// aggregator key, and returns their hash and the members' signing keys in
// member order.
func (s *session) transcript(anns map[fl.NodeID][]byte) ([hashLen]byte, setupInfo, error) {
	keys := make([]ed25519Key, len(s.Sorted))
	var first [hashLen]byte
	open := func(b []byte, what string) (*payload.Reader, error) {
		r, err := openFixed(b, kindAnnouncement, announcementLen, what)
		return r.Reader, err
	}
	rest := func(i int, r *payload.Reader) {
		r.Take(nonceLen)
		digest := r.Hash()
		copy(keys[i][:], r.Take(signPub))
		switch {
		case r.Err != nil:
		case i == 0:
			first = digest
		case digest != first:
			r.Err = foreign(r.What, "seals to aggregator key %x, %s seals to %x: the members must all seal to the same attested aggregator",
				digest[:6], s.Name(0), first[:6])
		}
	}
	parts, err := s.Announcements(anns, open, rest)
	if err != nil {
		return [hashLen]byte{}, setupInfo{}, err
	}
	return hashOf("transcript", parts...), setupInfo{keyDigest: first, keys: keys}, nil
}

// parseSetup checks a setup: its announcements must hash to its
// transcript. It returns the transcript and the members' signing keys.
func (s *session) parseSetup(b []byte) ([hashLen]byte, setupInfo, error) {
	r, err := openFixed(b, kindSetup, setupFixed+len(s.Sorted)*setupPer, "setup")
	if err != nil {
		return [hashLen]byte{}, setupInfo{}, err
	}
	s.CheckDigest(r.Reader)
	transcript := r.Hash()
	anns := make(map[fl.NodeID][]byte, len(s.Sorted))
	for _, m := range s.Sorted {
		anns[m] = r.Take(setupPer)
	}
	if err := r.Done(); err != nil {
		return [hashLen]byte{}, setupInfo{}, err
	}
	t, info, err := s.transcript(anns)
	if err != nil {
		return [hashLen]byte{}, setupInfo{}, fmt.Errorf("tee: setup: %w", err)
	}
	if t != transcript {
		return [hashLen]byte{}, setupInfo{}, malformed("setup", "its announcements do not hash to its transcript")
	}
	return transcript, info, nil
}

// revealers checks a revealer set: exactly t distinct members. It returns
// their indices, sorted, and the set's hash.
func (s *session) revealers(list []fl.NodeID) ([]int, [hashLen]byte, error) {
	idx, b, err := s.Revealers(list)
	if err != nil {
		return nil, [hashLen]byte{}, err
	}
	return idx, hashOf("revealers", b), nil
}
