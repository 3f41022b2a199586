package round

import (
	"errors"
	"reflect"
	"slices"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

// takeInflight removes and returns the first message in flight to id of
// kind k.
func (f *fed) takeInflight(to fl.NodeID, k Kind) Message {
	f.tb.Helper()
	i := slices.IndexFunc(f.inflight, func(e flight) bool { return e.to == to && e.m.Kind == k })
	if i < 0 {
		f.tb.Fatalf("no %s in flight to %s", k, to)
	}
	m := f.inflight[i].m
	f.inflight = slices.Delete(f.inflight, i, i+1)
	return m
}

// forgeModel returns sealed, a model of round r sealed under key, with other
// weights: what a coordinator colluding with a holder of key can plant.
func (f *fed) forgeModel(key []byte, r fl.Round, sealed []byte) []byte {
	f.tb.Helper()
	pt, err := fakeBox{}.Open(key, sealed, modelAD(f.cfg.Session, r))
	if err != nil {
		f.tb.Fatal(err)
	}
	v, opt, err := decodeModel(pt)
	if err != nil {
		f.tb.Fatal(err)
	}
	v = v.Clone()
	v[0] += 100
	forged, err := fakeBox{}.Seal(key, encodeModel(v, opt), modelAD(f.cfg.Session, r))
	if err != nil {
		f.tb.Fatal(err)
	}
	return forged
}

// TestKnownBaseModel: the coordinator substitutes another model of the same
// round, validly sealed under the group key (which every member holds), in
// a Train or a Decrypt. A node that verified that round's commit record
// refuses it (also after a restart); a node that missed the commit accepts
// it, as before (the documented limit). The honest Train still runs.
func TestKnownBaseModel(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kind    Kind
		restart bool // restart n1 from its persisted state first
		missed  bool // n1 missed the commit of the base round
		refused bool
	}{
		{name: "train", kind: KindTrain, refused: true},
		{name: "decrypt", kind: KindDecrypt, refused: true},
		{name: "train-after-restart", kind: KindTrain, restart: true, refused: true},
		{name: "train-missed-commit", kind: KindTrain, missed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 3})
			f.show = "none"
			f.runUntil(PhaseCollect, 3)
			sn := f.byID["n1"]
			train := f.takeInflight("n1", KindTrain)
			if sn.n.st.Known != 2 || sn.n.st.KnownModel == (Digest{}) {
				t.Fatalf("n1 knows the model of round %d (%v), want round 2", sn.n.st.Known, sn.n.st.KnownModel)
			}
			if tc.restart {
				f.crashNode("n1")
				f.restartNode("n1")
				f.run(func() bool { return true })
				if sn.n.st.Known != 2 {
					t.Fatalf("after a restart n1 knows the model of round %d", sn.n.st.Known)
				}
			}
			if tc.missed {
				sn.n.st.KnownModel = Digest{}
			}
			forged := train
			forged.Model = f.forgeModel(sn.n.modelKey, train.Base, train.Model)
			if tc.kind == KindDecrypt {
				forged = Message{Kind: KindDecrypt, Session: train.Session, Epoch: train.Epoch, Round: train.Round,
					Base: train.Base, Model: forged.Model, Payload: []byte("result")}
			}
			before := sn.n.Status()
			err := sn.n.Step(coordID, forged)
			if !tc.refused {
				if err != nil || sn.n.Status().Step != "training" {
					t.Fatalf("a node that missed the commit: %v, step %s", err, sn.n.Status().Step)
				}
				return
			}
			if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrForged) {
				t.Fatalf("substituted base model in %s: %v, want ErrRefused and ErrForged", tc.kind, err)
			}
			rd := sn.n.Ready()
			if len(rd.Tasks) != 0 || !reflect.DeepEqual(sn.n.Status(), before) || sn.n.st.Round != 2 {
				t.Fatalf("after the refusal: tasks %v, status %+v, was %+v", rd.Tasks, sn.n.Status(), before)
			}
			if i := slices.IndexFunc(rd.Audit, func(e Event) bool { return e.Kind == EventRefused }); i < 0 {
				t.Fatalf("no refused event in %v", rd.Audit)
			}
			// The honest Train is taken, and the session completes.
			if err := sn.n.Step(coordID, train); err != nil {
				t.Fatalf("the honest Train after a refused forgery: %v", err)
			}
			f.run(nil)
			if s := f.c.Status(); s.Phase != PhaseDone || s.Commits != 3 {
				t.Fatalf("status %+v", s)
			}
			if !slices.Equal(sn.trains[3], sn.evals[2]) {
				t.Fatalf("n1 trained round 3 on %v, round 2 committed %v", sn.trains[3], sn.evals[2])
			}
		})
	}
}

// TestKnownCarriedModel: at a re-key after n4's exclusion, the coordinator
// gives the dealer a model of the newest committed round sealed under the
// previous epoch's model key (which n4 holds) with other weights. The dealer
// verified that round's commit and refuses it. Given the true model, it
// carries it over, and every participant learns the payload digest from the
// sealed group key (also one that missed the commit): a Train of the
// re-sealed model is accepted, a substituted one under the new key is
// refused.
func TestKnownCarriedModel(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 4, t: 2, min: 2, rounds: 5})
	f.show = "none"
	f.runUntil(PhaseCollect, 3)
	f.c.Exclude("n4", "evidence revoked")
	f.run(func() bool {
		return slices.ContainsFunc(f.inflight, func(e flight) bool { return e.m.Kind == KindKeyRequest })
	})
	dealer := f.byID[f.c.st.Dealer]
	req := f.takeInflight(dealer.id, KindKeyRequest)
	if len(req.Model) == 0 || req.Base != 3 || dealer.n.st.Known != 3 {
		t.Fatalf("key request carries round %d (%d bytes), the dealer knows round %d", req.Base, len(req.Model), dealer.n.st.Known)
	}
	known := dealer.n.st.KnownModel

	forged := req
	forged.Model = f.forgeModel(f.byID["n4"].n.modelKey, req.Base, req.Model)
	err := dealer.n.Step(coordID, forged)
	if !errors.Is(err, ErrRefused) || !errors.Is(err, ErrForged) {
		t.Fatalf("substituted carried model: %v, want ErrRefused and ErrForged", err)
	}
	if dealer.n.target != nil || dealer.n.keys.GroupKey != nil || dealer.n.st.KnownModel != known {
		t.Fatal("the dealer made a group key for a substituted model")
	}

	// other (not the dealer) missed the commit of round 3: it learns the
	// model to expect from the group key the dealer seals to it.
	other := f.byID["n1"]
	if other == dealer {
		other = f.byID["n2"]
	}
	other.n.st.Known, other.n.st.KnownModel = 0, Digest{}

	// The honest request (the setup retried): the re-key completes.
	if err := dealer.n.Step(coordID, req); err != nil {
		t.Fatalf("the honest key request: %v", err)
	}
	f.runUntil(PhaseCollect, 4)
	for _, id := range []fl.NodeID{"n1", "n2", "n3"} {
		if st := f.byID[id].n.st; st.Epoch != 2 || st.Known != 3 || st.KnownModel != known {
			t.Fatalf("%s after the re-key: epoch %d, knows round %d %v, want 3 %v", id, st.Epoch, st.Known, st.KnownModel, known)
		}
	}
	// The re-sealed model is the one other expects; another one sealed
	// under the new key is refused.
	train := f.takeInflight(other.id, KindTrain)
	bad := train
	bad.Model = f.forgeModel(other.n.modelKey, train.Base, train.Model)
	if err := other.n.Step(coordID, bad); !errors.Is(err, ErrForged) {
		t.Fatalf("substituted re-sealed model: %v, want ErrForged", err)
	}
	if err := other.n.Step(coordID, train); err != nil {
		t.Fatalf("the re-sealed model: %v", err)
	}
	f.run(nil)
	if s := f.c.Status(); s.Phase != PhaseDone || s.Commits != 5 {
		t.Fatalf("status %+v", s)
	}
	if !slices.Equal(other.trains[4], other.evals[3]) {
		t.Fatalf("%s trained round 4 on %v, round 3 committed %v", other.id, other.trains[4], other.evals[3])
	}
}

// TestLearnModel: which model a node keeps as known.
func TestLearnModel(t *testing.T) {
	a, b := DigestOf([]byte("a")), DigestOf([]byte("b"))
	for _, tc := range []struct {
		name      string
		known     fl.Round
		have      Digest
		r         fl.Round
		d         Digest
		dealt     bool
		wantRound fl.Round
		want      Digest
	}{
		{"none yet", 0, Digest{}, 3, b, false, 3, b},
		{"later commit", 2, a, 3, b, false, 3, b},
		{"earlier dealt", 3, a, 2, b, true, 3, a},
		{"same round dealt keeps the verified commit", 3, a, 3, b, true, 3, a},
		{"later dealt", 2, a, 3, b, true, 3, b},
		{"initial model: the newest dealer's", 0, a, 0, b, true, 0, b},
		{"initial model dealt after a commit", 3, a, 0, b, true, 3, a},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := &Node{st: NodeState{Known: tc.known, KnownModel: tc.have}}
			n.learnModel(tc.r, tc.d, tc.dealt)
			if n.st.Known != tc.wantRound || n.st.KnownModel != tc.want {
				t.Fatalf("knows round %d %v, want %d %v", n.st.Known, n.st.KnownModel, tc.wantRound, tc.want)
			}
		})
	}
}
