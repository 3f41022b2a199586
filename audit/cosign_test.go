package audit

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
)

// TestCommitStatement: what a round's leader signs (round.CommitStatement)
// is the statement of the coordinator's committed record, so that its
// signature is a cosignature this package verifies.
func TestCommitStatement(t *testing.T) {
	for _, tc := range []struct {
		session []byte
		r       fl.Round
		leader  fl.NodeID
		digest  string
	}{
		{[]byte("s"), 1, "node-1", "a"},
		{make([]byte, 32), 7, "n", "b"},
		{[]byte{0xff, 0x00, 0x3c}, 1<<63 + 5, "site-0123456789-abcdefghijklmnopqrstuvwxyz-0123456789-abcdefghij", "c"},
	} {
		data := Data{Session: hex.EncodeToString(tc.session), Leader: tc.leader, Round: tc.r, Digest: d(tc.digest)}
		want, err := Statement(Committed, data)
		if err != nil {
			t.Fatal(err)
		}
		if got := round.CommitStatement(tc.session, tc.r, tc.leader, round.Digest(d(tc.digest))); Digest(got) != want {
			t.Errorf("round.CommitStatement(%x, %d, %s) = %x, audit.Statement %x", tc.session, tc.r, tc.leader, got, want)
		}
	}
	// A leader's signature of it is a cosignature a log accepts.
	session := []byte("federation session")
	st := round.CommitStatement(session, 3, "node-2", round.Digest(d("record")))
	data := Data{Round: 3, Digest: d("record"), Leader: "node-2", Session: hex.EncodeToString(session)}
	l := open(t, filepath.Join(t.TempDir(), "c.log"), coord)
	if _, err := l.AppendCosigned(Committed, data, Cosignature{Signer: "node-2", Sig: ed25519.Sign(node2.key, st[:])}); err != nil {
		t.Fatal(err)
	}
}

// coordinatorCommit writes a coordinator log whose last record commits
// round 2 with leader, carrying cosign (none if nil), as a coordinator
// that writes whatever it likes would, and returns its path.
func coordinatorCommit(t *testing.T, leader fl.NodeID, cosign *Cosignature) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "coordinator.log")
	l := open(t, path, coord)
	mustAppend(t, l, SessionStarted, Data{Session: "fed-test", Manifest: d("manifest")})
	mustAppend(t, l, RoundStarted, Data{Round: 2, Leader: "node-2"})
	st := l.State()
	l.Close()
	rec := Record{Seq: st.Seq + 1, Prev: st.Head, Time: t0, Kind: Committed,
		Data: Data{Round: 2, Digest: d("record-2"), Leader: leader, Session: "fed-test"}, Cosign: cosign}
	writeLines(t, path, append(lines(t, path), forge(t, coord, rec)))
	return path
}

func cosignOf(t *testing.T, key ed25519.PrivateKey, signer fl.NodeID, data Data) *Cosignature {
	t.Helper()
	st, err := Statement(Committed, data)
	if err != nil {
		t.Fatal(err)
	}
	return &Cosignature{Signer: signer, Sig: ed25519.Sign(key, st[:])}
}

// TestCoordinatorCommitsCosigned: verified with a Federation, a
// coordinator's committed record must carry its leader's cosignature; one
// without it, or with another node's, fails and the reason names the round
// and the nodes.
func TestCoordinatorCommitsCosigned(t *testing.T) {
	fed := Federation{Keys: keys, Coordinator: coord.name}
	commit := Data{Round: 2, Digest: d("record-2"), Leader: "node-2", Session: "fed-test"}
	if _, err := Verify(coordinatorSession(t), fed); err != nil {
		t.Fatalf("a cosigned coordinator log: %v", err)
	}
	if _, err := Verify(coordinatorCommit(t, "node-2", cosignOf(t, node2.key, "node-2", commit)), fed); err != nil {
		t.Fatalf("a cosigned commit: %v", err)
	}
	round1 := commit
	round1.Round = 1
	for _, tc := range []struct {
		name   string
		leader fl.NodeID
		cosign *Cosignature
		want   error
		say    []string
	}{
		{"no cosignature", "node-2", nil, ErrNotCosigned, []string{"round 2", "node-2", "without the cosignature"}},
		{"no leader", "", nil, ErrNotCosigned, []string{"round 2", "names no leader"}},
		{"by another node's key", "node-2", cosignOf(t, node3.key, "node-2", commit), ErrBadSignature,
			[]string{"round 2", "node-2", "does not verify"}},
		{"signed by another node", "node-2", cosignOf(t, node3.key, "node-3", commit), ErrMalformed,
			[]string{"round 2", "cosigned by node-3", "leader is node-2"}},
		{"of another round", "node-2", cosignOf(t, node2.key, "node-2", round1), ErrBadSignature,
			[]string{"round 2", "node-2", "does not verify"}},
	} {
		path := coordinatorCommit(t, tc.leader, tc.cosign)
		_, err := Verify(path, fed)
		var ve *VerifyError
		if !errors.Is(err, tc.want) || !errors.As(err, &ve) || ve.Line != 3 {
			t.Errorf("%s: %v, want %v at line 3", tc.name, err, tc.want)
			continue
		}
		for _, s := range tc.say {
			if !strings.Contains(ve.Reason, s) {
				t.Errorf("%s: reason %q does not say %q", tc.name, ve.Reason, s)
			}
		}
		t.Logf("%s: %v", tc.name, err)
		// VerifyDir names it too.
		if _, err := VerifyDir(filepath.Dir(path), fed); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s: VerifyDir: %v", tc.name, err)
		}
	}
	// Without a Federation, a missing cosignature is not required.
	if _, err := Verify(coordinatorCommit(t, "node-2", nil), keys); err != nil {
		t.Errorf("an uncosigned commit with bare keys: %v", err)
	}
	// A member's committed record needs no cosignature: it records a commit
	// whose leader-signed round record the member verified.
	path := filepath.Join(t.TempDir(), "node-1.log")
	l := open(t, path, node1)
	mustAppend(t, l, SessionStarted, Data{Session: "fed-test", Manifest: d("manifest")})
	mustAppend(t, l, Committed, commit)
	l.Close()
	if _, err := Verify(path, fed); err != nil {
		t.Errorf("a member's uncosigned commit: %v", err)
	}
}

// TestAggregatorNeverCosigns: mode tee's aggregator writes a log of its own
// with a key of the federation, but it is never a round's leader: a
// coordinator's commit naming it as the leader, with its cosignature, fails
// under a Federation that names it.
func TestAggregatorNeverCosigns(t *testing.T) {
	commit := Data{Round: 2, Digest: d("record-2"), Leader: "node-3", Session: "fed-test"}
	path := coordinatorCommit(t, "node-3", cosignOf(t, node3.key, "node-3", commit))
	if _, err := Verify(path, Federation{Keys: keys, Coordinator: coord.name}); err != nil {
		t.Fatalf("a commit cosigned by its leader node-3: %v", err)
	}
	_, err := Verify(path, Federation{Keys: keys, Coordinator: coord.name, Aggregator: "node-3"})
	if !errors.Is(err, ErrNotCosigned) || !strings.Contains(err.Error(), "cosigned by the aggregator node-3, which is never a leader") {
		t.Errorf("a commit cosigned by the aggregator: %v, want ErrNotCosigned naming it", err)
	}
}
