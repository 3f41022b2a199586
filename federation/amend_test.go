package federation

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
)

func TestAmend(t *testing.T) {
	cur := testManifest(5, 3)
	sid, err := cur.SessionID()
	if err != nil {
		t.Fatal(err)
	}
	key := make(ed25519.PublicKey, ed25519.PublicKeySize)
	key[0] = 66
	six := Principal{Name: "node-6", Fingerprint: strings.Repeat("e", 64), AuditKey: key}
	next, err := Amend(cur, Amendment{Add: []Principal{six}, Remove: []string{"node-2"}, Threshold: 2, AddRounds: 10, Epsilon: 9,
		Renew: []Principal{{Name: "node-1", Fingerprint: strings.Repeat("d", 64)}}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := next.SessionID()
	if err != nil || string(got) != string(sid) || next.Serial != 2 {
		t.Fatalf("amended manifest: session %x (want %x), serial %d, %v", got, sid, next.Serial, err)
	}
	ch, err := CheckAmendment(cur, next)
	if err != nil {
		t.Fatal(err)
	}
	want := "serial 1→2; add node-6; remove node-2; renew node-1; t 3→2; rounds 5→15; ε 8→9"
	if ch.String() != want || !ch.Rekey() {
		t.Fatalf("change %q (rekey %v), want %q", ch, ch.Rekey(), want)
	}
	// A second amendment chains on the first, in the same session.
	third, err := Amend(next, Amendment{AddRounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	if ch, err := CheckAmendment(next, third); err != nil || ch.Rekey() || ch.String() != "serial 2→3; rounds 15→16" {
		t.Fatalf("rounds-only change %q, %v", ch, err)
	}
	if s, _ := third.SessionID(); string(s) != string(sid) {
		t.Fatal("the session changed at the second amendment")
	}
}

func TestAmendRefused(t *testing.T) {
	cur := testManifest(5, 3)
	ok, err := Amend(cur, Amendment{AddRounds: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		edit func(m *Manifest)
		want string
	}{
		{"other session", func(m *Manifest) { m.Session = strings.Repeat("00", 32) }, "of session"},
		{"not newer", func(m *Manifest) { m.Serial = 1 }, "not above the running serial 1"},
		{"mode", func(m *Manifest) { m.Mode = ModePlain }, "changes mode"},
		{"noise", func(m *Manifest) { m.DP.NoiseMultiplier = 0.5 }, "changes dp"},
		{"model", func(m *Manifest) { m.Model.Hidden = []int{8} }, "changes model"},
		{"compress", func(m *Manifest) { m.Mode, m.Compress = ModePlain, "q8" }, "changes mode, compress"},
		{"attestation", func(m *Manifest) { m.Attestation.AllowDebug = true }, "changes attestation"},
		{"fewer rounds", func(m *Manifest) { m.Training.Rounds = 2 }, "rounds can only be added"},
		{"min cohort under DP", func(m *Manifest) { m.MinCohort = 4 }, "privacy accounting"},
		{"audit key", func(m *Manifest) {
			k := make(ed25519.PublicKey, ed25519.PublicKeySize)
			k[0] = 99
			m.Members[0].AuditKey = k
		}, "audit key changed"},
		{"other federation", func(m *Manifest) { m.Federation = "other" }, "federation"},
	} {
		t.Run(c.name, func(t *testing.T) {
			m := *ok
			m.Members = append([]Principal(nil), ok.Members...)
			m.Attestation.Formats = append([]string(nil), ok.Attestation.Formats...)
			c.edit(&m)
			_, err := CheckAmendment(cur, &m)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error containing %q", err, c.want)
			}
			if c.name != "other federation" && !errors.Is(err, ErrAmendment) {
				t.Fatalf("%v does not wrap ErrAmendment", err)
			}
		})
	}
	if _, err := Amend(cur, Amendment{Remove: []string{"node-9"}}); !errors.Is(err, ErrAmendment) {
		t.Fatalf("removing a non-member: %v", err)
	}
	if _, err := Amend(cur, Amendment{Threshold: 6}); !errors.Is(err, ErrInvalidManifest) {
		t.Fatalf("threshold above the members: %v", err)
	}
	if err := (Policy{MinThreshold: 3}).Check(&Manifest{Threshold: 2, Serial: 4}); !errors.Is(err, ErrPolicy) {
		t.Fatalf("policy: %v", err)
	}
}
