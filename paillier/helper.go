package paillier

import (
	"bytes"
	"fmt"
	"math/big"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// helper is the coordinator side. It holds no secret and no state: the
// modulus travels with every update and aggregate.
type helper struct {
	sch  *Scheme
	sess *session
}

func (h *helper) Needed() int { return h.sess.T }

// Setup checks the announcements and every member's public dealing: the
// dealer's carries the modulus, the others none; all are bound to the
// transcript.
func (h *helper) Setup(anns, publics map[fl.NodeID][]byte) ([]byte, error) {
	transcript, err := h.sess.transcript(anns)
	if err != nil {
		return nil, err
	}
	if _, err := h.sess.Keys(publics, "public dealing from"); err != nil {
		return nil, err
	}
	ks := h.sch.p.keySize()
	var n []byte
	for i, m := range h.sess.Sorted {
		b, ok := publics[m]
		if !ok {
			return nil, fmt.Errorf("paillier: no public dealing from member %q", m)
		}
		what := fmt.Sprintf("public dealing from %s", m)
		r, err := openFixed(b, kindPublic, publicFixed+ks, what)
		if err != nil {
			return nil, err
		}
		h.sess.CheckDigest(r.Reader)
		who, t := h.sess.Member(r.Reader), r.Hash()
		flag := r.Take(1)
		var nb []byte
		if r.Err == nil && flag[0] == 1 && i == dealer {
			_, nb = h.sch.publicKey(r, h.sess)
		} else {
			nb = r.Take(ks)
		}
		if err := r.Done(); err != nil {
			return nil, err
		}
		switch {
		case who != i:
			return nil, foreign(what, "dealt by %s", h.sess.Name(who))
		case t != transcript:
			return nil, foreign(what, "for other announcements")
		case i == dealer && flag[0] != 1:
			return nil, malformed(what, "the dealer dealt no key")
		case i != dealer && (flag[0] != 0 || !allZero(nb)):
			return nil, malformed(what, "only %s deals a key", h.sess.Name(dealer))
		}
		if i == dealer {
			n = nb
		}
	}
	b := newPayload(kindSetup, setupFixed+ks)
	b = append(b, h.sess.Digest[:]...)
	b = append(b, transcript[:]...)
	return append(b, n...), nil
}

func allZero(b []byte) bool { return !slices.ContainsFunc(b, func(x byte) bool { return x != 0 }) }

type input struct {
	member int
	dim    int
	key    *ThresholdKey
	n      []byte
	cts    []*big.Int
}

func (h *helper) decode(r fl.Round, id fl.NodeID, b []byte) (input, error) {
	idx, err := h.sess.Index(id, "protected update from")
	if err != nil {
		return input{}, err
	}
	what := fmt.Sprintf("protected update from %s", id)
	rd, err := open(b, kindProtected, what)
	if err != nil {
		return input{}, err
	}
	h.sess.CheckDigest(rd.Reader)
	round, member, dim := fl.Round(rd.U64()), h.sess.Member(rd.Reader), h.sch.dim(rd)
	k := h.sch.p.ciphertexts(dim)
	if want := h.sch.p.keySize() * (1 + 2*k); rd.Err == nil && len(rd.B) != want {
		rd.Err = malformed(what, "%d values take %d bytes, %d follow", dim, want, len(rd.B))
	}
	tk, nb := h.sch.publicKey(rd, h.sess)
	var cts []*big.Int
	if rd.Err == nil {
		cts = parseCiphertexts(rd, &tk.PublicKey, k)
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
	return input{member: idx, dim: dim, key: tk, n: nb, cts: cts}, nil
}

// Aggregate multiplies the ciphertexts of every update, slot by slot,
// modulo n²: the encryption of the sum. All updates must be under the
// same key and of the same length.
func (h *helper) Aggregate(r fl.Round, protected map[fl.NodeID][]byte) ([]byte, error) {
	if len(protected) == 0 {
		return nil, fmt.Errorf("paillier: aggregate of round %d: no inputs", r)
	}
	ids, err := h.sess.Keys(protected, "protected update from")
	if err != nil {
		return nil, err
	}
	var sum []*big.Int
	var first input
	included := make([]int, 0, len(ids))
	for _, id := range ids {
		in, err := h.decode(r, id, protected[id])
		if err != nil {
			return nil, err
		}
		switch {
		case sum == nil:
			first, sum = in, in.cts
		case in.dim != first.dim:
			return nil, fmt.Errorf("paillier: protected update from %s: %d values, others have %d: %w: %w", id, in.dim, first.dim,
				fl.ErrDimension, protect.ErrMalformed)
		case !bytes.Equal(in.n, first.n):
			return nil, foreign(fmt.Sprintf("protected update from %s", id), "under another key than %s's", h.sess.Name(first.member))
		default:
			for i := range sum {
				first.key.Add(sum[i], sum[i], in.cts[i])
			}
		}
		included = append(included, in.member)
	}
	pk := &first.key.PublicKey
	ks := h.sch.p.keySize()
	b := newPayload(kindAggregate, aggregateFixed+4*len(included)+ks+len(sum)*pk.CiphertextSize())
	b = append(b, h.sess.Digest[:]...)
	b = payload.AppendU64(b, uint64(r))
	b = payload.AppendU32(b, first.dim)
	b = payload.AppendU32(b, len(included))
	for _, i := range included {
		b = payload.AppendU32(b, i)
	}
	b = append(b, first.n...)
	for _, c := range sum {
		b = pk.AppendCiphertext(b, c)
	}
	return b, nil
}

// Open checks one share from each revealer, bound to req, and copies the
// sealed decryption shares into a result for the target. It cannot open
// them.
func (h *helper) Open(req protect.RevealRequest, shares map[fl.NodeID][]byte) ([]byte, error) {
	q, err := h.sch.checkRequest(h.sess, req)
	if err != nil {
		return nil, err
	}
	ids, err := h.sess.Keys(shares, "reveal share from")
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		i, _ := h.sess.Index(id, "")
		if _, ok := slices.BinarySearch(q.revealers, i); !ok {
			return nil, foreign(fmt.Sprintf("reveal share from %s", id), "not a revealer of round %d", req.Round)
		}
	}
	if len(ids) < len(q.revealers) {
		return nil, fmt.Errorf("paillier: %d of the %d revealers' shares: %w", len(ids), len(q.revealers), protect.ErrNotEnoughShares)
	}
	ks, ct := h.sch.p.keySize(), 2*h.sch.p.keySize()
	boxLen := boxOverhead + len(q.agg.cts)*ct
	b := newPayload(kindResult, resultLen(ks, len(q.revealers), boxLen))
	b = append(b, q.target.id[:]...)
	b = append(b, h.sess.Digest[:]...)
	b = append(b, q.digest[:]...)
	b = append(b, q.set[:]...)
	b = payload.AppendU64(b, uint64(req.Round))
	b = payload.AppendU32(b, q.agg.dim)
	b = payload.AppendU32(b, len(h.sess.Sorted))
	b = payload.AppendU32(b, len(q.revealers))
	b = append(b, q.agg.n...)
	for _, i := range q.revealers {
		id := h.sess.Name(i)
		what := fmt.Sprintf("reveal share from %s", id)
		r, err := openFixed(shares[id], kindShare, shareFixed+boxLen, what)
		if err != nil {
			return nil, err
		}
		h.sess.CheckDigest(r.Reader)
		round, who, digest, set, tgt, dim := fl.Round(r.U64()), h.sess.Member(r.Reader), r.Hash(), r.Hash(), r.Hash(), r.U32()
		box := r.Take(boxLen)
		if err := r.Done(); err != nil {
			return nil, err
		}
		switch {
		case round != req.Round:
			return nil, foreign(what, "for round %d", round)
		case who != i:
			return nil, foreign(what, "made by %s", h.sess.Name(who))
		case digest != q.digest:
			return nil, foreign(what, "for another aggregate")
		case set != q.set:
			return nil, foreign(what, "for another revealer set")
		case tgt != q.target.id:
			return nil, foreign(what, "for another target")
		case dim != q.agg.dim:
			return nil, malformed(what, "for %d values, the aggregate has %d", dim, q.agg.dim)
		}
		b = payload.AppendU32(b, i)
		b = append(b, box...)
	}
	return b, nil
}
