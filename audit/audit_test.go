package audit

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// party is a test identity with a deterministic key.
type party struct {
	name string
	key  ed25519.PrivateKey
}

func newParty(name string) party {
	seed := sha256.Sum256([]byte("audit test key " + name))
	return party{name: name, key: ed25519.NewKeyFromSeed(seed[:])}
}

func (p party) pub() ed25519.PublicKey { return p.key.Public().(ed25519.PublicKey) }

var (
	coord = newParty("coordinator")
	node1 = newParty("node-1")
	node2 = newParty("node-2")
	node3 = newParty("node-3")
	keys  = Keys{coord.name: coord.pub(), node1.name: node1.pub(), node2.name: node2.pub(), node3.name: node3.pub()}
)

// clock returns a clock that ticks one second per call.
func clock() func() time.Time {
	now := t0
	return func() time.Time { now = now.Add(time.Second); return now }
}

func d(s string) Digest { return sha256.Sum256([]byte(s)) }

func open(t *testing.T, path string, p party) *Log {
	t.Helper()
	l, err := Open(path, p.key, p.name, Options{Now: clock(), Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

func mustAppend(t *testing.T, l *Log, kind Kind, data Data) Record {
	t.Helper()
	r, err := l.Append(kind, data)
	if err != nil {
		t.Fatalf("Append(%s, %+v): %v", kind, data, err)
	}
	return r
}

// coordinatorSession writes a typical coordinator log of one round, 9
// records, and returns its path.
func coordinatorSession(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "coordinator.log")
	l := open(t, path, coord)
	mustAppend(t, l, SessionStarted, Data{Session: "fed-test", Manifest: d("manifest"), Members: []fl.NodeID{"node-1", "node-2", "node-3"}})
	mustAppend(t, l, NodeAdmitted, Data{Node: "node-1", Digest: d("cert-1")})
	mustAppend(t, l, NodeAdmitted, Data{Node: "node-2", Digest: d("cert-2")})
	mustAppend(t, l, RoundStarted, Data{Round: 1, Members: []fl.NodeID{"node-1", "node-2"}, Leader: "node-1"})
	mustAppend(t, l, UpdateAccepted, Data{Round: 1, Node: "node-1", Digest: d("u1"), Size: 4096})
	mustAppend(t, l, UpdateAccepted, Data{Round: 1, Node: "node-2", Digest: d("u2"), Size: 4096})
	mustAppend(t, l, PayloadRelayed, Data{Node: "node-1", Recipient: "node-2", Digest: d("sealed"), Round: 1})
	commit := Data{Round: 1, Digest: d("model-1"), Leader: "node-1", Session: "fed-test"}
	c, err := Cosign(node1.key, "node-1", Committed, commit)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendCosigned(Committed, commit, c); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, EpsilonSpent, Data{Round: 1, MicroEpsilon: 250_000})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestAppendVerify(t *testing.T) {
	path := coordinatorSession(t)
	s, err := Verify(path, keys)
	if err != nil {
		t.Fatal(err)
	}
	if s.Records != 9 || s.Rounds != 1 || s.Kinds[UpdateAccepted] != 2 || s.Kinds[Committed] != 1 {
		t.Errorf("summary %+v", s)
	}
	st := s.State
	if st.Actor != "coordinator" || st.Session != "fed-test" || st.Manifest != d("manifest") || st.MicroEpsilon != 250_000 {
		t.Errorf("state %+v", st)
	}
	if c := st.Commits[1]; c.Model != d("model-1") || c.Leader != "node-1" || c.Cosigner != "node-1" || c.Seq != 8 {
		t.Errorf("commit %+v", c)
	}
	if s.Last != st.Head || s.Last.IsZero() {
		t.Error("summary head")
	}
	// The file is JSON Lines, one record per line, mode 0600.
	b, _ := os.ReadFile(path)
	if n := bytes.Count(b, []byte("\n")); n != 9 {
		t.Errorf("%d lines", n)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Errorf("mode %04o", st.Mode().Perm())
	}
	// Records are replayable: parsing the lines and folding them gives the
	// same state.
	var recs []Record
	for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
		r, err := ParseRecord(line)
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	again, err := Replay(recs)
	if err != nil || again.Head != s.Last || len(again.Commits) != 1 {
		t.Errorf("replay: %v, head %v", err, again.Head)
	}
}

// lines reads a log as lines without their newlines.
func lines(t *testing.T, path string) [][]byte {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

func writeLines(t *testing.T, path string, ls [][]byte) {
	var b []byte
	for _, l := range ls {
		b = append(append(b, l...), '\n')
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// edit re-encodes line i after changing its record with f.
func edit(t *testing.T, ls [][]byte, i int, f func(r *Record)) {
	r, err := ParseRecord(ls[i])
	if err != nil {
		t.Fatal(err)
	}
	f(&r)
	b, err := r.encode()
	if err != nil {
		t.Fatal(err)
	}
	ls[i] = b
}

// forge returns a correctly signed record by p.
func forge(t *testing.T, p party, r Record) []byte {
	t.Helper()
	r.Actor = p.name
	r.Sig = nil
	h, err := r.Hash()
	if err != nil {
		t.Fatal(err)
	}
	r.Sig = ed25519.Sign(p.key, h[:])
	b, err := r.encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestTamperDetected(t *testing.T) {
	type tc struct {
		name     string
		mutate   func(t *testing.T, ls [][]byte) [][]byte
		line     int
		seq      uint64
		sentinel error
	}
	cases := []tc{
		{"one byte of data", func(t *testing.T, ls [][]byte) [][]byte {
			ls[4] = bytes.Replace(ls[4], []byte(`"size":4096`), []byte(`"size":4097`), 1)
			return ls
		}, 5, 5, ErrBadSignature},
		{"digest hex digit", func(t *testing.T, ls [][]byte) [][]byte {
			i := bytes.Index(ls[5], []byte(`"digest":"`)) + len(`"digest":"`)
			if ls[5][i] == '0' {
				ls[5][i] = '1'
			} else {
				ls[5][i] = '0'
			}
			return ls
		}, 6, 6, ErrBadSignature},
		{"signature", func(t *testing.T, ls [][]byte) [][]byte {
			edit(t, ls, 2, func(r *Record) { r.Sig[7] ^= 0x20 })
			return ls
		}, 3, 3, ErrBadSignature},
		{"prev hash", func(t *testing.T, ls [][]byte) [][]byte {
			edit(t, ls, 3, func(r *Record) { r.Prev[0] ^= 1 })
			return ls
		}, 4, 4, ErrBrokenChain},
		{"time", func(t *testing.T, ls [][]byte) [][]byte {
			edit(t, ls, 1, func(r *Record) { r.Time = r.Time.Add(-time.Hour) })
			return ls
		}, 2, 2, ErrBadSignature},
		{"actor renamed", func(t *testing.T, ls [][]byte) [][]byte {
			edit(t, ls, 6, func(r *Record) { r.Actor = "node-3" })
			return ls
		}, 7, 7, ErrBrokenChain},
		{"cosignature stripped", func(t *testing.T, ls [][]byte) [][]byte {
			edit(t, ls, 7, func(r *Record) { r.Cosign = nil })
			return ls
		}, 8, 8, ErrBadSignature},
		{"cosignature forged", func(t *testing.T, ls [][]byte) [][]byte {
			edit(t, ls, 7, func(r *Record) { r.Cosign.Sig[0] ^= 1 })
			return ls
		}, 8, 8, ErrBadSignature},
		{"removed record", func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:2:2], ls[3:]...)
		}, 3, 4, ErrBrokenChain},
		{"swapped records", func(t *testing.T, ls [][]byte) [][]byte {
			ls[4], ls[5] = ls[5], ls[4]
			return ls
		}, 5, 6, ErrBrokenChain},
		{"duplicated record", func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:3:3], append([][]byte{ls[2]}, ls[3:]...)...)
		}, 4, 3, ErrBrokenChain},
		{"inserted record, forged key", func(t *testing.T, ls [][]byte) [][]byte {
			prev, _ := ParseRecord(ls[1])
			h, _ := prev.Hash()
			mallory := newParty("coordinator")
			mallory.key = ed25519.NewKeyFromSeed(make([]byte, 32))
			fake := forge(t, mallory, Record{Seq: 3, Prev: h, Time: prev.Time, Kind: NodeAdmitted, Data: Data{Node: "node-9"}})
			return append(ls[:2:2], append([][]byte{fake}, ls[2:]...)...)
		}, 3, 3, ErrBadSignature},
		{"inserted record, other writer", func(t *testing.T, ls [][]byte) [][]byte {
			prev, _ := ParseRecord(ls[1])
			h, _ := prev.Hash()
			fake := forge(t, node3, Record{Seq: 3, Prev: h, Time: prev.Time, Kind: NodeAdmitted, Data: Data{Node: "node-3"}})
			return append(ls[:2:2], append([][]byte{fake}, ls[2:]...)...)
		}, 3, 3, ErrBrokenChain},
		{"whitespace", func(t *testing.T, ls [][]byte) [][]byte {
			ls[0] = bytes.Replace(ls[0], []byte(`"seq":1,`), []byte(`"seq": 1,`), 1)
			return ls
		}, 1, 0, ErrMalformed},
		{"unknown field", func(t *testing.T, ls [][]byte) [][]byte {
			ls[0] = bytes.Replace(ls[0], []byte(`{"seq":1,`), []byte(`{"seq":1,"note":"x",`), 1)
			return ls
		}, 1, 0, ErrMalformed},
		{"blank line", func(t *testing.T, ls [][]byte) [][]byte {
			return append(ls[:4:4], append([][]byte{{}}, ls[4:]...)...)
		}, 5, 0, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := coordinatorSession(t)
			writeLines(t, path, c.mutate(t, lines(t, path)))
			s, err := Verify(path, keys)
			var ve *VerifyError
			if !errors.As(err, &ve) {
				t.Fatalf("Verify = %v, want a *VerifyError", err)
			}
			if ve.Line != c.line || ve.Seq != c.seq || !errors.Is(err, c.sentinel) {
				t.Errorf("got line %d seq %d (%v), want line %d seq %d wrapping %v", ve.Line, ve.Seq, err, c.line, c.seq, c.sentinel)
			}
			if s.Records != c.line-1 {
				t.Errorf("summary covers %d records, want the %d before the bad one", s.Records, c.line-1)
			}
			if !strings.Contains(err.Error(), "line ") || ve.Reason == "" {
				t.Errorf("error %q does not name the line", err)
			}
			// Open refuses to append to it.
			if _, err := Open(path, coord.key, coord.name, Options{Keys: keys}); err == nil {
				t.Error("Open appended to a tampered log")
			}
		})
	}
}

func TestDuplicateCommit(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node-1.log")
	l := open(t, path, node1)
	r1 := mustAppend(t, l, Committed, Data{Round: 1, Digest: d("m1")})
	mustAppend(t, l, Committed, Data{Round: 2, Digest: d("m2")})
	if _, err := l.Append(Committed, Data{Round: 1, Digest: d("m1b")}); !errors.Is(err, ErrDuplicateCommit) {
		t.Fatalf("second commit of round 1: %v, want ErrDuplicateCommit", err)
	}
	if st := l.State(); st.Seq != 2 {
		t.Errorf("refused append changed the state: seq %d", st.Seq)
	}
	l.Close()

	// A log that commits round 1 twice with valid signatures (written by a
	// buggy or malicious writer, not by Append) fails verification.
	ls := lines(t, path)
	last, _ := ParseRecord(ls[1])
	h, _ := last.Hash()
	ls = append(ls, forge(t, node1, Record{Seq: 3, Prev: h, Time: r1.Time, Kind: Committed, Data: Data{Round: 1, Digest: d("m1b")}}))
	writeLines(t, path, ls)
	_, err := Verify(path, keys)
	var ve *VerifyError
	if !errors.As(err, &ve) || ve.Line != 3 || ve.Seq != 3 || !errors.Is(err, ErrDuplicateCommit) {
		t.Errorf("Verify = %v, want line 3 seq 3 ErrDuplicateCommit", err)
	}
}

func TestRevealLedger(t *testing.T) {
	dir := t.TempDir()
	for _, p := range []party{node1, node2, node3} {
		l := open(t, filepath.Join(dir, p.name+".log"), p)
		var ledger protect.Ledger = l
		for round := fl.Round(1); round <= 3; round++ {
			if err := ledger.Record(round, d("agg"+string(rune('0'+round)))); err != nil {
				t.Fatal(err)
			}
		}
		err := ledger.Record(2, d("another aggregate"))
		if !errors.Is(err, protect.ErrRevealed) || !errors.Is(err, ErrDuplicateReveal) {
			t.Errorf("%s: second reveal of round 2: %v, want ErrRevealed", p.name, err)
		}
		l.Close()
	}
	results, err := VerifyDir(dir, keys)
	if err != nil || len(results) != 3 {
		t.Fatalf("VerifyDir: %d results, %v", len(results), err)
	}
	for _, r := range results {
		st := r.Summary.State
		for round := fl.Round(1); round <= 3; round++ {
			reveals := st.Reveals[round]
			if len(reveals) != 1 || reveals[fl.NodeID(st.Actor)] != d("agg"+string(rune('0'+round))) {
				t.Errorf("%s: round %d reveals %v, want one by %s", r.Path, round, reveals, st.Actor)
			}
		}
	}
	// The coordinator may log other nodes' reveals of the same round.
	l := open(t, filepath.Join(dir, "coordinator.log"), coord)
	mustAppend(t, l, Revealed, Data{Round: 1, Digest: d("agg1"), Node: "node-1"})
	mustAppend(t, l, Revealed, Data{Round: 1, Digest: d("agg1"), Node: "node-2"})
	if _, err := l.Append(Revealed, Data{Round: 1, Digest: d("agg1"), Node: "node-2"}); !errors.Is(err, ErrDuplicateReveal) {
		t.Errorf("node-2 twice in round 1: %v", err)
	}
}

func TestResume(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node-2.log")
	l := open(t, path, node2)
	mustAppend(t, l, AttestationOK, Data{Node: "node-1", Format: "sim"})
	mustAppend(t, l, Committed, Data{Round: 1, Digest: d("m1")})
	if _, err := Open(path, node2.key, node2.name, Options{}); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open of an open log: %v, want ErrLocked", err)
	}
	head := l.State().Head
	l.Close()
	if _, err := l.Append(Aborted, Data{Reason: "late"}); !errors.Is(err, ErrClosed) {
		t.Errorf("append after close: %v", err)
	}

	l = open(t, path, node2)
	if st := l.State(); st.Seq != 2 || st.Head != head || len(st.Commits) != 1 {
		t.Fatalf("resumed state %+v", st)
	}
	if _, err := l.Append(Committed, Data{Round: 1, Digest: d("m1")}); !errors.Is(err, ErrDuplicateCommit) {
		t.Errorf("resumed log forgot round 1: %v", err)
	}
	r := mustAppend(t, l, Committed, Data{Round: 2, Digest: d("m2")})
	if r.Seq != 3 || r.Prev != head {
		t.Errorf("appended seq %d prev %v", r.Seq, r.Prev)
	}
	l.Close()
	if s, err := Verify(path, keys); err != nil || s.Records != 3 || s.Rounds != 2 {
		t.Errorf("Verify after resume: %+v, %v", s, err)
	}
	// Another actor, or the right name with another key, cannot take it over.
	if _, err := Open(path, node3.key, node3.name, Options{}); err == nil {
		t.Error("node-3 opened node-2's log")
	}
	if _, err := Open(path, node3.key, node2.name, Options{}); !errors.Is(err, ErrBadSignature) {
		t.Errorf("node-2's log with node-3's key: %v, want ErrBadSignature", err)
	}
}

func TestTornLastLine(t *testing.T) {
	path := coordinatorSession(t)
	full, _ := os.ReadFile(path)
	ls := lines(t, path)
	torn := append(append([]byte(nil), full...), ls[8][:40]...) // a half-written 10th record
	os.WriteFile(path, torn, 0o600)

	s, err := Verify(path, keys)
	var ve *VerifyError
	if !errors.As(err, &ve) || !errors.Is(err, ErrTorn) || ve.Line != 10 {
		t.Fatalf("Verify = %v, want ErrTorn on line 10", err)
	}
	if errors.Is(err, ErrBadSignature) || errors.Is(err, ErrBrokenChain) {
		t.Error("torn line reported as tampering")
	}
	if s.Records != 9 {
		t.Errorf("summary of %d records, want 9", s.Records)
	}
	// A complete record without its newline is torn too.
	os.WriteFile(path, bytes.TrimSuffix(full, []byte("\n")), 0o600)
	if _, err := Verify(path, keys); !errors.Is(err, ErrTorn) {
		t.Errorf("missing final newline: %v, want ErrTorn", err)
	}

	os.WriteFile(path, torn, 0o600)
	if _, err := Open(path, coord.key, coord.name, Options{Keys: keys}); !errors.Is(err, ErrTorn) {
		t.Errorf("Open of a torn log: %v, want ErrTorn", err)
	}
	l, err := Open(path, coord.key, coord.name, Options{Keys: keys, RepairTorn: true, Now: clock()})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, l, Aborted, Data{Reason: "coordinator restarted"})
	l.Close()
	if s, err := Verify(path, keys); err != nil || s.Records != 10 {
		t.Errorf("after repair: %d records, %v", s.Records, err)
	}
}

func TestCosignature(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	l := open(t, path, coord)
	commit := Data{Round: 4, Digest: d("m4"), Leader: "node-2"}
	byWrongNode, _ := Cosign(node3.key, "node-2", Committed, commit) // node-3's key, node-2's name
	if _, err := l.AppendCosigned(Committed, commit, byWrongNode); !errors.Is(err, ErrBadSignature) {
		t.Errorf("cosignature with the wrong key: %v, want ErrBadSignature", err)
	}
	if _, err := Cosign(node3.key, "node-3", Committed, commit); !errors.Is(err, ErrMalformed) {
		t.Errorf("cosignature by a non-leader: %v, want ErrMalformed", err)
	}
	if _, err := Cosign(node2.key, "node-2", UpdateAccepted, Data{Round: 1, Node: "node-2", Digest: d("u")}); !errors.Is(err, ErrMalformed) {
		t.Errorf("cosigned update-accepted: %v, want ErrMalformed", err)
	}
	good, err := Cosign(node2.key, "node-2", Committed, commit)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.AppendCosigned(Committed, commit, good); err != nil {
		t.Fatal(err)
	}
	l.Close()
	if _, err := Verify(path, keys); err != nil {
		t.Error(err)
	}
	// Without the cosigner's key the log cannot be fully verified...
	if _, err := Verify(path, Keys{coord.name: coord.pub()}); !errors.Is(err, ErrUnknownSigner) {
		t.Errorf("Verify without node-2's key: %v, want ErrUnknownSigner", err)
	}
	// ... but its writer can still resume it.
	l2, err := Open(path, coord.key, coord.name, Options{})
	if err != nil {
		t.Errorf("resume without cosigner keys: %v", err)
	} else {
		l2.Close()
	}
}

func TestDataValidation(t *testing.T) {
	bad := []struct {
		kind Kind
		data Data
	}{
		{"gossip", Data{Reason: "x"}},
		{UpdateAccepted, Data{Round: 1, Node: "node-1"}},                                 // no digest
		{UpdateAccepted, Data{Round: 1, Node: "node-1", Digest: d("u"), Reason: "blob"}}, // extra field
		{Committed, Data{Digest: d("m")}},                                                // no round
		{SessionStarted, Data{Session: "fed/1", Manifest: d("m")}},
		{RoundStarted, Data{Round: 1, Members: []fl.NodeID{"node-1", "node-1"}}},
		{RoundStarted, Data{Round: 1, Members: []fl.NodeID{"Node 1"}}},
		{NodeRefused, Data{Reason: "bad\ncert"}},
		{NodeRefused, Data{Reason: strings.Repeat("x", MaxReason+1)}},
		{EpsilonSpent, Data{MicroEpsilon: -5}},
		{PayloadRelayed, Data{Node: "node-1", Recipient: "node-2", Digest: d("p"), Size: -1}},
		{AttestationOK, Data{Node: "node-1", Format: "SEV SNP"}},
		{NodeReadmitted, Data{Round: 3}},                       // no node
		{NodeReadmitted, Data{Node: "node-2", Digest: d("e")}}, // extra field
	}
	path := filepath.Join(t.TempDir(), "v.log")
	l := open(t, path, coord)
	for _, c := range bad {
		if _, err := l.Append(c.kind, c.data); !errors.Is(err, ErrMalformed) {
			t.Errorf("Append(%s, %+v) = %v, want ErrMalformed", c.kind, c.data, err)
		}
	}
	if st := l.State(); st.Seq != 0 {
		t.Errorf("refused appends wrote %d records", st.Seq)
	}
	mustAppend(t, l, SessionStarted, Data{Session: "fed-1", Manifest: d("m")})
	if _, err := l.Append(SessionStarted, Data{Session: "fed-2", Manifest: d("m2")}); !errors.Is(err, ErrInvariant) {
		t.Errorf("second session start: %v, want ErrInvariant", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "x.log"), coord.key, "Coordinator", Options{}); err == nil {
		t.Error("bad actor name accepted")
	}
}

func TestVerifyDir(t *testing.T) {
	dir := t.TempDir()
	if _, err := VerifyDir(dir, keys); !errors.Is(err, ErrNoLogs) {
		t.Errorf("empty dir: %v, want ErrNoLogs", err)
	}
	write := func(name string, p party, model Digest) {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(name)), 0o700)
		l := open(t, filepath.Join(dir, name), p)
		mustAppend(t, l, SessionStarted, Data{Session: "fed-x", Manifest: d("m")})
		mustAppend(t, l, Committed, Data{Round: 1, Digest: d("model-1")})
		mustAppend(t, l, Committed, Data{Round: 2, Digest: model})
		l.Close()
	}
	write("coordinator/audit.log", coord, d("model-2"))
	write("node-1/audit.jsonl", node1, d("model-2"))
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("not a log"), 0o600)
	results, err := VerifyDir(dir, keys)
	if err != nil || len(results) != 2 {
		t.Fatalf("VerifyDir: %d results, %v", len(results), err)
	}
	write("node-2/audit.log", node2, d("a different model"))
	results, err = VerifyDir(dir, keys)
	if !errors.Is(err, ErrConflict) || len(results) != 3 {
		t.Errorf("conflicting commit: %d results, %v; want ErrConflict", len(results), err)
	}
	// A bad file is reported, and the others still verified.
	os.WriteFile(filepath.Join(dir, "node-2/audit.log"), []byte("{}\n"), 0o600)
	results, err = VerifyDir(dir, keys)
	var ve *VerifyError
	if !errors.As(err, &ve) || !strings.HasSuffix(ve.Path, "node-2/audit.log") {
		t.Errorf("VerifyDir error %v, want a VerifyError for node-2/audit.log", err)
	}
	failed := 0
	for _, r := range results {
		if r.Err != nil {
			failed++
		}
	}
	if len(results) != 3 || failed != 1 {
		t.Errorf("%d results, %d failed", len(results), failed)
	}
}

func TestDigestText(t *testing.T) {
	var x Digest
	for _, s := range []string{"", "00", strings.Repeat("A", 64), strings.Repeat("g", 64), strings.Repeat("0", 65)} {
		if err := x.UnmarshalText([]byte(s)); err == nil {
			t.Errorf("UnmarshalText(%q) accepted", s)
		}
	}
	want := d("x")
	b, _ := want.MarshalText()
	if err := x.UnmarshalText(b); err != nil || x != want || x.String() != string(b) {
		t.Errorf("round trip: %v %v", x, err)
	}
}

func TestLongLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "long.log")
	l := open(t, path, coord)
	var members []fl.NodeID
	for i := range 2000 {
		members = append(members, fl.NodeID(strings.Repeat("n", 55)+"-"+strconv.Itoa(i)))
	}
	mustAppend(t, l, RoundStarted, Data{Round: 1, Members: members})
	mustAppend(t, l, RoundStarted, Data{Round: 2, Members: members[:3]})
	l.Close()
	if s, err := Verify(path, keys); err != nil || s.Records != 2 {
		t.Fatalf("log with a %d-byte line: %v", len(lines(t, path)[0]), err)
	}
	huge := append(bytes.Repeat([]byte("x"), 2*MaxLine), '\n')
	os.WriteFile(path, huge, 0o600)
	if _, err := Verify(path, keys); !errors.Is(err, ErrMalformed) {
		t.Errorf("%d-byte line: %v, want ErrMalformed", len(huge), err)
	}
}

func TestReason(t *testing.T) {
	long := strings.Repeat("é", MaxReason) // 2 bytes a rune
	for _, tc := range []struct{ in, want string }{
		{"", "unspecified"},
		{"ok", "ok"},
		{"a\nb\x7fc", "a b c"},
		{"bad \xff utf8", "bad   utf8"},
		{long, strings.Repeat("é", MaxReason/2)},
	} {
		got := Reason(tc.in)
		if got != tc.want {
			t.Errorf("Reason(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if err := ValidateData(NodeRefused, Data{Reason: got}); err != nil {
			t.Errorf("Reason(%q) = %q is not a valid reason: %v", tc.in, got, err)
		}
	}
}
