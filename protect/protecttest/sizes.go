package protecttest

import (
	"fmt"
	"testing"

	"github.com/cloisterfl/cloister/protect"
)

// testSizes checks every payload of a setup and a round against
// Scheme.Sizes, and that Sizes refuses what Capacity does not allow.
func testSizes(t *testing.T, e *env) {
	var sz protect.Sizes
	if !succeed(t, fmt.Sprintf("Scheme.Sizes(%d, %d)", e.cfg.Dim, e.cfg.N), try(func() (err error) {
		sz, err = e.s.Sizes(e.cfg.Dim, e.cfg.N)
		return err
	})) {
		return
	}
	f := newFixture(t, e, "sizes")
	within := func(what string, got []byte, bound int) {
		t.Helper()
		if len(got) > bound {
			t.Errorf("%s has %d bytes, Scheme.Sizes(%d, %d) states at most %d", what, len(got), e.cfg.Dim, e.cfg.N, bound)
		}
	}
	for _, id := range e.ids {
		within(fmt.Sprintf("Party(%s).Announce", id), f.ann[id], sz.Announcement)
		within(fmt.Sprintf("Party(%s).Deal public", id), f.deal[id].Public, sz.PublicDealing)
		for to, b := range f.deal[id].Private {
			within(fmt.Sprintf("Party(%s).Deal private for %s", id, to), b, sz.PrivateDealing)
		}
	}
	within("Helper.Setup", f.setup, sz.Setup)
	within("Target.Public", f.target.Public(), sz.TargetPublic)
	sec, err := f.target.MarshalBinary()
	must(t, "Target.MarshalBinary", err)
	within("Target.MarshalBinary", sec, sz.TargetSecret)
	k := f.kit(f.nextRound(), f.pick(e.ids, e.cfg.T))
	for id, b := range k.prot {
		within(fmt.Sprintf("Party(%s).Protect", id), b, sz.Update)
	}
	within(fmt.Sprintf("Helper.Aggregate of %d updates", len(k.prot)), k.agg, sz.Aggregate)
	for id, b := range k.shares {
		within(fmt.Sprintf("Party(%s).Reveal", id), b, sz.Share)
	}
	within("Helper.Open", k.result, sz.Result)
	if sz.Max() < sz.Update || sz.Max() < sz.Setup {
		t.Errorf("Sizes.Max() = %d is below a field of %+v", sz.Max(), sz)
	}

	for _, c := range []struct{ d, n int }{
		{0, e.cfg.N}, {e.lim.MaxDim + 1, e.cfg.N}, {e.cfg.Dim, 0}, {e.cfg.Dim, e.lim.MaxParties + 1},
	} {
		expect(t, fmt.Sprintf("Scheme.Sizes(%d, %d)", c.d, c.n), try(func() error {
			_, err := e.s.Sizes(c.d, c.n)
			return err
		}), protect.ErrRange)
	}
}
