package secagg

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"sync"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// ErrIsolated: a reveal request whose included set has a member with no
// neighbour in it. Unmasking that sum would unmask that member's update on
// its own, so the party refuses.
var ErrIsolated = errors.New("secagg: an included member has no included neighbour")

// party is the node side. Its methods are safe for concurrent use.
type party struct {
	sess *session
	self int
	rand io.Reader

	mu  sync.Mutex
	sk  []byte // X25519 private key, until Accept
	ann []byte // this party's announcement

	// After Deal.
	dealt      bool
	transcript [32]byte
	contrib    [keyLen]byte
	pending    [][32]byte // pair keys, adopted by Accept

	// After Accept.
	ready bool
	km    [32]byte   // group mask key
	pairs [][32]byte // pair key with each member (with itself too)
}

func (p *party) name() fl.NodeID { return p.sess.members[p.self] }

// Announce returns this party's X25519 public key, bound to its group and
// member index. The key is drawn once; later calls return the same
// announcement.
func (p *party) Announce() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ann != nil {
		return bytes.Clone(p.ann), nil
	}
	sk := make([]byte, keyLen)
	if _, err := io.ReadFull(p.rand, sk); err != nil {
		return nil, fmt.Errorf("secagg: drawing the X25519 key: %w", err)
	}
	k, err := ecdh.X25519().NewPrivateKey(sk)
	if err != nil {
		return nil, fmt.Errorf("secagg: the X25519 key: %w", err)
	}
	b := newPayload(kindAnnouncement, announcementLen)
	b = append(b, p.sess.id[:]...)
	b = payload.AppendU32(b, p.self)
	b = append(b, k.PublicKey().Bytes()...)
	p.sk, p.ann = sk, b
	return bytes.Clone(b), nil
}

// parseAnnouncements checks that anns holds exactly every member's
// announcement and returns the public keys and the transcript.
func (s *session) parseAnnouncements(anns map[fl.NodeID][]byte) ([][]byte, [32]byte, error) {
	var tr [32]byte
	for id := range anns {
		if _, ok := s.index[id]; !ok {
			return nil, tr, fmt.Errorf("secagg: announcement from %q: %w", id, protect.ErrNotMember)
		}
	}
	h := sha256.New()
	h.Write([]byte("cloister/secagg/v1 transcript"))
	h.Write(s.id[:])
	pubs := make([][]byte, s.n())
	for i, id := range s.members {
		b, ok := anns[id]
		what := fmt.Sprintf("announcement of %s", id)
		if !ok {
			return nil, tr, malformed(what, "missing")
		}
		r, err := openFixed(b, kindAnnouncement, announcementLen, what)
		if err != nil {
			return nil, tr, err
		}
		g, m, pub := r.Hash(), s.member(r), r.Take(keyLen)
		if err := r.done(); err != nil {
			return nil, tr, err
		}
		if g != s.id {
			return nil, tr, foreign(what, "of another group")
		}
		if m != i {
			return nil, tr, foreign(what, "made by %s", s.members[m])
		}
		if _, err := ecdh.X25519().NewPublicKey(pub); err != nil {
			return nil, tr, malformed(what, "X25519 key: %v", err)
		}
		pubs[i] = pub
		h.Write(b)
	}
	h.Sum(tr[:0])
	return pubs, tr, nil
}

// Deal checks every member's announcement and returns a public dealing
// bound to the transcript (the hash of all announcements), and to each
// member a private dealing: the transcript again and this party's random
// contribution to the group mask key. The runtime seals each private
// dealing to its recipient and authenticates it, so a member that was shown
// other announcements than this party refuses the setup (Accept checks the
// transcripts), and the coordinator never sees a contribution.
func (p *party) Deal(anns map[fl.NodeID][]byte) (protect.Dealing, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ann == nil {
		return protect.Dealing{}, fmt.Errorf("secagg: Deal before Announce: %w", protect.ErrNotReady)
	}
	pubs, tr, err := p.sess.parseAnnouncements(anns)
	if err != nil {
		return protect.Dealing{}, err
	}
	if !bytes.Equal(anns[p.name()], p.ann) {
		return protect.Dealing{}, foreign(fmt.Sprintf("announcement of %s", p.name()), "not the one this party made")
	}
	sk, err := ecdh.X25519().NewPrivateKey(p.sk)
	if err != nil {
		return protect.Dealing{}, fmt.Errorf("secagg: the X25519 key: %w", err)
	}
	pairs := make([][32]byte, p.sess.n())
	for j, pub := range pubs {
		pk, _ := ecdh.X25519().NewPublicKey(pub) // checked by parseAnnouncements
		shared, err := sk.ECDH(pk)
		if err != nil {
			return protect.Dealing{}, malformed(fmt.Sprintf("announcement of %s", p.sess.members[j]), "X25519: %v", err)
		}
		pairs[j] = pairKey(shared, tr, min(p.self, j), max(p.self, j))
	}
	var contrib [keyLen]byte
	if _, err := io.ReadFull(p.rand, contrib[:]); err != nil {
		return protect.Dealing{}, fmt.Errorf("secagg: drawing the group mask contribution: %w", err)
	}
	pub := newPayload(kindPublic, publicLen)
	pub = append(pub, p.sess.id[:]...)
	pub = payload.AppendU32(pub, p.self)
	pub = append(pub, tr[:]...)
	priv := make(map[fl.NodeID][]byte, p.sess.n())
	for j, id := range p.sess.members {
		b := newPayload(kindPrivate, privateLen)
		b = append(b, p.sess.id[:]...)
		b = payload.AppendU32(b, p.self)
		b = payload.AppendU32(b, j)
		b = append(b, tr[:]...)
		priv[id] = append(b, contrib[:]...)
	}
	p.dealt, p.transcript, p.contrib, p.pending = true, tr, contrib, pairs
	return protect.Dealing{Public: pub, Private: priv}, nil
}

// Accept checks the setup and every member's private dealing against the
// transcript this party dealt on, and derives the group mask key from all
// the contributions.
func (p *party) Accept(setup []byte, private map[fl.NodeID][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.dealt {
		return fmt.Errorf("secagg: Accept before Deal: %w", protect.ErrNotReady)
	}
	r, err := openFixed(setup, kindSetup, setupLen, "setup")
	if err != nil {
		return err
	}
	g, tr := r.Hash(), r.Hash()
	if err := r.done(); err != nil {
		return err
	}
	if g != p.sess.id {
		return foreign("setup", "of another group")
	}
	if tr != p.transcript {
		return foreign("setup", "of another setup run (transcript %x, this party dealt on %x)", tr[:6], p.transcript[:6])
	}
	for id := range private {
		if _, ok := p.sess.index[id]; !ok {
			return fmt.Errorf("secagg: private dealing from %q: %w", id, protect.ErrNotMember)
		}
	}
	contribs := make([]byte, 0, p.sess.n()*keyLen)
	for i, id := range p.sess.members {
		what := fmt.Sprintf("private dealing of %s to %s", id, p.name())
		b, ok := private[id]
		if !ok {
			return malformed(what, "missing")
		}
		r, err := openFixed(b, kindPrivate, privateLen, what)
		if err != nil {
			return err
		}
		g, dealer, to, tr, c := r.Hash(), p.sess.member(r), p.sess.member(r), r.Hash(), r.Take(keyLen)
		if err := r.done(); err != nil {
			return err
		}
		switch {
		case g != p.sess.id:
			return foreign(what, "of another group")
		case dealer != i:
			return foreign(what, "dealt by %s", p.sess.members[dealer])
		case to != p.self:
			return foreign(what, "dealt to %s", p.sess.members[to])
		case tr != p.transcript:
			return foreign(what, "of another setup run")
		}
		contribs = append(contribs, c...)
	}
	p.km = groupMaskKey(contribs, p.transcript)
	p.pairs = p.pending
	p.ready, p.sk = true, nil
	return nil
}

// Protect masks v and weight for round r: fixed point, plus a fresh self
// mask, plus the pairwise masks with this round's neighbours, plus this
// member's group mask; with them, the Shamir shares of the self-mask seed
// and of this round's pair seeds for every member, each member's block
// encrypted under its pair key.
//
// A party must protect at most once per round: the pair seeds are a
// function of the round, so two uploads of one round would share them (the
// round engine never protects twice in a round of a key epoch, and records
// it before the upload leaves).
func (p *party) Protect(r fl.Round, v fl.Vector, weight float64) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ready {
		return nil, fmt.Errorf("secagg: Protect before setup: %w", protect.ErrNotReady)
	}
	lim := p.sess.p.caps
	n, t := p.sess.n(), p.sess.t
	limit := lim.MaxAbs / float64(n)
	switch {
	case len(v) == 0:
		return nil, fmt.Errorf("secagg: Protect of an empty vector: %w", protect.ErrRange)
	case len(v) > lim.MaxDim:
		return nil, fmt.Errorf("secagg: Protect of %d values, at most %d: %w", len(v), lim.MaxDim, protect.ErrRange)
	case math.IsNaN(weight) || math.Abs(weight) > limit:
		return nil, fmt.Errorf("secagg: weight %v outside ±MaxAbs/n = ±%g: %w", weight, limit, protect.ErrRange)
	}
	words := make([]uint64, len(v)+1)
	scale := math.Ldexp(1, p.sess.p.lit.Frac)
	for i, x := range v {
		if math.IsNaN(x) || math.Abs(x) > limit {
			return nil, fmt.Errorf("secagg: value %v at %d outside ±MaxAbs/n = ±%g: %w", x, i, limit, protect.ErrRange)
		}
		words[i] = quantize(x, scale)
	}
	words[len(v)] = quantize(weight, scale)

	var self seed
	if _, err := io.ReadFull(p.rand, self[:]); err != nil {
		return nil, fmt.Errorf("secagg: drawing the self-mask seed: %w", err)
	}
	g := newGraph(p.transcript, uint64(r), n, p.sess.deg)
	gen := newPRG(p.sess.p.width())
	secrets := []seed{self}
	if err := gen.add(words, self, 1); err != nil {
		return nil, err
	}
	for _, u := range g.adj[p.self] {
		s := maskSeed(p.pairs[u], uint64(r))
		secrets = append(secrets, s)
		if err := gen.add(words, s, pairSign(p.self, u)); err != nil {
			return nil, err
		}
	}
	if err := gen.add(words, memberMask(roundKey(p.km, uint64(r)), p.self), 1); err != nil {
		return nil, err
	}

	block := p.sess.shareBlock()
	sp, err := newSplitter(n, t)
	if err != nil {
		return nil, err
	}
	out := newPayload(kindProtected, protectedFixed+n*block+len(words)*p.sess.p.width())
	out = append(out, p.sess.id[:]...)
	out = append(out, p.transcript[:]...)
	out = payload.AppendU64(out, uint64(r))
	out = payload.AppendU32(out, p.self)
	out = payload.AppendU32(out, len(words))
	off := len(out)
	out = append(out, make([]byte, n*block)...)
	shares := out[off:]
	for k, s := range secrets {
		if err := sp.split(s, p.rand, shares[k*seedLen:], block); err != nil {
			return nil, err
		}
	}
	for j := range n {
		if err := ctr(shareKey(p.pairs[j], uint64(r), p.self, j), shares[j*block:(j+1)*block]); err != nil {
			return nil, err
		}
	}
	return appendWords(out, words, p.sess.p.width()), nil
}

// quantize is round(x·scale) as a word (two's complement).
func quantize(x, scale float64) uint64 { return uint64(int64(math.Round(x * scale))) }

// pairSign is the sign with which member a adds the mask it shares with b.
func pairSign(a, b int) int {
	if a < b {
		return 1
	}
	return -1
}

// ctr encrypts (or decrypts) b in place with AES-128-CTR under k, zero IV:
// each share key encrypts one block.
func ctr(k seed, b []byte) error {
	c, err := aes.NewCipher(k[:])
	if err != nil {
		return fmt.Errorf("secagg: share encryption: %w", err)
	}
	var iv [aes.BlockSize]byte
	cipher.NewCTR(c, iv[:]).XORKeyStream(b, b)
	return nil
}

// Reveal checks req completely, then reveals, for this request's round and
// included set only: its shares of every included member's self-mask seed,
// its shares of the pair seeds between included members and their
// neighbours that are not included, and the round's group mask key sealed
// to the target. It records (round, digest) in l before it returns.
func (p *party) Reveal(req protect.RevealRequest, l protect.Ledger) ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ready {
		return nil, fmt.Errorf("secagg: Reveal before setup: %w", protect.ErrNotReady)
	}
	what := fmt.Sprintf("reveal request of round %d", req.Round)
	rev, err := p.sess.revealers(req.Revealers, what)
	if err != nil {
		return nil, err
	}
	pos, named := slices.BinarySearch(rev, p.self)
	if !named {
		return nil, foreign(what, "revealers %v do not include %s", req.Revealers, p.name())
	}
	_ = pos
	tgt, err := parseTargetPublic(req.Target, "reveal request target")
	if err != nil {
		return nil, err
	}
	agg, err := p.sess.parseAggregate(req.Aggregate, "reveal request aggregate")
	if err != nil {
		return nil, err
	}
	if agg.round != uint64(req.Round) {
		return nil, foreign("reveal request aggregate", "of round %d, the request is for round %d", agg.round, req.Round)
	}
	if agg.transcript != p.transcript {
		return nil, foreign("reveal request aggregate", "of another setup run")
	}
	ups, err := p.sess.includedUploads(req.Uploads, agg)
	if err != nil {
		return nil, err
	}
	g := newGraph(p.transcript, agg.round, p.sess.n(), p.sess.deg)
	if v := g.isolated(agg.in, agg.inc); v >= 0 {
		return nil, fmt.Errorf("secagg: %s: %s: %w", what, p.sess.members[v], ErrIsolated)
	}

	block := p.sess.shareBlock()
	selfShares := make([]byte, 0, len(agg.inc)*seedLen)
	var pairShares []byte
	buf := make([]byte, block)
	for k, v := range agg.inc {
		copy(buf, ups[k].shares[p.self*block:(p.self+1)*block])
		if err := ctr(shareKey(p.pairs[v], agg.round, v, p.self), buf); err != nil {
			return nil, err
		}
		selfShares = append(selfShares, buf[:seedLen]...)
		for j, u := range g.adj[v] {
			if !agg.in[u] {
				pairShares = append(pairShares, buf[(1+j)*seedLen:(2+j)*seedLen]...)
			}
		}
	}
	box, err := seal(tgt, roundKey(p.km, agg.round), p.sess.id, agg.round, p.self, p.rand)
	if err != nil {
		return nil, err
	}
	digest := req.Digest()
	b := newPayload(kindShare, shareFixed+len(selfShares)+len(pairShares))
	b = append(b, p.sess.id[:]...)
	b = payload.AppendU64(b, agg.round)
	b = payload.AppendU32(b, p.self)
	b = append(b, digest[:]...)
	rs := p.sess.revealerSet(rev)
	b = append(b, rs[:]...)
	b = append(b, tgt.id[:]...)
	b = append(b, box...)
	b = payload.AppendU32(b, len(selfShares)/seedLen)
	b = payload.AppendU32(b, len(pairShares)/seedLen)
	b = append(b, selfShares...)
	b = append(b, pairShares...)
	if err := l.Record(req.Round, digest); err != nil {
		return nil, err
	}
	return b, nil
}

// MarshalBinary returns the party's secrets: its pair keys and the group
// mask key (the runtime seals them at rest).
func (p *party) MarshalBinary() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ready {
		return nil, fmt.Errorf("secagg: party state before setup: %w", protect.ErrNotReady)
	}
	b := newPayload(kindPartyState, partyStateLen(p.sess.n()))
	b = append(b, p.sess.id[:]...)
	b = payload.AppendU32(b, p.self)
	b = append(b, p.transcript[:]...)
	b = append(b, p.km[:]...)
	for _, k := range p.pairs {
		b = append(b, k[:]...)
	}
	return b, nil
}

func partyStateLen(n int) int { return hashLen + 4 + hashLen + keyLen + n*keyLen }

func loadParty(sess *session, self int, state []byte, rand io.Reader) (*party, error) {
	what := fmt.Sprintf("state of party %s", sess.members[self])
	r, err := openFixed(state, kindPartyState, partyStateLen(sess.n()), what)
	if err != nil {
		return nil, err
	}
	g, who, tr, km := r.Hash(), sess.member(r), r.Hash(), r.Hash()
	pairs := make([][32]byte, sess.n())
	for i := range pairs {
		pairs[i] = r.Hash()
	}
	if err := r.done(); err != nil {
		return nil, err
	}
	if g != sess.id {
		return nil, foreign(what, "of another group")
	}
	if who != self {
		return nil, foreign(what, "belongs to %s", sess.members[who])
	}
	return &party{sess: sess, self: self, rand: rand, dealt: true, transcript: tr, ready: true, km: km, pairs: pairs}, nil
}

// sessParse checks announcements as Deal does, for the fuzz tests.
func (p *party) sessParse(anns map[fl.NodeID][]byte) ([][]byte, error) {
	pubs, _, err := p.sess.parseAnnouncements(anns)
	return pubs, err
}

// clone copies a party's state after Deal (not its lock), so that a test
// can call Accept on the copy and keep the original.
func (p *party) clone() *party {
	p.mu.Lock()
	defer p.mu.Unlock()
	return &party{sess: p.sess, self: p.self, rand: p.rand, sk: p.sk, ann: p.ann, dealt: p.dealt,
		transcript: p.transcript, contrib: p.contrib, pending: p.pending, ready: p.ready, km: p.km, pairs: p.pairs}
}
