package round

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// fakeScheme is a strict, deterministic, unprotected scheme for the engine's
// tests: payloads are bound to session, member and round, so the engine's
// mistakes show. (protect/plain replaces it once it lands.)
type fakeScheme struct{}

func (fakeScheme) Name() string { return "fake" }
func (fakeScheme) Limits() protect.Limits {
	return protect.Limits{MaxAbs: 1e12, MaxParties: 1000, MaxDim: 1 << 20}
}

func (fakeScheme) NewParty(s protect.Session, self fl.NodeID, _ io.Reader) (protect.Party, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	if s.Index(self) < 0 {
		return nil, protect.ErrNotMember
	}
	return &fakeParty{s: s, self: self}, nil
}

func (fakeScheme) LoadParty(s protect.Session, self fl.NodeID, state []byte, _ io.Reader) (protect.Party, error) {
	d := decoder{b: state}
	id, who, ok := d.bytes(), d.str(), d.u64()
	if d.end() != nil || !bytes.Equal(id, s.ID) || fl.NodeID(who) != self {
		return nil, fmt.Errorf("fake party state: %w", protect.ErrMalformed)
	}
	return &fakeParty{s: s, self: self, accepted: ok == 1}, nil
}

func (fakeScheme) NewHelper(s protect.Session) (protect.Helper, error) {
	if err := s.Validate(); err != nil {
		return nil, err
	}
	return &fakeHelper{s: s}, nil
}

func (fakeScheme) NewTarget(rand io.Reader) (protect.Target, error) {
	sec := make([]byte, 8)
	if _, err := io.ReadFull(rand, sec); err != nil {
		return nil, err
	}
	return fakeTarget{sec}, nil
}

func (fakeScheme) LoadTarget(secret []byte) (protect.Target, error) {
	if len(secret) != 8 {
		return nil, protect.ErrMalformed
	}
	return fakeTarget{bytes.Clone(secret)}, nil
}

type fakeParty struct {
	s        protect.Session
	self     fl.NodeID
	accepted bool
}

func (p *fakeParty) Announce() ([]byte, error) { return []byte("ann:" + p.self), nil }

func (p *fakeParty) Deal(anns map[fl.NodeID][]byte) (protect.Dealing, error) {
	if len(anns) != len(p.s.Members) {
		return protect.Dealing{}, protect.ErrMalformed
	}
	for id, a := range anns {
		if string(a) != "ann:"+string(id) {
			return protect.Dealing{}, fmt.Errorf("announcement of %s: %w", id, protect.ErrMalformed)
		}
	}
	d := protect.Dealing{Public: []byte("pub:" + p.self), Private: map[fl.NodeID][]byte{}}
	for _, m := range p.s.Members {
		d.Private[m] = []byte("priv:" + string(p.self) + ">" + string(m))
	}
	return d, nil
}

func (p *fakeParty) Accept(setup []byte, private map[fl.NodeID][]byte) error {
	if !bytes.Equal(setup, fakeSetup(p.s)) {
		return fmt.Errorf("setup: %w", protect.ErrForeign)
	}
	if len(private) != len(p.s.Members) {
		return fmt.Errorf("%d private dealings: %w", len(private), protect.ErrMalformed)
	}
	for from, b := range private {
		if string(b) != "priv:"+string(from)+">"+string(p.self) {
			return fmt.Errorf("dealing of %s: %w", from, protect.ErrForeign)
		}
	}
	p.accepted = true
	return nil
}

func fakeSetup(s protect.Session) []byte { return append([]byte("setup:"), s.ID...) }

func (p *fakeParty) Protect(r fl.Round, v fl.Vector, w float64) ([]byte, error) {
	if !p.accepted {
		return nil, protect.ErrNotReady
	}
	if !v.Finite() || math.IsNaN(w) {
		return nil, protect.ErrRange
	}
	var e encoder
	e.str("upd")
	e.bytes(p.s.ID)
	e.str(string(p.self))
	e.u64(uint64(r))
	e.u64(math.Float64bits(w))
	e.u64(uint64(len(v)))
	for _, x := range v {
		e.u64(math.Float64bits(x))
	}
	return e.b, nil
}

func (p *fakeParty) Reveal(req protect.RevealRequest, l protect.Ledger) ([]byte, error) {
	if !p.accepted {
		return nil, protect.ErrNotReady
	}
	if len(req.Revealers) != p.s.Threshold || !slices.Contains(req.Revealers, p.self) {
		return nil, protect.ErrForeign
	}
	if _, err := parseFakeAgg(p.s, req.Round, req.Aggregate); err != nil {
		return nil, err
	}
	d := req.Digest()
	if err := l.Record(req.Round, d); err != nil {
		return nil, err
	}
	return fakeShare(p.self, d), nil
}

func fakeShare(id fl.NodeID, d [32]byte) []byte {
	return fmt.Appendf(nil, "share:%s:%x", id, d[:8])
}

func (p *fakeParty) MarshalBinary() ([]byte, error) {
	var e encoder
	e.bytes(p.s.ID)
	e.str(string(p.self))
	if p.accepted {
		e.u64(1)
	} else {
		e.u64(0)
	}
	return e.b, nil
}

type fakeHelper struct{ s protect.Session }

func (h *fakeHelper) Setup(anns, publics map[fl.NodeID][]byte) ([]byte, error) {
	if len(anns) != len(h.s.Members) || len(publics) != len(h.s.Members) {
		return nil, protect.ErrMalformed
	}
	for id, p := range publics {
		if string(p) != "pub:"+string(id) {
			return nil, fmt.Errorf("public dealing of %s: %w", id, protect.ErrForeign)
		}
	}
	return fakeSetup(h.s), nil
}

type fakeAgg struct {
	w float64
	v fl.Vector
}

func parseFakeUpload(s protect.Session, r fl.Round, from fl.NodeID, b []byte) (fakeAgg, error) {
	d := decoder{b: b}
	label, id, who, rr, w := d.str(), d.bytes(), d.str(), d.u64(), math.Float64frombits(d.u64())
	n := d.u64()
	if d.err == nil && n*8 != uint64(len(d.b)) {
		return fakeAgg{}, protect.ErrMalformed
	}
	v := make(fl.Vector, 0, n)
	for range n {
		v = append(v, math.Float64frombits(d.u64()))
	}
	if d.end() != nil || label != "upd" {
		return fakeAgg{}, fmt.Errorf("upload: %w", protect.ErrMalformed)
	}
	if !bytes.Equal(id, s.ID) || fl.NodeID(who) != from || fl.Round(rr) != r {
		return fakeAgg{}, fmt.Errorf("upload of %s for round %d: %w", who, rr, protect.ErrForeign)
	}
	return fakeAgg{w, v}, nil
}

func (a fakeAgg) encode(s protect.Session, r fl.Round) []byte {
	var e encoder
	e.str("agg")
	e.bytes(s.ID)
	e.u64(uint64(r))
	e.u64(math.Float64bits(a.w))
	e.u64(uint64(len(a.v)))
	for _, x := range a.v {
		e.u64(math.Float64bits(x))
	}
	return e.b
}

func parseFakeAgg(s protect.Session, r fl.Round, b []byte) (fakeAgg, error) {
	d := decoder{b: b}
	label, id, rr, w := d.str(), d.bytes(), d.u64(), math.Float64frombits(d.u64())
	n := d.u64()
	if d.err == nil && n*8 != uint64(len(d.b)) {
		return fakeAgg{}, protect.ErrMalformed
	}
	v := make(fl.Vector, 0, n)
	for range n {
		v = append(v, math.Float64frombits(d.u64()))
	}
	if d.end() != nil || label != "agg" {
		return fakeAgg{}, fmt.Errorf("aggregate: %w", protect.ErrMalformed)
	}
	if !bytes.Equal(id, s.ID) || fl.Round(rr) != r {
		return fakeAgg{}, fmt.Errorf("aggregate: %w", protect.ErrForeign)
	}
	return fakeAgg{w, v}, nil
}

func (h *fakeHelper) Aggregate(r fl.Round, protected map[fl.NodeID][]byte) ([]byte, error) {
	if len(protected) == 0 {
		return nil, protect.ErrMalformed
	}
	var sum fakeAgg
	for _, id := range h.s.Sorted() {
		b, ok := protected[id]
		if !ok {
			continue
		}
		a, err := parseFakeUpload(h.s, r, id, b)
		if err != nil {
			return nil, err
		}
		if sum.v == nil {
			sum.v = make(fl.Vector, len(a.v))
		}
		if err := sum.v.Add(1, a.v); err != nil {
			return nil, fmt.Errorf("%w: %v", protect.ErrMalformed, err)
		}
		sum.w += a.w
	}
	for id := range protected {
		if h.s.Index(id) < 0 {
			return nil, protect.ErrNotMember
		}
	}
	return sum.encode(h.s, r), nil
}

func (h *fakeHelper) Needed() int { return h.s.Threshold }

func (h *fakeHelper) Open(req protect.RevealRequest, shares map[fl.NodeID][]byte) ([]byte, error) {
	if len(shares) < len(req.Revealers) {
		return nil, protect.ErrNotEnoughShares
	}
	d := req.Digest()
	for _, id := range req.Revealers {
		if !bytes.Equal(shares[id], fakeShare(id, d)) {
			return nil, fmt.Errorf("share of %s: %w", id, protect.ErrForeign)
		}
	}
	if _, err := parseFakeAgg(h.s, req.Round, req.Aggregate); err != nil {
		return nil, err
	}
	var e encoder
	e.bytes(req.Target)
	e.bytes(req.Aggregate)
	return e.b, nil
}

type fakeTarget struct{ sec []byte }

func (t fakeTarget) Public() []byte                 { return fmt.Appendf(nil, "tpub:%x", t.sec) }
func (t fakeTarget) MarshalBinary() ([]byte, error) { return bytes.Clone(t.sec), nil }
func (t fakeTarget) Decrypt(res []byte) (protect.Sum, error) {
	d := decoder{b: res}
	pub, agg := d.bytes(), d.bytes()
	if d.end() != nil {
		return protect.Sum{}, protect.ErrMalformed
	}
	if !bytes.Equal(pub, t.Public()) {
		return protect.Sum{}, protect.ErrForeign
	}
	// Skip the session and round checks: the target is not session-bound.
	ad := decoder{b: agg}
	ad.str()
	ad.bytes()
	ad.u64()
	w := math.Float64frombits(ad.u64())
	n := ad.u64()
	if ad.err != nil || n*8 != uint64(len(ad.b)) {
		return protect.Sum{}, protect.ErrMalformed
	}
	v := make(fl.Vector, n)
	for i := range v {
		v[i] = math.Float64frombits(ad.u64())
	}
	return protect.Sum{Vector: v, Weight: w}, nil
}

// fakeSealer "seals" by tagging: deterministic, so transcripts are stable.
type fakeSealer struct{ self fl.NodeID }

func (s fakeSealer) Seal(to fl.NodeID, pt []byte) ([]byte, error) {
	var e encoder
	e.str("sealed")
	e.str(string(s.self))
	e.str(string(to))
	e.bytes(pt)
	return e.b, nil
}

func (s fakeSealer) Open(from fl.NodeID, ct []byte) ([]byte, error) {
	d := decoder{b: ct}
	label, f, t, pt := d.str(), d.str(), d.str(), d.bytes()
	if d.end() != nil || label != "sealed" {
		return nil, errors.New("not a sealed payload")
	}
	if fl.NodeID(f) != from || fl.NodeID(t) != s.self {
		return nil, fmt.Errorf("sealed by %s to %s", f, t)
	}
	return pt, nil
}

// fakeBox authenticates with a keyed hash and does not encrypt.
type fakeBox struct{}

func (fakeBox) KeySize() int { return 16 }
func (fakeBox) tag(key, pt, ad []byte) []byte {
	h := sha256.New()
	h.Write(key)
	h.Write(ad)
	h.Write(pt)
	return h.Sum(nil)[:16]
}
func (b fakeBox) Seal(key, pt, ad []byte) ([]byte, error) {
	return append(b.tag(key, pt, ad), pt...), nil
}
func (b fakeBox) Open(key, ct, ad []byte) ([]byte, error) {
	if len(ct) < 16 || !bytes.Equal(ct[:16], b.tag(key, ct[16:], ad)) {
		return nil, errors.New("message authentication failed")
	}
	return ct[16:], nil
}

type fakeSigner struct{ id fl.NodeID }

func fakeSig(id fl.NodeID, msg []byte) []byte {
	h := sha256.Sum256(append([]byte("sig:"+id+":"), msg...))
	return h[:16]
}

func (s fakeSigner) Sign(msg []byte) ([]byte, error) { return fakeSig(s.id, msg), nil }

type fakeVerifier struct{}

func (fakeVerifier) Verify(id fl.NodeID, msg, sig []byte) error {
	if !bytes.Equal(sig, fakeSig(id, msg)) {
		return errors.New("signature mismatch")
	}
	return nil
}
