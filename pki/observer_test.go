package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// observerClient is a plain TLS client presenting cred (nil: no certificate).
func observerClient(cred *Credential) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	if cred != nil {
		c.Certificates = []tls.Certificate{cred.TLSCertificate()}
	}
	return c
}

func TestObserverServerConfig(t *testing.T) {
	f := newFixture(t)
	opts := Options{Now: at(t0.Add(time.Hour))}
	obs, err := f.ca.Issue(Request{Role: RoleObserver, Name: "alice"}, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	adm, err := f.ca.Issue(Request{Role: RoleAdmin, Name: "root"}, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	other, err := NewCA("Other CA", t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, err := other.Issue(Request{Role: RoleObserver, Name: "alice"}, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	server, err := ObserverServerConfig(f.ca.Certificate(), f.coord, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cred *Credential
		want Identity // zero: refused
		err  error
	}{
		{"no certificate", nil, Identity{}, nil},
		{"observer", obs, Identity{RoleObserver, "alice"}, nil},
		{"admin", adm, Identity{RoleAdmin, "root"}, nil},
		{"member node", f.node, Identity{}, ErrWrongRole},
		{"coordinator", f.coord, Identity{}, ErrWrongRole},
		{"observer of another CA", foreign, Identity{}, ErrUntrusted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := tcpHandshake(t, listen(t), server, observerClient(tc.cred))
			if tc.err != nil {
				if !errors.Is(r.serverErr, tc.err) || r.clientErr == nil {
					t.Fatalf("server %v, client %v; want the server to refuse with %v", r.serverErr, r.clientErr, tc.err)
				}
				return
			}
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("handshake: server %v, client %v", r.serverErr, r.clientErr)
			}
			if tc.cred == nil {
				if len(r.server.PeerCertificates) != 0 {
					t.Fatal("peer certificates without a client certificate")
				}
				return
			}
			id, err := VerifyObserver(f.ca.Certificate(), r.server.PeerCertificates[0], opts)
			if err != nil || id != tc.want {
				t.Fatalf("VerifyObserver = %v, %v; want %v", id, err, tc.want)
			}
		})
	}
	// Members' configurations refuse observers: an observer is never a node.
	r := tcpHandshake(t, listen(t), mustServer(t, f.ca.Certificate(), f.coord, opts), observerClient(obs))
	if !errors.Is(r.serverErr, ErrWrongRole) {
		t.Fatalf("member server took an observer certificate: %v", r.serverErr)
	}
	// An observer certificate is client-auth only.
	if _, err := VerifyPeer(f.ca.Certificate(), obs.Cert, x509.ExtKeyUsageServerAuth, RoleObserver, opts); !errors.Is(err, ErrUntrusted) {
		t.Fatalf("observer certificate verified for server auth: %v", err)
	}
	// Expired observers are refused.
	if _, err := VerifyObserver(f.ca.Certificate(), obs.Cert, Options{Now: at(t0.Add(2 * DefaultValidity))}); !errors.Is(err, ErrExpired) {
		t.Fatalf("expired observer: %v", err)
	}
}

func TestIssueObserverRules(t *testing.T) {
	f := newFixture(t)
	if _, err := f.ca.Issue(Request{Role: RoleObserver, Name: "alice", Hosts: []string{"localhost"}}, t0, nil); err == nil {
		t.Error("observer certificate with hosts issued")
	}
	if _, err := f.ca.Issue(Request{Role: RoleAdmin, Name: "Bad Name"}, t0, nil); err == nil {
		t.Error("admin certificate with a bad name issued")
	}
	for _, r := range []Role{RoleObserver, RoleAdmin} {
		b, err := r.MarshalText()
		if err != nil {
			t.Fatal(err)
		}
		var back Role
		if err := back.UnmarshalText(b); err != nil || back != r {
			t.Errorf("role %s round trip: %v, %v", r, back, err)
		}
	}
}

func TestWriteCredential(t *testing.T) {
	f := newFixture(t)
	obs, err := f.ca.Issue(Request{Role: RoleObserver, Name: "alice"}, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "alice")
	if err := WriteCredential(dir, f.ca.Certificate(), obs); err != nil {
		t.Fatal(err)
	}
	if err := WriteCredential(dir, f.ca.Certificate(), obs); !errors.Is(err, os.ErrExist) {
		t.Fatalf("second write: %v, want ErrExist", err)
	}
	st, err := os.Stat(filepath.Join(dir, KeyFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v, %v", st, err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, CertFile), filepath.Join(dir, KeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := VerifyObserver(f.ca.Certificate(), pair.Leaf, Options{Now: at(t0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := readCertFile(filepath.Join(dir, CACertFile)); err != nil {
		t.Fatal(err)
	}
}
