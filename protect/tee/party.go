package tee

import (
	"bytes"
	"crypto/ed25519"
	"crypto/hpke"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/payload"
	"github.com/cloisterfl/cloister/protect"
)

// party is the node side. Its setup runs Announce → Deal → Accept.
type party struct {
	sess      *session
	self      int
	rand      io.Reader
	key       hpke.PublicKey // the aggregator's attested key
	keyDigest [hashLen]byte
	enc       *compress.Stream // nil without compression; under mu (a top-k residual)

	mu           sync.Mutex
	announcement []byte             // set by Announce
	seed         [seedLen]byte      // set by Announce: the signing key's seed
	sign         ed25519.PrivateKey // set by Announce
	dealt        bool               // set by Deal
	transcript   [hashLen]byte      // set by Deal
	ready        bool               // set by Accept
}

func (p *party) String() string { return string(p.sess.Name(p.self)) }

// Announce draws the party's nonce and signing key, and names the
// aggregator key it will seal to. Later calls return the same
// announcement.
func (p *party) Announce() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return nil, fmt.Errorf("tee: %s: setup has already completed", p)
	}
	if p.announcement == nil {
		var nonce [nonceLen]byte
		if _, err := io.ReadFull(p.rand, nonce[:]); err != nil {
			return nil, fmt.Errorf("tee: %s: drawing the announcement nonce: %w", p, err)
		}
		if _, err := io.ReadFull(p.rand, p.seed[:]); err != nil {
			return nil, fmt.Errorf("tee: %s: drawing the signing key: %w", p, err)
		}
		p.sign = ed25519.NewKeyFromSeed(p.seed[:])
		b := newPayload(kindAnnouncement, announcementLen)
		b = append(b, p.sess.Digest[:]...)
		b = payload.AppendU32(b, p.self)
		b = append(b, nonce[:]...)
		b = append(b, p.keyDigest[:]...)
		p.announcement = append(b, p.sign.Public().(ed25519.PublicKey)...)
	}
	return bytes.Clone(p.announcement), nil
}

// Deal checks every member's announcement (its own must be the one it
// made, and all must name the aggregator key this party seals to) and binds
// its dealing to their transcript. It may be called again until Accept
// succeeds.
func (p *party) Deal(anns map[fl.NodeID][]byte) (protect.Dealing, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return protect.Dealing{}, fmt.Errorf("tee: %s: setup has already completed", p)
	}
	if p.announcement == nil {
		return protect.Dealing{}, fmt.Errorf("tee: %s: Deal before Announce: %w", p, protect.ErrNotReady)
	}
	transcript, info, err := p.sess.transcript(anns)
	if err != nil {
		return protect.Dealing{}, err
	}
	if !bytes.Equal(anns[p.sess.Name(p.self)], p.announcement) {
		return protect.Dealing{}, foreign(fmt.Sprintf("announcement from %s", p), "not the one this party made")
	}
	if info.keyDigest != p.keyDigest { // unreachable: p's own announcement names p.keyDigest
		return protect.Dealing{}, foreign("announcements", "seal to another aggregator key than %s's", p)
	}
	p.dealt, p.transcript = true, transcript

	d := protect.Dealing{Private: make(map[fl.NodeID][]byte, len(p.sess.Sorted))}
	d.Public = newPayload(kindPublic, dealingLen)
	d.Public = append(d.Public, p.sess.Digest[:]...)
	d.Public = payload.AppendU32(d.Public, p.self)
	d.Public = append(d.Public, transcript[:]...)
	for i, m := range p.sess.Sorted {
		b := newPayload(kindPrivate, privateLen)
		b = append(b, p.sess.Digest[:]...)
		b = payload.AppendU32(b, p.self)
		b = payload.AppendU32(b, i)
		d.Private[m] = append(b, transcript[:]...)
	}
	return d, nil
}

// Accept checks that the setup holds the announcements the party dealt on,
// and that one private dealing from every member is bound to them.
func (p *party) Accept(setup []byte, private map[fl.NodeID][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return fmt.Errorf("tee: %s: setup has already completed", p)
	}
	if !p.dealt {
		return fmt.Errorf("tee: %s: Accept before Deal: %w", p, protect.ErrNotReady)
	}
	transcript, _, err := p.sess.parseSetup(setup)
	if err != nil {
		return err
	}
	if transcript != p.transcript {
		return foreign("setup", "for other announcements than %s dealt on", p)
	}
	open := func(b []byte, what string) (*payload.Reader, error) {
		r, err := openFixed(b, kindPrivate, privateLen, what)
		return r.Reader, err
	}
	if err := p.sess.AcceptPrivate(private, p.self, p.transcript, p.String(), open); err != nil {
		return err
	}
	p.ready = true
	return nil
}

// maxAbs is the largest input the party takes (Capacity.MaxAbs).
func (p *party) maxAbs() float64 {
	if p.enc != nil {
		return limitCompressed
	}
	return limitMaxAbs
}

// Protect seals v and weight to the aggregator's key. The cleartext
// envelope (session, transcript, round, member, aggregator key, count) is
// the HPKE info, so a sealed update opens only for that aggregator, in that
// session and setup, round and member.
func (p *party) Protect(r fl.Round, v fl.Vector, weight float64) ([]byte, error) {
	p.mu.Lock()
	ready, transcript := p.ready, p.transcript
	p.mu.Unlock()
	if !ready {
		return nil, fmt.Errorf("tee: %s: Protect before setup: %w", p, protect.ErrNotReady)
	}
	if err := payload.CheckInput(r, v, weight, limitMaxDim, p.maxAbs()); err != nil {
		return nil, fmt.Errorf("tee: %s: %w", p, err)
	}
	b := newPayload(kindProtected, protectedFixed+updateSealedLen(p.sess.cmp, len(v)))
	b = append(b, p.sess.Digest[:]...)
	b = append(b, transcript[:]...)
	b = payload.AppendU64(b, uint64(r))
	b = payload.AppendU32(b, p.self)
	b = append(b, p.keyDigest[:]...)
	b = payload.AppendU32(b, len(v))
	pt := make([]byte, 0, 8+bodyLen(p.sess.cmp, len(v)))
	pt = payload.AppendF64(pt, weight)
	if p.enc == nil {
		pt = payload.AppendF64s(pt, v)
	} else {
		p.mu.Lock()
		body, err := p.enc.Marshal(v, p.rand)
		p.mu.Unlock()
		if err != nil {
			return nil, fmt.Errorf("tee: %s: compressing the update of round %d (%s): %w: %w", p, r, p.sess.cmp, err, protect.ErrRange)
		}
		pt = append(pt, body...)
		clear(body)
	}
	ct, err := hpke.Seal(p.key, kdf(), aead(), b, pt)
	clear(pt)
	if err != nil {
		return nil, fmt.Errorf("tee: %s: sealing the update of round %d: %w", p, r, err)
	}
	return append(b, ct...), nil
}

// Reveal checks req, records it in l and returns a share, signed with the
// party's announced key, that binds the round, the aggregate, the revealer
// set and the target: the aggregator opens the aggregate only for a target
// that t members signed, so the coordinator cannot have it sealed to a key
// of its own.
func (p *party) Reveal(req protect.RevealRequest, l protect.Ledger) ([]byte, error) {
	p.mu.Lock()
	ready, sign := p.ready, p.sign
	p.mu.Unlock()
	if !ready {
		return nil, fmt.Errorf("tee: %s: Reveal before setup: %w", p, protect.ErrNotReady)
	}
	if l == nil {
		return nil, errors.New("tee: Reveal with a nil ledger")
	}
	q, err := p.sess.checkRequest(req)
	if err != nil {
		return nil, err
	}
	if _, ok := slices.BinarySearch(q.revealers, p.self); !ok {
		return nil, foreign(fmt.Sprintf("reveal request for round %d", req.Round), "does not name %s as a revealer", p)
	}
	b := newPayload(kindShare, shareLen)
	b = append(b, p.sess.Digest[:]...)
	b = payload.AppendU64(b, uint64(req.Round))
	b = payload.AppendU32(b, p.self)
	b = append(b, q.digest[:]...)
	b = append(b, q.set[:]...)
	b = append(b, q.target[:]...)
	b = append(b, ed25519.Sign(sign, b)...)
	if err := l.Record(req.Round, q.digest); err != nil {
		return nil, fmt.Errorf("tee: %s: recording the reveal for round %d: %w", p, req.Round, err)
	}
	return b, nil
}

// MarshalBinary returns the party's state after setup, signing key
// included.
func (p *party) MarshalBinary() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ready {
		return nil, fmt.Errorf("tee: %s: MarshalBinary before setup: %w", p, protect.ErrNotReady)
	}
	b := newPayload(kindPartyState, partyStateLen)
	b = append(b, p.sess.Digest[:]...)
	b = payload.AppendU32(b, p.self)
	b = append(b, p.transcript[:]...)
	b = append(b, p.keyDigest[:]...)
	return append(b, p.seed[:]...), nil
}

// load restores the state MarshalBinary wrote.
func (p *party) load(state []byte) error {
	what := fmt.Sprintf("state of party %s", p)
	r, err := openFixed(state, kindPartyState, partyStateLen, what)
	if err != nil {
		return err
	}
	p.sess.CheckDigest(r.Reader)
	self, transcript, keyDigest := p.sess.Member(r.Reader), r.Hash(), r.Hash()
	seed := r.Take(seedLen)
	if err := r.Done(); err != nil {
		return err
	}
	switch {
	case self != p.self:
		return foreign(what, "belongs to member %s", p.sess.Name(self))
	case keyDigest != p.keyDigest:
		return foreign(what, "seals to aggregator key %x, this scheme's is %x", keyDigest[:6], p.keyDigest[:6])
	}
	copy(p.seed[:], seed)
	p.sign = ed25519.NewKeyFromSeed(p.seed[:])
	p.transcript, p.dealt, p.ready = transcript, true, true
	return nil
}
