package tee_test

import (
	"errors"
	"maps"
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/tee"
)

// FuzzEntryPoints gives every decoder of network bytes, on the
// coordinator, the aggregator and a node, arbitrary bytes: each must
// return an error wrapping ErrMalformed or ErrForeign, or accept.
func FuzzEntryPoints(f *testing.F) {
	id := identity(f, 9)
	g := newGroup(f, "fuzz", 2, id, "median:f=1", "a", "b", "c")
	r := fl.Round(3)
	in := make(map[fl.NodeID][]byte)
	for name, p := range g.parties {
		var err error
		if in[name], err = p.Protect(r, fl.Vector{1, -2, 3}, 4); err != nil {
			f.Fatal(err)
		}
	}
	agg, err := g.coord.Aggregate(r, in)
	if err != nil {
		f.Fatal(err)
	}
	req := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: []fl.NodeID{"a", "b"}, Target: g.target.Public()}
	shares := make(map[fl.NodeID][]byte)
	for _, rv := range req.Revealers {
		if shares[rv], err = g.parties[rv].Reveal(req, &protect.MemLedger{}); err != nil {
			f.Fatal(err)
		}
	}
	result, err := g.agg.Open(req, shares)
	if err != nil {
		f.Fatal(err)
	}
	state, _ := g.parties["a"].MarshalBinary()
	secret, _ := g.target.MarshalBinary()
	for _, b := range [][]byte{in["a"], agg, shares["a"], result, state, secret, req.Target, g.setup, {}, []byte("CLTE\x01")} {
		f.Add(b)
	}
	node := tee.Scheme{Key: id.PublicKey().Bytes()}
	aggr := tee.Scheme{Identity: id, Rule: "median:f=1"}
	f.Fuzz(func(t *testing.T, b []byte) {
		with := func(m map[fl.NodeID][]byte, id fl.NodeID) map[fl.NodeID][]byte {
			c := maps.Clone(m)
			c[id] = b
			return c
		}
		reqAgg, reqTarget := req, req
		reqAgg.Aggregate, reqTarget.Target = b, b
		calls := map[string]func() error{
			"Aggregate": func() error { _, err := g.coord.Aggregate(r, with(in, "a")); return err },
			"Check":     func() error { return protect.Check(g.coord, r, "a", b) },
			"Reveal(aggregate)": func() error {
				_, err := g.parties["a"].Reveal(reqAgg, &protect.MemLedger{})
				return err
			},
			"Reveal(target)": func() error {
				_, err := g.parties["a"].Reveal(reqTarget, &protect.MemLedger{})
				return err
			},
			"Open(share)":     func() error { _, err := g.agg.Open(req, with(shares, "a")); return err },
			"Open(aggregate)": func() error { _, err := g.agg.Open(reqAgg, shares); return err },
			"Open(target)":    func() error { _, err := g.agg.Open(reqTarget, shares); return err },
			"NewAggregator":   func() error { _, err := aggr.NewAggregator(g.sess, b); return err },
			"Decrypt":         func() error { _, err := g.target.Decrypt(b); return err },
			"LoadParty":       func() error { _, err := node.LoadParty(g.sess, "a", b, rand.NewChaCha8([32]byte{})); return err },
			"LoadTarget":      func() error { _, err := node.LoadTarget(b); return err },
		}
		for name, call := range calls {
			if err := call(); err != nil && !errors.Is(err, protect.ErrMalformed) && !errors.Is(err, protect.ErrForeign) {
				t.Errorf("%s: %v wraps neither ErrMalformed nor ErrForeign", name, err)
			}
		}
	})
}
