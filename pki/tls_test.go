package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"io"
	"math/big"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(tm time.Time) func() time.Time { return func() time.Time { return tm } }

type fixture struct {
	ca    *CA
	coord *Credential
	node  *Credential
}

func newFixture(t testing.TB) fixture {
	t.Helper()
	ca, err := NewCA("Test federation CA", t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	coord, err := ca.IssueCoordinator("coordinator", []string{"localhost", "127.0.0.1"}, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	node, err := ca.IssueNode("node-1", t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	return fixture{ca: ca, coord: coord, node: node}
}

func mustServer(t testing.TB, ca *x509.Certificate, cred *Credential, opts Options) *tls.Config {
	t.Helper()
	cfg, err := ServerConfig(ca, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

func mustClient(t testing.TB, ca *x509.Certificate, cred *Credential, opts Options) *tls.Config {
	t.Helper()
	cfg, err := ClientConfig(ca, cred, opts)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

type result struct {
	serverErr, clientErr error
	server, client       tls.ConnectionState
}

// handshake runs a TLS handshake between the two configurations over the
// connections and then moves one byte from server to client: in TLS 1.3 the
// client finishes its handshake before the server has checked the client's
// certificate, so a refusal reaches the client only on its first read.
func handshake(t testing.TB, sc, cc net.Conn, server, client *tls.Config) result {
	t.Helper()
	var r result
	done := make(chan struct{})
	go func() {
		defer close(done)
		s := tls.Server(sc, server)
		defer sc.Close() // not s.Close: its close_notify could wait for a gone peer
		if r.serverErr = s.Handshake(); r.serverErr != nil {
			return
		}
		r.server = s.ConnectionState()
		_, r.serverErr = s.Write([]byte{'x'})
	}()
	c := tls.Client(cc, client)
	if r.clientErr = c.Handshake(); r.clientErr == nil {
		var b [1]byte
		_, r.clientErr = io.ReadFull(c, b[:])
		r.client = c.ConnectionState()
	}
	cc.Close()
	<-done
	return r
}

func pipeHandshake(t testing.TB, server, client *tls.Config) result {
	sc, cc := net.Pipe()
	return handshake(t, sc, cc, server, client)
}

func tcpHandshake(t testing.TB, ln net.Listener, server, client *tls.Config) result {
	t.Helper()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	cc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	sc, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	return handshake(t, sc, cc, server, client)
}

func listen(t testing.TB) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func TestHandshakeOverTCP(t *testing.T) {
	f := newFixture(t)
	opts := Options{Now: at(t0.Add(time.Hour))}
	r := tcpHandshake(t, listen(t),
		mustServer(t, f.ca.Certificate(), f.coord, opts),
		mustClient(t, f.ca.Certificate(), f.node, opts))
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("handshake: server %v, client %v", r.serverErr, r.clientErr)
	}
	if r.server.Version != tls.VersionTLS13 {
		t.Errorf("version %#x, want TLS 1.3", r.server.Version)
	}
	id, err := NodeID(r.server.PeerCertificates[0])
	if err != nil || id != "node-1" {
		t.Errorf("server sees NodeID %q, %v; want node-1", id, err)
	}
	pid, err := PeerIdentity(r.client)
	if err != nil || pid != (Identity{RoleCoordinator, "coordinator"}) {
		t.Errorf("client sees %v, %v; want coordinator coordinator", pid, err)
	}
}

func TestRejectClientWithoutCertificate(t *testing.T) {
	f := newFixture(t)
	opts := Options{Now: at(t0)}
	client := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true}
	r := pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, opts), client)
	if r.serverErr == nil || r.clientErr == nil {
		t.Fatalf("handshake without client certificate: server %v, client %v; want both to fail", r.serverErr, r.clientErr)
	}
	if !strings.Contains(r.serverErr.Error(), "certificate") {
		t.Errorf("server error %q does not mention the certificate", r.serverErr)
	}
}

func TestRejectOtherCA(t *testing.T) {
	f := newFixture(t)
	other, err := NewCA("Intruder CA", t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Same names, issued by another CA.
	fakeNode, _ := other.IssueNode("node-1", t0, nil)
	fakeCoord, _ := other.IssueCoordinator("coordinator", []string{"localhost"}, t0, nil)
	opts := Options{Now: at(t0)}

	// The client trusts the federation CA but presents the foreign certificate.
	client := mustClient(t, f.ca.Certificate(), f.node, opts)
	client.Certificates = []tls.Certificate{fakeNode.TLSCertificate()}
	r := pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, opts), client)
	if !errors.Is(r.serverErr, ErrUntrusted) {
		t.Errorf("node from another CA: server error %v, want ErrUntrusted", r.serverErr)
	}
	if r.serverErr != nil && !strings.Contains(r.serverErr.Error(), "Intruder CA") {
		t.Errorf("server error %q does not name the foreign issuer", r.serverErr)
	}
	r = pipeHandshake(t, mustServer(t, other.Certificate(), fakeCoord, opts), mustClient(t, f.ca.Certificate(), f.node, opts))
	if !errors.Is(r.clientErr, ErrUntrusted) {
		t.Errorf("coordinator from another CA: client error %v, want ErrUntrusted", r.clientErr)
	}
	if _, err := ServerConfig(f.ca.Certificate(), fakeCoord, opts); !errors.Is(err, ErrUntrusted) {
		t.Errorf("ServerConfig with a foreign credential: %v, want ErrUntrusted", err)
	}
}

func TestRejectExpired(t *testing.T) {
	f := newFixture(t)
	short, err := f.ca.Issue(Request{Role: RoleNode, Name: "node-2", Validity: time.Hour}, t0, nil)
	if err != nil {
		t.Fatal(err)
	}
	later := t0.Add(2 * time.Hour)
	opts := Options{Now: at(later)}
	r := pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, opts), mustClient(t, f.ca.Certificate(), short, opts))
	if !errors.Is(r.serverErr, ErrExpired) {
		t.Fatalf("expired node: server error %v, want ErrExpired", r.serverErr)
	}
	var ve *ValidityError
	if !errors.As(r.serverErr, &ve) || !ve.NotAfter.Equal(t0.Add(time.Hour)) || !ve.Now.Equal(later) {
		t.Errorf("error %v: want a ValidityError with NotAfter %v and Now %v", r.serverErr, t0.Add(time.Hour), later)
	}
	msg := r.serverErr.Error()
	if !strings.Contains(msg, `"node-2"`) || !strings.Contains(msg, "2026-03-01T13:00:00Z") {
		t.Errorf("error %q should name the certificate and its expiry", msg)
	}
	if r.clientErr == nil {
		t.Error("client did not see the refusal")
	}

	// The same certificate an hour earlier is fine: the check uses the
	// injected clock, not the wall clock.
	opts = Options{Now: at(t0.Add(30 * time.Minute))}
	r = pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, opts), mustClient(t, f.ca.Certificate(), short, opts))
	if r.serverErr != nil || r.clientErr != nil {
		t.Errorf("before expiry: server %v, client %v", r.serverErr, r.clientErr)
	}

	// Not yet valid: the clock is before NotBefore (issue time − Backdate).
	early, err := f.ca.IssueNode("node-3", t0.Add(time.Hour), nil)
	if err != nil {
		t.Fatal(err)
	}
	opts = Options{Now: at(t0)}
	r = pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, opts), mustClient(t, f.ca.Certificate(), early, opts))
	if !errors.Is(r.serverErr, ErrNotYetValid) {
		t.Errorf("not yet valid: server error %v, want ErrNotYetValid", r.serverErr)
	}
}

func TestRejectWrongRole(t *testing.T) {
	f := newFixture(t)
	node2, _ := f.ca.IssueNode("node-2", t0, nil)
	opts := Options{Now: at(t0)}

	// A node certificate used as the coordinator's server certificate.
	r := pipeHandshake(t, mustServer(t, f.ca.Certificate(), node2, opts), mustClient(t, f.ca.Certificate(), f.node, opts))
	var re *RoleError
	if !errors.Is(r.clientErr, ErrWrongRole) || !errors.As(r.clientErr, &re) || re.Got != RoleNode || re.Want != RoleCoordinator {
		t.Errorf("node posing as coordinator: client error %v, want RoleError{node, coordinator}", r.clientErr)
	}
	// A coordinator certificate used by a client.
	r = pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, opts), mustClient(t, f.ca.Certificate(), f.coord, opts))
	if !errors.Is(r.serverErr, ErrWrongRole) {
		t.Errorf("coordinator posing as node: server error %v, want ErrWrongRole", r.serverErr)
	}
}

func TestPeerNamePinned(t *testing.T) {
	f := newFixture(t)
	opts := Options{Now: at(t0)}
	copts := Options{Now: at(t0), PeerName: "coord-eu"}
	r := pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, opts), mustClient(t, f.ca.Certificate(), f.node, copts))
	if !errors.Is(r.clientErr, ErrWrongPeer) {
		t.Errorf("client error %v, want ErrWrongPeer", r.clientErr)
	}
}

func TestRevokedHook(t *testing.T) {
	f := newFixture(t)
	revoked := map[string]bool{f.node.Cert.SerialNumber.String(): true}
	opts := Options{Now: at(t0), Revoked: func(c *x509.Certificate) bool { return revoked[c.SerialNumber.String()] }}
	r := pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, opts), mustClient(t, f.ca.Certificate(), f.node, Options{Now: at(t0)}))
	if !errors.Is(r.serverErr, ErrRevoked) || !strings.Contains(r.serverErr.Error(), "node-1") {
		t.Errorf("revoked node: server error %v, want ErrRevoked naming node-1", r.serverErr)
	}
	node2, _ := f.ca.IssueNode("node-2", t0, nil)
	r = pipeHandshake(t, mustServer(t, f.ca.Certificate(), f.coord, opts), mustClient(t, f.ca.Certificate(), node2, Options{Now: at(t0)}))
	if r.serverErr != nil || r.clientErr != nil {
		t.Errorf("unrevoked node-2: server %v, client %v", r.serverErr, r.clientErr)
	}
}

// TestNoResumption checks that a connection can never skip the certificate
// checks by resuming an earlier session: the configurations disable
// resumption, and a client that brings its own session cache still gets a
// full handshake, in which a revocation made in between takes effect.
func TestNoResumption(t *testing.T) {
	f := newFixture(t)
	var revoked atomic.Bool
	opts := Options{Now: at(t0), Revoked: func(*x509.Certificate) bool { return revoked.Load() }}
	server := mustServer(t, f.ca.Certificate(), f.coord, opts)
	client := mustClient(t, f.ca.Certificate(), f.node, Options{Now: at(t0)})
	if !server.SessionTicketsDisabled {
		t.Error("server config has session tickets enabled")
	}
	if client.ClientSessionCache != nil {
		t.Error("client config has a session cache")
	}
	// A client that tries to resume anyway.
	greedy := client.Clone()
	greedy.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	ln := listen(t)
	for i := range 2 {
		r := tcpHandshake(t, ln, server, greedy)
		if r.serverErr != nil || r.clientErr != nil {
			t.Fatalf("handshake %d: server %v, client %v", i, r.serverErr, r.clientErr)
		}
		if r.server.DidResume || r.client.DidResume {
			t.Fatalf("handshake %d resumed a session", i)
		}
	}
	revoked.Store(true)
	r := tcpHandshake(t, ln, server, greedy)
	if !errors.Is(r.serverErr, ErrRevoked) {
		t.Errorf("after revocation: server error %v, want ErrRevoked", r.serverErr)
	}
}

// TestResumedSessionStillChecked shows why the checks live in
// VerifyConnection: even on a server whose tickets someone re-enabled, a
// resumed handshake runs them.
func TestResumedSessionStillChecked(t *testing.T) {
	f := newFixture(t)
	var revoked atomic.Bool
	opts := Options{Now: at(t0), Revoked: func(*x509.Certificate) bool { return revoked.Load() }}
	server := mustServer(t, f.ca.Certificate(), f.coord, opts)
	server.SessionTicketsDisabled = false // a misconfiguration, for the test
	client := mustClient(t, f.ca.Certificate(), f.node, Options{Now: at(t0)})
	client.ClientSessionCache = tls.NewLRUClientSessionCache(4)
	ln := listen(t)
	if r := tcpHandshake(t, ln, server, client); r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("first handshake: server %v, client %v", r.serverErr, r.clientErr)
	}
	r := tcpHandshake(t, ln, server, client)
	if r.serverErr != nil || r.clientErr != nil || !r.server.DidResume {
		t.Fatalf("second handshake: server %v, client %v, resumed %v; want a resumed session", r.serverErr, r.clientErr, r.server.DidResume)
	}
	revoked.Store(true)
	r = tcpHandshake(t, ln, server, client)
	if !errors.Is(r.serverErr, ErrRevoked) {
		t.Errorf("resumed handshake after revocation: server error %v, want ErrRevoked", r.serverErr)
	}
}

func TestIdentify(t *testing.T) {
	f := newFixture(t)
	if id, err := NodeID(f.node.Cert); err != nil || id != "node-1" {
		t.Errorf("NodeID(node cert) = %q, %v", id, err)
	}
	if _, err := NodeID(f.coord.Cert); !errors.Is(err, ErrWrongRole) {
		t.Errorf("NodeID(coordinator cert) error %v, want ErrWrongRole", err)
	}
	if id, err := Identify(f.coord.Cert); err != nil || id != (Identity{RoleCoordinator, "coordinator"}) {
		t.Errorf("Identify(coordinator cert) = %v, %v", id, err)
	}
	// The CA certificate has no identity.
	if _, err := Identify(f.ca.Certificate()); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("Identify(CA cert) error %v, want ErrNoIdentity", err)
	}
	if _, err := NodeID(nil); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("NodeID(nil) error %v, want ErrNoIdentity", err)
	}
	// A certificate whose CN disagrees with its URI.
	c := *f.node.Cert
	c.Subject.CommonName = "node-9"
	if _, err := Identify(&c); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("CN mismatch: error %v, want ErrNoIdentity", err)
	}
	c = *f.node.Cert
	c.URIs = append(c.URIs, identityURI(RoleNode, "node-2"))
	if _, err := Identify(&c); !errors.Is(err, ErrNoIdentity) {
		t.Errorf("two identities: error %v, want ErrNoIdentity", err)
	}
	if fp := Fingerprint(f.node.Cert); len(fp) != 64 || strings.ToLower(fp) != fp || !isHex(fp) {
		t.Errorf("Fingerprint = %q", fp)
	}
}

func TestValidateName(t *testing.T) {
	for _, name := range []string{"a", "node-1", "0", strings.Repeat("x", 64), "site-berlin-3"} {
		if err := ValidateName(name); err != nil {
			t.Errorf("ValidateName(%q) = %v", name, err)
		}
	}
	for _, name := range []string{"", "-a", "a-", "Node1", "node_1", "node.1", "nöde", "a b", "../x", strings.Repeat("x", 65), "x\x00"} {
		if err := ValidateName(name); !errors.Is(err, fl.ErrBadName) {
			t.Errorf("ValidateName(%q) = %v, want fl.ErrBadName", name, err)
		}
	}
	if err := ValidateNodeID("coordinator"); !errors.Is(err, fl.ErrBadName) {
		t.Errorf("ValidateNodeID(coordinator) = %v, want fl.ErrBadName", err)
	}
}

func TestIssueChecks(t *testing.T) {
	f := newFixture(t)
	if _, err := f.ca.IssueNode("Node_1", t0, nil); !errors.Is(err, fl.ErrBadName) {
		t.Errorf("bad node name: %v", err)
	}
	if _, err := f.ca.IssueNode(fl.NodeID("coordinator"), t0, nil); !errors.Is(err, fl.ErrBadName) {
		t.Errorf("reserved node name: %v", err)
	}
	if _, err := f.ca.IssueCoordinator("coordinator", []string{"bad host!"}, t0, nil); err == nil {
		t.Error("bad host accepted")
	}
	if _, err := f.ca.Issue(Request{Role: RoleNone, Name: "x"}, t0, nil); err == nil {
		t.Error("role none accepted")
	}
	if _, err := f.ca.IssueNode("node-2", t0.Add(CAValidity+time.Hour), nil); !errors.Is(err, ErrExpired) {
		t.Errorf("issuing after the CA expired: %v, want ErrExpired", err)
	}
	// Validity is clamped to the CA's.
	c, err := f.ca.Issue(Request{Role: RoleNode, Name: "node-3", Validity: 2 * CAValidity}, t0, nil)
	if err != nil || !c.Cert.NotAfter.Equal(f.ca.Certificate().NotAfter) {
		t.Errorf("long validity: %v, NotAfter %v, CA NotAfter %v", err, c.Cert.NotAfter, f.ca.Certificate().NotAfter)
	}
	// Coordinator SANs.
	if got := f.coord.Cert.DNSNames; len(got) != 1 || got[0] != "localhost" {
		t.Errorf("coordinator DNS names %v", got)
	}
	if got := f.coord.Cert.IPAddresses; len(got) != 1 || !got[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("coordinator IPs %v", got)
	}
	if f.node.Cert.URIs[0].String() != "cloister:node/node-1" {
		t.Errorf("node URI %v", f.node.Cert.URIs[0])
	}
	if f.node.Cert.SerialNumber.Cmp(big.NewInt(0)) <= 0 {
		t.Error("serial not positive")
	}
}

func isHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil
}
