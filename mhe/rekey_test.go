package mhe

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// TestRekeyOldShareWorthless is what a re-key after an exclusion relies on
// (package round, Coordinator.Exclude): once the members that remain have
// run a new key setup (a new epoch: a new protect.Group, without the
// excluded member), the excluded member's party of the old epoch is
// worthless against the new epoch's aggregates.
//
// Epoch 1 has five members, t = 3; node-04 is excluded and epoch 2 is set
// up among the other four, with a new group key. In round 6 of epoch 2:
//   - the old party refuses to reveal the new aggregate (another session);
//   - its share of the aggregate made to look like one of epoch 1 is
//     rejected by the new helper, with a *ParamsMismatchError naming the
//     session, as is any share keyed by node-04 (not a member);
//   - forged past the header checks (the header of a genuine revealer's
//     share of epoch 2), it combines but does not decrypt to the sum, and
//     neither does a reveal by t members' old parties together.
//
// The genuine reveal decrypts to the sum (positive control).
func TestRekeyOldShareWorthless(t *testing.T) {
	p := testPreset()
	all := members(5)
	out := all[4]
	old := newSessionFixture(t, p, protect.Group{ID: []byte("epoch 1"), Members: all, Threshold: 3}, 2000, 21)
	cur := newSessionFixture(t, p, protect.Group{ID: []byte("epoch 2"), Members: all[:4], Threshold: 3}, 3000, 22)

	const r = fl.Round(6)
	rng := rand.New(rand.NewPCG(6, 6))
	in, want := map[fl.NodeID]fl.Vector{}, make(fl.Vector, 8)
	up := map[fl.NodeID][]byte{}
	for _, m := range cur.sess.Members {
		in[m] = randomVector(rng, len(want), 10)
		_ = want.Add(1, in[m])
		b, err := cur.parties[m].Protect(r, in[m], 1)
		if err != nil {
			t.Fatal(err)
		}
		up[m] = b
	}
	agg, err := cur.helper.Aggregate(r, up)
	if err != nil {
		t.Fatal(err)
	}
	revealers := []fl.NodeID{all[0], all[1], all[2]}
	req := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: revealers, Target: cur.target.Public(), Included: keysOf(up)}
	shares := map[fl.NodeID][]byte{}
	for _, m := range revealers {
		if shares[m], err = cur.parties[m].Reveal(req, &protect.MemLedger{}); err != nil {
			t.Fatalf("%s: Reveal: %v", m, err)
		}
	}
	tol := p.Capacity().MaxError
	res, err := cur.helper.Open(req, shares)
	if err != nil {
		t.Fatalf("genuine reveal: Open: %v", err)
	}
	if sum, err := cur.target.Decrypt(res); err != nil || maxDiff(sum.Vector, want) > tol || math.Abs(sum.Weight-4) > tol {
		t.Fatalf("genuine reveal: %v, %v (want %v, weight 4)", sum, err, want)
	}

	// The old party refuses the new epoch's aggregate: another session.
	oldReq := protect.RevealRequest{Round: r, Aggregate: agg, Revealers: []fl.NodeID{all[2], all[3], out}, Target: cur.target.Public(), Included: keysOf(up)}
	ledger := &protect.MemLedger{}
	_, err = old.parties[out].Reveal(oldReq, ledger)
	wantSessionMismatch(t, "old party's Reveal of the new aggregate", err)
	if ledger.Record(r, oldReq.Digest()) != nil {
		t.Fatal("the refused reveal was recorded in the ledger")
	}

	// The old party's share of the same ciphertexts, relabeled to its
	// session so that it answers.
	oldReq.Aggregate = withSession(t, agg, sessionHash(t, old))
	oldShare, err := old.parties[out].Reveal(oldReq, &protect.MemLedger{})
	if err != nil {
		t.Fatalf("old party's share of the relabeled aggregate: %v", err)
	}
	sub := clone(shares)
	sub[all[2]] = oldShare
	_, err = cur.helper.Open(req, sub)
	wantSessionMismatch(t, "Open with the old party's share in place of a revealer's", err)
	sub = clone(shares)
	delete(sub, all[2])
	sub[out] = oldShare
	if _, err := cur.helper.Open(req, sub); !errors.Is(err, protect.ErrNotMember) {
		t.Fatalf("Open with a share keyed by the excluded member: %v, want ErrNotMember", err)
	}

	// Past the header checks: the old share's body under a genuine
	// revealer's header of epoch 2.
	sub = clone(shares)
	sub[all[2]] = withHeaderOf(t, oldShare, shares[all[2]])
	res, err = cur.helper.Open(req, sub)
	if err != nil {
		t.Fatalf("Open of the forged share: %v (the header should pass)", err)
	}
	wantGarbage(t, "forged share", cur.target, res, want, tol)

	// Even t old parties together (the excluded one among them) cannot
	// reveal the new aggregate: their shares are of the old secret key.
	oldShares := map[fl.NodeID][]byte{}
	for _, m := range oldReq.Revealers {
		if oldShares[m], err = old.parties[m].Reveal(oldReq, &protect.MemLedger{}); err != nil {
			t.Fatalf("old %s: Reveal: %v", m, err)
		}
	}
	res, err = old.helper.Open(oldReq, oldShares)
	if err != nil {
		t.Fatalf("old helper: Open: %v", err)
	}
	wantGarbage(t, "old parties' reveal", cur.target, res, want, tol)
}

func wantSessionMismatch(t *testing.T, what string, err error) {
	t.Helper()
	var pm *ParamsMismatchError
	if !errors.As(err, &pm) || pm.Field != "session" || !errors.Is(err, protect.ErrForeign) {
		t.Fatalf("%s: %v, want a *ParamsMismatchError on the session", what, err)
	}
}

// wantGarbage checks that res does not decrypt to want.
func wantGarbage(t *testing.T, what string, target protect.Target, res []byte, want fl.Vector, tol float64) {
	t.Helper()
	sum, err := target.Decrypt(res)
	if err != nil {
		t.Logf("%s: Decrypt: %v", what, err)
		return
	}
	d := maxDiff(sum.Vector, want)
	if d <= 1 {
		t.Fatalf("%s decrypts to %v, within %g of the sum %v", what, sum.Vector, d, want)
	}
	t.Logf("%s: off by %.3g (tolerance of a genuine reveal %.3g)", what, d, tol)
}

func maxDiff(a, b fl.Vector) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(a[i]-b[i]))
	}
	return d
}

// sessionHash is the session hash f's payloads carry.
func sessionHash(t *testing.T, f *fixture) [16]byte {
	t.Helper()
	ss, err := newSession(f.sch.p, f.sess)
	if err != nil {
		t.Fatal(err)
	}
	return ss.hash
}

// withSession returns payload b with its header's session hash replaced.
func withSession(t *testing.T, b []byte, hash [16]byte) []byte {
	t.Helper()
	h, elems, err := parse("payload", b, maxCiphertexts+1)
	if err != nil {
		t.Fatal(err)
	}
	h.session = hash
	return encode(h, elems...)
}

// withHeaderOf returns the body of b under the header of like.
func withHeaderOf(t *testing.T, b, like []byte) []byte {
	t.Helper()
	_, elems, err := parse("payload", b, maxCiphertexts+1)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := parse("payload", like, maxCiphertexts+1)
	if err != nil {
		t.Fatal(err)
	}
	return encode(h, elems...)
}
