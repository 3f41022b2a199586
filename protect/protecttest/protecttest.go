// Package protecttest is the conformance suite of package protect: what
// every aggregation mode (mhe, secagg, paillier, tee, plain) must do, as
// tests.
//
// # Usage
//
// Call [Run] from a test of the scheme's package. Small, insecure
// parameters are fine under -short; the suite itself takes a few seconds.
//
//	func TestConformance(t *testing.T) {
//		for _, c := range []protecttest.Config{{N: 10, T: 6}, {N: 3, T: 2}, {N: 1, T: 1}} {
//			t.Run(fmt.Sprintf("N=%d,T=%d", c.N, c.T), func(t *testing.T) {
//				protecttest.Run(t, mhe.Scheme{Params: mhe.TestParams}, c)
//			})
//		}
//	}
//
// # What it checks
//
// Run drives the whole protocol as a runtime does: setup (Announce, Deal,
// Helper.Setup, Accept, with each private payload routed to its recipient),
// then rounds (Protect, Aggregate, Reveal by a fixed set of exactly t,
// Open, Target.Decrypt). Every member gets its own copy of the Session,
// with the members listed in a different order. Its subtests are:
//
//   - Session: Name, Needed and Capacity are sane; invalid sessions are
//     refused by NewParty and NewHelper.
//   - Sum: the decrypted sum and summed weight are right to within the
//     tolerance, for inputs scaled so that the sum of N stays within
//     Capacity.MaxAbs (and reaches it in the first two coordinates), and for
//     inputs in [−1, 1]. Payloads must not alias the inputs.
//   - Dropout: with 1 and N−T members that do not Protect, the reveal by T
//     of the others gives the sum of those included.
//   - Threshold: exactly the T revealers' shares open the sum; T−1 shares
//     give ErrNotEnoughShares; a share from outside req.Revealers, or made
//     for another revealer set, aggregate, round or target, is rejected;
//     malformed revealer sets are refused by Reveal and Open.
//   - RevealOnce: a second Reveal in a round by the same party gives
//     ErrRevealed (even for another aggregate); the ledger has recorded
//     (round, digest) when the share is returned; a failing ledger means
//     no share; a rejected request is not recorded.
//   - Protect: Protect and Reveal before setup give ErrNotReady; vectors
//     longer than MaxDim, non-finite values and weights, and values beyond
//     MaxAbs give ErrRange; Aggregate refuses inputs of different lengths.
//   - NonMember: a NodeID outside the session gives ErrNotMember at every
//     entry point that takes one.
//   - Sizes: every payload of a setup and a round (announcements,
//     dealings, setup, updates, aggregate, shares, result, target keys) is
//     at most the length Scheme.Sizes(Dim, N) states for its kind, and
//     Sizes refuses a vector length or member count outside Capacity with
//     ErrRange.
//   - Persist: parties restored with LoadParty(MarshalBinary()) and a
//     target restored with LoadTarget(MarshalBinary()) work, alongside the
//     originals, and a restored party still refuses a second reveal.
//   - Hostile: every entry point that reads bytes (Deal's announcements,
//     Setup's announcements and public dealings, Accept's setup and
//     private dealings, Aggregate's inputs, Reveal's aggregate and target,
//     Open's shares, aggregate and target, Decrypt, LoadParty, LoadTarget)
//     is given the [Mutations] of a valid payload, a payload of every other
//     kind, and well-formed payloads of another session, round, member,
//     setup run or target. Each must return an error wrapping
//     protect.ErrMalformed or protect.ErrForeign, without panicking; and
//     afterwards the valid payload must still be accepted, because a
//     rejected call changes nothing.
//
// # What payloads must bind
//
// To pass Hostile and Threshold, a scheme's payloads carry a checked header
// (magic, version, kind) and are parsed to their exact length (no trailing
// bytes, no count beyond the bytes that follow). Besides the session, they
// bind:
//
//   - an announcement: its member;
//   - a public or private dealing: its dealer, (private) its recipient, and
//     the hash of all the announcements, so that a dealing or a setup from
//     another run of the same session is refused; a party also checks that
//     its own announcement is the one it made;
//   - the setup: the hash of the announcements;
//   - a protected update: its round, its member and its length;
//   - an aggregate: its round;
//   - a reveal share: its round, its revealer, the aggregate's digest, the
//     revealer set and the target key;
//   - a result: the target key;
//   - a party's state: its member.
//
// Failure messages name the entry point and the mutation, for example
// "Helper.Aggregate(protected) accepted truncated to 17 of 120 bytes". A
// panic in the scheme is recovered and reported with its stack.
//
// # Reproducing a failure
//
// Everything the suite draws (vectors, member orders, revealer sets and,
// unless Config.Rand is set, the scheme's randomness) comes from
// Config.Seed, which Run logs.
package protecttest

import (
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// Config says what session to test.
type Config struct {
	// N is the number of members and T the threshold, 1 ≤ T ≤ N.
	N, T int
	// Dim is the length of the test vectors. Zero means 1007, which is not
	// a multiple of any power-of-two slot count.
	Dim int
	// Seed seeds everything the suite draws. Any value, zero included.
	Seed uint64
	// Rand, if not nil, returns the random source for each NewParty,
	// LoadParty and NewTarget (for example, one returning
	// crypto/rand.Reader) instead of a stream derived from Seed. Each call
	// must return an independent source: the suite tells setup runs apart
	// by their fresh nonces.
	Rand func() io.Reader
	// Tolerance is the absolute error allowed in each decrypted coordinate
	// and in the summed weight, on top of float64 summation rounding. Zero
	// means the scheme's Capacity().MaxError; a lossy scheme
	// (Capacity().Lossy) must give it, since its sums are not within
	// MaxError of its inputs' (its own tests check them).
	Tolerance float64
	// HeaderLen is the number of leading bytes of every payload that the
	// scheme checks exactly (magic, version, kind, …): each is flipped and
	// must be rejected. Zero means 6. Flips after the header need only not
	// panic.
	HeaderLen int
}

// Run checks that s keeps the protect contract, in subtests; see the
// package documentation.
func Run(t *testing.T, s protect.Scheme, cfg Config) {
	t.Helper()
	e, err := newEnv(s, cfg)
	if err != nil {
		t.Fatalf("protecttest: %v", err)
	}
	t.Logf("protecttest: scheme %q, N=%d T=%d Dim=%d Seed=%d tolerance %g", s.Name(), e.cfg.N, e.cfg.T, e.cfg.Dim, e.cfg.Seed, e.tol)
	for _, sub := range []struct {
		name string
		run  func(*testing.T, *env)
	}{
		{"Session", testSession},
		{"Sum", testSum},
		{"Dropout", testDropout},
		{"Threshold", testThreshold},
		{"RevealOnce", testRevealOnce},
		{"Protect", testProtect},
		{"NonMember", testNonMember},
		{"Sizes", testSizes},
		{"Persist", testPersist},
		{"Hostile", testHostile},
	} {
		t.Run(sub.name, func(t *testing.T) { sub.run(t, e) })
	}
}

func newEnv(s protect.Scheme, cfg Config) (*env, error) {
	if s == nil {
		return nil, fmt.Errorf("nil scheme")
	}
	if cfg.N < 1 || cfg.T < 1 || cfg.T > cfg.N {
		return nil, fmt.Errorf("Config N=%d, T=%d: want 1 ≤ T ≤ N", cfg.N, cfg.T)
	}
	if cfg.Dim == 0 {
		cfg.Dim = 1007
	}
	if cfg.HeaderLen == 0 {
		cfg.HeaderLen = 6
	}
	lim := s.Capacity()
	switch {
	case cfg.Dim < 2 || cfg.Dim > lim.MaxDim:
		return nil, fmt.Errorf("Config.Dim %d: want 2 ≤ Dim ≤ Capacity().MaxDim = %d", cfg.Dim, lim.MaxDim)
	case cfg.N > lim.MaxParties:
		return nil, fmt.Errorf("Config.N %d exceeds Capacity().MaxParties = %d", cfg.N, lim.MaxParties)
	case !(lim.MaxAbs > 0) || math.IsInf(lim.MaxAbs, 0):
		return nil, fmt.Errorf("Capacity().MaxAbs %v: want a positive finite number", lim.MaxAbs)
	case !(lim.MaxError >= 0) || math.IsInf(lim.MaxError, 0):
		return nil, fmt.Errorf("Capacity().MaxError %v: want a non-negative finite number", lim.MaxError)
	case cfg.Tolerance < 0 || math.IsNaN(cfg.Tolerance):
		return nil, fmt.Errorf("Config.Tolerance %v: want ≥ 0", cfg.Tolerance)
	case lim.Lossy != "" && cfg.Tolerance == 0:
		return nil, fmt.Errorf("the scheme compresses its inputs (%s): Capacity().MaxError does not bound its sums; give Config.Tolerance", lim.Lossy)
	}
	e := &env{s: s, cfg: cfg, lim: lim, tol: cfg.Tolerance}
	if e.tol == 0 {
		e.tol = lim.MaxError
	}
	width := len(fmt.Sprint(cfg.N - 1))
	for i := range cfg.N {
		e.ids = append(e.ids, fl.NodeID(fmt.Sprintf("site-%0*d", width, i)))
	}
	return e, nil
}

// maxTestedDim is the largest MaxDim whose MaxDim+1 vector (128 MiB) the
// suite allocates to check that Protect refuses it.
const maxTestedDim = 1 << 24

// mallory is never a member.
const mallory fl.NodeID = "mallory"

func testSession(t *testing.T, e *env) {
	if e.s.Name() == "" {
		t.Errorf("Scheme.Name is empty")
	}
	if e.lim.MaxParties < 1 || e.lim.MaxDim < 1 {
		t.Errorf("Capacity %+v: MaxParties and MaxDim must be positive", e.lim)
	}
	f := newFixture(t, e, "session")
	if got := f.helper.Needed(); got != e.cfg.T {
		t.Errorf("Helper.Needed() = %d, want the threshold %d", got, e.cfg.T)
	}
	good := f.session()
	bad := map[string]protect.Group{
		"empty ID":        {Members: good.Members, Threshold: good.Threshold},
		"65-byte ID":      {ID: make([]byte, 65), Members: good.Members, Threshold: good.Threshold},
		"no members":      {ID: good.ID, Threshold: 1},
		"threshold 0":     {ID: good.ID, Members: good.Members, Threshold: 0},
		"threshold N+1":   {ID: good.ID, Members: good.Members, Threshold: e.cfg.N + 1},
		"duplicate":       {ID: good.ID, Members: append(slices.Clone(good.Members), good.Members[0]), Threshold: good.Threshold},
		"empty member ID": {ID: good.ID, Members: append(slices.Clone(good.Members), ""), Threshold: good.Threshold},
	}
	for _, name := range slices.Sorted(maps.Keys(bad)) {
		s := bad[name]
		expect(t, fmt.Sprintf("Scheme.NewHelper with a session with %s", name), try(func() error {
			_, err := e.s.NewHelper(s)
			return err
		}))
		expect(t, fmt.Sprintf("Scheme.NewParty with a session with %s", name), try(func() error {
			_, err := e.s.NewParty(s, e.ids[0], e.reader("bad session"))
			return err
		}))
	}
}

func testSum(t *testing.T, e *env) {
	f := newFixture(t, e, "sum")
	for _, c := range []struct {
		name  string
		scale float64
	}{
		{"full range", e.scale(0)},
		{"unit range", e.scale(1)},
		{"full range again", e.scale(0)},
	} {
		f.runRound(fmt.Sprintf("%s, scale %g, all %d members", c.name, c.scale, e.cfg.N), e.ids, f.pick(e.ids, e.cfg.T), c.scale)
	}
}

func testDropout(t *testing.T, e *env) {
	if e.cfg.N == e.cfg.T {
		t.Skipf("N = T = %d: no member can drop out", e.cfg.N)
	}
	f := newFixture(t, e, "dropout")
	for _, d := range slices.Compact([]int{1, e.cfg.N - e.cfg.T}) {
		included := f.pick(e.ids, e.cfg.N-d)
		f.runRound(fmt.Sprintf("%d of %d members protect", len(included), e.cfg.N), included, f.pick(included, e.cfg.T), e.scale(0))
	}
}

func testThreshold(t *testing.T, e *env) {
	f := newFixture(t, e, "threshold")
	T := e.cfg.T
	R := f.pick(e.ids, T)
	k := f.kit(f.nextRound(), R)
	open := func(what string, req protect.RevealRequest, shares map[fl.NodeID][]byte, wants ...error) {
		t.Helper()
		expect(t, "Helper.Open with "+what, try(func() error {
			_, err := f.helper.Open(req, clone(shares))
			return err
		}), wants...)
	}
	// replace returns k.shares with the share of id replaced by b.
	replace := func(id fl.NodeID, b []byte) map[fl.NodeID][]byte {
		s := clone(k.shares)
		s[id] = b
		return s
	}

	// Too few.
	if T > 1 {
		open(fmt.Sprintf("%d of %d shares", T-1, T), k.req, clone(withoutKey(k.shares, R[0])), protect.ErrNotEnoughShares)
	}
	open("no shares", k.req, map[fl.NodeID][]byte{}, protect.ErrNotEnoughShares)
	open("nil shares", k.req, nil, protect.ErrNotEnoughShares)

	// From outside the revealer set.
	if outside := without(e.ids, R...); len(outside) > 0 {
		x := outside[0]
		R2 := append(slices.Clone(R[1:]), x)
		shares2 := f.reveal(f.request(k.r, k.agg, R2), f.parties, scratch)
		s := withoutKey(k.shares, R[0])
		s[x] = shares2[x]
		open(fmt.Sprintf("the share of %s, who is not in req.Revealers, instead of %s's", x, R[0]), k.req, s, protect.ErrForeign, protect.ErrMalformed, protect.ErrNotMember)
		s = clone(k.shares)
		s[x] = shares2[x]
		open(fmt.Sprintf("all %d shares plus one from %s, who is not in req.Revealers", T, x), k.req, s, protect.ErrForeign, protect.ErrMalformed, protect.ErrNotMember)
		if T > 1 {
			open(fmt.Sprintf("%s's share made for another revealer set", R[1]), k.req, replace(R[1], shares2[R[1]]), rejected...)
		}
	} else {
		t.Logf("N = T: no member outside the revealer set")
	}

	// Made for another request.
	if agg2 := f.another(k.r, k.prot); agg2 != nil {
		shares := f.reveal(f.request(k.r, agg2, R), f.parties, scratch)
		open(fmt.Sprintf("%s's share made for another aggregate of the same round", R[0]), k.req, replace(R[0], shares[R[0]]), rejected...)
	}
	k3 := f.kit(f.nextRound(), R)
	open(fmt.Sprintf("%s's share made for round %d", R[0], k3.r), k.req, replace(R[0], k3.shares[R[0]]), rejected...)
	var t2 protect.Target
	must(t, "Scheme.NewTarget", try(func() (err error) { t2, err = e.s.NewTarget(e.reader("second target")); return err }))
	req2 := k.req
	req2.Target = t2.Public()
	shares := f.reveal(req2, f.parties, scratch)
	open(fmt.Sprintf("%s's share made for another target", R[0]), k.req, replace(R[0], shares[R[0]]), rejected...)

	// Malformed revealer sets: Reveal refuses them without recording, Open
	// refuses them.
	sets := map[string][]fl.NodeID{}
	if T > 1 {
		sets[fmt.Sprintf("%d revealers", T-1)] = R[:T-1]
		sets[fmt.Sprintf("a revealer listed twice (%s)", R[0])] = append(slices.Clone(R[:T-1]), R[0])
	}
	if outside := without(e.ids, R...); len(outside) > 0 {
		sets[fmt.Sprintf("%d revealers", T+1)] = append(slices.Clone(R), outside[0])
	}
	for _, name := range slices.Sorted(maps.Keys(sets)) {
		req := k.req
		req.Revealers = sets[name]
		open("a request with "+name, req, k.shares)
		l := &recLedger{}
		expect(t, fmt.Sprintf("Party(%s).Reveal of a request with %s", R[0], name), try(func() error {
			_, err := f.parties[R[0]].Reveal(req, l)
			return err
		}))
		if len(l.calls) > 0 {
			t.Errorf("Party(%s).Reveal of a request with %s wrote the ledger: a rejected request must record nothing", R[0], name)
		}
	}
	if outside := without(e.ids, R...); len(outside) > 0 {
		x, l := outside[0], &recLedger{}
		expect(t, fmt.Sprintf("Party(%s).Reveal of a request that does not name it", x), try(func() error {
			_, err := f.parties[x].Reveal(k.req, l)
			return err
		}))
		if len(l.calls) > 0 {
			t.Errorf("Party(%s).Reveal of a request that does not name it wrote the ledger", x)
		}
	}

	// After all that, the real shares still open the sum.
	checkSum(t, "the sum opened by the T revealers after the rejected attempts", f.decrypt(f.target, f.open(k.req, k.shares)), k.in, e.cfg.Dim, e.tol)
}

func testRevealOnce(t *testing.T, e *env) {
	f := newFixture(t, e, "reveal-once")
	R := f.pick(e.ids, e.cfg.T)
	p := R[0]
	r := f.nextRound()
	in := f.inputs(e.ids, e.scale(0))
	prot := f.protect(r, in, f.parties)
	req := f.request(r, f.aggregate(r, prot), R)
	l := &recLedger{inner: f.ledgers[p]}

	var share []byte
	if !succeed(t, fmt.Sprintf("round %d: Party(%s).Reveal", r, p), try(func() (err error) { share, err = f.parties[p].Reveal(req, l); return err })) {
		return
	}
	want := ledgerCall{r, req.Digest()}
	if len(l.calls) != 1 || l.calls[0] != want {
		t.Errorf("round %d: Party(%s).Reveal returned a share after ledger calls %v, want exactly one Record(%d, %x…)", r, p, l.calls, r, want.digest[:6])
	}
	if len(share) == 0 {
		t.Errorf("round %d: Party(%s).Reveal returned an empty share", r, p)
	}

	again := func(what string, req protect.RevealRequest, l protect.Ledger, wants ...error) {
		t.Helper()
		var sh []byte
		ok := expect(t, what, try(func() (err error) { sh, err = f.parties[p].Reveal(req, l); return err }), wants...)
		if ok && sh != nil {
			t.Errorf("%s: returned a share with its error", what)
		}
	}
	again(fmt.Sprintf("round %d: a second Party(%s).Reveal of the same aggregate", r, p), req, l, protect.ErrRevealed)
	if agg2 := f.another(r, prot); agg2 != nil {
		again(fmt.Sprintf("round %d: a second Party(%s).Reveal, of another aggregate", r, p), f.request(r, agg2, R), l, protect.ErrRevealed)
	}
	prior := &protect.MemLedger{}
	must(t, "MemLedger.Record", prior.Record(r, [32]byte{1}))
	again(fmt.Sprintf("round %d: Party(%s).Reveal with a ledger that already holds a reveal for the round", r, p), req, prior, protect.ErrRevealed)
	errDown := fmt.Errorf("protecttest: the ledger's disk is full")
	again(fmt.Sprintf("round %d: Party(%s).Reveal with a failing ledger", r, p), req, &recLedger{fail: errDown}, errDown)

	// The first share is still good: the other revealers reveal, and Open
	// gives the sum.
	shares := map[fl.NodeID][]byte{p: share}
	for _, id := range R[1:] {
		must(t, fmt.Sprintf("round %d: Party(%s).Reveal", r, id), try(func() (err error) { shares[id], err = f.parties[id].Reveal(req, f.ledgers[id]); return err }))
	}
	checkSum(t, fmt.Sprintf("round %d: the sum opened with the first share", r), f.decrypt(f.target, f.open(req, shares)), in, e.cfg.Dim, e.tol)

	// The next round is not affected.
	f.runRound("the round after", e.ids, R, e.scale(0))
}
