package protecttest

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// entry is one entry point that reads bytes, with a valid payload for it.
type entry struct {
	name  string // e.g. "Helper.Aggregate(protected)"
	kind  string // the payload kind it reads, a key of kinds
	valid []byte
	// call calls the entry point with b in place of the valid payload,
	// everything else being valid.
	call func(b []byte) error
	// stateful entry points change state when they succeed: after a
	// wrongly accepted payload the others would be meaningless, and MayPass
	// mutations are not tried.
	stateful bool
	// extra are well-formed payloads of the right kind that do not belong:
	// another session, round, member, setup run or target.
	extra []Mutation
}

// kinds maps a payload kind to a valid payload of that kind, for kind
// confusion.
type kinds map[string][]byte

func (k kinds) others(kind string, valid []byte) []Mutation {
	var ms []Mutation
	for _, name := range slices.Sorted(maps.Keys(k)) {
		if name != kind && !bytes.Equal(k[name], valid) {
			ms = append(ms, Mutation{Name: "a " + name + " instead", Bytes: bytes.Clone(k[name])})
		}
	}
	return ms
}

// attack calls e with every mutation of its valid payload, then every extra
// and every payload of another kind, and checks that each is rejected with
// ErrMalformed or ErrForeign, without a panic.
func attack(t *testing.T, e entry, headerLen int, k kinds) {
	t.Helper()
	ms := Mutations(e.valid, headerLen)
	ms = append(ms, e.extra...)
	ms = append(ms, k.others(e.kind, e.valid)...)
	failures := 0
	fail := func(format string, args ...any) {
		t.Helper()
		if failures++; failures <= maxReports {
			t.Errorf(format, args...)
		}
	}
	for _, m := range ms {
		if e.stateful && m.MayPass {
			continue
		}
		err := try(func() error { return e.call(bytes.Clone(m.Bytes)) })
		var pe *panicError
		switch {
		case errors.As(err, &pe):
			fail("%s with %s: %v", e.name, m.Name, pe)
		case m.MayPass:
		case err == nil:
			fail("%s accepted %s; want %s", e.name, m.Name, describe(rejected))
			if e.stateful {
				t.Errorf("%s: not trying its other mutations, since it changed state", e.name)
				return
			}
		case !wraps(err, rejected):
			fail("%s rejected %s with %q, which wraps neither protect.ErrMalformed nor protect.ErrForeign", e.name, m.Name, err)
		}
	}
	if failures > maxReports {
		t.Errorf("%s: %d more failures not shown", e.name, failures-maxReports)
	}
}

// attackPure is attack for an entry point without state: afterwards, the
// valid payload must still be accepted.
func attackPure(t *testing.T, e entry, headerLen int, k kinds) {
	t.Helper()
	attack(t, e, headerLen, k)
	if err := try(func() error { return e.call(bytes.Clone(e.valid)) }); err != nil {
		t.Errorf("%s refuses the valid payload after the hostile ones: %v", e.name, err)
	}
}

func testHostile(t *testing.T, e *env) {
	m := newFixture(t, e, "main")
	g := newFixture(t, e, "other") // another session: another Session.ID
	R := m.pick(e.ids, e.cfg.T)
	r := fl.Round(100)
	k1, k2, gk := m.kit(r, R), m.kit(r+1, R), g.kit(r, R)

	var mstate, mtarget []byte
	must(t, "Party.MarshalBinary", try(func() (err error) { mstate, err = m.parties[e.ids[0]].MarshalBinary(); return err }))
	must(t, "Target.MarshalBinary", try(func() (err error) { mtarget, err = m.target.MarshalBinary(); return err }))
	k := kinds{
		"announcement":      m.ann[e.ids[0]],
		"public dealing":    m.deal[e.ids[0]].Public,
		"private dealing":   m.privateFor(e.ids[0])[e.ids[0]],
		"setup":             m.setup,
		"protected update":  k1.prot[e.ids[0]],
		"aggregate":         k1.agg,
		"reveal share":      k1.shares[R[0]],
		"result":            k1.result,
		"target public key": m.target.Public(),
		"target secret key": mtarget,
		"party state":       mstate,
	}
	for name, b := range k {
		if len(b) == 0 {
			t.Fatalf("the fixture has no %s", name)
		}
	}
	t.Run("Setup", func(t *testing.T) { hostileSetup(t, e, m, g, k) })
	t.Run("Round", func(t *testing.T) { hostileRound(t, e, m, g, k, k1, k2, gk) })
}

// hostileSetup runs a fresh setup of m's session, attacking each step
// before it takes the valid one.
func hostileSetup(t *testing.T, e *env, m, g *fixture, k kinds) {
	h := e.cfg.HeaderLen
	f := newParties(t, e, m.label) // same Session.ID as m: m's payloads are another setup run
	f.announce()
	P := e.ids[0]                  // the party attacked
	Q := e.ids[len(e.ids)-1]       // the member whose payload is replaced
	X, hasX := otherThan(e.ids, Q) // another member
	anyOther := func(name string, b []byte, ok bool) []Mutation {
		if !ok {
			return nil
		}
		return []Mutation{{Name: name, Bytes: b}}
	}

	// Deal.
	var dealt protect.Dealing
	deal := func(anns map[fl.NodeID][]byte) error {
		d, err := f.parties[P].Deal(anns)
		if err == nil {
			dealt = d
		}
		return err
	}
	attack(t, entry{
		name: fmt.Sprintf("Party(%s).Deal(announcements[%s])", P, Q), kind: "announcement", valid: f.ann[Q], stateful: true,
		call: func(b []byte) error { a := clone(f.ann); a[Q] = b; return deal(a) },
		extra: append([]Mutation{{Name: "the announcement of another session", Bytes: g.ann[Q]}},
			anyOther(fmt.Sprintf("%s's announcement", X), f.ann[X], hasX)...),
	}, h, k)
	structure(t, fmt.Sprintf("Party(%s).Deal", P), f.ann, Q, deal)
	own := clone(f.ann)
	own[P] = bytes.Clone(m.ann[P])
	expect(t, fmt.Sprintf("Party(%s).Deal with its own announcement replaced by its announcement in another setup run", P),
		try(func() error { return deal(own) }), rejected...)
	must(t, fmt.Sprintf("Party(%s).Deal after the hostile calls", P), try(func() error { return deal(clone(f.ann)) }))
	f.deal[P] = dealt
	for _, id := range e.ids[1:] {
		f.dealBy(id)
	}

	// Helper.Setup.
	setup := func(anns, pubs map[fl.NodeID][]byte) error {
		s, err := f.helper.Setup(anns, pubs)
		if err == nil {
			f.setup = s
		}
		return err
	}
	attack(t, entry{
		name: fmt.Sprintf("Helper.Setup(announcements[%s])", Q), kind: "announcement", valid: f.ann[Q], stateful: true,
		call: func(b []byte) error { a := clone(f.ann); a[Q] = b; return setup(a, f.publics()) },
		extra: append([]Mutation{{Name: "the announcement of another session", Bytes: g.ann[Q]}},
			anyOther(fmt.Sprintf("%s's announcement", X), f.ann[X], hasX)...),
	}, h, k)
	attack(t, entry{
		name: fmt.Sprintf("Helper.Setup(publics[%s])", Q), kind: "public dealing", valid: f.deal[Q].Public, stateful: true,
		call: func(b []byte) error { p := f.publics(); p[Q] = b; return setup(clone(f.ann), p) },
		extra: append([]Mutation{
			{Name: "the public dealing of another session", Bytes: g.deal[Q].Public},
			{Name: "the public dealing of another setup run of the session", Bytes: m.deal[Q].Public},
		}, anyOther(fmt.Sprintf("%s's public dealing", X), f.deal[X].Public, hasX)...),
	}, h, k)
	structure(t, "Helper.Setup (announcements)", f.ann, Q, func(a map[fl.NodeID][]byte) error { return setup(a, f.publics()) })
	structure(t, "Helper.Setup (publics)", f.publics(), Q, func(p map[fl.NodeID][]byte) error { return setup(clone(f.ann), p) })
	must(t, "Helper.Setup after the hostile calls", try(func() error { return setup(clone(f.ann), f.publics()) }))

	// Accept.
	accept := func(setup []byte, private map[fl.NodeID][]byte) error { return f.parties[P].Accept(setup, private) }
	attack(t, entry{
		name: fmt.Sprintf("Party(%s).Accept(setup)", P), kind: "setup", valid: f.setup, stateful: true,
		call: func(b []byte) error { return accept(b, f.privateFor(P)) },
		extra: []Mutation{
			{Name: "the setup of another session", Bytes: g.setup},
			{Name: "the setup of another setup run of the session", Bytes: m.setup},
		},
	}, h, k)
	priv := f.privateFor(P)
	if _, ok := priv[Q]; !ok {
		t.Logf("%s dealt nothing to %s: not attacking Party(%s).Accept(private[%s])", Q, P, P, Q)
	} else {
		extra := []Mutation{
			{Name: "the private dealing of another session", Bytes: g.privateFor(P)[Q]},
			{Name: "the private dealing of another setup run of the session", Bytes: m.privateFor(P)[Q]},
		}
		if b, ok := f.privateFor(P)[X]; ok && hasX {
			extra = append(extra, Mutation{Name: fmt.Sprintf("%s's private dealing to %s", X, P), Bytes: b})
		}
		if Y, ok := otherThan(e.ids, P); ok {
			if b, ok := f.privateFor(Y)[Q]; ok {
				extra = append(extra, Mutation{Name: fmt.Sprintf("%s's private dealing to %s", Q, Y), Bytes: b})
			}
		}
		attack(t, entry{
			name: fmt.Sprintf("Party(%s).Accept(private[%s])", P, Q), kind: "private dealing", valid: priv[Q], stateful: true,
			call:  func(b []byte) error { p := f.privateFor(P); p[Q] = b; return accept(f.setup, p) },
			extra: extra,
		}, h, k)
		structure(t, fmt.Sprintf("Party(%s).Accept", P), priv, Q, func(p map[fl.NodeID][]byte) error { return accept(f.setup, p) })
	}
	f.acceptAll()
	f.runRound("the session set up after the hostile calls", e.ids, f.pick(e.ids, e.cfg.T), e.scale(0))
}

// structure checks an entry point that takes a map keyed by member: without
// Q's entry it fails, and with an extra entry for a non-member it fails
// with ErrNotMember.
func structure(t *testing.T, name string, valid map[fl.NodeID][]byte, Q fl.NodeID, call func(map[fl.NodeID][]byte) error) {
	t.Helper()
	expect(t, fmt.Sprintf("%s without %s's payload", name, Q), try(func() error { return call(withoutKey(valid, Q)) }))
	c := clone(valid)
	c[mallory] = bytes.Clone(valid[Q])
	expect(t, fmt.Sprintf("%s with an extra payload from %s", name, mallory), try(func() error { return call(c) }), protect.ErrNotMember)
}

func hostileRound(t *testing.T, e *env, m, g *fixture, k kinds, k1, k2, gk kit) {
	h := e.cfg.HeaderLen
	R := k1.req.Revealers
	p := R[0]
	Q := e.ids[len(e.ids)-1]
	X, hasX := otherThan(e.ids, Q)
	var t2 protect.Target
	must(t, "Scheme.NewTarget", try(func() (err error) { t2, err = e.s.NewTarget(e.reader("hostile target")); return err }))
	req2 := k1.req
	req2.Target = t2.Public()
	resultT2 := m.open(req2, m.reveal(req2, m.parties, scratch))
	var state, stateX []byte
	must(t, "Party.MarshalBinary", try(func() (err error) { state, err = m.parties[p].MarshalBinary(); return err }))
	var gstate []byte
	must(t, "Party.MarshalBinary", try(func() (err error) { gstate, err = g.parties[p].MarshalBinary(); return err }))
	Y, hasY := otherThan(e.ids, p)
	if hasY {
		must(t, "Party.MarshalBinary", try(func() (err error) { stateX, err = m.parties[Y].MarshalBinary(); return err }))
	}
	secret := k["target secret key"]

	// reveal calls p's Reveal with a fresh ledger, and checks that a
	// rejected request is not recorded.
	reveal := func(what string, req protect.RevealRequest) error {
		l := &recLedger{}
		share, err := m.parties[p].Reveal(req, l)
		switch {
		case err != nil && len(l.calls) > 0:
			t.Errorf("Party(%s).Reveal(%s) wrote the ledger for a request it rejected (%v)", p, what, err)
		case err == nil && len(share) == 0:
			t.Errorf("Party(%s).Reveal(%s) returned an empty share", p, what)
		}
		return err
	}
	only := func(ok bool, ms ...Mutation) []Mutation {
		if !ok {
			return nil
		}
		return ms
	}

	entries := []entry{{
		name: fmt.Sprintf("Helper.Aggregate(protected[%s])", Q), kind: "protected update", valid: k1.prot[Q],
		call: func(b []byte) error {
			in := clone(k1.prot)
			in[Q] = b
			_, err := m.helper.Aggregate(k1.r, in)
			return err
		},
		extra: append([]Mutation{
			{Name: "the update of another session", Bytes: gk.prot[Q]},
			{Name: fmt.Sprintf("the update for round %d", k2.r), Bytes: k2.prot[Q]},
		}, only(hasX, Mutation{Name: fmt.Sprintf("%s's update", X), Bytes: k1.prot[X]})...),
	}, {
		name: fmt.Sprintf("Party(%s).Reveal(req.Aggregate)", p), kind: "aggregate", valid: k1.agg,
		call: func(b []byte) error { req := k1.req; req.Aggregate = b; return reveal("req.Aggregate", req) },
		extra: []Mutation{
			{Name: "the aggregate of another session", Bytes: gk.agg},
			{Name: fmt.Sprintf("the aggregate of round %d", k2.r), Bytes: k2.agg},
		},
	}, {
		name: fmt.Sprintf("Party(%s).Reveal(req.Target)", p), kind: "target public key", valid: k1.req.Target,
		call: func(b []byte) error { req := k1.req; req.Target = b; return reveal("req.Target", req) },
	}, {
		name: fmt.Sprintf("Helper.Open(shares[%s])", p), kind: "reveal share", valid: k1.shares[p],
		call: func(b []byte) error {
			s := clone(k1.shares)
			s[p] = b
			_, err := m.helper.Open(k1.req, s)
			return err
		},
		extra: append([]Mutation{
			{Name: "the share of another session", Bytes: gk.shares[p]},
			{Name: fmt.Sprintf("the share for round %d", k2.r), Bytes: k2.shares[p]},
		}, only(len(R) > 1, Mutation{Name: fmt.Sprintf("%s's share", R[len(R)-1]), Bytes: k1.shares[R[len(R)-1]]})...),
	}, {
		name: "Helper.Open(req.Aggregate)", kind: "aggregate", valid: k1.agg,
		call: func(b []byte) error {
			req := k1.req
			req.Aggregate = b
			_, err := m.helper.Open(req, clone(k1.shares))
			return err
		},
		extra: []Mutation{
			{Name: "the aggregate of another session", Bytes: gk.agg},
			{Name: fmt.Sprintf("the aggregate of round %d", k2.r), Bytes: k2.agg},
		},
	}, {
		name: "Helper.Open(req.Target)", kind: "target public key", valid: k1.req.Target,
		call: func(b []byte) error {
			req := k1.req
			req.Target = b
			_, err := m.helper.Open(req, clone(k1.shares))
			return err
		},
		extra: []Mutation{{Name: "another target key than the shares were made for", Bytes: t2.Public()}},
	}, {
		name: "Target.Decrypt(result)", kind: "result", valid: k1.result,
		call: func(b []byte) error { _, err := m.target.Decrypt(b); return err },
		extra: []Mutation{
			{Name: "a result opened to another target", Bytes: resultT2},
			{Name: "the result of another session, opened to its target", Bytes: gk.result},
		},
	}, {
		name: fmt.Sprintf("Scheme.LoadParty(%s, state)", p), kind: "party state", valid: state,
		call: func(b []byte) error { _, err := e.s.LoadParty(m.session(), p, b, e.reader("load")); return err },
		extra: append([]Mutation{{Name: "the state of the same member in another session", Bytes: gstate}},
			only(hasY, Mutation{Name: fmt.Sprintf("%s's state", Y), Bytes: stateX})...),
	}, {
		name: "Scheme.LoadTarget(secret)", kind: "target secret key", valid: secret,
		call: func(b []byte) error { _, err := e.s.LoadTarget(b); return err },
	}}
	for _, en := range entries {
		t.Run(en.name, func(t *testing.T) { attackPure(t, en, h, k) })
	}
}

// otherThan returns a member other than id, if there is one.
func otherThan(ids []fl.NodeID, id fl.NodeID) (fl.NodeID, bool) {
	for _, x := range ids {
		if x != id {
			return x, true
		}
	}
	return "", false
}
