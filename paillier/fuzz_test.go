package paillier

import (
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// fuzzFixture sets up a group of 3 (threshold 2) under InsecureTest and
// returns its helper, one round's aggregate, a result and the target.
type fuzzFixture struct {
	sch     *Scheme
	helper  protect.Helper
	party   protect.Party
	state   []byte
	upload  []byte
	uploads map[fl.NodeID][]byte
	parties map[fl.NodeID]protect.Party
	agg     []byte
	result  []byte
	target  protect.Target
	members []fl.NodeID
}

func newFuzzFixture(t testing.TB) *fuzzFixture { return newFixtureSeed(t, 7) }

func newFixtureSeed(t testing.TB, seed byte) *fuzzFixture {
	t.Helper()
	sch, _ := New(InsecureTest)
	g := protect.Group{ID: []byte("fuzz"), Members: []fl.NodeID{"a", "b", "c"}, Threshold: 2}
	r := mrand.NewChaCha8([32]byte{seed})
	parties := map[fl.NodeID]protect.Party{}
	anns := map[fl.NodeID][]byte{}
	for _, m := range g.Members {
		p, err := sch.NewParty(g, m, r)
		if err != nil {
			t.Fatal(err)
		}
		parties[m] = p
		anns[m], _ = p.Announce()
	}
	publics := map[fl.NodeID][]byte{}
	private := map[fl.NodeID]map[fl.NodeID][]byte{}
	for _, m := range g.Members {
		d, err := parties[m].Deal(anns)
		if err != nil {
			t.Fatal(err)
		}
		publics[m] = d.Public
		for to, b := range d.Private {
			if private[to] == nil {
				private[to] = map[fl.NodeID][]byte{}
			}
			private[to][m] = b
		}
	}
	h, _ := sch.NewHelper(g)
	setup, err := h.Setup(anns, publics)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range g.Members {
		if err := parties[m].Accept(setup, private[m]); err != nil {
			t.Fatal(err)
		}
	}
	ups := map[fl.NodeID][]byte{}
	for i, m := range g.Members {
		ups[m], err = parties[m].Protect(1, fl.Vector{float64(i), -1.5, 0.25}, 1)
		if err != nil {
			t.Fatal(err)
		}
	}
	agg, err := h.Aggregate(1, ups)
	if err != nil {
		t.Fatal(err)
	}
	tgt, _ := sch.NewTarget(r)
	req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: []fl.NodeID{"a", "c"}, Target: tgt.Public()}
	shares := map[fl.NodeID][]byte{}
	for _, m := range req.Revealers {
		shares[m], err = parties[m].Reveal(req, &protect.MemLedger{})
		if err != nil {
			t.Fatal(err)
		}
	}
	res, err := h.Open(req, shares)
	if err != nil {
		t.Fatal(err)
	}
	state, _ := parties["b"].MarshalBinary()
	return &fuzzFixture{sch: sch, helper: h, party: parties["b"], state: state, upload: ups["a"], uploads: ups, parties: parties, agg: agg, result: res, target: tgt, members: g.Members}
}

func TestFixtureSum(t *testing.T) {
	f := newFuzzFixture(t)
	s, err := f.target.Decrypt(f.result)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(s.Vector, s.Weight) != "[3 -4.5 0.75] 3" {
		t.Fatalf("sum %v weight %v", s.Vector, s.Weight)
	}
}

// TestForeignKey: an update or aggregate under another key of the same
// group is refused.
func TestForeignKey(t *testing.T) {
	f1, f2 := newFixtureSeed(t, 1), newFixtureSeed(t, 2)
	_, err := f1.helper.Aggregate(1, map[fl.NodeID][]byte{"a": f1.uploads["a"], "b": f2.uploads["b"]})
	if !errors.Is(err, protect.ErrForeign) {
		t.Fatalf("Aggregate across keys: %v", err)
	}
	req := protect.RevealRequest{Round: 1, Aggregate: f2.agg, Revealers: []fl.NodeID{"a", "c"}, Target: f1.target.Public()}
	l := &protect.MemLedger{}
	if _, err := f1.parties["a"].Reveal(req, l); !errors.Is(err, protect.ErrForeign) {
		t.Fatalf("Reveal of another key's aggregate: %v", err)
	}
	if _, err := f1.parties["a"].Reveal(req, l); !errors.Is(err, protect.ErrForeign) {
		t.Fatalf("the refused request was recorded: %v", err)
	}
}

func checkErr(t *testing.T, what string, err error) {
	if err != nil && !errors.Is(err, protect.ErrMalformed) && !errors.Is(err, protect.ErrForeign) {
		t.Fatalf("%s: error %v wraps neither ErrMalformed nor ErrForeign", what, err)
	}
}

func FuzzAggregate(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.upload)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := fx.helper.Aggregate(1, map[fl.NodeID][]byte{"a": b})
		checkErr(t, "Aggregate", err)
	})
}

func FuzzDecrypt(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.result)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := fx.target.Decrypt(b)
		checkErr(t, "Decrypt", err)
	})
}

func FuzzLoadParty(f *testing.F) {
	fx := newFuzzFixture(f)
	f.Add(fx.state)
	g := protect.Group{ID: []byte("fuzz"), Members: fx.members, Threshold: 2}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, err := fx.sch.LoadParty(g, "b", b, mrand.NewChaCha8([32]byte{}))
		checkErr(t, "LoadParty", err)
	})
}
