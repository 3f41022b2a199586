package round

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/protect"
)

// TestRevealOnlyTheSum is the attack the revealers' sum check stops: the
// coordinator, colluding with a member that holds the group key, presents
// one honest site's upload as the round's aggregate, with the true included
// set and its signatures. Every honest revealer refuses (audited, with the
// reason). The positive control turns the check off (test-only): the same
// request then reveals that site's update exactly.
func TestRevealOnlyTheSum(t *testing.T) {
	s, err := mhe.New(mhe.InsecureTest)
	if err != nil {
		t.Fatal(err)
	}
	for _, check := range []bool{true, false} {
		f := newFed(t, fedOptions{nodes: 4, t: 2, min: 3, rounds: 1, init: fl.Vector{0, 0, 0}, scheme: s})
		f.show = "none"
		deltas := []fl.Vector{{1, 0, -1}, {2, 1, 0}, {0.5, -4, 0.25}, {-1, 4, 2}}
		for i, sn := range f.nodes {
			sn.delta = deltas[i]
		}
		f.runUntil(PhaseReveal, 1)
		c := f.c
		victim := c.st.Included[0].Node
		// The forged request: the victim's upload alone, as the aggregate.
		alone, err := c.helper.Aggregate(1, map[fl.NodeID][]byte{victim: c.uploads[victim]})
		if err != nil {
			t.Fatal(err)
		}
		forged := Message{Kind: KindRevealRequest, Session: f.cfg.Session, Epoch: c.st.Epoch, Round: 1, Aggregate: alone,
			Revealers: c.st.Revealers, Target: c.gk.Target, Included: c.st.Included, Payloads: map[fl.NodeID][]byte{}}
		for _, in := range c.st.Included {
			forged.Payloads[in.Node] = c.uploads[in.Node]
		}
		// The colluding member: the revealers' shares of the forged request
		// and the group key (a node's target) open it.
		shares := map[fl.NodeID][]byte{}
		var target protect.Target
		for _, id := range c.st.Revealers {
			sn := f.byID[id]
			sn.n.cfg.insecureNoSumCheck = !check
			target = sn.n.target
			mark := len(sn.n.out.audit)
			err := sn.n.Step(coordID, forged)
			if check {
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "not the sum of the included uploads") {
					t.Fatalf("%s revealed a single site's upload as the aggregate: %v", id, err)
				}
				refused := false
				for _, e := range sn.n.out.audit[mark:] {
					refused = refused || e.Kind == EventRefused && strings.Contains(e.Detail, "not the sum")
				}
				if !refused {
					t.Errorf("%s's refusal is not in its audit events", id)
				}
				t.Logf("%s refused: %v", id, err)
				continue
			}
			if err != nil {
				t.Fatalf("check off: %s: %v", id, err)
			}
			for _, m := range sn.n.out.messages {
				if m.Kind == KindShare && m.Round == 1 {
					shares[id] = m.Payload
				}
			}
		}
		if check {
			continue
		}
		req := protect.RevealRequest{Round: 1, Aggregate: alone, Revealers: c.st.Revealers, Target: c.gk.Target}
		res, err := c.helper.Open(req, shares)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := target.Decrypt(res)
		if err != nil {
			t.Fatal(err)
		}
		want, tol := f.byID[victim].delta, s.Capacity().MaxError+1e-9
		if !closeTo(fl.Vector{sum.Weight}, fl.Vector{f.byID[victim].weight}, tol) || !closeTo(sum.Vector, want, tol) {
			t.Fatalf("check off: revealed %v (weight %v), want %s's update %v", sum.Vector, sum.Weight, victim, want)
		}
		t.Logf("check off (positive control): the forged request revealed %s's update %v (weight %v), within the scheme's error %g", victim, sum.Vector, sum.Weight, tol)
	}
}

// TestRevealChecksUploads: a reveal request whose uploads are missing, one
// too many, or not the ones the members signed is refused, naming what is
// wrong; the true request is answered.
func TestRevealChecksUploads(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 1})
	f.show = "none"
	f.runUntil(PhaseReveal, 1)
	c := f.c
	id := c.st.Revealers[0]
	request := func(edit func(map[fl.NodeID][]byte)) Message {
		m := Message{Kind: KindRevealRequest, Session: f.cfg.Session, Epoch: c.st.Epoch, Round: 1, Aggregate: c.aggregate,
			Revealers: c.st.Revealers, Target: c.gk.Target, Included: c.st.Included, Payloads: map[fl.NodeID][]byte{}}
		for _, in := range c.st.Included {
			m.Payloads[in.Node] = c.uploads[in.Node]
		}
		edit(m.Payloads)
		return m
	}
	other := c.st.Included[len(c.st.Included)-1].Node
	for _, tc := range []struct {
		name string
		edit func(map[fl.NodeID][]byte)
		want string
	}{
		{"missing", func(p map[fl.NodeID][]byte) { delete(p, other) }, "uploads for"},
		{"extra", func(p map[fl.NodeID][]byte) { p["n9"] = []byte("x") }, "uploads for"},
		{"substituted", func(p map[fl.NodeID][]byte) { p[other] = append([]byte{}, c.uploads[id]...) }, "not the one it signed"},
	} {
		err := f.byID[id].n.Step(coordID, request(tc.edit))
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a refusal naming %q", tc.name, err, tc.want)
		}
	}
	if err := f.byID[id].n.Step(coordID, request(func(map[fl.NodeID][]byte) {})); err != nil {
		t.Fatalf("the true request: %v", err)
	}
}
