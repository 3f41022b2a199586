package round

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
)

// TestRevealOnlyTheSum is the attack the revealers' check stops: the
// coordinator, colluding with a member that holds the group key, presents
// one honest site's upload as the round's aggregate, with the true included
// set and its signatures. Every honest revealer refuses (audited, with the
// reason): under mhe because the aggregate names another set than the
// included one (the set is the key, protect.Capacity.SetBound), under
// other schemes because it is not the sum of the included uploads. The
// positive control turns the check off (test-only): the same request then
// reveals that site's update exactly.
func TestRevealOnlyTheSum(t *testing.T) {
	s, err := mhe.New(mhe.InsecureTest)
	if err != nil {
		t.Fatal(err)
	}
	for _, check := range []bool{true, false} {
		f, victim, alone := victimAlone(t, s)
		c := f.c
		// The forged request: the victim's upload alone, as the aggregate.
		forged := Message{Kind: KindRevealRequest, Session: f.cfg.Session, Epoch: c.st.Epoch, Round: 1, Aggregate: alone,
			Revealers: c.st.Revealers, Target: c.gk.Target, Included: c.st.Included, Payloads: map[fl.NodeID][]byte{}}
		for _, in := range c.st.Included {
			forged.Payloads[in.Node] = c.uploads[in.Node]
		}
		// The colluding member: the revealers' shares of the forged request
		// and the group key (a node's target) open it.
		shares := map[fl.NodeID][]byte{}
		var target protect.Target
		for _, id := range c.st.Revealers {
			sn := f.byID[id]
			sn.n.cfg.insecureNoSumCheck = !check
			target = sn.n.target
			mark := len(sn.n.out.audit)
			err := sn.n.Step(coordID, forged)
			if check {
				why := "not the sum of the included uploads"
				if s.Capacity().SetBound {
					why = "the aggregate is of the set"
				}
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), why) {
					t.Fatalf("%s revealed a single site's upload as the aggregate: %v", id, err)
				}
				refused := false
				for _, e := range sn.n.out.audit[mark:] {
					refused = refused || e.Kind == EventRefused && strings.Contains(e.Detail, why)
				}
				if !refused {
					t.Errorf("%s's refusal is not in its audit events", id)
				}
				t.Logf("%s refused: %v", id, err)
				continue
			}
			if err != nil {
				t.Fatalf("check off: %s: %v", id, err)
			}
			for _, m := range sn.n.out.messages {
				if m.Kind == KindShare && m.Round == 1 {
					shares[id] = m.Payload
				}
			}
		}
		if check {
			continue
		}
		req := protect.RevealRequest{Round: 1, Aggregate: alone, Revealers: c.st.Revealers, Target: c.gk.Target}
		res, err := c.helper.Open(req, shares)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := target.Decrypt(res)
		if err != nil {
			t.Fatal(err)
		}
		want, tol := f.byID[victim].delta, s.Capacity().MaxError+1e-9
		if !closeTo(fl.Vector{sum.Weight}, fl.Vector{f.byID[victim].weight}, tol) || !closeTo(sum.Vector, want, tol) {
			t.Fatalf("check off: revealed %v (weight %v), want %s's update %v", sum.Vector, sum.Weight, victim, want)
		}
		t.Logf("check off (positive control): the forged request revealed %s's update %v (weight %v), within the scheme's error %g", victim, sum.Vector, sum.Weight, tol)
	}
}

// TestRevealChecksUploads: a reveal request whose uploads are missing, one
// too many, or not the ones the members signed is refused, naming what is
// wrong; the true request is answered.
func TestRevealChecksUploads(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 1})
	f.show = "none"
	f.runUntil(PhaseReveal, 1)
	c := f.c
	id := c.st.Revealers[0]
	request := func(edit func(map[fl.NodeID][]byte)) Message {
		m := Message{Kind: KindRevealRequest, Session: f.cfg.Session, Epoch: c.st.Epoch, Round: 1, Aggregate: c.aggregate,
			Revealers: c.st.Revealers, Target: c.gk.Target, Included: c.st.Included, Payloads: map[fl.NodeID][]byte{}}
		for _, in := range c.st.Included {
			m.Payloads[in.Node] = c.uploads[in.Node]
		}
		edit(m.Payloads)
		return m
	}
	other := c.st.Included[len(c.st.Included)-1].Node
	for _, tc := range []struct {
		name string
		edit func(map[fl.NodeID][]byte)
		want string
	}{
		{"missing", func(p map[fl.NodeID][]byte) { delete(p, other) }, "uploads for"},
		{"extra", func(p map[fl.NodeID][]byte) { p["n9"] = []byte("x") }, "uploads for"},
		{"substituted", func(p map[fl.NodeID][]byte) { p[other] = append([]byte{}, c.uploads[id]...) }, "not the one it signed"},
	} {
		err := f.byID[id].n.Step(coordID, request(tc.edit))
		if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want a refusal naming %q", tc.name, err, tc.want)
		}
	}
	if err := f.byID[id].n.Step(coordID, request(func(map[fl.NodeID][]byte) {})); err != nil {
		t.Fatalf("the true request: %v", err)
	}
}

// TestPledgeStopsCancellation is the attack the pledges stop: the
// coordinator and a colluding member (n4, which holds the group key) see
// the honest uploads (here in the clear, under plain; under mhe they would
// work on the ciphertexts homomorphically) and replace n4's upload with
// one that cancels n2's and n3's, so that the true sum of the included
// uploads is n1's update alone. n4 signs its new upload under the pledge
// set the honest members uploaded under. Every honest revealer refuses:
// n4's upload is not the one it pledged before anyone's upload existed.
// The positive control turns the pledge check off (test-only): the same
// request then reveals n1's update exactly.
func TestPledgeStopsCancellation(t *testing.T) {
	for _, check := range []bool{true, false} {
		f := newFed(t, fedOptions{nodes: 4, t: 2, min: 3, rounds: 1, init: fl.Vector{0, 0, 0}, scheme: plain.Scheme{}})
		f.show = "none"
		deltas := []fl.Vector{{1, 0, -1}, {2, 1, 0}, {0.5, -4, 0.25}, {-1, 4, 2}}
		for i, sn := range f.nodes {
			sn.delta = deltas[i]
		}
		f.runUntil(PhaseReveal, 1)
		c := f.c
		pd := pledgesDigest(f.cfg.Session, c.st.Epoch, 1, c.st.Pledges)
		// n4's cancelling upload, made after seeing the others.
		cancel := fl.Vector{0, 0, 0}
		for _, id := range []fl.NodeID{"n2", "n3"} {
			if err := cancel.Add(-1, f.byID[id].delta); err != nil {
				t.Fatal(err)
			}
		}
		n4 := f.byID["n4"].n
		forgedUpload, err := n4.party.Protect(1, cancel, 0)
		if err != nil {
			t.Fatal(err)
		}
		d := DigestOf(forgedUpload)
		sig, _ := fakeSigner{"n4"}.Sign(uploadSigned(f.cfg.Session, c.st.Epoch, 1, d, pd))
		uploads := map[fl.NodeID][]byte{}
		var included []Contribution
		for _, in := range c.st.Included {
			uploads[in.Node] = c.uploads[in.Node]
			if in.Node == "n4" {
				in = Contribution{Node: "n4", Digest: d, Signature: sig}
				uploads["n4"] = forgedUpload
			}
			included = append(included, in)
		}
		agg, err := c.helper.Aggregate(1, uploads)
		if err != nil {
			t.Fatal(err)
		}
		revealers := []fl.NodeID{"n2", "n3"}
		forged := Message{Kind: KindRevealRequest, Session: f.cfg.Session, Epoch: c.st.Epoch, Round: 1, Aggregate: agg,
			Revealers: revealers, Target: c.gk.Target, Included: included, Payloads: uploads}
		shares := map[fl.NodeID][]byte{}
		for _, id := range revealers {
			sn := f.byID[id]
			sn.n.cfg.insecureNoPledgeCheck = !check
			// The round's true reveal went elsewhere; this node has not revealed.
			sn.n.step, sn.n.st.Revealed = stepUploaded, 0
			err := sn.n.Step(coordID, forged)
			if check {
				if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "did not pledge") {
					t.Fatalf("%s revealed a sum with a cancelling upload: %v", id, err)
				}
				t.Logf("%s refused: %v", id, err)
				continue
			}
			if err != nil {
				t.Fatalf("check off: %s: %v", id, err)
			}
			for _, m := range sn.n.out.messages {
				if m.Kind == KindShare && m.Round == 1 {
					shares[id] = m.Payload
				}
			}
		}
		if check {
			continue
		}
		req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: revealers, Target: c.gk.Target}
		res, err := c.helper.Open(req, shares)
		if err != nil {
			t.Fatal(err)
		}
		sum, err := f.byID["n4"].n.target.Decrypt(res)
		if err != nil {
			t.Fatal(err)
		}
		if !closeTo(sum.Vector, deltas[0], 1e-9) {
			t.Fatalf("check off: revealed %v, want n1's update %v", sum.Vector, deltas[0])
		}
		t.Logf("pledge check off (positive control): the cancelling upload revealed n1's update %v", sum.Vector)
	}
}

// TestOneSetPerRound is the subtraction attack the whole-pledge-set rule
// stops: the coordinator and a colluding member (n4) reveal the round's
// included set with one honest revealer (n3), then the same set without the
// victim (n1) with another honest revealer (n2), each time with n4's share
// as the second of t = 2; the difference of the two sums is n1's update. n2
// refuses: the included set must be the whole pledge set it uploaded under.
// Positive control with the pledge checks off: the difference is n1's
// update exactly.
func TestOneSetPerRound(t *testing.T) {
	for _, check := range []bool{true, false} {
		f := newFed(t, fedOptions{nodes: 4, t: 2, min: 2, rounds: 1, init: fl.Vector{0, 0, 0}, scheme: plain.Scheme{}})
		f.show = "none"
		deltas := []fl.Vector{{1, 0, -1}, {2, 1, 0}, {0.5, -4, 0.25}, {-1, 4, 2}}
		for i, sn := range f.nodes {
			sn.delta = deltas[i]
		}
		f.runUntil(PhaseReveal, 1)
		c := f.c
		reveal := func(included []Contribution, honest fl.NodeID) (protect.Sum, error) {
			uploads := map[fl.NodeID][]byte{}
			for _, in := range included {
				uploads[in.Node] = c.uploads[in.Node]
			}
			agg, err := c.helper.Aggregate(1, uploads)
			if err != nil {
				t.Fatal(err)
			}
			revealers := []fl.NodeID{honest, "n4"}
			slices.Sort(revealers)
			req := protect.RevealRequest{Round: 1, Aggregate: agg, Revealers: revealers, Target: c.gk.Target}
			sn := f.byID[honest]
			sn.n.cfg.insecureNoPledgeCheck = !check
			sn.n.step, sn.n.st.Revealed = stepUploaded, 0 // the round's own reveal went to others
			m := Message{Kind: KindRevealRequest, Session: f.cfg.Session, Epoch: c.st.Epoch, Round: 1, Aggregate: agg,
				Revealers: revealers, Target: c.gk.Target, Included: included, Payloads: uploads}
			if err := sn.n.Step(coordID, m); err != nil {
				return protect.Sum{}, err
			}
			shares := map[fl.NodeID][]byte{}
			for _, out := range sn.n.out.messages {
				if out.Kind == KindShare && out.Round == 1 {
					shares[honest] = out.Payload
				}
			}
			// The colluder's share: its party, without its engine's checks or ledger.
			if shares["n4"], err = f.byID["n4"].n.party.Reveal(req, &protect.MemLedger{}); err != nil {
				t.Fatal(err)
			}
			res, err := c.helper.Open(req, shares)
			if err != nil {
				t.Fatal(err)
			}
			return f.byID["n4"].n.target.Decrypt(res)
		}
		all := c.st.Included
		sum1, err := reveal(all, "n3")
		if err != nil {
			t.Fatalf("the round's own set: %v", err)
		}
		without := slices.DeleteFunc(slices.Clone(all), func(in Contribution) bool { return in.Node == "n1" })
		sum2, err := reveal(without, "n2")
		if check {
			if !errors.Is(err, ErrRefused) || !strings.Contains(err.Error(), "whole pledge set") {
				t.Fatalf("n2 revealed a second included set of the round: %v", err)
			}
			t.Logf("n2 refused: %v", err)
			continue
		}
		if err != nil {
			t.Fatalf("check off: %v", err)
		}
		diff := sum1.Vector.Clone()
		if err := diff.Add(-1, sum2.Vector); err != nil {
			t.Fatal(err)
		}
		if !closeTo(diff, deltas[0], 1e-9) {
			t.Fatalf("check off: the two sums differ by %v, want n1's update %v", diff, deltas[0])
		}
		t.Logf("pledge checks off (positive control): two included sets of one round reveal n1's update %v", diff)
	}
}

// TestRevealSetIsTheKey: under mhe the revealers no longer re-sum the
// uploads (the request does not carry them); the included set their shares
// switch is the key. A coordinator that keeps the true set but swaps the
// aggregate's ciphertexts for one honest site's upload gets shares, and the
// colluding group-key holder opens them: what comes out is not that site's
// update (its upload under the set's key is an RLWE sample masked by the
// other members' secrets), and the true request still reveals the sum.
func TestRevealSetIsTheKey(t *testing.T) {
	s, err := mhe.New(mhe.InsecureTest)
	if err != nil {
		t.Fatal(err)
	}
	f, victim, alone := victimAlone(t, s)
	c := f.c
	if len(alone) != len(c.aggregate) {
		t.Fatalf("aggregates of %d and %d bytes", len(alone), len(c.aggregate))
	}
	// The victim's ciphertexts under the true aggregate's header and set:
	// the two differ first in the set's bitmap (one byte for four members).
	i := 0
	for alone[i] == c.aggregate[i] {
		i++
	}
	forged := slices.Clone(alone)
	forged[i] = c.aggregate[i]
	req := Message{Kind: KindRevealRequest, Session: f.cfg.Session, Epoch: c.st.Epoch, Round: 1, Aggregate: forged,
		Revealers: c.st.Revealers, Target: c.gk.Target, Included: c.st.Included}
	shares := map[fl.NodeID][]byte{}
	var target protect.Target
	for _, id := range c.st.Revealers {
		sn := f.byID[id]
		target = sn.n.target
		if err := sn.n.Step(coordID, req); err != nil {
			t.Fatalf("%s: %v", id, err)
		}
		for _, m := range sn.n.out.messages {
			if m.Kind == KindShare && m.Round == 1 {
				shares[id] = m.Payload
			}
		}
	}
	res, err := c.helper.Open(protect.RevealRequest{Round: 1, Aggregate: forged, Revealers: c.st.Revealers, Target: c.gk.Target}, shares)
	if err != nil {
		t.Logf("the forged aggregate does not even open: %v", err)
		return
	}
	got, err := target.Decrypt(res)
	if err != nil {
		t.Logf("the forged aggregate does not decrypt: %v", err)
		return
	}
	want := f.byID[victim].delta
	if closeTo(got.Vector, want, 0.5) {
		t.Fatalf("the forged aggregate revealed %s's update %v: %v", victim, want, got.Vector)
	}
	t.Logf("the forged aggregate under the true set opened to %.3g (weight %.3g), not %s's update %v", got.Vector, got.Weight, victim, want)
}

// victimAlone runs a four-member federation of scheme s to its first
// reveal and returns it, the first included member and the aggregate of
// that member's upload alone: the forgery the reveal tests present.
func victimAlone(t *testing.T, s protect.Scheme) (*fed, fl.NodeID, []byte) {
	t.Helper()
	f := newFed(t, fedOptions{nodes: 4, t: 2, min: 3, rounds: 1, init: fl.Vector{0, 0, 0}, scheme: s})
	f.show = "none"
	deltas := []fl.Vector{{1, 0, -1}, {2, 1, 0}, {0.5, -4, 0.25}, {-1, 4, 2}}
	for i, sn := range f.nodes {
		sn.delta = deltas[i]
	}
	f.runUntil(PhaseReveal, 1)
	victim := f.c.st.Included[0].Node
	alone, err := f.c.helper.Aggregate(1, map[fl.NodeID][]byte{victim: f.c.uploads[victim]})
	if err != nil {
		t.Fatal(err)
	}
	return f, victim, alone
}
