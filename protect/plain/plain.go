// Package plain is the aggregation mode that PROTECTS NOTHING.
//
// # Warning
//
// In mode plain every update travels in the clear. The coordinator, and
// anyone who can read its traffic, logs or disk, sees each node's update,
// its weight and every sum. The reveal shares and the target key are
// formalities: they protect nothing either. The mode exists for baselines,
// benchmarks and research on unprotected federated learning; never use it
// with real data. A runtime that runs a session in this mode prints
// [Warning] at start-up and in every round record.
//
// # What it is for
//
// plain implements the whole [protect] protocol with the same shape and the
// same checks as the modes that do protect (mhe, secagg, paillier): the
// same setup steps (Announce, Deal, Setup, Accept) and round steps
// (Protect, Aggregate, Reveal, Open, Decrypt), with the same errors. So a
// runtime, a simulation or a benchmark can swap it in for mhe and measure
// what protection costs, and its code paths are exercised without any
// cryptography in the way. It passes the conformance suite in
// protect/protecttest, and serves as the reference implementation of the
// interface.
//
// # The protocol
//
// Setup:
//   - [protect.Party.Announce] draws a 32-byte nonce from the party's random
//     source.
//   - [protect.Party.Deal] checks every member's announcement and binds the
//     dealing (one public part, one private part per member) to the hash of
//     all the announcements, the transcript.
//   - [protect.Helper.Setup] checks the announcements and that every public
//     dealing is bound to the same transcript.
//   - [protect.Party.Accept] checks that the setup and every private dealing
//     are bound to the transcript the party dealt on, so a setup replayed
//     from another run is refused.
//
// A round:
//   - [protect.Party.Protect] writes the vector and weight as they are,
//     bound to the session, the round and the member.
//   - [protect.Helper.Aggregate] adds them in member order.
//   - [protect.Party.Reveal] checks the request, records it in the
//     [protect.Ledger] and returns a share that binds the round, the
//     aggregate's digest, the revealer set and the target, and carries
//     nothing else.
//   - [protect.Helper.Open] needs the share of each of the t revealers, and
//     copies the sum into a result bound to the target key.
//   - [protect.Target.Decrypt] returns the [protect.Sum].
//
// # Robust rules
//
// A Scheme with a Rule is for research on Byzantine robustness: its helper
// sees every update, so it can apply a rule of package robust (median,
// trimmed mean, Krum, multi-Krum, Bulyan, centered clipping) instead of
// summing. Each protected update carries wᵢΔᵢ and wᵢ (a node weighs its
// update before it protects it); the helper recovers Δᵢ = (wᵢΔᵢ)/wᵢ,
// applies the rule to the Δᵢ of the k inputs, unweighted, and writes the
// aggregate as W·rule(Δ₁, …, Δₖ) with weight W = Σ wᵢ. The aggregate keeps
// its format, and a runtime that divides the revealed sum by its weight,
// as it does for every mode, gets rule(Δ₁, …, Δₖ) exactly (up to one
// rounding). An input of weight 0 has no Δ: the rule treats it as
// malformed, which counts against its f. Aggregate refuses a cohort for
// which the rule is infeasible ([robust.ErrInfeasible]) rather than sum
// it, and an aggregate outside the capacity ([protect.ErrRange]).
// Aggregating one update alone is then no longer a way to check it: the
// helper is a [protect.Checker].
//
// # Compression
//
// A Scheme with Compress (package compress: "topk:F" or "q8") has each
// party compress its weighted update wᵢΔᵢ before it leaves: top-k sends the
// ⌈F·d⌉ coordinates of largest magnitude and keeps the rest in the party,
// added to its next update (error feedback; the residual lives in the
// party's memory, so a restarted or re-keyed party starts a new one); q8
// sends 8-bit codes with unbiased stochastic rounding, seeded from the
// party's random source. The weight travels as it is. The helper
// decompresses every update, then sums it or applies the rule to it, so
// aggregates, shares and results keep their formats. The sum is exactly the
// sum of what was sent, not of the inputs: [protect.Capacity.Lossy] names
// the compression. The update's size is exact for d values
// (compress.Scheme.WireSize), and a helper takes only updates of its own
// compression.
//
// # Capacity
//
// Values are carried as float64. A single input is at most 2⁵³ in absolute
// value (so integer inputs sum exactly), sessions have at most 2²⁰ members
// and vectors at most 2²⁴ values (a 128 MiB payload). There is no encoding
// error: [protect.Capacity.MaxError] is 0, and the sum is the float64 sum of
// the inputs in ascending member order.
//
// # Formats
//
// All integers are big-endian; float64 values are IEEE 754 binary64,
// big-endian. Every payload starts with a 6-byte header: the magic "CLPL",
// the version 1, and a kind byte. Session, transcript, digest and target
// fields are 32-byte hashes; member indices are uint32 positions in the
// sorted member list. After the header:
//
//	kind  name               body
//	1     announcement       session, member u32, nonce[32]
//	2     public dealing     session, dealer u32, transcript
//	3     private dealing    session, dealer u32, recipient u32, transcript
//	4     setup              session, transcript
//	5     protected update   session, round u64, member u32, count u32, weight f64, count × f64
//	6     aggregate          session, round u64, count u32, k u32, weight f64, k × member u32 (ascending), count × f64
//	7     reveal share       session, round u64, revealer u32, aggregate digest, revealer set, target
//	8     result             target, count u32, weight f64, count × f64
//	9     target public key  id[32]
//	10    target secret key  id[32]
//	11    party state        session, self u32, transcript
//	12    compressed update  session, round u64, member u32, count u32, weight f64, compress payload (its own format)
//
// The session hash covers the session ID, the threshold and the sorted
// members; the aggregate digest is [protect.RevealRequest.Digest]. Every
// decoder checks the header, the kind, every declared count against the
// bytes that follow (before it allocates), and every value, and refuses
// trailing bytes. Errors wrap [protect.ErrMalformed] or [protect.ErrForeign].
//
// Parties are safe for concurrent use; so are helpers and targets, which
// are immutable.
package plain

import (
	"errors"
	"fmt"
	"io"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/robust"
)

// Warning is what a runtime prints when a session uses this mode.
const Warning = "plain: WARNING: aggregation mode \"plain\" protects nothing: " +
	"the coordinator sees every update, weight and sum in the clear. " +
	"Use it for baselines and research only, never with real data."

// Name is the mode's name in a federation manifest.
const Name = "plain"

const (
	limitMaxAbs = 1 << 53 // integers up to 2⁵³ are exact in float64
	// limitCompressed bounds the inputs of a compressing scheme: a top-k
	// residual may grow to many rounds' worth of them, and the encoder
	// refuses beyond limitMaxAbs, which the helper checks.
	limitCompressed = 1 << 43
	limitMaxParties = 1 << 20
	limitMaxDim     = 1 << 24 // 128 MiB of float64 per payload
)

// Scheme is the plain mode. The zero value is ready to use: it sums.
type Scheme struct {
	// Rule, if not empty or "mean", is the robust rule the helper applies
	// instead of the sum: a spec of package robust ("median:f=1",
	// "krum:f=1", …; see the section Robust rules). Give f explicitly:
	// without it, f would follow the number of updates each round.
	Rule string
	// Compress, if not none, is how each party compresses its update
	// before it leaves (see the section Compression).
	Compress compress.Scheme
}

var _ protect.Scheme = Scheme{}

// Name returns "plain".
func (Scheme) Name() string { return Name }

// Capacity returns plain's capacity: inputs up to 2⁵³, no encoding error, up to
// 2²⁰ parties and 2²⁴ values; Lossy names the compression, if any.
func (sc Scheme) Capacity() protect.Capacity {
	c := protect.Capacity{
		MaxAbs:     limitMaxAbs,
		MaxError:   0,
		MaxParties: limitMaxParties,
		MaxDim:     limitMaxDim,
	}
	if !sc.Compress.IsNone() {
		c.MaxAbs, c.Lossy = limitCompressed, sc.Compress.String()
	}
	return c
}

// Sizes returns the exact payload sizes for vectors of d values in a
// session of n members: fixed for the setup, reveal shares and target keys,
// 8 bytes per value for an update (or the compressed payload's exact size,
// compress.Scheme.WireSize), an aggregate (which also lists its included
// members, 4 bytes each) and a result.
func (sc Scheme) Sizes(d, n int) (protect.Sizes, error) {
	if d < 1 || d > limitMaxDim {
		return protect.Sizes{}, fmt.Errorf("plain: sizes for %d values, at most %d: %w", d, limitMaxDim, protect.ErrRange)
	}
	if n < 1 || n > limitMaxParties {
		return protect.Sizes{}, fmt.Errorf("plain: sizes for %d members, at most %d: %w", n, limitMaxParties, protect.ErrRange)
	}
	return protect.Sizes{
		Announcement:   headerLen + announcementLen,
		PublicDealing:  headerLen + publicLen,
		PrivateDealing: headerLen + privateLen,
		Setup:          headerLen + setupLen,
		Update:         sc.updateLen(d),
		Aggregate:      headerLen + aggregateFixed + 4*n + 8*d,
		Share:          headerLen + shareLen,
		Result:         headerLen + resultFixed + 8*d,
		TargetPublic:   headerLen + targetLen,
		TargetSecret:   headerLen + targetLen,
	}, nil
}

// updateLen is the length of a protected update of d values.
func (sc Scheme) updateLen(d int) int {
	if sc.Compress.IsNone() {
		return headerLen + protectedFixed + 8*d
	}
	return headerLen + protectedFixed + sc.Compress.WireSize(d)
}

// NewParty returns member self's party for session s. rand supplies the
// announcement nonce (and, under q8 compression, each update's seed for
// its stochastic rounding).
func (sc Scheme) NewParty(s protect.Group, self fl.NodeID, rand io.Reader) (protect.Party, error) {
	sess, idx, err := newSession(s, self)
	if err != nil {
		return nil, err
	}
	if rand == nil {
		return nil, errors.New("plain: nil random source")
	}
	return &party{sess: sess, self: idx, rand: rand, cmp: sc.Compress, enc: sc.encoder()}, nil
}

// encoder returns a fresh encoder of the scheme's compression (an empty
// top-k residual), or nil for none.
func (sc Scheme) encoder() *compress.Stream {
	if sc.Compress.IsNone() {
		return nil
	}
	return sc.Compress.NewStream(limitMaxAbs)
}

// LoadParty restores a party from its MarshalBinary state. The state must
// be for the same session and member. A top-k residual is not part of the
// state: a restored party starts with an empty one.
func (sc Scheme) LoadParty(s protect.Group, self fl.NodeID, state []byte, rand io.Reader) (protect.Party, error) {
	sess, idx, err := newSession(s, self)
	if err != nil {
		return nil, err
	}
	if rand == nil {
		return nil, errors.New("plain: nil random source")
	}
	what := fmt.Sprintf("state of party %s", self)
	r, err := openFixed(state, kindPartyState, partyStateLen, what)
	if err != nil {
		return nil, err
	}
	digest, stateSelf, transcript := r.Hash(), sess.Member(r.Reader), r.Hash()
	if err := r.Done(); err != nil {
		return nil, err
	}
	if digest != sess.Digest {
		return nil, foreign(what, "for another session")
	}
	if stateSelf != idx {
		return nil, foreign(what, "belongs to member %s", sess.Name(stateSelf))
	}
	return &party{sess: sess, self: idx, rand: rand, cmp: sc.Compress, enc: sc.encoder(), dealt: true, ready: true, transcript: transcript}, nil
}

// NewHelper returns the coordinator side for session s. It refuses a Rule
// that package robust cannot read, or that no cohort of the session's
// members can satisfy.
func (sc Scheme) NewHelper(s protect.Group) (protect.Helper, error) {
	sess, _, err := newSession(s, "")
	if err != nil {
		return nil, err
	}
	h := &helper{sess: sess, compress: sc.Compress}
	if sc.Rule != "" && sc.Rule != "mean" {
		if _, err := robust.Parse(sc.Rule, len(sess.Sorted)); err != nil {
			return nil, fmt.Errorf("plain: rule %q with the session's %d members: %w", sc.Rule, len(sess.Sorted), err)
		}
		h.rule = sc.Rule
	}
	return h, nil
}

// NewTarget returns a fresh target, identified by 32 bytes from rand. Its
// "secret" key is its identifier: plain hides nothing from anyone.
func (Scheme) NewTarget(rand io.Reader) (protect.Target, error) {
	if rand == nil {
		return nil, errors.New("plain: nil random source")
	}
	var t target
	if _, err := io.ReadFull(rand, t.id[:]); err != nil {
		return nil, fmt.Errorf("plain: drawing a target id: %w", err)
	}
	return &t, nil
}

// LoadTarget restores a target from its MarshalBinary secret.
func (Scheme) LoadTarget(secret []byte) (protect.Target, error) {
	r, err := openFixed(secret, kindTargetSecret, targetLen, "target secret key")
	if err != nil {
		return nil, err
	}
	var t target
	copy(t.id[:], r.Take(idLen))
	if err := r.Done(); err != nil {
		return nil, err
	}
	return &t, nil
}

// session is a checked protect.Group (payload.Members).
type session struct{ payload.Members }

// newSession checks s and, unless self is empty, that self is a member,
// whose index it returns.
func newSession(s protect.Group, self fl.NodeID) (*session, int, error) {
	if err := s.Validate(); err != nil {
		return nil, 0, fmt.Errorf("plain: %w", err)
	}
	if len(s.Members) > limitMaxParties {
		return nil, 0, fmt.Errorf("plain: session has %d members, at most %d allowed: %w", len(s.Members), limitMaxParties, protect.ErrRange)
	}
	sess := &session{payload.Members{Sorted: s.Sorted(), T: s.Threshold, Mode: "plain", Noun: "session", Malformed: malformed, Foreign: foreign}}
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

// transcript checks one announcement per member and returns their hash.
func (s *session) transcript(anns map[fl.NodeID][]byte) ([hashLen]byte, error) {
	open := func(b []byte, what string) (*payload.Reader, error) {
		r, err := openFixed(b, kindAnnouncement, announcementLen, what)
		return r.Reader, err
	}
	parts, err := s.Announcements(anns, open, func(_ int, r *payload.Reader) { r.Take(nonceLen) })
	if err != nil {
		return [hashLen]byte{}, err
	}
	return hashOf("transcript", parts...), nil
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

// aggregate is a decoded aggregate payload.
type aggregate struct {
	round    fl.Round
	count    int
	included []int
	weight   float64
	values   []byte // count checked float64s
}

func (s *session) parseAggregate(b []byte, what string) (aggregate, error) {
	r, err := open(b, kindAggregate, what)
	if err != nil {
		return aggregate{}, err
	}
	s.CheckDigest(r.Reader)
	var a aggregate
	a.round = fl.Round(r.U64())
	a.count = r.count()
	k := r.U32()
	if r.Err == nil && (k < 1 || k > len(s.Sorted)) {
		r.Err = malformed(what, "sums %d inputs, the session has %d members", k, len(s.Sorted))
	}
	a.weight = r.weight(float64(k) * limitMaxAbs)
	if r.Err == nil && len(r.B) != 4*k+8*a.count {
		r.Err = malformed(what, "declares %d members and %d values, which take %d bytes, but %d bytes follow", k, a.count, 4*k+8*a.count, len(r.B))
	}
	if r.Err != nil {
		return aggregate{}, r.Err
	}
	a.included = make([]int, k)
	for i := range a.included {
		a.included[i] = s.Member(r.Reader)
		if r.Err == nil && i > 0 && a.included[i] <= a.included[i-1] {
			r.Err = malformed(what, "included members not in ascending order")
		}
	}
	a.values = r.values(a.count, float64(k)*limitMaxAbs)
	if err := r.Done(); err != nil {
		return aggregate{}, err
	}
	return a, nil
}

// request is a checked protect.RevealRequest.
type request struct {
	agg       aggregate
	digest    [hashLen]byte // of the aggregate
	target    [hashLen]byte // hash of the target public key
	revealers []int         // sorted indices
	set       [hashLen]byte // hash of the revealer set
}

// checkRequest checks the aggregate, target and revealers of req.
func (s *session) checkRequest(req protect.RevealRequest) (request, error) {
	what := fmt.Sprintf("aggregate of round %d", req.Round)
	a, err := s.parseAggregate(req.Aggregate, what)
	if err != nil {
		return request{}, err
	}
	if a.round != req.Round {
		return request{}, foreign(what, "for round %d", a.round)
	}
	tgt, err := targetHash(req.Target)
	if err != nil {
		return request{}, err
	}
	idx, set, err := s.revealers(req.Revealers)
	if err != nil {
		return request{}, err
	}
	return request{agg: a, digest: req.Digest(), target: tgt, revealers: idx, set: set}, nil
}
