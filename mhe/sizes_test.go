package mhe

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// TestSizesExact checks that Scheme.Sizes states the exact length of every
// payload: at both sides of a ciphertext boundary (d+1 = slots: the weight
// fills the last slot), and, with the real preset, for the demo's MLP
// (784-128-10: 101,770 parameters, 13 ciphertexts under Agg128).
func TestSizesExact(t *testing.T) {
	p := testPreset()
	dims := []int{p.Slots() - 1, p.Slots(), 1007}
	if !testing.Short() {
		dims = append(dims, 101_770)
	}
	const n, thr = 3, 2
	f := newFixture(t, p, n, thr)
	rng := rand.New(rand.NewPCG(1, 2))
	for i, d := range dims {
		t.Run(fmt.Sprintf("d=%d", d), func(t *testing.T) {
			sz, err := f.sch.Sizes(d, n)
			if err != nil {
				t.Fatal(err)
			}
			exact := func(what string, got []byte, want int) {
				t.Helper()
				if len(got) != want {
					t.Errorf("%s: %d bytes, Sizes states %d", what, len(got), want)
				}
			}
			for _, m := range f.sess.Members {
				exact("announcement of "+string(m), f.anns[m], sz.Announcement)
				exact("public dealing of "+string(m), f.publics[m], sz.PublicDealing)
				for dealer, b := range f.private[m] {
					exact(fmt.Sprintf("private dealing %s→%s", dealer, m), b, sz.PrivateDealing)
				}
			}
			exact("setup", f.setup, sz.Setup)
			exact("target public key", f.target.Public(), sz.TargetPublic)
			sec, _ := f.target.MarshalBinary()
			exact("target secret key", sec, sz.TargetSecret)

			r := fl.Round(i + 1)
			up := map[fl.NodeID][]byte{}
			for _, m := range f.sess.Members {
				if up[m], err = f.parties[m].Protect(r, randomVector(rng, d, 1), 1); err != nil {
					t.Fatal(err)
				}
				exact("update of "+string(m), up[m], sz.Update)
			}
			if want := headerSize + p.ciphertexts(d)*(4+p.polySize(p.params.MaxLevel())); sz.Update != want {
				t.Errorf("Sizes.Update %d, want ⌈(d+1)/slots⌉ = %d polynomials: %d", sz.Update, p.ciphertexts(d), want)
			}
			agg, err := f.helper.Aggregate(r, up)
			if err != nil {
				t.Fatal(err)
			}
			exact("aggregate", agg, sz.Aggregate)
			rv := f.sess.Members[:thr]
			req := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: rv, Target: f.target.Public(), Included: keysOf(up)}
			shares := map[fl.NodeID][]byte{}
			for _, m := range rv {
				if shares[m], err = f.parties[m].Reveal(req, &protect.MemLedger{}); err != nil {
					t.Fatal(err)
				}
				exact("reveal share of "+string(m), shares[m], sz.Share)
			}
			res, err := f.helper.Open(req, shares)
			if err != nil {
				t.Fatal(err)
			}
			exact("result", res, sz.Result)
			t.Logf("%s, d=%d, n=%d: update %d B (%d ciphertexts), result %d B, setup %d B", p.Name(), d, n, sz.Update, p.ciphertexts(d), sz.Result, sz.Setup)
		})
	}
}
