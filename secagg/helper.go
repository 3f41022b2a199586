package secagg

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// helper is the coordinator side. It holds no secret and is immutable.
type helper struct {
	sess *session
}

// Needed returns the threshold t.
func (h *helper) Needed() int { return h.sess.t }

// Setup checks the announcements and that every public dealing is bound to
// their transcript, and returns the transcript.
func (h *helper) Setup(anns, publics map[fl.NodeID][]byte) ([]byte, error) {
	_, tr, err := h.sess.parseAnnouncements(anns)
	if err != nil {
		return nil, err
	}
	for id := range publics {
		if _, ok := h.sess.index[id]; !ok {
			return nil, fmt.Errorf("secagg: public dealing from %q: %w", id, protect.ErrNotMember)
		}
	}
	for i, id := range h.sess.members {
		what := fmt.Sprintf("public dealing of %s", id)
		b, ok := publics[id]
		if !ok {
			return nil, malformed(what, "missing")
		}
		r, err := openFixed(b, kindPublic, publicLen, what)
		if err != nil {
			return nil, err
		}
		g, dealer, t := r.Hash(), h.sess.member(r), r.Hash()
		if err := r.done(); err != nil {
			return nil, err
		}
		switch {
		case g != h.sess.id:
			return nil, foreign(what, "of another group")
		case dealer != i:
			return nil, foreign(what, "dealt by %s", h.sess.members[dealer])
		case t != tr:
			return nil, foreign(what, "of another setup run")
		}
	}
	b := newPayload(kindSetup, setupLen)
	b = append(b, h.sess.id[:]...)
	return append(b, tr[:]...), nil
}

// upload is a parsed protected update.
type upload struct {
	transcript [32]byte
	round      uint64
	member     int
	words      int    // d+1
	shares     []byte // n blocks of shares, encrypted
	packed     []byte // words packed
}

func (s *session) parseProtected(b []byte, what string) (upload, error) {
	r, err := open(b, kindProtected, what)
	if err != nil {
		return upload{}, err
	}
	var u upload
	g := r.Hash()
	u.transcript = r.Hash()
	u.round, u.member, u.words = r.U64(), s.member(r), r.U32()
	if r.Err != nil {
		return upload{}, r.Err
	}
	w := s.p.width()
	if u.words < 2 || u.words > s.p.caps.MaxDim+1 {
		return upload{}, malformed(what, "%d words, want 2 to %d", u.words, s.p.caps.MaxDim+1)
	}
	if want := s.n()*s.shareBlock() + u.words*w; r.left() != want {
		return upload{}, malformed(what, "body of %d bytes after its header, want %d for %d words", r.left(), want, u.words)
	}
	u.shares, u.packed = r.Take(s.n()*s.shareBlock()), r.Take(u.words*w)
	if err := r.done(); err != nil {
		return upload{}, err
	}
	if g != s.id {
		return upload{}, foreign(what, "of another group")
	}
	return u, nil
}

// Aggregate sums the packed vectors of round r modulo 2^Bits and records
// the included members and, for each, the digest of its upload up to its
// packed vector (the header and the shares it deals): what a revealer
// reads. The vector's part in the sum is the runtime's to check (the round
// engine's revealers recompute the aggregate from the signed uploads).
func (h *helper) Aggregate(r fl.Round, protected map[fl.NodeID][]byte) ([]byte, error) {
	if len(protected) == 0 {
		return nil, malformed("aggregate", "no inputs")
	}
	ids := make([]int, 0, len(protected))
	for id := range protected {
		i, ok := h.sess.index[id]
		if !ok {
			return nil, fmt.Errorf("secagg: update from %q: %w", id, protect.ErrNotMember)
		}
		ids = append(ids, i)
	}
	slices.Sort(ids)
	var sum []uint64
	var tr [32]byte
	w := h.sess.p.width()
	var digests []byte
	for _, i := range ids {
		id := h.sess.members[i]
		what := fmt.Sprintf("update of %s", id)
		raw := protected[id]
		u, err := h.sess.parseProtected(raw, what)
		if err != nil {
			return nil, err
		}
		switch {
		case u.round != uint64(r):
			return nil, foreign(what, "for round %d, aggregating round %d", u.round, r)
		case u.member != i:
			return nil, foreign(what, "made by %s", h.sess.members[u.member])
		case sum != nil && u.words != len(sum):
			return nil, malformed(what, "%d words, the others have %d", u.words, len(sum))
		case sum != nil && u.transcript != tr:
			return nil, foreign(what, "of another setup run than the others")
		}
		if sum == nil {
			sum, tr = make([]uint64, u.words), u.transcript
		}
		addPacked(sum, u.packed, w)
		d := sha256.Sum256(raw[:len(raw)-len(u.packed)])
		digests = append(digests, d[:]...)
	}
	b := newPayload(kindAggregate, aggregateFixed+len(ids)*(4+hashLen)+len(sum)*w)
	b = append(b, h.sess.id[:]...)
	b = append(b, tr[:]...)
	b = payload.AppendU64(b, uint64(r))
	b = payload.AppendU32(b, len(sum))
	b = payload.AppendU32(b, len(ids))
	for _, i := range ids {
		b = payload.AppendU32(b, i)
	}
	b = append(b, digests...)
	return appendWords(b, sum, w), nil
}

func addPacked(sum []uint64, packed []byte, width int) {
	if width == 4 {
		for i := range sum {
			sum[i] += uint64(binary.LittleEndian.Uint32(packed[4*i:]))
		}
		return
	}
	for i := range sum {
		sum[i] += binary.LittleEndian.Uint64(packed[8*i:])
	}
}

// aggregate is a parsed aggregate.
type aggregate struct {
	transcript [32]byte
	round      uint64
	words      int
	inc        []int  // included members, ascending
	in         []bool // by member index
	digests    [][32]byte
	packed     []byte
}

func (s *session) parseAggregate(b []byte, what string) (aggregate, error) {
	r, err := open(b, kindAggregate, what)
	if err != nil {
		return aggregate{}, err
	}
	var a aggregate
	g := r.Hash()
	a.transcript = r.Hash()
	a.round, a.words = r.U64(), r.U32()
	k := r.U32()
	if r.Err != nil {
		return aggregate{}, r.Err
	}
	w := s.p.width()
	switch {
	case a.words < 2 || a.words > s.p.caps.MaxDim+1:
		return aggregate{}, malformed(what, "%d words, want 2 to %d", a.words, s.p.caps.MaxDim+1)
	case k < 1 || k > s.n():
		return aggregate{}, malformed(what, "%d included members, the group has %d", k, s.n())
	case r.left() != k*(4+hashLen)+a.words*w:
		return aggregate{}, malformed(what, "body of %d bytes after its header, want %d", r.left(), k*(4+hashLen)+a.words*w)
	}
	a.in = make([]bool, s.n())
	for range k {
		i := s.member(r)
		if r.Err == nil && len(a.inc) > 0 && i <= a.inc[len(a.inc)-1] {
			return aggregate{}, malformed(what, "included members not ascending at index %d", i)
		}
		a.inc = append(a.inc, i)
		if r.Err == nil {
			a.in[i] = true
		}
	}
	for range k {
		a.digests = append(a.digests, r.Hash())
	}
	a.packed = r.Take(a.words * w)
	if err := r.done(); err != nil {
		return aggregate{}, err
	}
	if g != s.id {
		return aggregate{}, foreign(what, "of another group")
	}
	return a, nil
}

// includedUploads checks that ups holds exactly the uploads the aggregate
// sums (by digest) and parses them, in the aggregate's order.
func (s *session) includedUploads(ups map[fl.NodeID][]byte, a aggregate) ([]upload, error) {
	for id := range ups {
		i, ok := s.index[id]
		switch {
		case !ok:
			return nil, fmt.Errorf("secagg: reveal request upload from %q: %w", id, protect.ErrNotMember)
		case !a.in[i]:
			return nil, malformed("reveal request", "an upload of %s, who is not included", id)
		}
	}
	out := make([]upload, len(a.inc))
	for k, i := range a.inc {
		id := s.members[i]
		what := fmt.Sprintf("reveal request upload of %s", id)
		b, ok := ups[id]
		if !ok {
			return nil, malformed("reveal request", "no upload of included member %s", id)
		}
		u, err := s.parseProtected(b, what)
		if err != nil {
			return nil, err
		}
		if sha256.Sum256(b[:len(b)-len(u.packed)]) != a.digests[k] {
			return nil, foreign(what, "not the upload the aggregate sums")
		}
		if u.transcript != a.transcript || u.round != a.round || u.member != i || u.words != a.words {
			return nil, foreign(what, "of round %d by %s with %d words, the aggregate is of round %d with %d", u.round, s.members[u.member], u.words, a.round, a.words)
		}
		out[k] = u
	}
	return out, nil
}

// share is a parsed reveal share.
type share struct {
	round    uint64
	revealer int
	digest   [32]byte
	revSet   [32]byte
	target   [32]byte
	box      []byte
	self     []byte // k seeds' shares
	pairs    []byte // p seeds' shares
}

func (s *session) parseShare(b []byte, what string) (share, error) {
	r, err := open(b, kindShare, what)
	if err != nil {
		return share{}, err
	}
	var sh share
	g := r.Hash()
	sh.round, sh.revealer = r.U64(), s.member(r)
	sh.digest, sh.revSet, sh.target = r.Hash(), r.Hash(), r.Hash()
	sh.box = r.Take(boxLen)
	k, p := r.U32(), r.U32()
	if r.Err != nil {
		return share{}, r.Err
	}
	if k > s.n() || p > s.n()*s.deg || r.left() != (k+p)*seedLen {
		return share{}, malformed(what, "%d self and %d pair shares in %d bytes", k, p, r.left())
	}
	sh.self, sh.pairs = r.Take(k*seedLen), r.Take(p*seedLen)
	if err := r.done(); err != nil {
		return share{}, err
	}
	if g != s.id {
		return share{}, foreign(what, "of another group")
	}
	return sh, nil
}

// Open checks the t shares of req, reconstructs every included member's
// self-mask seed and the pair seeds between included members and their
// neighbours that are not included, and removes their masks from the sum.
// What remains is the sum plus the included members' group masks: the
// result carries the revealers' sealed round keys, which only the target
// opens.
func (h *helper) Open(req protect.RevealRequest, shares map[fl.NodeID][]byte) ([]byte, error) {
	s := h.sess
	what := fmt.Sprintf("reveal of round %d", req.Round)
	rev, err := s.revealers(req.Revealers, what)
	if err != nil {
		return nil, err
	}
	tgt, err := parseTargetPublic(req.Target, "reveal request target")
	if err != nil {
		return nil, err
	}
	agg, err := s.parseAggregate(req.Aggregate, "reveal request aggregate")
	if err != nil {
		return nil, err
	}
	if agg.round != uint64(req.Round) {
		return nil, foreign("reveal request aggregate", "of round %d, the request is for round %d", agg.round, req.Round)
	}
	for id := range shares {
		i, ok := s.index[id]
		if !ok {
			return nil, fmt.Errorf("secagg: share from %q: %w", id, protect.ErrNotMember)
		}
		if _, ok := slices.BinarySearch(rev, i); !ok {
			return nil, foreign(what, "a share from %s, who is not a revealer", id)
		}
	}
	if len(shares) < len(rev) {
		return nil, fmt.Errorf("secagg: %s: %d of %d shares: %w", what, len(shares), len(rev), protect.ErrNotEnoughShares)
	}
	g := newGraph(agg.transcript, agg.round, s.n(), s.deg)
	pairs := expectedPairs(g, agg)
	digest := req.Digest()
	revSet := s.revealerSet(rev)
	parsed := make([]share, len(rev))
	for j, i := range rev {
		id := s.members[i]
		b, ok := shares[id]
		if !ok {
			return nil, fmt.Errorf("secagg: %s: no share from revealer %s: %w", what, id, protect.ErrNotEnoughShares)
		}
		sw := fmt.Sprintf("share of %s", id)
		sh, err := s.parseShare(b, sw)
		if err != nil {
			return nil, err
		}
		switch {
		case sh.round != agg.round:
			return nil, foreign(sw, "for round %d, not %d", sh.round, agg.round)
		case sh.revealer != i:
			return nil, foreign(sw, "made by %s", s.members[sh.revealer])
		case sh.digest != digest:
			return nil, foreign(sw, "for another aggregate")
		case sh.revSet != revSet:
			return nil, foreign(sw, "for another revealer set")
		case sh.target != tgt.id:
			return nil, foreign(sw, "for another target")
		case len(sh.self) != len(agg.inc)*seedLen || len(sh.pairs) != len(pairs)*seedLen:
			return nil, malformed(sw, "%d self and %d pair shares, want %d and %d",
				len(sh.self)/seedLen, len(sh.pairs)/seedLen, len(agg.inc), len(pairs))
		}
		parsed[j] = sh
	}
	xs := make([]uint16, len(rev))
	for j, i := range rev {
		xs[j] = uint16(i + 1)
	}
	lam, err := lagrange(xs)
	if err != nil {
		return nil, err
	}
	sum := readWords(agg.packed, s.p.width())
	gen := newPRG(s.p.width())
	ys := make([][]byte, len(rev))
	for k := range agg.inc {
		for j := range parsed {
			ys[j] = parsed[j].self[k*seedLen : (k+1)*seedLen]
		}
		if err := gen.add(sum, combine(lam, ys), -1); err != nil {
			return nil, err
		}
	}
	for k, pr := range pairs {
		for j := range parsed {
			ys[j] = parsed[j].pairs[k*seedLen : (k+1)*seedLen]
		}
		if err := gen.add(sum, combine(lam, ys), -pairSign(pr[0], pr[1])); err != nil {
			return nil, err
		}
	}
	b := newPayload(kindResult, resultFixed+4*len(agg.inc)+len(rev)*boxEntryLen+len(sum)*s.p.width())
	b = append(b, tgt.id[:]...)
	b = append(b, s.id[:]...)
	b = payload.AppendU64(b, agg.round)
	b = payload.AppendU32(b, len(sum))
	b = payload.AppendU32(b, len(agg.inc))
	for _, i := range agg.inc {
		b = payload.AppendU32(b, i)
	}
	b = payload.AppendU32(b, len(rev))
	for j, i := range rev {
		b = payload.AppendU32(b, i)
		b = append(b, parsed[j].box...)
	}
	return appendWords(b, sum, s.p.width()), nil
}

// expectedPairs lists the (included, not included) neighbour pairs of a
// round, in the order reveal shares hold them: by included member, then by
// neighbour, ascending.
func expectedPairs(g graph, a aggregate) [][2]int {
	var out [][2]int
	for _, v := range a.inc {
		for _, u := range g.adj[v] {
			if !a.in[u] {
				out = append(out, [2]int{v, u})
			}
		}
	}
	return out
}

// ShareCounts returns how many self-mask and pair seeds a reveal share
// carries: the masks Open removes, for benchmarks and tools. It checks the
// header and the counts against the share's length, not its group.
func ShareCounts(b []byte) (self, pairs int, err error) {
	r, err := open(b, kindShare, "reveal share")
	if err != nil {
		return 0, 0, err
	}
	r.Take(shareFixed - 8)
	self, pairs = r.U32(), r.U32()
	if r.Err != nil {
		return 0, 0, r.Err
	}
	if r.left() != (self+pairs)*seedLen {
		return 0, 0, malformed("reveal share", "%d self and %d pair shares in %d bytes", self, pairs, r.left())
	}
	return self, pairs, nil
}
