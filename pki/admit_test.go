package pki

import (
	"crypto/ed25519"
	"errors"
	"testing"

	"github.com/cloisterfl/cloister/federation"
)

func TestAdmit(t *testing.T) {
	f := newFixture(t)
	party := func(name string, fp string, i byte) federation.Principal {
		key := make(ed25519.PublicKey, ed25519.PublicKeySize)
		key[0] = i
		return federation.Principal{Name: name, Fingerprint: fp, AuditKey: key}
	}
	m := &federation.Manifest{Federation: "fed-test", Serial: 1, Threshold: 1, MinCohort: 1,
		Coordinator: party("coordinator", Fingerprint(f.coord.Cert), 0),
		Members:     []federation.Principal{party("node-1", Fingerprint(f.node.Cert), 1), party("node-2", "22", 2)}}
	if err := Admit(m, f.node.Cert); err != nil {
		t.Errorf("listed node: %v", err)
	}
	if err := Admit(m, f.coord.Cert); err != nil {
		t.Errorf("listed coordinator: %v", err)
	}
	// Same name, another certificate (reissued, or stolen CA key).
	again, _ := f.ca.IssueNode("node-1", t0, nil)
	if err := Admit(m, again.Cert); !errors.Is(err, ErrNotMember) {
		t.Errorf("unlisted certificate of node-1: %v, want ErrNotMember", err)
	}
	stranger, _ := f.ca.IssueNode("node-7", t0, nil)
	if err := Admit(m, stranger.Cert); !errors.Is(err, ErrNotMember) {
		t.Errorf("unlisted node-7: %v, want ErrNotMember", err)
	}
}
