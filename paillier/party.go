package paillier

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/big"
	"slices"
	"sync"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// dealer is the index, among the sorted members, of the member that
// generates and deals the key.
const dealer = 0

// party is the node side. Its setup runs Announce → Deal → Accept.
type party struct {
	sch  *Scheme
	sess *session
	self int
	rand io.Reader

	mu           sync.Mutex
	announcement []byte
	dealt        bool
	transcript   [hashLen]byte
	dealing      *protect.Dealing // the dealer's, kept until Accept so a repeated Deal gives the same key
	ready        bool
	share        *KeyShare
}

func (p *party) String() string { return string(p.sess.Name(p.self)) }

// Announce draws the party's nonce. Later calls return the same
// announcement.
func (p *party) Announce() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return nil, fmt.Errorf("paillier: %s: setup has already completed", p)
	}
	if p.announcement == nil {
		var nonce [nonceLen]byte
		if _, err := io.ReadFull(p.rand, nonce[:]); err != nil {
			return nil, fmt.Errorf("paillier: %s: drawing the announcement nonce: %w", p, err)
		}
		b := newPayload(kindAnnouncement, announcementLen)
		b = append(b, p.sess.Digest[:]...)
		b = payload.AppendU32(b, p.self)
		p.announcement = append(b, nonce[:]...)
	}
	return bytes.Clone(p.announcement), nil
}

// Deal checks the announcements. The dealer (the first member in sorted
// order) generates the key, splits it into one share per member and
// erases it; every other member deals nothing but its binding to the
// transcript. A repeated Deal on the same announcements returns the same
// dealing.
func (p *party) Deal(anns map[fl.NodeID][]byte) (protect.Dealing, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return protect.Dealing{}, fmt.Errorf("paillier: %s: setup has already completed", p)
	}
	if p.announcement == nil {
		return protect.Dealing{}, fmt.Errorf("paillier: %s: Deal before Announce: %w", p, protect.ErrNotReady)
	}
	transcript, err := p.sess.transcript(anns)
	if err != nil {
		return protect.Dealing{}, err
	}
	if !bytes.Equal(anns[p.sess.Name(p.self)], p.announcement) {
		return protect.Dealing{}, foreign(fmt.Sprintf("announcement from %s", p), "not the one this party made")
	}
	if p.dealt && p.transcript == transcript && p.dealing != nil {
		return cloneDealing(*p.dealing), nil
	}
	ks := p.sch.p.keySize()
	pub := newPayload(kindPublic, publicFixed+ks)
	pub = append(pub, p.sess.Digest[:]...)
	pub = payload.AppendU32(pub, p.self)
	pub = append(pub, transcript[:]...)
	d := protect.Dealing{Private: map[fl.NodeID][]byte{}}
	if p.self != dealer {
		pub = append(pub, 0)
		d.Public = append(pub, make([]byte, ks)...)
		p.dealt, p.transcript, p.dealing = true, transcript, &d
		return cloneDealing(d), nil
	}
	sk, err := GenerateKey(p.sch.p.lit.KeyBits, p.rand)
	if err != nil {
		return protect.Dealing{}, fmt.Errorf("paillier: %s: generating the key: %w", p, err)
	}
	_, shares, err := Deal(sk, p.sess.T, len(p.sess.Sorted), p.rand)
	sk.erase()
	if err != nil {
		return protect.Dealing{}, fmt.Errorf("paillier: %s: dealing the key: %w", p, err)
	}
	nb := make([]byte, ks)
	sk.N.FillBytes(nb)
	pub = append(pub, 1)
	d.Public = append(pub, nb...)
	for i, m := range p.sess.Sorted {
		b := newPayload(kindPrivate, privateFixed+3*ks)
		b = append(b, p.sess.Digest[:]...)
		b = payload.AppendU32(b, p.self)
		b = payload.AppendU32(b, i)
		b = append(b, transcript[:]...)
		b = append(b, nb...)
		sb := make([]byte, 2*ks)
		shares[i].S.FillBytes(sb)
		d.Private[m] = append(b, sb...)
		shares[i].S.SetInt64(0)
	}
	p.dealt, p.transcript, p.dealing = true, transcript, &d
	return cloneDealing(d), nil
}

func cloneDealing(d protect.Dealing) protect.Dealing {
	out := protect.Dealing{Public: bytes.Clone(d.Public), Private: make(map[fl.NodeID][]byte, len(d.Private))}
	for k, v := range d.Private {
		out.Private[k] = bytes.Clone(v)
	}
	return out
}

// Erase overwrites the secret parts of the key; the key is unusable after.
func (sk *PrivateKey) Erase() { sk.erase() }

// erase overwrites the secret parts of the key.
func (sk *PrivateKey) erase() {
	for _, x := range []*big.Int{sk.p, sk.q, sk.lambda, sk.mu} {
		clear(x.Bits())
		x.SetInt64(0)
	}
}

// Accept checks the setup and the dealer's private dealing to this party,
// both bound to the transcript it dealt on, and keeps its key share.
func (p *party) Accept(setup []byte, private map[fl.NodeID][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return fmt.Errorf("paillier: %s: setup has already completed", p)
	}
	if !p.dealt {
		return fmt.Errorf("paillier: %s: Accept before Deal: %w", p, protect.ErrNotReady)
	}
	ks := p.sch.p.keySize()
	r, err := openFixed(setup, kindSetup, setupFixed+ks, "setup")
	if err != nil {
		return err
	}
	p.sess.CheckDigest(r.Reader)
	transcript := r.Hash()
	tk, nb := p.sch.publicKey(r, p.sess)
	if err := r.Done(); err != nil {
		return err
	}
	if transcript != p.transcript {
		return foreign("setup", "for other announcements than %s dealt on", p)
	}
	ids, err := p.sess.Keys(private, "private dealing from")
	if err != nil {
		return err
	}
	dname := p.sess.Name(dealer)
	for _, id := range ids {
		if id != dname {
			return foreign(fmt.Sprintf("private dealing from %s", id), "only %s deals", dname)
		}
	}
	b, ok := private[dname]
	if !ok {
		return fmt.Errorf("paillier: %s: no private dealing from the dealer %q", p, dname)
	}
	what := fmt.Sprintf("private dealing from %s", dname)
	r, err = openFixed(b, kindPrivate, privateFixed+3*ks, what)
	if err != nil {
		return err
	}
	p.sess.CheckDigest(r.Reader)
	from, to, t2 := p.sess.Member(r.Reader), p.sess.Member(r.Reader), r.Hash()
	nb2, sb := r.Take(ks), r.Take(2*ks)
	if err := r.Done(); err != nil {
		return err
	}
	switch {
	case from != dealer:
		return foreign(what, "dealt by %s", p.sess.Name(from))
	case to != p.self:
		return foreign(what, "dealt to %s", p.sess.Name(to))
	case t2 != p.transcript:
		return foreign(what, "for other announcements than %s dealt on", p)
	case !bytes.Equal(nb, nb2):
		return foreign(what, "a share of another key than the setup's")
	}
	share, err := p.sch.share(what, p.sess, p.self, nb, sb)
	if err != nil {
		return err
	}
	share.Key = tk
	p.share, p.ready, p.dealing = share, true, nil
	return nil
}

// Protect packs v and its weight, Slots values per plaintext, and
// encrypts each plaintext under the group's key. It refuses values above
// MaxAbs/n, n the group's members, so that no sum can overflow a slot.
func (p *party) Protect(r fl.Round, v fl.Vector, weight float64) ([]byte, error) {
	p.mu.Lock()
	ready, share := p.ready, p.share
	p.mu.Unlock()
	if !ready {
		return nil, fmt.Errorf("paillier: %s: Protect before setup: %w", p, protect.ErrNotReady)
	}
	pr := p.sch.p
	if r == 0 {
		return nil, fmt.Errorf("paillier: round 0: rounds start at 1: %w", protect.ErrRange)
	}
	if len(v) < 1 || len(v) > pr.caps.MaxDim {
		return nil, fmt.Errorf("paillier: vector of %d values, want 1 to %d: %w", len(v), pr.caps.MaxDim, protect.ErrRange)
	}
	lim := pr.caps.MaxAbs / float64(len(p.sess.Sorted))
	if i := slices.IndexFunc(v, func(x float64) bool { return !(math.Abs(x) <= lim) }); i >= 0 {
		return nil, fmt.Errorf("paillier: value %d is %v, outside ±%v (MaxAbs/members): %w", i, v[i], lim, protect.ErrRange)
	}
	if !(weight >= 0 && weight <= lim) {
		return nil, fmt.Errorf("paillier: weight %v outside [0, %v]: %w", weight, lim, protect.ErrRange)
	}
	pk := &share.Key.PublicKey
	cts, err := p.sch.encrypt(pk, append(slices.Clone(v), weight), p.rand)
	if err != nil {
		return nil, fmt.Errorf("paillier: %s: %w", p, err)
	}
	ks := pr.keySize()
	b := newPayload(kindProtected, protectedFixed+ks+len(cts)*pk.CiphertextSize())
	b = append(b, p.sess.Digest[:]...)
	b = payload.AppendU64(b, uint64(r))
	b = payload.AppendU32(b, p.self)
	b = payload.AppendU32(b, len(v))
	b = append(b, make([]byte, ks)...)
	pk.N.FillBytes(b[len(b)-ks:])
	for _, c := range cts {
		b = pk.AppendCiphertext(b, c)
	}
	return b, nil
}

// encrypt quantizes vals at 2^Frac, packs them and encrypts each
// plaintext. The randomness is drawn from rand in order; the
// exponentiations run on all cores.
func (s *Scheme) encrypt(pk *PublicKey, vals []float64, rand io.Reader) ([]*big.Int, error) {
	pr := s.p
	pack := Packing{SlotBits: pr.lit.SlotBits, Slots: pr.slots}
	k := (len(vals) + pr.slots - 1) / pr.slots
	rs := make([]*big.Int, k)
	for i := range rs {
		var err error
		if rs[i], err = pk.randomUnit(rand); err != nil {
			return nil, err
		}
	}
	scale := math.Ldexp(1, pr.lit.Frac)
	cts := make([]*big.Int, k)
	err := parallel(k, func(i int) error {
		lo, hi := i*pr.slots, min((i+1)*pr.slots, len(vals))
		q := make([]int64, hi-lo)
		for j := range q {
			q[j] = int64(math.RoundToEven(vals[lo+j] * scale))
		}
		cts[i] = pk.encryptWith(pack.Pack(q, pk.N), rs[i])
		return nil
	})
	return cts, err
}

// Reveal checks req, records it in l, computes this party's decryption
// share of every ciphertext of the aggregate and seals them to the
// target: the coordinator relays them but cannot combine them.
func (p *party) Reveal(req protect.RevealRequest, l protect.Ledger) ([]byte, error) {
	p.mu.Lock()
	ready, share := p.ready, p.share
	p.mu.Unlock()
	if !ready {
		return nil, fmt.Errorf("paillier: %s: Reveal before setup: %w", p, protect.ErrNotReady)
	}
	if l == nil {
		return nil, errors.New("paillier: Reveal with a nil ledger")
	}
	q, err := p.sch.checkRequest(p.sess, req)
	if err != nil {
		return nil, err
	}
	what := fmt.Sprintf("reveal request for round %d", req.Round)
	if q.key.N.Cmp(share.Key.N) != 0 {
		return nil, foreign(what, "an aggregate under another key")
	}
	if _, ok := slices.BinarySearch(q.revealers, p.self); !ok {
		return nil, foreign(what, "does not name %s as a revealer", p)
	}
	pk := &share.Key.PublicKey
	ct := pk.CiphertextSize()
	parts := make([]byte, len(q.agg.cts)*ct)
	err = parallel(len(q.agg.cts), func(i int) error {
		d, err := share.Decrypt(q.agg.cts[i])
		if err != nil {
			return err
		}
		d.FillBytes(parts[i*ct : (i+1)*ct])
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("paillier: %s: decryption share: %w", p, err)
	}
	ad := boxAD(p.sess.Digest, req.Round, p.self, q.digest, q.set, q.target.id)
	if err := l.Record(req.Round, q.digest); err != nil {
		return nil, fmt.Errorf("paillier: %s: recording the reveal for round %d: %w", p, req.Round, err)
	}
	box, err := seal(q.target, parts, ad, p.rand)
	clear(parts)
	if err != nil {
		return nil, fmt.Errorf("paillier: %s: %w", p, err)
	}
	b := newPayload(kindShare, shareFixed+len(box))
	b = append(b, p.sess.Digest[:]...)
	b = payload.AppendU64(b, uint64(req.Round))
	b = payload.AppendU32(b, p.self)
	b = append(b, q.digest[:]...)
	b = append(b, q.set[:]...)
	b = append(b, q.target.id[:]...)
	b = payload.AppendU32(b, q.agg.dim)
	return append(b, box...), nil
}

// MarshalBinary returns the party's state after setup: its key share.
func (p *party) MarshalBinary() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ready {
		return nil, fmt.Errorf("paillier: %s: MarshalBinary before setup: %w", p, protect.ErrNotReady)
	}
	ks := p.sch.p.keySize()
	b := newPayload(kindPartyState, partyStateFixed+3*ks)
	b = append(b, p.sess.Digest[:]...)
	b = payload.AppendU32(b, p.self)
	b = append(b, p.transcript[:]...)
	off := len(b)
	b = append(b, make([]byte, 3*ks)...)
	p.share.Key.N.FillBytes(b[off : off+ks])
	p.share.S.FillBytes(b[off+ks:])
	return b, nil
}
