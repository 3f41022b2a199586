package mhe

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// A party never encrypts twice under one round's common polynomial a: a
// second Protect for the round, or for an earlier round, is refused, also
// after the party is restored from its sealed state; and a differs between
// rounds, chunks and sessions.
func TestOneUploadPerRound(t *testing.T) {
	p := testPreset()
	f := newFixture(t, p, 3, 2)
	m := f.sess.Members[0]
	pa := f.parties[m]
	rng := rand.New(rand.NewPCG(1, 1))
	v := randomVector(rng, 3*p.slots/2, 1)

	if _, err := pa.Protect(5, v, 1); err != nil {
		t.Fatal(err)
	}
	for _, r := range []fl.Round{5, 4, 1} {
		if _, err := pa.Protect(r, v, 1); !errors.Is(err, protect.ErrProtected) {
			t.Errorf("a second Protect for round %d after round 5: %v, want ErrProtected", r, err)
		}
	}
	// Restart: the guard is in the sealed state.
	state, err := pa.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	restored, err := f.sch.LoadParty(f.sess, m, state, seeded(99))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := restored.Protect(5, v, 1); !errors.Is(err, protect.ErrProtected) {
		t.Errorf("restored party: Protect for round 5 again: %v, want ErrProtected", err)
	}
	if _, err := restored.Protect(6, v, 1); err != nil {
		t.Errorf("restored party: Protect for round 6: %v", err)
	}
	// A refused call changes nothing: the original goes on with round 6.
	if _, err := pa.Protect(6, v, 1); err != nil {
		t.Errorf("Protect for round 6 after refusals: %v", err)
	}

	// a is a function of (session, round, chunk), different for each.
	ss := pa.(*Party).sess
	oss, err := newSession(p, protect.Group{ID: []byte("another session"), Members: f.sess.Members, Threshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	for _, c := range []struct {
		name  string
		ss    *session
		r     fl.Round
		chunk int
	}{{"round 1 chunk 0", ss, 1, 0}, {"round 1 chunk 1", ss, 1, 1}, {"round 2 chunk 0", ss, 2, 0}, {"another session, round 1 chunk 0", oss, 1, 0}} {
		a := p.params.RingQ().NewPoly()
		if err := p.uploadA(c.ss, c.r, c.chunk, a); err != nil {
			t.Fatal(err)
		}
		b := p.packPoly(nil, a, p.params.MaxLevel())
		if prev, ok := seen[string(b)]; ok {
			t.Errorf("%s has the a of %s", c.name, prev)
		}
		seen[string(b)] = c.name
		again := p.params.RingQ().NewPoly()
		if err := p.uploadA(c.ss, c.r, c.chunk, again); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(b, p.packPoly(nil, again, p.params.MaxLevel())) {
			t.Errorf("%s: a is not deterministic", c.name)
		}
	}
}

// Precomputed reveal randomness is taken by the next Reveal, used for its
// share and erased; it never survives a restart; the result is right with
// it, with part of it (a memory limit below the aggregate) and without it.
func TestPrecomputeOnce(t *testing.T) {
	p := testPreset()
	f := newFixture(t, p, 4, 3)
	rng := rand.New(rand.NewPCG(2, 2))
	d := 2*p.slots + 10 // three ciphertexts
	revealers := f.sess.Members[:3]
	per := 2 * (p.params.MaxLevel() + 1) * p.params.N() * 8
	for r, limit := range []int{DefaultPrecomputeLimit, 2 * per, -1} { // all, two of three, none
		round := fl.Round(r + 1)
		var kept [][]uint64
		for _, m := range revealers {
			pa := f.parties[m].(*Party)
			if limit < 0 {
				continue
			}
			if err := pa.precompute(f.target.Public(), d, limit); err != nil {
				t.Fatal(err)
			}
			want := 3
			if limit < DefaultPrecomputeLimit {
				want = 2
			}
			if got := pa.Precomputed(f.target.Public()); got != want {
				t.Errorf("round %d: %s holds %d precomputed ciphertexts, want %d", round, m, got, want)
			}
			// A restart loses it: it is never persisted.
			state, err := pa.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			restored, err := f.sch.LoadParty(f.sess, m, state, seeded(7))
			if err != nil {
				t.Fatal(err)
			}
			if n := restored.(*Party).Precomputed(f.target.Public()); n != 0 {
				t.Errorf("a restored party holds %d precomputed ciphertexts, want 0", n)
			}
			for _, s := range pa.pre.shares {
				kept = append(kept, s.Value[0].Coeffs[0], s.Value[1].Coeffs[0])
			}
		}
		in := map[fl.NodeID]fl.Vector{}
		w := map[fl.NodeID]float64{}
		want := make(fl.Vector, d)
		var wantW float64
		for _, m := range f.sess.Members {
			in[m], w[m] = randomVector(rng, d, 1), 1
			want.Add(1, in[m])
			wantW++
		}
		sum, _ := f.round(t, round, in, w, revealers)
		if e := maxErr(t, sum, want, wantW); e > p.limits.MaxError {
			t.Errorf("round %d (limit %d): error %g above %g", round, limit, e, p.limits.MaxError)
		}
		for _, m := range revealers {
			if n := f.parties[m].(*Party).Precomputed(f.target.Public()); n != 0 {
				t.Errorf("round %d: %s still holds %d precomputed ciphertexts after its reveal", round, m, n)
			}
		}
		for _, c := range kept {
			for _, x := range c {
				if x != 0 {
					t.Fatalf("round %d: a used precomputed share was not erased", round)
				}
			}
		}
	}

	// Precomputed for another target: not used, and erased all the same.
	pa := f.parties[revealers[0]].(*Party)
	t2, err := f.sch.NewTarget(seeded(3))
	if err != nil {
		t.Fatal(err)
	}
	if err := pa.Precompute(t2.Public(), d); err != nil {
		t.Fatal(err)
	}
	if n := pa.Precomputed(f.target.Public()); n != 0 {
		t.Errorf("randomness for another target counts %d for this one", n)
	}
	if err := pa.Precompute(f.target.Public(), 0); !errors.Is(err, protect.ErrRange) {
		t.Errorf("Precompute for 0 values: %v, want ErrRange", err)
	}
	if err := pa.Precompute([]byte("not a key"), d); err == nil {
		t.Error("Precompute for a malformed target: accepted")
	}
}
