package pki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeCRL(t *testing.T, path string, l *RevocationList) {
	t.Helper()
	if err := os.WriteFile(path, l.DER, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestCRL: a CRL revokes what it lists, by serial and by fingerprint, and
// a daemon's Revocations take a newer CRL and refuse a forged or stale one,
// naming the file and keeping the list in force.
func TestCRL(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	empty, err := f.ca.Revoke(nil, nil, t0)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SaveCRL(dir, empty); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, CRLFile)
	rv, err := OpenRevocations(path, f.ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	if rv.Revoked(f.node.Cert) || rv.List().Number.Int64() != 1 {
		t.Fatalf("empty CRL: revoked %v, number %v", rv.Revoked(f.node.Cert), rv.List().Number)
	}
	l2, err := f.ca.Revoke(empty, []*x509.Certificate{f.node.Cert}, t0.Add(1))
	if err != nil {
		t.Fatal(err)
	}
	if !l2.Revoked(f.node.Cert) || !l2.RevokedFingerprint(Fingerprint(f.node.Cert)) || l2.Revoked(f.coord.Cert) || l2.Number.Int64() != 2 {
		t.Fatalf("CRL 2: %v", l2)
	}
	if l, err := rv.Reload(); l != nil || err != nil {
		t.Fatalf("unchanged file: %v, %v", l, err)
	}
	writeCRL(t, path, l2)
	if l, err := rv.Reload(); err != nil || l == nil || !rv.Revoked(f.node.Cert) {
		t.Fatalf("newer CRL: %v, %v; revoked %v", l, err, rv.Revoked(f.node.Cert))
	}

	// Forged: the same contents signed by another CA.
	other, _ := NewCA("Test federation CA", t0, nil)
	forged, err := other.Revoke(l2, nil, t0.Add(2))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCRL(forged.DER, f.ca.Certificate()); !errors.Is(err, ErrCRL) {
		t.Errorf("forged CRL parsed: %v", err)
	}
	// Stale: the empty CRL again (number 1 < 2).
	for _, c := range []struct {
		name string
		der  []byte
		want error
	}{{"forged", forged.DER, ErrCRL}, {"stale", empty.DER, ErrStaleCRL}, {"garbage", []byte("not a CRL"), ErrCRL}} {
		os.WriteFile(path, c.der, 0o644)
		l, err := rv.Reload()
		if l != nil || !errors.Is(err, c.want) || !strings.Contains(err.Error(), path) {
			t.Errorf("%s CRL: %v, %v; want an error wrapping %v naming %s", c.name, l, err, c.want, path)
		}
		if rv.List().Number.Int64() != 2 || !rv.Revoked(f.node.Cert) {
			t.Errorf("%s CRL changed the list in force: %v", c.name, rv.List())
		}
		if l, err := rv.Reload(); l != nil || err != nil {
			t.Errorf("%s CRL reported twice: %v", c.name, err)
		}
	}
	// The CA refuses to save a stale CRL over its newer one.
	writeCRL(t, path, empty)
	if err := f.ca.SaveCRL(dir, l2); err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SaveCRL(dir, empty); !errors.Is(err, ErrStaleCRL) {
		t.Errorf("SaveCRL stale: %v", err)
	}
	// Same number, other contents.
	again, _ := f.ca.Revoke(empty, []*x509.Certificate{f.coord.Cert}, t0.Add(3))
	if err := again.Supersedes(l2); !errors.Is(err, ErrStaleCRL) {
		t.Errorf("same number, other contents: %v", err)
	}
	// Revoking again keeps the earlier entries, once.
	l3, err := f.ca.Revoke(l2, []*x509.Certificate{f.node.Cert, f.coord.Cert}, t0.Add(4))
	if err != nil || len(l3.Entries) != 2 || l3.Number.Int64() != 3 {
		t.Fatalf("CRL 3: %v, %v", l3, err)
	}
	// A certificate of another CA cannot be revoked.
	stranger, _ := other.IssueNode("node-1", t0, nil)
	if _, err := f.ca.Revoke(l3, []*x509.Certificate{stranger.Cert}, t0); !errors.Is(err, ErrUntrusted) {
		t.Errorf("revoking another CA's certificate: %v", err)
	}
}

// TestCRLInHandshakes: the Revocations in force are consulted on every
// handshake, at both ends and on a resumed session, so a CRL loaded while
// the server runs refuses the next handshake of a revoked node, and a node
// refuses a revoked coordinator.
func TestCRLInHandshakes(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	l1, _ := f.ca.Revoke(nil, nil, t0)
	path := filepath.Join(dir, CRLFile)
	writeCRL(t, path, l1)
	rv, err := OpenRevocations(path, f.ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	opts := Options{Now: at(t0), Revoked: rv.Revoked}
	server := mustServer(t, f.ca.Certificate(), f.coord, opts)
	server.SessionTicketsDisabled = false // to show that even a resumed session is checked
	client := mustClient(t, f.ca.Certificate(), f.node, opts)
	client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	ln := listen(t)
	for i := range 2 {
		if r := tcpHandshake(t, ln, server, client); r.serverErr != nil || r.clientErr != nil {
			t.Fatalf("handshake %d: server %v, client %v", i, r.serverErr, r.clientErr)
		} else if i == 1 && !r.server.DidResume {
			t.Fatal("the second handshake did not resume")
		}
	}
	l2, err := f.ca.Revoke(l1, []*x509.Certificate{f.node.Cert}, t0)
	if err != nil {
		t.Fatal(err)
	}
	writeCRL(t, path, l2)
	if _, err := rv.Reload(); err != nil {
		t.Fatal(err)
	}
	r := tcpHandshake(t, ln, server, client)
	if !errors.Is(r.serverErr, ErrRevoked) || !strings.Contains(r.serverErr.Error(), "node-1") {
		t.Errorf("revoked node, resumed handshake: server error %v, want ErrRevoked naming node-1", r.serverErr)
	}
	// The coordinator revoked: the node refuses it.
	l3, err := f.ca.Revoke(l2, []*x509.Certificate{f.coord.Cert}, t0)
	if err != nil {
		t.Fatal(err)
	}
	writeCRL(t, path, l3)
	if _, err := rv.Reload(); err != nil {
		t.Fatal(err)
	}
	other, _ := f.ca.IssueNode("node-2", t0, nil)
	r = pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, Options{Now: at(t0)}), mustClient(t, f.ca.Certificate(), other, opts))
	if !errors.Is(r.clientErr, ErrRevoked) || !strings.Contains(r.clientErr.Error(), "coordinator") {
		t.Errorf("revoked coordinator: client error %v, want ErrRevoked naming it", r.clientErr)
	}
}

// TestCACRL: CA.CRL makes and saves an empty CRL once, then returns the one
// in force (a revocation's, once there is one), unchanged.
func TestCACRL(t *testing.T) {
	f := newFixture(t)
	dir := t.TempDir()
	l0, err := f.ca.CRL(dir, t0)
	if err != nil || l0.Number.Int64() != 1 || len(l0.Entries) != 0 {
		t.Fatalf("first CRL: %v, %v", l0, err)
	}
	again, err := f.ca.CRL(dir, t0.Add(time.Hour))
	if err != nil || !bytes.Equal(again.DER, l0.DER) {
		t.Fatalf("second call: %v, %v; want the same CRL", again, err)
	}
	l1, err := f.ca.Revoke(l0, []*x509.Certificate{f.node.Cert}, t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.ca.SaveCRL(dir, l1); err != nil {
		t.Fatal(err)
	}
	if cur, err := f.ca.CRL(dir, t0); err != nil || !cur.Revoked(f.node.Cert) || cur.Number.Int64() != 2 {
		t.Fatalf("after a revocation: %v, %v", cur, err)
	}
}
