package secagg

import (
	"errors"
	"maps"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Fuzz targets for every decoder that reads network bytes. Each seeds the
// corpus with a valid payload (made at run time) and checks that a rejected
// payload gives ErrMalformed, ErrForeign or ErrNotMember and that nothing
// panics. Run one with, for example,
//
//	go test -run '^$' -fuzz '^FuzzUpdate$' -fuzztime 60s ./secagg

type fuzzEnv struct {
	valid   map[string][]byte
	entries map[string]func([]byte) error
}

func newFuzzEnv(tb testing.TB) *fuzzEnv {
	gr := newGroup(tb, ring(tb, "secagg32-k3"), 5, 3)
	fresh := newGroupRun(tb, ring(tb, "secagg32-k3"), 5, 3, "fresh") // its setup replayed below
	ids := gr.ids
	r := fl.Round(2)
	up := gr.protect(r, gr.inputs(ids[:4], 30))
	req := gr.request(r, up, ids[:3])
	shares := map[fl.NodeID][]byte{}
	for _, id := range req.Revealers {
		shares[id], _ = gr.parties[id].Reveal(req, &protect.MemLedger{})
	}
	res, err := gr.helper.Open(req, shares)
	if err != nil {
		tb.Fatal(err)
	}
	state, _ := gr.parties[ids[0]].MarshalBinary()
	secret, _ := gr.target.MarshalBinary()

	// A setup in progress, to feed Deal, Setup and Accept.
	p, _ := gr.s.NewParty(gr.g, ids[0], fresh.rng)
	anns := map[fl.NodeID][]byte{}
	others := map[fl.NodeID]protect.Party{ids[0]: p}
	for _, id := range ids {
		if id != ids[0] {
			others[id], _ = gr.s.NewParty(gr.g, id, fresh.rng)
		}
		anns[id], _ = others[id].Announce()
	}
	pubs, privs := map[fl.NodeID][]byte{}, map[fl.NodeID][]byte{}
	for _, id := range ids {
		d, err := others[id].Deal(anns)
		if err != nil {
			tb.Fatal(err)
		}
		pubs[id], privs[id] = d.Public, d.Private[ids[0]]
	}
	setup, err := gr.helper.Setup(anns, pubs)
	if err != nil {
		tb.Fatal(err)
	}
	with := func(m map[fl.NodeID][]byte, id fl.NodeID, b []byte) map[fl.NodeID][]byte {
		c := maps.Clone(m)
		c[id] = b
		return c
	}
	q := ids[4]
	e := &fuzzEnv{
		valid: map[string][]byte{
			"announcement": anns[q], "public dealing": pubs[q], "private dealing": privs[q], "setup": setup,
			"update": up[ids[3]], "aggregate": req.Aggregate, "reveal share": shares[ids[1]], "result": res,
			"party state": state, "target public": req.Target, "target secret": secret,
		},
		entries: map[string]func([]byte) error{
			"announcement": func(b []byte) error { _, err := p.(*party).sessParse(with(anns, q, b)); return err },
			"public dealing": func(b []byte) error {
				_, err := gr.helper.Setup(anns, with(pubs, q, b))
				return err
			},
			"private dealing": func(b []byte) error {
				c := p.(*party).clone()
				return c.Accept(setup, with(privs, q, b))
			},
			"setup": func(b []byte) error { return p.(*party).clone().Accept(b, privs) },
			"update": func(b []byte) error {
				if _, err := gr.helper.Aggregate(r, with(up, ids[3], b)); err != nil {
					return err
				}
				x := req
				x.Uploads = with(up, ids[3], b)
				_, err := gr.parties[ids[1]].Reveal(x, &protect.MemLedger{})
				return err
			},
			"aggregate": func(b []byte) error {
				x := req
				x.Aggregate = b
				if _, err := gr.parties[ids[1]].Reveal(x, &protect.MemLedger{}); err != nil && !errors.Is(err, ErrIsolated) {
					return err
				}
				_, err := gr.helper.Open(x, shares)
				return err
			},
			"reveal share": func(b []byte) error { _, err := gr.helper.Open(req, with(shares, ids[1], b)); return err },
			"result":       func(b []byte) error { _, err := gr.target.Decrypt(b); return err },
			"party state":  func(b []byte) error { _, err := gr.s.LoadParty(gr.g, ids[0], b, gr.rng); return err },
			"target public": func(b []byte) error {
				x := req
				x.Target = b
				_, err := gr.parties[ids[1]].Reveal(x, &protect.MemLedger{})
				return err
			},
			"target secret": func(b []byte) error { _, err := gr.s.LoadTarget(b); return err },
		},
	}
	for k, f := range e.entries {
		if err := f(e.valid[k]); err != nil {
			tb.Fatalf("the valid %s is refused: %v", k, err)
		}
	}
	return e
}

func acceptable(err error) bool {
	return errors.Is(err, protect.ErrMalformed) || errors.Is(err, protect.ErrForeign) || errors.Is(err, protect.ErrNotMember)
}

func fuzzKind(f *testing.F, kind string) {
	e := newFuzzEnv(f)
	call := e.entries[kind]
	f.Add(e.valid[kind])
	f.Add([]byte("CLSA\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if err := call(b); err != nil && !acceptable(err) {
			t.Fatalf("%s: %v: want ErrMalformed, ErrForeign or ErrNotMember", kind, err)
		}
	})
}

func FuzzAnnouncement(f *testing.F)   { fuzzKind(f, "announcement") }
func FuzzPublicDealing(f *testing.F)  { fuzzKind(f, "public dealing") }
func FuzzPrivateDealing(f *testing.F) { fuzzKind(f, "private dealing") }
func FuzzSetup(f *testing.F)          { fuzzKind(f, "setup") }
func FuzzUpdate(f *testing.F)         { fuzzKind(f, "update") }
func FuzzAggregate(f *testing.F)      { fuzzKind(f, "aggregate") }
func FuzzRevealShare(f *testing.F)    { fuzzKind(f, "reveal share") }
func FuzzResult(f *testing.F)         { fuzzKind(f, "result") }
func FuzzPartyState(f *testing.F)     { fuzzKind(f, "party state") }
func FuzzTargetPublic(f *testing.F)   { fuzzKind(f, "target public") }
func FuzzTargetSecret(f *testing.F)   { fuzzKind(f, "target secret") }
