package audit

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

// seedLines writes a small log of every kind and returns its lines.
func seedLines(tb testing.TB, dir string) [][]byte {
	path := filepath.Join(dir, "seed.log")
	l, err := Open(path, coord.key, coord.name, Options{Now: clock(), Keys: keys})
	if err != nil {
		tb.Fatal(err)
	}
	commit := Data{Round: 1, Digest: d("m"), Leader: "node-1", Session: "fed-s"}
	c, _ := Cosign(node1.key, "node-1", Committed, commit)
	for _, e := range []struct {
		k Kind
		d Data
	}{
		{SessionStarted, Data{Session: "fed-s", Manifest: d("manifest"), Members: []fl.NodeID{"node-1", "node-2"}, Epoch: 1}},
		{NodeAdmitted, Data{Node: "node-1", Digest: d("c")}},
		{NodeRefused, Data{Reason: "certificate \"x\" expired <at> 12:00 & so on", Node: "node-2"}},
		{KeySetup, Data{Epoch: 1, Members: []fl.NodeID{"node-1", "node-2"}}},
		{PayloadRelayed, Data{Node: "node-1", Recipient: "node-2", Digest: d("p"), Size: 99, Round: 1}},
		{RoundStarted, Data{Round: 1, Leader: "node-1"}},
		{UpdateAccepted, Data{Round: 1, Node: "node-2", Digest: d("u")}},
		{NodeDropped, Data{Node: "node-2", Round: 1, Reason: "deadline"}},
		{Revealed, Data{Round: 1, Digest: d("a"), Node: "node-1"}},
		{EpsilonSpent, Data{MicroEpsilon: 1, Node: "node-1"}},
		{AttestationOK, Data{Node: "node-1", Format: "sev-snp", Digest: d("e")}},
		{AttestationFailed, Data{Node: "node-2", Reason: "measurement ünknown"}},
		{KeyRotated, Data{Epoch: 2, Reason: "node-2 left"}},
		{NodeReadmitted, Data{Node: "node-2", Round: 2, Reason: "valid evidence again"}},
		{Aborted, Data{Round: 2, Reason: "too few updates"}},
	} {
		if _, err := l.Append(e.k, e.d); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := l.AppendCosigned(Committed, commit, c); err != nil {
		tb.Fatal(err)
	}
	l.Close()
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n"))
}

// FuzzParseRecord feeds arbitrary lines to the record parser. It must never
// panic, and whatever it accepts must be canonical: re-encoding gives the
// same bytes, and the record hashes and folds without panicking.
func FuzzParseRecord(f *testing.F) {
	for _, line := range seedLines(f, f.TempDir()) {
		f.Add(line)
	}
	f.Add([]byte(`{}`))
	f.Add([]byte(`{"seq":1,"prev":"","time":"2026-01-01T00:00:00Z","actor":"a","kind":"aborted","data":{"reason":"x"},"sig":""}`))
	f.Add([]byte(`null`))
	f.Fuzz(func(t *testing.T, line []byte) {
		r, err := ParseRecord(line)
		if err != nil {
			return
		}
		again, err := r.encode()
		if err != nil || !bytes.Equal(again, line) {
			t.Fatalf("accepted a non-canonical line:\n%s\n%s", line, again)
		}
		if _, err := r.Hash(); err != nil {
			t.Fatalf("accepted record does not hash: %v", err)
		}
		var s State
		s.Apply(r)
	})
}

// FuzzVerify feeds arbitrary files to the verifier.
func FuzzVerify(f *testing.F) {
	ls := seedLines(f, f.TempDir())
	f.Add(append(bytes.Join(ls, []byte("\n")), '\n'))
	f.Add(bytes.Join(ls[:3], []byte("\n")))
	f.Add([]byte("\n\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, good, err := verifyStream(bytes.NewReader(data), "fuzz.log", keys, false)
		if good > int64(len(data)) || (err == nil && good != int64(len(data))) {
			t.Fatalf("good offset %d of %d bytes, err %v", good, len(data), err)
		}
		_ = st.Clone()
	})
}
