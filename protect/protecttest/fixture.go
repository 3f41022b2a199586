package protecttest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// env is a checked Config with the scheme under test.
type env struct {
	s   protect.Scheme
	cfg Config
	lim protect.Capacity
	tol float64
	ids []fl.NodeID // the members, sorted
	n   int         // instances drawn, so every stream is distinct
}

// stream returns a deterministic random stream for label.
func (e *env) stream(label string) *rand.ChaCha8 {
	e.n++
	h := sha256.New()
	binary.Write(h, binary.BigEndian, e.cfg.Seed)
	binary.Write(h, binary.BigEndian, uint64(e.n))
	h.Write([]byte(label))
	var seed [32]byte
	h.Sum(seed[:0])
	return rand.NewChaCha8(seed)
}

// reader returns the random source given to NewParty, LoadParty and
// NewTarget.
func (e *env) reader(label string) io.Reader {
	if e.cfg.Rand != nil {
		return e.cfg.Rand()
	}
	return e.stream(label)
}

// fixture is one session: its parties, helper, target and ledgers, and the
// transcript of its setup.
type fixture struct {
	e       *env
	t       *testing.T
	label   string
	id      []byte // Session.ID
	rng     *rand.Rand
	helper  protect.Helper
	target  protect.Target
	parties map[fl.NodeID]protect.Party
	ledgers map[fl.NodeID]*protect.MemLedger

	ann   map[fl.NodeID][]byte
	deal  map[fl.NodeID]protect.Dealing
	setup []byte
	round fl.Round // the last round used
	// uploads are the inputs of each aggregate made, by its digest: the
	// reveal requests' Uploads.
	uploads map[[32]byte]map[fl.NodeID][]byte
}

// newFixture returns a session whose setup has completed. Sessions with the
// same label have the same Session.ID.
func newFixture(t *testing.T, e *env, label string) *fixture {
	t.Helper()
	f := newParties(t, e, label)
	f.announce()
	for _, id := range e.ids {
		f.dealBy(id)
	}
	f.runSetup()
	f.acceptAll()
	return f
}

// newParties returns a session whose setup has not started.
func newParties(t *testing.T, e *env, label string) *fixture {
	t.Helper()
	f := &fixture{
		e: e, t: t, label: label,
		id:      []byte("protecttest/" + label),
		rng:     rand.New(e.stream(label + "/rng")),
		parties: make(map[fl.NodeID]protect.Party),
		ledgers: make(map[fl.NodeID]*protect.MemLedger),
		ann:     make(map[fl.NodeID][]byte),
		deal:    make(map[fl.NodeID]protect.Dealing),
		uploads: make(map[[32]byte]map[fl.NodeID][]byte),
	}
	var err error
	must(t, "Scheme.NewHelper", try(func() error { f.helper, err = e.s.NewHelper(f.session()); return err }))
	must(t, "Scheme.NewTarget", try(func() error { f.target, err = e.s.NewTarget(e.reader(label + "/target")); return err }))
	for _, id := range e.ids {
		f.parties[id] = f.newParty(id)
		f.ledgers[id] = &protect.MemLedger{}
	}
	return f
}

// session returns the fixture's session with the members in a fresh random
// order: every party and helper gets its own.
func (f *fixture) session() protect.Group {
	m := slices.Clone(f.e.ids)
	f.rng.Shuffle(len(m), func(i, j int) { m[i], m[j] = m[j], m[i] })
	return protect.Group{ID: bytes.Clone(f.id), Members: m, Threshold: f.e.cfg.T}
}

func (f *fixture) newParty(id fl.NodeID) protect.Party {
	f.t.Helper()
	var p protect.Party
	must(f.t, fmt.Sprintf("Scheme.NewParty(%s)", id), try(func() (err error) {
		p, err = f.e.s.NewParty(f.session(), id, f.e.reader(f.label+"/party/"+string(id)))
		return err
	}))
	return p
}

func (f *fixture) announce() {
	f.t.Helper()
	for _, id := range f.e.ids {
		must(f.t, fmt.Sprintf("setup: Party(%s).Announce", id), try(func() (err error) {
			f.ann[id], err = f.parties[id].Announce()
			return err
		}))
	}
}

// dealBy runs id's Deal and checks that its private payloads are addressed
// to members only.
func (f *fixture) dealBy(id fl.NodeID) {
	f.t.Helper()
	what := fmt.Sprintf("setup: Party(%s).Deal", id)
	var d protect.Dealing
	must(f.t, what, try(func() (err error) { d, err = f.parties[id].Deal(clone(f.ann)); return err }))
	for to := range d.Private {
		if !slices.Contains(f.e.ids, to) {
			f.t.Fatalf("%s: a private payload is addressed to %q, who is not a member", what, to)
		}
	}
	f.deal[id] = d
}

func (f *fixture) publics() map[fl.NodeID][]byte {
	m := make(map[fl.NodeID][]byte, len(f.deal))
	for id, d := range f.deal {
		m[id] = bytes.Clone(d.Public)
	}
	return m
}

func (f *fixture) runSetup() {
	f.t.Helper()
	must(f.t, "setup: Helper.Setup", try(func() (err error) { f.setup, err = f.helper.Setup(clone(f.ann), f.publics()); return err }))
}

// privateFor routes the private payloads dealt to id, keyed by dealer, as
// the runtime does after opening their sealed envelopes.
func (f *fixture) privateFor(id fl.NodeID) map[fl.NodeID][]byte {
	m := make(map[fl.NodeID][]byte)
	for dealer, d := range f.deal {
		if b, ok := d.Private[id]; ok {
			m[dealer] = bytes.Clone(b)
		}
	}
	return m
}

func (f *fixture) acceptAll() {
	f.t.Helper()
	for _, id := range f.e.ids {
		must(f.t, fmt.Sprintf("setup: Party(%s).Accept", id), try(func() error {
			return f.parties[id].Accept(bytes.Clone(f.setup), f.privateFor(id))
		}))
	}
}

// nextRound returns a fresh round number.
func (f *fixture) nextRound() fl.Round {
	f.round++
	return f.round
}

// pick returns k distinct members of from, in random order.
func (f *fixture) pick(from []fl.NodeID, k int) []fl.NodeID {
	m := slices.Clone(from)
	f.rng.Shuffle(len(m), func(i, j int) { m[i], m[j] = m[j], m[i] })
	return m[:k]
}

// without returns the members of from that are not in drop.
func without(from []fl.NodeID, drop ...fl.NodeID) []fl.NodeID {
	return slices.DeleteFunc(slices.Clone(from), func(id fl.NodeID) bool { return slices.Contains(drop, id) })
}

// inputs draws an update for each member: values uniform in [−scale, scale]
// (the first two at +scale and −scale exactly) and a weight in [0, scale].
func (f *fixture) inputs(members []fl.NodeID, scale float64) map[fl.NodeID]input {
	in := make(map[fl.NodeID]input, len(members))
	for _, id := range members {
		v := make(fl.Vector, f.e.cfg.Dim)
		for i := range v {
			v[i] = scale * (2*f.rng.Float64() - 1)
		}
		v[0] = scale
		if len(v) > 1 {
			v[1] = -scale
		}
		in[id] = input{v: v, w: scale * f.rng.Float64()}
	}
	return in
}

// protect has every member of in protect its update for round r. It gives
// each party a copy of its vector and spoils the copy afterwards, so a
// payload that aliases its input shows up as a wrong sum.
func (f *fixture) protect(r fl.Round, in map[fl.NodeID]input, parties map[fl.NodeID]protect.Party) map[fl.NodeID][]byte {
	f.t.Helper()
	out := make(map[fl.NodeID][]byte, len(in))
	for _, id := range slices.Sorted(maps.Keys(in)) {
		v := in[id].v.Clone()
		must(f.t, fmt.Sprintf("round %d: Party(%s).Protect", r, id), try(func() (err error) {
			out[id], err = parties[id].Protect(r, v, in[id].w)
			return err
		}))
		for i := range v {
			v[i] = math.NaN()
		}
	}
	return out
}

// aggregate runs Helper.Aggregate on copies of prot, and spoils the copies
// afterwards.
func (f *fixture) aggregate(r fl.Round, prot map[fl.NodeID][]byte) []byte {
	f.t.Helper()
	c := clone(prot)
	var agg []byte
	must(f.t, fmt.Sprintf("round %d: Helper.Aggregate of %d inputs", r, len(prot)), try(func() (err error) {
		agg, err = f.helper.Aggregate(r, c)
		return err
	}))
	for _, b := range c {
		for i := range b {
			b[i] = 0xa5
		}
	}
	f.uploads[sha256.Sum256(agg)] = clone(prot)
	return agg
}

// request is the reveal request of agg in round r, with the uploads that
// Helper.Aggregate summed into agg (RevealRequest.Uploads).
func (f *fixture) request(r fl.Round, agg []byte, revealers []fl.NodeID) protect.RevealRequest {
	ups := clone(f.uploads[sha256.Sum256(agg)])
	return protect.RevealRequest{Round: r, Aggregate: agg, Revealers: slices.Clone(revealers), Target: f.target.Public(),
		Uploads: ups, Included: slices.Sorted(maps.Keys(ups))}
}

// reveal has every revealer of req reveal, with the ledger ledger(id) gives.
func (f *fixture) reveal(req protect.RevealRequest, parties map[fl.NodeID]protect.Party, ledger func(fl.NodeID) protect.Ledger) map[fl.NodeID][]byte {
	f.t.Helper()
	shares := make(map[fl.NodeID][]byte, len(req.Revealers))
	for _, id := range req.Revealers {
		must(f.t, fmt.Sprintf("round %d: Party(%s).Reveal", req.Round, id), try(func() (err error) {
			shares[id], err = parties[id].Reveal(req, ledger(id))
			return err
		}))
	}
	return shares
}

// own is the ledger function for the parties' own ledgers.
func (f *fixture) own(id fl.NodeID) protect.Ledger { return f.ledgers[id] }

// scratch is the ledger function for throw-away ledgers, for shares the
// tests make on top of the real reveal of a round.
func scratch(fl.NodeID) protect.Ledger { return &protect.MemLedger{} }

func (f *fixture) open(req protect.RevealRequest, shares map[fl.NodeID][]byte) []byte {
	f.t.Helper()
	var res []byte
	must(f.t, fmt.Sprintf("round %d: Helper.Open", req.Round), try(func() (err error) {
		res, err = f.helper.Open(req, clone(shares))
		return err
	}))
	return res
}

func (f *fixture) decrypt(target protect.Target, res []byte) protect.Sum {
	f.t.Helper()
	var s protect.Sum
	must(f.t, "Target.Decrypt", try(func() (err error) { s, err = target.Decrypt(bytes.Clone(res)); return err }))
	return s
}

// runRound runs a whole round: the members of included protect updates of
// the given scale, revealers reveal with their own ledgers, and the result
// must be the sum of the included updates.
func (f *fixture) runRound(what string, included, revealers []fl.NodeID, scale float64) []byte {
	f.t.Helper()
	r := f.nextRound()
	in := f.inputs(included, scale)
	agg := f.aggregate(r, f.protect(r, in, f.parties))
	req := f.request(r, agg, revealers)
	res := f.open(req, f.reveal(req, f.parties, f.own))
	checkSum(f.t, fmt.Sprintf("%s (round %d)", what, r), f.decrypt(f.target, res), in, f.e.cfg.Dim, f.e.tol)
	return agg
}

// another returns another aggregate of round r, from the uploads prot of
// that round without one of them, or nil if prot has a single upload: a
// party makes at most one upload per round (ErrProtected), so a second
// aggregate of a round is a sum over another included set.
func (f *fixture) another(r fl.Round, prot map[fl.NodeID][]byte) []byte {
	f.t.Helper()
	if len(prot) < 2 {
		return nil
	}
	ids := slices.Sorted(maps.Keys(prot))
	return f.aggregate(r, withoutKey(prot, ids[len(ids)-1]))
}

// kit is the payloads of one round, for tests that mix and spoil them.
type kit struct {
	r      fl.Round
	in     map[fl.NodeID]input
	prot   map[fl.NodeID][]byte
	agg    []byte
	req    protect.RevealRequest
	shares map[fl.NodeID][]byte // made with scratch ledgers
	result []byte
}

// kit runs round r with every member included, revealed by revealers with
// scratch ledgers.
func (f *fixture) kit(r fl.Round, revealers []fl.NodeID) kit {
	f.t.Helper()
	k := kit{r: r, in: f.inputs(f.e.ids, f.e.scale(1))}
	k.prot = f.protect(r, k.in, f.parties)
	k.agg = f.aggregate(r, k.prot)
	k.req = f.request(r, k.agg, revealers)
	k.shares = f.reveal(k.req, f.parties, scratch)
	k.result = f.open(k.req, k.shares)
	checkSum(f.t, fmt.Sprintf("round %d", r), f.decrypt(f.target, k.result), k.in, f.e.cfg.Dim, f.e.tol)
	return k
}

// scale returns the largest input scale for which a sum of n inputs stays
// within MaxAbs, or cap, whichever is smaller (cap ≤ 0 means no cap).
func (e *env) scale(cap float64) float64 {
	s := e.lim.MaxAbs / float64(e.cfg.N)
	if cap > 0 && cap < s {
		return cap
	}
	return s
}

func clone(m map[fl.NodeID][]byte) map[fl.NodeID][]byte {
	c := make(map[fl.NodeID][]byte, len(m))
	for k, v := range m {
		c[k] = bytes.Clone(v)
	}
	return c
}
