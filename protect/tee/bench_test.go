package tee_test

import (
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/protect/tee"
)

// BenchmarkRound measures the steps of one round of 10 members, t = 5,
// with updates of 7,850 values (the demo's softmax), through package
// protect, for tee and, in the same run, plain (no protection) and mhe
// (Agg128, the default preset): a node's Protect, the coordinator's
// Aggregate, the reveal (t shares and Open: for tee, the aggregator's
// step, with each rule) and the member's Decrypt. It reports the bytes a
// node uploads, the aggregate the coordinator relays and the result.
//
//	go test ./protect/tee -run '^$' -bench Round -benchtime 10x
func BenchmarkRound(b *testing.B) {
	const d, n, t = 7850, 10, 5
	members := make([]fl.NodeID, n)
	for i := range members {
		members[i] = fl.NodeID("n" + string(rune('0'+i)))
	}
	rng := rand.New(rand.NewPCG(1, 2))
	in := make(map[fl.NodeID]fl.Vector)
	for _, id := range members {
		v := make(fl.Vector, d)
		for j := range v {
			v[j] = rng.NormFloat64() * 1e-2
		}
		in[id] = v
	}
	id := identity(b, 9)
	agg128, err := mhe.PresetByName("Agg128")
	if err != nil {
		b.Fatal(err)
	}
	heScheme, err := mhe.New(agg128)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		scheme protect.Scheme
		rules  []string
	}{
		{"plain", plain.Scheme{}, nil},
		{"tee", tee.Scheme{Identity: id}, []string{"median:f=4", "krum:f=3", "trimmed:beta=0.2,f=2", "bulyan:f=1"}},
		{"mhe", heScheme, nil},
	} {
		s := setupSession(b, c.scheme, members, t)
		b.Run(c.name+"/protect", func(b *testing.B) {
			var size int
			for b.Loop() {
				p, err := s.parties["n0"].Protect(1, in["n0"], 1)
				if err != nil {
					b.Fatal(err)
				}
				size = len(p)
			}
			b.ReportMetric(float64(size), "B/upload")
		})
		prot := make(map[fl.NodeID][]byte)
		for _, m := range members {
			if prot[m], err = s.parties[m].Protect(1, in[m], 1); err != nil {
				b.Fatal(err)
			}
		}
		b.Run(c.name+"/aggregate", func(b *testing.B) {
			var size int
			for b.Loop() {
				agg, err := s.helper.Aggregate(1, prot)
				if err != nil {
					b.Fatal(err)
				}
				size = len(agg)
			}
			b.ReportMetric(float64(size), "B/aggregate")
		})
		agg, err := s.helper.Aggregate(1, prot)
		if err != nil {
			b.Fatal(err)
		}
		req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: members[:t], Target: s.target.Public(), Uploads: prot}
		var res []byte
		for _, rule := range append([]string{""}, c.rules...) {
			h := s.helper
			name := c.name + "/reveal+open"
			if rule != "" {
				if h, err = (tee.Scheme{Identity: id, Rule: rule}).NewAggregator(s.group, s.setup); err != nil {
					b.Fatal(err)
				}
				name += "/" + rule
			}
			b.Run(name, func(b *testing.B) {
				for b.Loop() {
					shares := make(map[fl.NodeID][]byte)
					for _, m := range req.Revealers {
						if shares[m], err = s.parties[m].Reveal(req, &protect.MemLedger{}); err != nil {
							b.Fatal(err)
						}
					}
					if res, err = h.Open(req, shares); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(len(res)), "B/result")
			})
		}
		b.Run(c.name+"/decrypt", func(b *testing.B) {
			for b.Loop() {
				if _, err := s.target.Decrypt(res); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// session is a set-up session of any scheme: its parties, the helper that
// ran the setup, the target and the setup.
type session struct {
	group   protect.Group
	parties map[fl.NodeID]protect.Party
	helper  protect.Helper
	target  protect.Target
	setup   []byte
}

func setupSession(b *testing.B, s protect.Scheme, members []fl.NodeID, t int) *session {
	b.Helper()
	g := &session{group: protect.Group{ID: []byte("bench"), Members: members, Threshold: t}, parties: make(map[fl.NodeID]protect.Party)}
	rng := rand.NewChaCha8([32]byte{1})
	var err error
	if g.helper, err = s.NewHelper(g.group); err != nil {
		b.Fatal(err)
	}
	if g.target, err = s.NewTarget(rng); err != nil {
		b.Fatal(err)
	}
	anns := make(map[fl.NodeID][]byte)
	for _, m := range members {
		if g.parties[m], err = s.NewParty(g.group, m, rng); err != nil {
			b.Fatal(err)
		}
		if anns[m], err = g.parties[m].Announce(); err != nil {
			b.Fatal(err)
		}
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
	if g.setup, err = g.helper.Setup(anns, publics); err != nil {
		b.Fatal(err)
	}
	for _, m := range members {
		if err := g.parties[m].Accept(g.setup, private[m]); err != nil {
			b.Fatal(err)
		}
	}
	return g
}
