package plain

import (
	"fmt"
	"slices"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/robust"
)

// helper is the coordinator side. It is immutable.
type helper struct {
	sess     *session
	rule     string          // a robust.Parse spec; "": the sum
	compress compress.Scheme // how the updates come
}

// Setup checks every announcement and that every member's public dealing is
// bound to their transcript.
func (h *helper) Setup(anns, publics map[fl.NodeID][]byte) ([]byte, error) {
	transcript, err := h.sess.transcript(anns)
	if err != nil {
		return nil, err
	}
	if _, err := h.sess.Keys(publics, "public dealing from"); err != nil {
		return nil, err
	}
	for i, m := range h.sess.Sorted {
		b, ok := publics[m]
		if !ok {
			return nil, fmt.Errorf("plain: no public dealing from member %q", m)
		}
		what := fmt.Sprintf("public dealing from %s", m)
		r, err := openFixed(b, kindPublic, publicLen, what)
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
	b := newPayload(kindSetup, setupLen)
	b = append(b, h.sess.Digest[:]...)
	return append(b, transcript[:]...), nil
}

// Aggregate adds the protected payloads of round r in member order, or
// applies the helper's rule to them (see the package documentation).
func (h *helper) Aggregate(r fl.Round, protected map[fl.NodeID][]byte) ([]byte, error) {
	if len(protected) == 0 {
		return nil, fmt.Errorf("plain: aggregate of round %d: no inputs", r)
	}
	ids, err := h.sess.Keys(protected, "protected update from")
	if err != nil {
		return nil, err
	}
	var (
		sum      fl.Vector
		weight   float64
		included = make([]int, 0, len(ids))
		inputs   []input
	)
	for _, id := range ids {
		in, err := h.decode(r, id, protected[id])
		if err != nil {
			return nil, err
		}
		switch {
		case sum == nil:
			sum = make(fl.Vector, in.count)
		case in.count != len(sum):
			return nil, fmt.Errorf("plain: protected update from %s: %d values, others have %d: %w: %w", id, in.count, len(sum),
				fl.ErrDimension, protect.ErrMalformed)
		}
		if h.rule == "" {
			in.addTo(sum)
		} else {
			inputs = append(inputs, in)
		}
		weight += in.weight
		included = append(included, in.member)
	}
	if h.rule != "" {
		if sum, err = h.applyRule(r, inputs, weight); err != nil {
			return nil, err
		}
	}
	b := newPayload(kindAggregate, aggregateFixed+4*len(included)+8*len(sum))
	b = append(b, h.sess.Digest[:]...)
	b = payload.AppendU64(b, uint64(r))
	b = payload.AppendU32(b, len(sum))
	b = payload.AppendU32(b, len(included))
	b = payload.AppendF64(b, weight)
	for _, i := range included {
		b = payload.AppendU32(b, i)
	}
	return payload.AppendF64s(b, sum), nil
}

// input is a checked protected update: raw float64 values, or the
// decoded vector of a compressed one.
type input struct {
	member int
	count  int
	weight float64
	raw    []byte    // count checked float64s, uncompressed
	vec    fl.Vector // count checked values, decompressed
}

// addTo adds the input's values to sum.
func (in input) addTo(sum fl.Vector) {
	if in.vec != nil {
		sum.Add(1, in.vec)
		return
	}
	addValues(sum, in.raw)
}

// vector returns the input's values.
func (in input) vector() fl.Vector {
	if in.vec != nil {
		return in.vec
	}
	return decodeValues(in.raw)
}

// decode checks the protected update b of member id for round r, of the
// kind the helper's compression implies.
func (h *helper) decode(r fl.Round, id fl.NodeID, b []byte) (input, error) {
	idx, err := h.sess.Index(id, "protected update from")
	if err != nil {
		return input{}, err
	}
	what := fmt.Sprintf("protected update from %s", id)
	k := kindProtected
	if !h.compress.IsNone() {
		k = kindCompressed
	}
	rd, err := open(b, k, what)
	if err != nil {
		return input{}, err
	}
	h.sess.CheckDigest(rd.Reader)
	round, member, count := fl.Round(rd.U64()), h.sess.Member(rd.Reader), rd.count()
	w := rd.weight(limitMaxAbs)
	var (
		raw []byte
		vec fl.Vector
	)
	if k == kindProtected {
		raw = rd.values(count, limitMaxAbs)
	} else {
		vec = rd.compressed(h.compress, count, limitMaxAbs)
	}
	if err := rd.Done(); err != nil {
		return input{}, err
	}
	switch {
	case round != r:
		return input{}, foreign(what, "for round %d, want %d", round, r)
	case member != idx:
		return input{}, foreign(what, "made by %s", h.sess.Name(member))
	}
	return input{member: idx, count: count, weight: w, raw: raw, vec: vec}, nil
}

// Check checks the protected update of member from for round r alone.
func (h *helper) Check(r fl.Round, from fl.NodeID, protected []byte) error {
	_, err := h.decode(r, from, protected)
	return err
}

// applyRule returns W·rule(Δ₁, …, Δₖ), Δᵢ = (wᵢΔᵢ)/wᵢ, for the k inputs of
// total weight W.
func (h *helper) applyRule(r fl.Round, inputs []input, total float64) (fl.Vector, error) {
	k := len(inputs)
	rule, err := robust.Parse(h.rule, k)
	if err != nil {
		return nil, fmt.Errorf("plain: aggregate of round %d: rule %q on %d updates: %w", r, h.rule, k, err)
	}
	scaled, weights := make([]fl.Vector, k), make([]float64, k)
	for i, in := range inputs {
		scaled[i], weights[i] = in.vector(), in.weight
	}
	out, err := robust.AggregateWeighted(rule, scaled, weights)
	if err != nil {
		return nil, fmt.Errorf("plain: aggregate of round %d: %s on %d updates: %w", r, rule, k, err)
	}
	bound := float64(k) * limitMaxAbs
	for j := range out {
		if !finiteWithin(out[j], bound) {
			return nil, fmt.Errorf("plain: aggregate of round %d: %s times the weight %v is %v at value %d, outside ±%v: %w",
				r, rule, total, out[j], j, bound, protect.ErrRange)
		}
	}
	return out, nil
}

// Needed returns the threshold t.
func (h *helper) Needed() int { return h.sess.T }

// Open checks the share of every revealer and copies the sum into a result
// for the target.
func (h *helper) Open(req protect.RevealRequest, shares map[fl.NodeID][]byte) ([]byte, error) {
	q, err := h.sess.checkRequest(req)
	if err != nil {
		return nil, err
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
		r, err := openFixed(shares[id], kindShare, shareLen, what)
		if err != nil {
			return nil, err
		}
		h.sess.CheckDigest(r.Reader)
		round, revealer := fl.Round(r.U64()), h.sess.Member(r.Reader)
		digest, set, target := r.Hash(), r.Hash(), r.Hash()
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
		}
	}
	if len(ids) < h.sess.T {
		return nil, fmt.Errorf("plain: open for round %d: %d of the %d shares: %w", req.Round, len(ids), h.sess.T, protect.ErrNotEnoughShares)
	}
	a := q.agg
	b := newPayload(kindResult, resultFixed+len(a.values))
	b = append(b, q.target[:]...)
	b = payload.AppendU32(b, a.count)
	b = payload.AppendF64(b, a.weight)
	return append(b, a.values...), nil
}
