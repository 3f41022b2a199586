package paillier

import (
	"errors"
	"fmt"
	"io"
	"math/big"
	"runtime"
	"sync"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// Name is the mode's name in a federation manifest.
const Name = "paillier"

// Fixed body sizes (after the header), and the variable parts' units.
const (
	nonceLen        = 32
	keyLen          = 32          // X25519 keys
	boxOverhead     = keyLen + 16 // ephemeral key, GCM tag
	announcementLen = hashLen + 4 + nonceLen
	setupFixed      = hashLen + hashLen               // group, transcript; then n
	publicFixed     = hashLen + 4 + hashLen + 1       // group, dealer, transcript, is-dealer; then n
	privateFixed    = hashLen + 4 + 4 + hashLen       // group, dealer, recipient, transcript; then n, S
	protectedFixed  = hashLen + 8 + 4 + 4             // group, round, member, dim; then n, ciphertexts
	aggregateFixed  = hashLen + 8 + 4 + 4             // group, round, dim, included; then members, n, ciphertexts
	shareFixed      = hashLen + 8 + 4 + 3*hashLen + 4 // group, round, revealer, digest, set, target, dim; then box
	targetLen       = keyLen
	partyStateFixed = hashLen + 4 + hashLen // group, self, transcript; then n, S
)

// Scheme is the paillier mode: threshold Paillier with packed plaintexts.
type Scheme struct {
	p *Preset
}

var _ protect.Scheme = (*Scheme)(nil)

// New returns the scheme of preset p.
func New(p *Preset) (*Scheme, error) {
	if p == nil {
		return nil, errors.New("paillier: nil preset")
	}
	return &Scheme{p: p}, nil
}

// Name returns "paillier".
func (s *Scheme) Name() string { return Name }

// Preset returns the scheme's preset.
func (s *Scheme) Preset() *Preset { return s.p }

// Capacity returns the preset's capacity.
func (s *Scheme) Capacity() protect.Capacity { return s.p.caps }

// Sizes returns the largest payload sizes for vectors of d values in a
// group of n members; they are exact except the result, which is sized
// for t = n revealers.
func (s *Scheme) Sizes(d, n int) (protect.Sizes, error) {
	c := s.p.caps
	if d < 1 || d > c.MaxDim {
		return protect.Sizes{}, fmt.Errorf("paillier: sizes for %d values, at most %d: %w", d, c.MaxDim, protect.ErrRange)
	}
	if n < 1 || n > c.MaxParties {
		return protect.Sizes{}, fmt.Errorf("paillier: sizes for %d members, at most %d: %w", n, c.MaxParties, protect.ErrRange)
	}
	ks, ct := s.p.keySize(), 2*s.p.keySize()
	k := s.p.ciphertexts(d)
	box := boxOverhead + k*ct
	return protect.Sizes{
		Announcement:   headerLen + announcementLen,
		PublicDealing:  headerLen + publicFixed + ks,
		PrivateDealing: headerLen + privateFixed + ks + ct,
		Setup:          headerLen + setupFixed + ks,
		Update:         headerLen + protectedFixed + ks + k*ct,
		Aggregate:      headerLen + aggregateFixed + 4*n + ks + k*ct,
		Share:          headerLen + shareFixed + box,
		Result:         headerLen + resultLen(ks, n, box),
		TargetPublic:   headerLen + targetLen,
		TargetSecret:   headerLen + targetLen,
	}, nil
}

// resultLen is the body of a result with t boxes: target, group, digest,
// set, round, dim, members, threshold, n, then t × (revealer, box).
func resultLen(keySize, t, box int) int {
	return 4*hashLen + 8 + 4 + 4 + 4 + keySize + t*(4+box)
}

// NewParty returns member self's party for group g; rand supplies every
// secret it draws (the dealer's key among them).
func (s *Scheme) NewParty(g protect.Group, self fl.NodeID, rand io.Reader) (protect.Party, error) {
	sess, idx, err := s.newSession(g, self)
	if err != nil {
		return nil, err
	}
	if rand == nil {
		return nil, errors.New("paillier: nil random source")
	}
	return &party{sch: s, sess: sess, self: idx, rand: rand}, nil
}

// LoadParty restores a party from its MarshalBinary state.
func (s *Scheme) LoadParty(g protect.Group, self fl.NodeID, state []byte, rand io.Reader) (protect.Party, error) {
	sess, idx, err := s.newSession(g, self)
	if err != nil {
		return nil, err
	}
	if rand == nil {
		return nil, errors.New("paillier: nil random source")
	}
	what := fmt.Sprintf("state of party %s", self)
	ks := s.p.keySize()
	r, err := openFixed(state, kindPartyState, partyStateFixed+ks+2*ks, what)
	if err != nil {
		return nil, err
	}
	sess.CheckDigest(r.Reader)
	stateSelf, transcript := sess.Member(r.Reader), r.Hash()
	nb, sb := r.Take(ks), r.Take(2*ks)
	if err := r.Done(); err != nil {
		return nil, err
	}
	if stateSelf != idx {
		return nil, foreign(what, "belongs to member %s", sess.Name(stateSelf))
	}
	share, err := s.share(what, sess, idx, nb, sb)
	if err != nil {
		return nil, err
	}
	return &party{sch: s, sess: sess, self: idx, rand: rand, dealt: true, ready: true, transcript: transcript, share: share}, nil
}

// share builds member idx's key share from the encodings of n and S.
func (s *Scheme) share(what string, sess *session, idx int, nb, sb []byte) (*KeyShare, error) {
	tk, err := s.thresholdKey(what, sess, nb)
	if err != nil {
		return nil, err
	}
	ks := &KeyShare{Key: tk, Index: idx + 1, S: new(big.Int).SetBytes(sb)}
	if ks.S.Sign() == 0 || ks.S.Cmp(tk.N2) >= 0 {
		return nil, malformed(what, "key share outside (0, n²)")
	}
	return ks, nil
}

// thresholdKey reads n: exactly KeyBits bits, odd.
func (s *Scheme) thresholdKey(what string, sess *session, nb []byte) (*ThresholdKey, error) {
	n := new(big.Int).SetBytes(nb)
	if n.BitLen() != s.p.lit.KeyBits || n.Bit(0) == 0 {
		return nil, malformed(what, "the modulus has %d bits (odd: %v), want an odd %d-bit number", n.BitLen(), n.Bit(0) == 1, s.p.lit.KeyBits)
	}
	tk, err := NewThresholdKey(n, sess.T, len(sess.Sorted))
	if err != nil {
		return nil, malformed(what, "%v", err)
	}
	return tk, nil
}

// NewHelper returns the coordinator side for group g.
func (s *Scheme) NewHelper(g protect.Group) (protect.Helper, error) {
	sess, _, err := s.newSession(g, "")
	if err != nil {
		return nil, err
	}
	return &helper{sch: s, sess: sess}, nil
}

// NewTarget draws an X25519 target key pair from rand.
func (s *Scheme) NewTarget(rand io.Reader) (protect.Target, error) {
	if rand == nil {
		return nil, errors.New("paillier: nil random source")
	}
	sk := make([]byte, keyLen)
	if _, err := io.ReadFull(rand, sk); err != nil {
		return nil, fmt.Errorf("paillier: drawing the target key: %w", err)
	}
	return newTarget(s.p, sk)
}

// LoadTarget restores a target from Target.MarshalBinary.
func (s *Scheme) LoadTarget(secret []byte) (protect.Target, error) {
	r, err := openFixed(secret, kindTargetSecret, targetLen, "target secret key")
	if err != nil {
		return nil, err
	}
	sk := r.Take(keyLen)
	if err := r.Done(); err != nil {
		return nil, err
	}
	return newTarget(s.p, sk)
}

// session is a checked protect.Group (payload.Members).
type session struct{ payload.Members }

func (s *Scheme) newSession(g protect.Group, self fl.NodeID) (*session, int, error) {
	if err := g.Validate(); err != nil {
		return nil, 0, fmt.Errorf("paillier: %w", err)
	}
	if len(g.Members) > s.p.caps.MaxParties {
		return nil, 0, fmt.Errorf("paillier: group of %d members, at most %d: %w", len(g.Members), s.p.caps.MaxParties, protect.ErrRange)
	}
	sess := &session{payload.Members{Sorted: g.Sorted(), T: g.Threshold, Mode: "paillier", Noun: "group", Malformed: malformed, Foreign: foreign}}
	var b []byte
	b = append(b, s.p.lit.Name...)
	b = append(b, 0)
	b = payload.AppendU32(b, len(g.ID))
	b = append(b, g.ID...)
	b = payload.AppendU32(b, g.Threshold)
	b = payload.AppendU32(b, len(sess.Sorted))
	for _, m := range sess.Sorted {
		b = payload.AppendU32(b, len(m))
		b = append(b, m...)
	}
	sess.Digest = hashOf("group", b)
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

// aggregate is a decoded aggregate.
type aggregate struct {
	round    fl.Round
	dim      int
	included []int
	n        []byte
	cts      []*big.Int
}

// parseCiphertexts reads k ciphertexts under n, each checked.
func parseCiphertexts(r *reader, pk *PublicKey, k int) []*big.Int {
	if r.Err != nil {
		return nil
	}
	ct := pk.CiphertextSize()
	if len(r.B) < k*ct {
		r.Err = malformed(r.What, "declares %d ciphertexts of %d bytes, %d bytes follow", k, ct, len(r.B))
		return nil
	}
	out := make([]*big.Int, k)
	for i := range out {
		c, err := pk.ParseCiphertext(r.Take(ct))
		if err != nil {
			r.Err = malformed(r.What, "ciphertext %d: %v", i, err)
			return nil
		}
		out[i] = c
	}
	return out
}

// dim reads a vector length and checks it against MaxDim.
func (s *Scheme) dim(r *reader) int {
	d := r.U32()
	if r.Err == nil && (d < 1 || d > s.p.caps.MaxDim) {
		r.Err = malformed(r.What, "vector of %d values, want 1 to %d", d, s.p.caps.MaxDim)
	}
	return d
}

// publicKey reads n.
func (s *Scheme) publicKey(r *reader, sess *session) (*ThresholdKey, []byte) {
	nb := r.Take(s.p.keySize())
	if r.Err != nil {
		return nil, nil
	}
	tk, err := s.thresholdKey(r.What, sess, nb)
	if err != nil {
		r.Err = err
		return nil, nil
	}
	return tk, nb
}

func (s *Scheme) parseAggregate(sess *session, b []byte, what string) (aggregate, *ThresholdKey, error) {
	r, err := open(b, kindAggregate, what)
	if err != nil {
		return aggregate{}, nil, err
	}
	sess.CheckDigest(r.Reader)
	var a aggregate
	a.round = fl.Round(r.U64())
	a.dim = s.dim(r)
	k := r.U32()
	if r.Err == nil && (k < 1 || k > len(sess.Sorted)) {
		r.Err = malformed(what, "sums %d inputs, the group has %d members", k, len(sess.Sorted))
	}
	nct := s.p.ciphertexts(a.dim)
	if want := 4*k + s.p.keySize() + nct*2*s.p.keySize(); r.Err == nil && len(r.B) != want {
		r.Err = malformed(what, "%d inputs and %d values take %d bytes, %d follow", k, a.dim, want, len(r.B))
	}
	if r.Err != nil {
		return aggregate{}, nil, r.Err
	}
	a.included = make([]int, k)
	for i := range a.included {
		a.included[i] = sess.Member(r.Reader)
		if r.Err == nil && i > 0 && a.included[i] <= a.included[i-1] {
			r.Err = malformed(what, "included members not in ascending order")
		}
	}
	tk, nb := s.publicKey(r, sess)
	a.n = nb
	if r.Err == nil {
		a.cts = parseCiphertexts(r, &tk.PublicKey, nct)
	}
	if err := r.Done(); err != nil {
		return aggregate{}, nil, err
	}
	return a, tk, nil
}

// request is a checked protect.RevealRequest.
type request struct {
	agg       aggregate
	key       *ThresholdKey
	digest    [hashLen]byte
	target    targetPublic
	revealers []int
	set       [hashLen]byte
}

func (s *Scheme) checkRequest(sess *session, req protect.RevealRequest) (request, error) {
	what := fmt.Sprintf("aggregate of round %d", req.Round)
	a, tk, err := s.parseAggregate(sess, req.Aggregate, what)
	if err != nil {
		return request{}, err
	}
	if a.round != req.Round {
		return request{}, foreign(what, "for round %d", a.round)
	}
	tgt, err := parseTargetPublic(req.Target, "reveal request target")
	if err != nil {
		return request{}, err
	}
	idx, set, err := sess.revealers(req.Revealers)
	if err != nil {
		return request{}, err
	}
	return request{agg: a, key: tk, digest: req.Digest(), target: tgt, revealers: idx, set: set}, nil
}

// boxAD is what a reveal share's box binds besides the keys.
func boxAD(group [hashLen]byte, round fl.Round, revealer int, digest, set, target [hashLen]byte) []byte {
	b := append([]byte("cloister/paillier/v1 box"), group[:]...)
	b = payload.AppendU64(b, uint64(round))
	b = payload.AppendU32(b, revealer)
	b = append(b, digest[:]...)
	b = append(b, set[:]...)
	return append(b, target[:]...)
}

// parallel runs f(i) for i in [0, n) on all cores; the first error wins.
func parallel(n int, f func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), n)
	if workers <= 1 {
		for i := range n {
			if err := f(i); err != nil {
				return err
			}
		}
		return nil
	}
	errs := make([]error, n)
	var wg sync.WaitGroup
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range workers {
		wg.Go(func() {
			for i := range next {
				errs[i] = f(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
