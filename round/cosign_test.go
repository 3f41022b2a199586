package round

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

// TestCommitCosign: the leader's Commit carries its cosignature of the
// coordinator's committed record (CommitStatement); the coordinator refuses
// a commit without one, or with one that is not the leader's or not for
// this round's record, and changes nothing; the good commit's cosignature
// comes out in Ready.Commits.
func TestCommitCosign(t *testing.T) {
	f := newFed(t, fedOptions{nodes: 3, t: 2, min: 2, rounds: 1})
	f.show = "none"
	f.run(func() bool { return len(f.inflight) > 0 && f.inflight[0].m.Kind == KindCommit })
	if len(f.inflight) == 0 {
		t.Fatal("no commit in flight")
	}
	e := f.inflight[0]
	f.inflight = f.inflight[1:]
	leader, good := e.from, e.m
	rec := good.Record.Digest(f.cfg.Session)
	st := CommitStatement(f.cfg.Session, good.Round, leader, rec)
	if !bytes.Equal(good.Cosign, fakeSig(leader, st[:])) {
		t.Fatalf("commit by %s carries cosignature %x, want its signature over the statement", leader, good.Cosign)
	}
	other := fl.NodeID("n1")
	if leader == "n1" {
		other = "n2"
	}
	wrongRound := CommitStatement(f.cfg.Session, good.Round+1, leader, rec)
	otherSession := CommitStatement([]byte("other"), good.Round, leader, rec)
	before := f.snapshot(coordID)
	for _, tc := range []struct {
		name   string
		cosign []byte
		want   error
		say    string
	}{
		{"missing", nil, ErrMalformed, "without the leader's cosignature"},
		{"by another node", fakeSig(other, st[:]), ErrForged, "is not " + string(leader) + "'s"},
		{"for another round", fakeSig(leader, wrongRound[:]), ErrForged, "cosignature of round 1"},
		{"for another session", fakeSig(leader, otherSession[:]), ErrForged, "cosignature"},
		{"the record signature", good.Signature, ErrForged, "cosignature"},
	} {
		m := good
		m.Cosign = tc.cosign
		err := f.c.Step(leader, m)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.say) {
			t.Errorf("commit with a cosignature %s: %v, want %v saying %q", tc.name, err, tc.want, tc.say)
		}
		if f.snapshot(coordID) != before {
			t.Fatalf("commit with a cosignature %s changed the coordinator", tc.name)
		}
	}
	f.c.Advance()
	if err := f.c.Step(leader, good); err != nil {
		t.Fatalf("good commit: %v", err)
	}
	rd := f.c.Ready()
	if len(rd.Commits) != 1 || !bytes.Equal(rd.Commits[0].Cosign, good.Cosign) || rd.Commits[0].Leader != leader {
		t.Fatalf("Ready.Commits %+v, want the leader's cosignature", rd.Commits)
	}
	if st2 := CommitStatement(f.cfg.Session, rd.Commits[0].Record.Round, leader, rd.Commits[0].Record.Digest(f.cfg.Session)); st2 != st {
		t.Error("the commit's record gives another statement")
	}
}
