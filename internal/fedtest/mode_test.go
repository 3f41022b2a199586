package fedtest_test

import (
	"io"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/fedtest"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/protect/protecttest"
	"github.com/cloisterfl/cloister/round"
)

// tally is a mode that exists only in this file: plain's protection,
// counting what the engines ask of it. It is how a new mode plugs in
// (docs/ARCHITECTURE.md, "Where to add a mode"): a protect.Scheme with its
// Party, Helper and Target, checked by protect/protecttest, and handed to
// both daemons; neither the round engine nor the daemons change. A real
// mode also adds its name to the manifest's modes (federation/manifest.go,
// federation/mode.go), so that every member refuses a session of another
// mode; tally runs under plain's name, which the manifest allows.
type tally struct {
	plain.Scheme
	protects, aggregates, reveals, opens *atomic.Int64
}

func newTally() tally {
	return tally{protects: new(atomic.Int64), aggregates: new(atomic.Int64), reveals: new(atomic.Int64), opens: new(atomic.Int64)}
}

func (s tally) NewParty(ss protect.Group, self fl.NodeID, r io.Reader) (protect.Party, error) {
	p, err := s.Scheme.NewParty(ss, self, r)
	return tallyParty{p, s}, err
}

func (s tally) LoadParty(ss protect.Group, self fl.NodeID, state []byte, r io.Reader) (protect.Party, error) {
	p, err := s.Scheme.LoadParty(ss, self, state, r)
	return tallyParty{p, s}, err
}

func (s tally) NewHelper(ss protect.Group) (protect.Helper, error) {
	h, err := s.Scheme.NewHelper(ss)
	return tallyHelper{h, s}, err
}

type tallyParty struct {
	protect.Party
	s tally
}

func (p tallyParty) Protect(r fl.Round, v fl.Vector, w float64) ([]byte, error) {
	p.s.protects.Add(1)
	return p.Party.Protect(r, v, w)
}

func (p tallyParty) Reveal(req protect.RevealRequest, l protect.Ledger) ([]byte, error) {
	p.s.reveals.Add(1)
	return p.Party.Reveal(req, l)
}

type tallyHelper struct {
	protect.Helper
	s tally
}

func (h tallyHelper) Aggregate(r fl.Round, updates map[fl.NodeID][]byte) ([]byte, error) {
	h.s.aggregates.Add(1)
	return h.Helper.Aggregate(r, updates)
}

func (h tallyHelper) Open(req protect.RevealRequest, shares map[fl.NodeID][]byte) ([]byte, error) {
	h.s.opens.Add(1)
	return h.Helper.Open(req, shares)
}

// TestTestOnlyMode adds a mode without touching any file but this one: it
// keeps the protect contract (the conformance suite), and a federation runs
// on it end to end (both daemons take it as their scheme), each round
// protecting, aggregating, revealing and opening through it.
func TestTestOnlyMode(t *testing.T) {
	t.Run("conformance", func(t *testing.T) {
		protecttest.Run(t, newTally(), protecttest.Config{N: 4, T: 3, Dim: 100, Seed: 1})
	})
	synctest.Test(t, func(t *testing.T) {
		const rounds, nodes, threshold = 3, 3, 2
		s := newTally()
		f := fedtest.New(t, pki.InitOptions{Nodes: nodes, Threshold: threshold, Mode: federation.ModePlain, DP: &federation.DP{},
			Model: federation.ModelSpec{Kind: "softmax"}, Training: federation.Training{Rounds: rounds, LocalEpochs: 1, Batch: 16, LearningRate: 0.1}})
		f.CoordinatorConfig = func(c *coordinator.Config) { c.Scheme = s }
		f.NodeConfig = func(_ string, c *node.Config) { c.Scheme = s }
		f.StartCoordinator()
		f.StartNodes(nodes)
		f.WaitNodes(2 * time.Minute)
		if st := f.Coord.Status(); st.Phase != round.PhaseDone || st.Commits != rounds {
			t.Fatalf("coordinator status %+v, want done after %d commits", st, rounds)
		}
		f.StopCoordinator()
		f.VerifyAudit(rounds, nodes+1)
		got := [4]int64{s.protects.Load(), s.aggregates.Load(), s.reveals.Load(), s.opens.Load()}
		// Each upload is checked alone as it arrives (a one-update
		// Aggregate), then the round's uploads are summed, by the
		// coordinator and again by each revealer before it reveals.
		if want := [4]int64{rounds * nodes, rounds * (nodes + 1 + threshold), rounds * threshold, rounds}; got != want {
			t.Errorf("protect, aggregate, reveal, open calls %v, want %v", got, want)
		}
	})
}
