package tee

import (
	"crypto/ed25519"
	"crypto/hpke"
	"fmt"
	"slices"
	"sync"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/robust"
)

// helper is the coordinator's side (no identity: blind) or the
// aggregator's (identity: opens in Open).
type helper struct {
	sess      *session
	identity  hpke.PrivateKey // nil on the coordinator
	keyDigest [hashLen]byte   // the aggregator key, if known
	hasKey    bool
	rule      string // a robust.Parse spec; "": the sum

	mu     sync.Mutex
	setups map[[hashLen]byte]setupInfo // by transcript: the setups this helper made or loaded
}

// Setup checks every announcement (all naming one aggregator key, this
// helper's if it knows it) and that every member's public dealing is bound
// to their transcript. The setup carries the announcements, so that the
// aggregator can check the members' signing keys against the transcript
// every sealed update names.
func (h *helper) Setup(anns, publics map[fl.NodeID][]byte) ([]byte, error) {
	transcript, info, err := h.sess.transcript(anns)
	if err != nil {
		return nil, err
	}
	if h.hasKey && info.keyDigest != h.keyDigest {
		return nil, foreign("announcements", "seal to aggregator key %x, this session's is %x", info.keyDigest[:6], h.keyDigest[:6])
	}
	if _, err := h.sess.Keys(publics, "public dealing from"); err != nil {
		return nil, err
	}
	for i, m := range h.sess.Sorted {
		b, ok := publics[m]
		if !ok {
			return nil, fmt.Errorf("tee: no public dealing from member %q", m)
		}
		what := fmt.Sprintf("public dealing from %s", m)
		r, err := openFixed(b, kindPublic, dealingLen, what)
		if err != nil {
			return nil, err
		}
		h.sess.CheckDigest(r.Reader)
		dealer, t := h.sess.Member(r.Reader), r.Hash()
		if err := r.Done(); err != nil {
			return nil, err
		}
		if dealer != i {
			return nil, foreign(what, "dealt by %s", h.sess.Name(dealer))
		}
		if t != transcript {
			return nil, foreign(what, "for other announcements")
		}
	}
	b := newPayload(kindSetup, setupFixed+len(h.sess.Sorted)*setupPer)
	b = append(b, h.sess.Digest[:]...)
	b = append(b, transcript[:]...)
	for _, m := range h.sess.Sorted {
		b = append(b, anns[m]...)
	}
	h.mu.Lock()
	h.setups[transcript] = info
	h.mu.Unlock()
	return b, nil
}

// envelope is the checked cleartext part of a sealed update.
type envelope struct {
	transcript [hashLen]byte
	round      fl.Round
	member     int
	keyDigest  [hashLen]byte
	count      int
	info       []byte // the header and the fields above: the HPKE info
	sealed     []byte
}

// parseUpdate checks the envelope of a sealed update.
func (s *session) parseUpdate(b []byte, what string) (envelope, error) {
	r, err := open(b, kindProtected, what)
	if err != nil {
		return envelope{}, err
	}
	s.CheckDigest(r.Reader)
	var e envelope
	e.transcript = r.Hash()
	e.round = fl.Round(r.U64())
	e.member = s.Member(r.Reader)
	e.keyDigest = r.Hash()
	e.count = r.count()
	if n := updateSealedLen(s.cmp, e.count); r.Err == nil && len(r.B) != n {
		r.Err = malformed(what, "declares %d values, whose sealing takes %d bytes, but %d bytes follow", e.count, n, len(r.B))
	}
	e.sealed = r.Take(updateSealedLen(s.cmp, e.count))
	if err := r.Done(); err != nil {
		return envelope{}, err
	}
	e.info = b[:infoLen:infoLen]
	return e, nil
}

// check checks the envelope of member idx's sealed update for round r,
// against this helper's aggregator key and setups when it knows them.
func (h *helper) check(r fl.Round, idx int, b []byte) (envelope, error) {
	what := fmt.Sprintf("sealed update from %s", h.sess.Name(idx))
	e, err := h.sess.parseUpdate(b, what)
	if err != nil {
		return envelope{}, err
	}
	switch {
	case e.round != r:
		return envelope{}, foreign(what, "for round %d, want %d (a replay)", e.round, r)
	case e.member != idx:
		return envelope{}, foreign(what, "made by %s (a replay)", h.sess.Name(e.member))
	case h.hasKey && e.keyDigest != h.keyDigest:
		return envelope{}, foreign(what, "sealed to aggregator key %x, this session's is %x", e.keyDigest[:6], h.keyDigest[:6])
	}
	h.mu.Lock()
	_, known := h.setups[e.transcript]
	any := len(h.setups) > 0
	h.mu.Unlock()
	if any && !known {
		return envelope{}, foreign(what, "for another setup run")
	}
	return e, nil
}

// Aggregate checks the envelope of every sealed update of round r and
// concatenates them in member order: the coordinator cannot open them.
// They must agree on their setup, their aggregator key and their length.
func (h *helper) Aggregate(r fl.Round, protected map[fl.NodeID][]byte) ([]byte, error) {
	if len(protected) == 0 {
		return nil, fmt.Errorf("tee: aggregate of round %d: no inputs", r)
	}
	ids, err := h.sess.Keys(protected, "sealed update from")
	if err != nil {
		return nil, err
	}
	var first envelope
	size := 0
	for i, id := range ids {
		idx, _ := h.sess.Index(id, "")
		e, err := h.check(r, idx, protected[id])
		if err != nil {
			return nil, err
		}
		what := fmt.Sprintf("sealed update from %s", id)
		if i == 0 {
			first = e
		} else {
			switch {
			case e.count != first.count:
				return nil, fmt.Errorf("tee: %s: %d values, others have %d: %w: %w", what, e.count, first.count, fl.ErrDimension, protect.ErrMalformed)
			case e.transcript != first.transcript:
				return nil, foreign(what, "for another setup run than %s's", ids[0])
			case e.keyDigest != first.keyDigest:
				return nil, foreign(what, "sealed to aggregator key %x, %s's to %x", e.keyDigest[:6], ids[0], first.keyDigest[:6])
			}
		}
		size += len(protected[id])
	}
	b := newPayload(kindAggregate, aggregateFixed+size)
	b = append(b, h.sess.Digest[:]...)
	b = payload.AppendU64(b, uint64(r))
	b = payload.AppendU32(b, first.count)
	b = payload.AppendU32(b, len(ids))
	for _, id := range ids {
		b = append(b, protected[id]...)
	}
	return b, nil
}

// Check checks the envelope of member from's sealed update for round r alone.
func (h *helper) Check(r fl.Round, from fl.NodeID, protected []byte) error {
	idx, err := h.sess.Index(from, "sealed update from")
	if err != nil {
		return err
	}
	_, err = h.check(r, idx, protected)
	return err
}

// Needed returns the threshold t.
func (h *helper) Needed() int { return h.sess.T }

// aggregate is a decoded aggregate payload.
type aggregate struct {
	round   fl.Round
	count   int
	updates []envelope // ascending members
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
		r.Err = malformed(what, "holds %d updates, the session has %d members", k, len(s.Sorted))
	}
	if n := updateLen(s.cmp, a.count); r.Err == nil && len(r.B) != k*n {
		r.Err = malformed(what, "declares %d updates of %d values, which take %d bytes, but %d bytes follow", k, a.count, k*n, len(r.B))
	}
	if r.Err != nil {
		return aggregate{}, r.Err
	}
	a.updates = make([]envelope, k)
	for i := range a.updates {
		e, err := s.parseUpdate(r.Take(updateLen(s.cmp, a.count)), fmt.Sprintf("%s: update %d", what, i))
		if err != nil {
			return aggregate{}, err
		}
		switch {
		case e.round != a.round:
			return aggregate{}, foreign(what, "holds an update of round %d", e.round)
		case e.count != a.count:
			return aggregate{}, malformed(what, "holds an update of %d values, declares %d", e.count, a.count)
		case i > 0 && e.member <= a.updates[i-1].member:
			return aggregate{}, malformed(what, "updates not in ascending member order")
		case i > 0 && e.transcript != a.updates[0].transcript:
			return aggregate{}, foreign(what, "mixes updates of two setup runs")
		case i > 0 && e.keyDigest != a.updates[0].keyDigest:
			return aggregate{}, foreign(what, "mixes updates sealed to two aggregator keys")
		}
		a.updates[i] = e
	}
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
	targetKey hpke.PublicKey
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
	tgt, key, err := parseTargetPublic(req.Target)
	if err != nil {
		return request{}, err
	}
	idx, set, err := s.revealers(req.Revealers)
	if err != nil {
		return request{}, err
	}
	return request{agg: a, digest: req.Digest(), target: tgt, targetKey: key, revealers: idx, set: set}, nil
}

// Open is the aggregator's step. It checks every revealer's signed share
// (t members vouch for the round, the aggregate and the target), opens
// every sealed update with the aggregator's key, applies the rule (or
// sums) and seals the result to the target. A helper without the
// aggregator's identity, the coordinator's, refuses with ErrNotReady.
func (h *helper) Open(req protect.RevealRequest, shares map[fl.NodeID][]byte) ([]byte, error) {
	q, err := h.sess.checkRequest(req)
	if err != nil {
		return nil, err
	}
	if h.identity == nil {
		return nil, fmt.Errorf("tee: open of round %d: only the attested aggregator can open sealed updates: %w", req.Round, protect.ErrNotReady)
	}
	transcript := q.agg.updates[0].transcript
	h.mu.Lock()
	setup, known := h.setups[transcript]
	h.mu.Unlock()
	if !known {
		return nil, foreign(fmt.Sprintf("aggregate of round %d", req.Round), "of a setup run this aggregator has not loaded")
	}
	ids, err := h.sess.Keys(shares, "reveal share from")
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		idx, _ := h.sess.Index(id, "")
		what := fmt.Sprintf("reveal share from %s", id)
		if _, ok := slices.BinarySearch(q.revealers, idx); !ok {
			return nil, foreign(what, "%s is not among the round's revealers", id)
		}
		b := shares[id]
		r, err := openFixed(b, kindShare, shareLen, what)
		if err != nil {
			return nil, err
		}
		h.sess.CheckDigest(r.Reader)
		round, revealer := fl.Round(r.U64()), h.sess.Member(r.Reader)
		digest, set, target := r.Hash(), r.Hash(), r.Hash()
		sig := r.Take(sigLen)
		if err := r.Done(); err != nil {
			return nil, err
		}
		switch {
		case round != req.Round:
			return nil, foreign(what, "for round %d, want %d", round, req.Round)
		case revealer != idx:
			return nil, foreign(what, "made by %s", h.sess.Name(revealer))
		case digest != q.digest:
			return nil, foreign(what, "for another aggregate")
		case set != q.set:
			return nil, foreign(what, "for another revealer set")
		case target != q.target:
			return nil, foreign(what, "for another target key")
		case !ed25519.Verify(setup.keys[idx][:], b[:headerLen+shareSigned], sig):
			return nil, foreign(what, "not signed by %s's announced key", id)
		}
	}
	if len(ids) < h.sess.T {
		return nil, fmt.Errorf("tee: open for round %d: %d of the %d shares: %w", req.Round, len(ids), h.sess.T, protect.ErrNotEnoughShares)
	}
	own := KeyDigest(h.identity.PublicKey().Bytes())
	inputs := make([]protect.Sum, len(q.agg.updates))
	// The plaintext lives for this call only: cleared once sealed (or
	// refused), so no update outlives the round in this process's memory
	// through the helper.
	defer func() {
		for _, in := range inputs {
			clear(in.Vector)
		}
	}()
	for i, e := range q.agg.updates {
		what := fmt.Sprintf("sealed update from %s", h.sess.Name(e.member))
		if e.keyDigest != own {
			return nil, foreign(what, "sealed to aggregator key %x, this aggregator's is %x", e.keyDigest[:6], own[:6])
		}
		pt, err := hpke.Open(h.identity, kdf(), aead(), e.info, e.sealed)
		if err != nil {
			return nil, foreign(what, "does not open with this aggregator's key (sealed for another session, round, member or key, or altered)")
		}
		inputs[i], err = decodeSum(h.sess.cmp, pt, e.count, limitMaxAbs, what)
		clear(pt)
		if err != nil {
			return nil, err
		}
	}
	sum, err := h.combine(req.Round, inputs, q.agg.count)
	if err != nil {
		return nil, err
	}
	defer clear(sum.Vector)
	return sealResult(q.target, q.targetKey, sum)
}

// combine sums the inputs, or applies the rule to them.
func (h *helper) combine(r fl.Round, inputs []protect.Sum, count int) (protect.Sum, error) {
	out := protect.Sum{Vector: make(fl.Vector, count)}
	for _, in := range inputs {
		out.Weight += in.Weight
	}
	if h.rule == "" {
		for _, in := range inputs {
			for j, x := range in.Vector {
				out.Vector[j] += x
			}
		}
		return out, nil
	}
	v, err := applyRule(h.rule, r, inputs, out.Weight)
	if err != nil {
		return protect.Sum{}, err
	}
	out.Vector = v
	return out, nil
}

// applyRule returns W·rule(Δ₁, …, Δₖ), Δᵢ = (wᵢΔᵢ)/wᵢ, for the k inputs of
// total weight W (robust.AggregateWeighted), as package protect/plain
// does: the leader's division by W yields the rule's output. A rule
// infeasible for the k inputs that showed up is an error: the round
// aborts, it is never averaged.
func applyRule(spec string, r fl.Round, inputs []protect.Sum, total float64) (fl.Vector, error) {
	k := len(inputs)
	rule, err := robust.Parse(spec, k)
	if err != nil {
		return nil, fmt.Errorf("tee: aggregate of round %d: rule %q on %d updates: %w", r, spec, k, err)
	}
	scaled, weights := make([]fl.Vector, k), make([]float64, k)
	for i, in := range inputs {
		scaled[i], weights[i] = in.Vector, in.Weight
	}
	out, err := robust.AggregateWeighted(rule, scaled, weights)
	if err != nil {
		return nil, fmt.Errorf("tee: aggregate of round %d: %s on %d updates: %w", r, rule, k, err)
	}
	bound := float64(k) * limitMaxAbs
	for j := range out {
		if !finiteWithin(out[j], bound) {
			return nil, fmt.Errorf("tee: aggregate of round %d: %s times the weight %v is %v at value %d, outside ±%v: %w",
				r, rule, total, out[j], j, bound, protect.ErrRange)
		}
	}
	return out, nil
}
