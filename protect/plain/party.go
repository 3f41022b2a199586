package plain

import (
	"bytes"
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
	sess *session
	self int
	rand io.Reader
	cmp  compress.Scheme
	enc  *compress.Stream // nil without compression; under mu (a top-k residual)

	mu           sync.Mutex
	announcement []byte        // set by Announce
	dealt        bool          // set by Deal
	transcript   [hashLen]byte // set by Deal
	ready        bool          // set by Accept
}

func (p *party) String() string { return string(p.sess.Name(p.self)) }

// Announce draws the party's nonce. Later calls return the same
// announcement.
func (p *party) Announce() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return nil, fmt.Errorf("plain: %s: setup has already completed", p)
	}
	if p.announcement == nil {
		var nonce [nonceLen]byte
		if _, err := io.ReadFull(p.rand, nonce[:]); err != nil {
			return nil, fmt.Errorf("plain: %s: drawing the announcement nonce: %w", p, err)
		}
		b := newPayload(kindAnnouncement, announcementLen)
		b = append(b, p.sess.Digest[:]...)
		b = payload.AppendU32(b, p.self)
		p.announcement = append(b, nonce[:]...)
	}
	return bytes.Clone(p.announcement), nil
}

// Deal checks every member's announcement, including that the party's own is
// the one it made, and binds its dealing to their transcript. It may be
// called again until Accept succeeds.
func (p *party) Deal(anns map[fl.NodeID][]byte) (protect.Dealing, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return protect.Dealing{}, fmt.Errorf("plain: %s: setup has already completed", p)
	}
	if p.announcement == nil {
		return protect.Dealing{}, fmt.Errorf("plain: %s: Deal before Announce: %w", p, protect.ErrNotReady)
	}
	transcript, err := p.sess.transcript(anns)
	if err != nil {
		return protect.Dealing{}, err
	}
	if !bytes.Equal(anns[p.sess.Name(p.self)], p.announcement) {
		return protect.Dealing{}, foreign(fmt.Sprintf("announcement from %s", p), "not the one this party made")
	}
	p.dealt, p.transcript = true, transcript

	d := protect.Dealing{Private: make(map[fl.NodeID][]byte, len(p.sess.Sorted))}
	d.Public = newPayload(kindPublic, publicLen)
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

// Accept checks that the setup and one private dealing from every member
// are bound to the transcript the party dealt on.
func (p *party) Accept(setup []byte, private map[fl.NodeID][]byte) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ready {
		return fmt.Errorf("plain: %s: setup has already completed", p)
	}
	if !p.dealt {
		return fmt.Errorf("plain: %s: Accept before Deal: %w", p, protect.ErrNotReady)
	}
	r, err := openFixed(setup, kindSetup, setupLen, "setup")
	if err != nil {
		return err
	}
	p.sess.CheckDigest(r.Reader)
	transcript := r.Hash()
	if err := r.Done(); err != nil {
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

// Protect writes v and weight as they are: plain hides nothing.
func (p *party) Protect(r fl.Round, v fl.Vector, weight float64) ([]byte, error) {
	p.mu.Lock()
	ready := p.ready
	p.mu.Unlock()
	if !ready {
		return nil, fmt.Errorf("plain: %s: Protect before setup: %w", p, protect.ErrNotReady)
	}
	if err := payload.CheckInput(r, v, weight, limitMaxDim, p.maxAbs()); err != nil {
		return nil, fmt.Errorf("plain: %s: %w", p, err)
	}
	if p.enc != nil {
		return p.protectCompressed(r, v, weight)
	}
	b := newPayload(kindProtected, protectedFixed+8*len(v))
	b = append(b, p.sess.Digest[:]...)
	b = payload.AppendU64(b, uint64(r))
	b = payload.AppendU32(b, p.self)
	b = payload.AppendU32(b, len(v))
	b = payload.AppendF64(b, weight)
	return payload.AppendF64s(b, v), nil
}

// protectCompressed writes the weight as it is and v compressed.
func (p *party) protectCompressed(r fl.Round, v fl.Vector, weight float64) ([]byte, error) {
	p.mu.Lock()
	body, err := p.enc.Marshal(v, p.rand)
	p.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("plain: %s: compressing the update of round %d (%s): %w: %w", p, r, p.cmp, err, protect.ErrRange)
	}
	b := newPayload(kindCompressed, protectedFixed+len(body))
	b = append(b, p.sess.Digest[:]...)
	b = payload.AppendU64(b, uint64(r))
	b = payload.AppendU32(b, p.self)
	b = payload.AppendU32(b, len(v))
	b = payload.AppendF64(b, weight)
	return append(b, body...), nil
}

// Reveal checks req, records it in l and returns a share that binds the
// round, the aggregate, the revealer set and the target.
func (p *party) Reveal(req protect.RevealRequest, l protect.Ledger) ([]byte, error) {
	p.mu.Lock()
	ready := p.ready
	p.mu.Unlock()
	if !ready {
		return nil, fmt.Errorf("plain: %s: Reveal before setup: %w", p, protect.ErrNotReady)
	}
	if l == nil {
		return nil, errors.New("plain: Reveal with a nil ledger")
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
	if err := l.Record(req.Round, q.digest); err != nil {
		return nil, fmt.Errorf("plain: %s: recording the reveal for round %d: %w", p, req.Round, err)
	}
	return b, nil
}

// MarshalBinary returns the party's state after setup.
func (p *party) MarshalBinary() ([]byte, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ready {
		return nil, fmt.Errorf("plain: %s: MarshalBinary before setup: %w", p, protect.ErrNotReady)
	}
	b := newPayload(kindPartyState, partyStateLen)
	b = append(b, p.sess.Digest[:]...)
	b = payload.AppendU32(b, p.self)
	return append(b, p.transcript[:]...), nil
}
