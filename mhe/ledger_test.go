package mhe

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// countingLedger counts the reveals a party records.
type countingLedger struct {
	calls int
	protect.MemLedger
}

func (l *countingLedger) Record(r fl.Round, d [32]byte) error {
	l.calls++
	return l.MemLedger.Record(r, d)
}

// TestRevealRangeBeforeLedger: an aggregate whose Σc0 has a residue not
// below its prime is refused before the ledger records anything, so the
// revealer's one reveal of the round is still there for the valid
// aggregate (protect.Party: a request it rejects records nothing). Before,
// Σc0 was range-checked while the share was made, after the record, and
// the valid request was then refused with ErrRevealed (found in review).
func TestRevealRangeBeforeLedger(t *testing.T) {
	p := testPreset()
	f := newFixture(t, p, 3, 2)
	rng := rand.New(rand.NewPCG(3, 3))
	up := map[fl.NodeID][]byte{}
	for _, m := range f.sess.Members {
		b, err := f.parties[m].Protect(1, randomVector(rng, 10, 1), 1)
		if err != nil {
			t.Fatal(err)
		}
		up[m] = b
	}
	agg, err := f.helper.Aggregate(1, up)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([]byte(nil), agg...)
	for i := len(bad) - 16; i < len(bad); i++ { // the last residues of the last prime: above it
		bad[i] = 0xff
	}
	req := protect.RevealRequest{Round: 1, Aggregate: bad, Revealers: f.sess.Members[:2], Target: f.target.Public(), Included: keysOf(up)}
	l := &countingLedger{}
	rev := f.parties[f.sess.Members[0]]
	if _, err := rev.Reveal(req, l); !errors.Is(err, protect.ErrMalformed) {
		t.Fatalf("Reveal of an aggregate with a residue above its prime: %v, want ErrMalformed", err)
	}
	if l.calls != 0 {
		t.Fatalf("the refused request was recorded %d times, want 0", l.calls)
	}
	req.Aggregate = agg
	if _, err := rev.Reveal(req, l); err != nil {
		t.Fatalf("Reveal of the valid aggregate after a refused one: %v", err)
	}
}
