package protecttest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Protect, NonMember and Persist: the refusals at the entry points that
// take inputs and names, and parties and targets restored from their state.

func testProtect(t *testing.T, e *env) {
	f := newFixture(t, e, "protect")
	id := e.ids[0]
	v := f.inputs(e.ids[:1], e.scale(1))[id].v

	// Before setup.
	p := f.newParty(id)
	k := f.kit(f.nextRound(), f.pick(e.ids, e.cfg.T))
	early := func(step string) {
		t.Helper()
		expect(t, fmt.Sprintf("Party.Protect %s", step), try(func() error {
			_, err := p.Protect(1, v, 1)
			return err
		}), protect.ErrNotReady)
		l := &recLedger{}
		req := k.req
		if !slices.Contains(req.Revealers, id) { // make p a revealer
			req.Revealers = append(slices.Clone(req.Revealers[1:]), id)
		}
		expect(t, fmt.Sprintf("Party.Reveal %s", step), try(func() error {
			_, err := p.Reveal(req, l)
			return err
		}), protect.ErrNotReady)
		if len(l.calls) > 0 {
			t.Errorf("Party.Reveal %s wrote the ledger", step)
		}
	}
	early("before Announce")
	var ann []byte
	must(t, "Party.Announce", try(func() (err error) { ann, err = p.Announce(); return err }))
	early("after Announce")
	anns := clone(f.ann)
	anns[id] = ann
	must(t, "Party.Deal", try(func() error { _, err := p.Deal(anns); return err }))
	early("after Deal, before Accept")

	// Out of range.
	q := f.parties[id]
	prot := func(what string, v fl.Vector, w float64) {
		t.Helper()
		expect(t, "Party.Protect of "+what, try(func() error { _, err := q.Protect(f.nextRound(), v, w); return err }), protect.ErrRange)
	}
	spoil := func(i int, x float64) fl.Vector { w := v.Clone(); w[i] = x; return w }
	prot("a vector with NaN", spoil(5%len(v), math.NaN()), 1)
	prot("a vector with +Inf", spoil(0, math.Inf(1)), 1)
	prot("a vector with -Inf", spoil(len(v)-1, math.Inf(-1)), 1)
	prot("a NaN weight", v, math.NaN())
	prot("an infinite weight", v, math.Inf(1))
	if big := 2 * e.lim.MaxAbs; !math.IsInf(big, 0) {
		prot(fmt.Sprintf("a value of 2·MaxAbs = %g", big), spoil(1, big), 1)
		prot(fmt.Sprintf("a value of −2·MaxAbs = %g", -big), spoil(1, -big), 1)
		prot(fmt.Sprintf("a weight of 2·MaxAbs = %g", big), v, big)
	}
	if e.lim.MaxDim <= maxTestedDim {
		prot(fmt.Sprintf("a vector of MaxDim+1 = %d values", e.lim.MaxDim+1), make(fl.Vector, e.lim.MaxDim+1), 1)
	} else {
		t.Logf("not testing a vector of MaxDim+1 = %d values: more than 2²⁴ is too large to allocate in a test", e.lim.MaxDim+1)
	}

	// A second Protect in a round (and one for an earlier round) is either
	// made or refused with ErrProtected; a refused one changes nothing.
	{
		r := f.nextRound()
		must(t, fmt.Sprintf("round %d: Party.Protect", r), try(func() error { _, err := q.Protect(r, v, 1); return err }))
		for _, x := range []fl.Round{r, r - 1} {
			err := try(func() error { _, err := q.Protect(x, v, 1); return err })
			if err != nil && !errors.Is(err, protect.ErrProtected) {
				t.Errorf("round %d: a second Party.Protect for round %d: %v, want nil or ErrProtected", r, x, err)
			}
		}
	}

	// Aggregate refuses inputs of different lengths, and no inputs.
	if e.cfg.N > 1 {
		r := f.nextRound()
		in := f.inputs(e.ids, e.scale(1))
		last := e.ids[len(e.ids)-1]
		in[last] = input{v: append(in[last].v, 0.5), w: in[last].w}
		prot := f.protect(r, in, f.parties)
		expect(t, fmt.Sprintf("Helper.Aggregate of inputs of %d and %d values", e.cfg.Dim, e.cfg.Dim+1), try(func() error {
			_, err := f.helper.Aggregate(r, prot)
			return err
		}))
	}
	expect(t, "Helper.Aggregate of no inputs", try(func() error {
		_, err := f.helper.Aggregate(f.nextRound(), map[fl.NodeID][]byte{})
		return err
	}))
}

func testNonMember(t *testing.T, e *env) {
	f := newFixture(t, e, "non-member")
	R := f.pick(e.ids, e.cfg.T)
	k := f.kit(f.nextRound(), R)
	p := R[0]
	expect(t, fmt.Sprintf("Scheme.NewParty(%s)", mallory), try(func() error {
		_, err := e.s.NewParty(f.session(), mallory, e.reader("mallory"))
		return err
	}), protect.ErrNotMember)
	var state []byte
	must(t, fmt.Sprintf("Party(%s).MarshalBinary", p), try(func() (err error) { state, err = f.parties[p].MarshalBinary(); return err }))
	expect(t, fmt.Sprintf("Scheme.LoadParty(%s) of %s's state", mallory, p), try(func() error {
		_, err := e.s.LoadParty(f.session(), mallory, state, e.reader("mallory"))
		return err
	}), protect.ErrNotMember)

	prot := clone(k.prot)
	prot[mallory] = prot[p]
	expect(t, fmt.Sprintf("Helper.Aggregate with an input from %s", mallory), try(func() error {
		_, err := f.helper.Aggregate(k.r, prot)
		return err
	}), protect.ErrNotMember)

	shares := clone(k.shares)
	shares[mallory] = shares[p]
	expect(t, fmt.Sprintf("Helper.Open with all shares plus one from %s", mallory), try(func() error {
		_, err := f.helper.Open(k.req, shares)
		return err
	}), protect.ErrNotMember)

	req := k.req
	req.Revealers = slices.Clone(R)
	req.Revealers[len(R)-1] = mallory
	expect(t, fmt.Sprintf("Helper.Open of a request naming %s as a revealer", mallory), try(func() error {
		_, err := f.helper.Open(req, k.shares)
		return err
	}), protect.ErrNotMember)
	if len(R) > 1 {
		l := &recLedger{}
		expect(t, fmt.Sprintf("Party(%s).Reveal of a request naming %s as a revealer", p, mallory), try(func() error {
			_, err := f.parties[p].Reveal(req, l)
			return err
		}), protect.ErrNotMember)
		if len(l.calls) > 0 {
			t.Errorf("Party(%s).Reveal of a request naming %s wrote the ledger", p, mallory)
		}
	}
	// The setup entry points are checked in Hostile/Setup.
}

func testPersist(t *testing.T, e *env) {
	f := newFixture(t, e, "persist")
	R := f.pick(e.ids, e.cfg.T)
	revealedAgg := f.runRound("before the restart", e.ids, R, e.scale(0))
	revealed := f.round

	// The revealers of that round and every other party restart.
	restored := make(map[fl.NodeID]protect.Party, len(e.ids))
	for i, id := range e.ids {
		if i%2 == 1 && !slices.Contains(R, id) {
			restored[id] = f.parties[id]
			continue
		}
		var state []byte
		must(t, fmt.Sprintf("Party(%s).MarshalBinary", id), try(func() (err error) { state, err = f.parties[id].MarshalBinary(); return err }))
		must(t, fmt.Sprintf("Scheme.LoadParty(%s)", id), try(func() (err error) {
			restored[id], err = e.s.LoadParty(f.session(), id, state, e.reader("restored/"+string(id)))
			return err
		}))
	}
	var secret []byte
	var target protect.Target
	must(t, "Target.MarshalBinary", try(func() (err error) { secret, err = f.target.MarshalBinary(); return err }))
	must(t, "Scheme.LoadTarget", try(func() (err error) { target, err = e.s.LoadTarget(secret); return err }))
	if string(target.Public()) != string(f.target.Public()) {
		t.Errorf("the restored target's Public() differs from the original's")
	}

	r := f.nextRound()
	in := f.inputs(e.ids, e.scale(0))
	req := f.request(r, f.aggregate(r, f.protect(r, in, restored)), f.pick(e.ids, e.cfg.T))
	req.Target = target.Public()
	res := f.open(req, f.reveal(req, restored, f.own))
	checkSum(t, fmt.Sprintf("round %d, after parties and the target were restored", r), f.decrypt(target, res), in, e.cfg.Dim, e.tol)

	p := R[0] // restored, and revealed in round revealed
	old := f.request(revealed, revealedAgg, R)
	expect(t, fmt.Sprintf("restored Party(%s).Reveal in round %d, which its ledger holds", p, revealed), try(func() error {
		_, err := restored[p].Reveal(old, f.ledgers[p])
		return err
	}), protect.ErrRevealed)
}

func withoutKey(m map[fl.NodeID][]byte, drop fl.NodeID) map[fl.NodeID][]byte {
	c := clone(m)
	delete(c, drop)
	return c
}
