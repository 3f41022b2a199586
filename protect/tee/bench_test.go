package tee_test

import (
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
)

// BenchmarkRound measures each step of a round of 10 members with updates
// of 7,850 values (the demo's softmax), t = 5, for tee (sum and rules) and,
// in the same run, for plain (the baseline: no protection). It reports the
// bytes each node uploads and the aggregate the coordinator relays.
func BenchmarkRound(b *testing.B) {
	members := []fl.NodeID{"n0", "n1", "n2", "n3", "n4", "n5", "n6", "n7", "n8", "n9"}
	const d = 7850
	rng := rand.New(rand.NewPCG(1, 2))
	in := make(map[fl.NodeID]fl.Vector)
	for _, id := range members {
		v := make(fl.Vector, d)
		for j := range v {
			v[j] = rng.NormFloat64()
		}
		in[id] = v
	}
	revealers := members[:5]

	b.Run("plain/protect", func(b *testing.B) {
		g := plainGroup(b, members)
		for b.Loop() {
			if _, err := g.parties["n0"].Protect(1, in["n0"], 1); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("plain/aggregate+open", func(b *testing.B) {
		g := plainGroup(b, members)
		prot := protectAll(b, g.parties, in)
		for b.Loop() {
			agg, err := g.helper.Aggregate(1, prot)
			if err != nil {
				b.Fatal(err)
			}
			req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: revealers, Target: g.target.Public()}
			if _, err := g.helper.Open(req, reveal(b, g.parties, req)); err != nil {
				b.Fatal(err)
			}
		}
	})

	g := newGroup(b, "bench", 5, identity(b, 9), "", members...)
	b.Run("tee/protect", func(b *testing.B) {
		var n int
		for b.Loop() {
			p, err := g.parties["n0"].Protect(1, in["n0"], 1)
			if err != nil {
				b.Fatal(err)
			}
			n = len(p)
		}
		b.ReportMetric(float64(n), "B/upload")
	})
	prot := protectAll(b, g.parties, in)
	b.Run("tee/aggregate", func(b *testing.B) {
		var n int
		for b.Loop() {
			agg, err := g.coord.Aggregate(1, prot)
			if err != nil {
				b.Fatal(err)
			}
			n = len(agg)
		}
		b.ReportMetric(float64(n), "B/aggregate")
	})
	agg, err := g.coord.Aggregate(1, prot)
	if err != nil {
		b.Fatal(err)
	}
	req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: revealers, Target: g.target.Public()}
	shares := reveal(b, g.parties, req)
	for _, spec := range []string{"", "median:f=4", "krum:f=3", "trimmed:beta=0.2,f=2", "bulyan:f=1"} {
		name := spec
		if name == "" {
			name = "sum"
		}
		a := newAggregator(b, g, spec)
		b.Run("tee/open/"+name, func(b *testing.B) {
			var n int
			for b.Loop() {
				res, err := a.Open(req, shares)
				if err != nil {
					b.Fatal(err)
				}
				n = len(res)
			}
			b.ReportMetric(float64(n), "B/result")
		})
	}
	res, err := g.agg.Open(req, shares)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("tee/decrypt", func(b *testing.B) {
		for b.Loop() {
			if _, err := g.target.Decrypt(res); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func newAggregator(b *testing.B, g *group, rule string) protect.Helper {
	b.Helper()
	h, err := teeScheme(g, rule).NewAggregator(g.sess, g.setup)
	if err != nil {
		b.Fatal(err)
	}
	return h
}

func protectAll(b *testing.B, parties map[fl.NodeID]protect.Party, in map[fl.NodeID]fl.Vector) map[fl.NodeID][]byte {
	b.Helper()
	prot := make(map[fl.NodeID][]byte)
	for id, v := range in {
		var err error
		if prot[id], err = parties[id].Protect(1, v, 1); err != nil {
			b.Fatal(err)
		}
	}
	return prot
}

func reveal(b *testing.B, parties map[fl.NodeID]protect.Party, req protect.RevealRequest) map[fl.NodeID][]byte {
	b.Helper()
	shares := make(map[fl.NodeID][]byte)
	for _, id := range req.Revealers {
		var err error
		if shares[id], err = parties[id].Reveal(req, &protect.MemLedger{}); err != nil {
			b.Fatal(err)
		}
	}
	return shares
}

type plainSession struct {
	parties map[fl.NodeID]protect.Party
	helper  protect.Helper
	target  protect.Target
}

// plainGroup sets up a plain session of members, for the baseline.
func plainGroup(b *testing.B, members []fl.NodeID) *plainSession {
	b.Helper()
	s := plain.Scheme{}
	sess := protect.Group{ID: []byte("bench"), Members: members, Threshold: 5}
	rng := rand.NewChaCha8([32]byte{1})
	g := &plainSession{parties: make(map[fl.NodeID]protect.Party)}
	var err error
	if g.helper, err = s.NewHelper(sess); err != nil {
		b.Fatal(err)
	}
	if g.target, err = s.NewTarget(rng); err != nil {
		b.Fatal(err)
	}
	anns := make(map[fl.NodeID][]byte)
	for _, m := range members {
		g.parties[m], _ = s.NewParty(sess, m, rng)
		anns[m], _ = g.parties[m].Announce()
	}
	publics := make(map[fl.NodeID][]byte)
	private := make(map[fl.NodeID]map[fl.NodeID][]byte)
	for _, m := range members {
		d, err := g.parties[m].Deal(anns)
		if err != nil {
			b.Fatal(err)
		}
		publics[m] = d.Public
		for to, p := range d.Private {
			if private[to] == nil {
				private[to] = make(map[fl.NodeID][]byte)
			}
			private[to][m] = p
		}
	}
	setup, err := g.helper.Setup(anns, publics)
	if err != nil {
		b.Fatal(err)
	}
	for _, m := range members {
		if err := g.parties[m].Accept(setup, private[m]); err != nil {
			b.Fatal(err)
		}
	}
	return g
}
