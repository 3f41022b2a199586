package pki_test

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/cloisterfl/cloister/pki"
)

// A coordinator and a node authenticate each other with certificates from
// the federation CA; the coordinator learns the node's identity from its
// certificate.
func ExampleServerConfig() {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ca, _ := pki.NewCA("Example federation CA", now, nil)
	coordCred, _ := ca.IssueCoordinator("coordinator", []string{"localhost", "127.0.0.1"}, now, nil)
	nodeCred, _ := ca.IssueNode("node-1", now, nil)

	opts := pki.Options{Now: func() time.Time { return now }}
	serverCfg, _ := pki.ServerConfig(ca.Certificate(), coordCred, opts)
	clientCfg, _ := pki.ClientConfig(ca.Certificate(), nodeCred, opts)

	sc, cc := net.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		c := tls.Client(cc, clientCfg)
		c.Handshake()
		c.Read(make([]byte, 1))
		cc.Close()
	}()
	s := tls.Server(sc, serverCfg)
	if err := s.Handshake(); err != nil {
		fmt.Println("refused:", err)
		return
	}
	s.Write([]byte{1})
	id, err := pki.NodeID(s.ConnectionState().PeerCertificates[0])
	fmt.Println("peer:", id, err)
	<-done
	sc.Close()
	// Output:
	// peer: node-1 <nil>
}

// An expired certificate is refused with an error that says which
// certificate and when it expired.
func ExampleVerifyPeer() {
	issued := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	ca, _ := pki.NewCA("Example federation CA", issued, nil)
	cred, _ := ca.Issue(pki.Request{Role: pki.RoleNode, Name: "node-2", Validity: 24 * time.Hour}, issued, nil)

	later := issued.Add(48 * time.Hour)
	_, err := pki.VerifyPeer(ca.Certificate(), cred.Cert, x509.ExtKeyUsageClientAuth, pki.RoleNode, pki.Options{Now: func() time.Time { return later }})
	var ve *pki.ValidityError
	if errors.As(err, &ve) {
		fmt.Println(errors.Is(err, pki.ErrExpired), ve.NotAfter.Format(time.RFC3339))
	}
	// Output:
	// true 2026-03-02T12:00:00Z
}

// cloister init: a CA, a coordinator kit and one kit per node, all sharing
// one signed manifest.
func ExampleInitFederation() {
	parent, _ := os.MkdirTemp("", "cloister-example-")
	defer os.RemoveAll(parent)
	dir := filepath.Join(parent, "fed")

	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	err := pki.InitFederation(dir, pki.InitOptions{Nodes: 3, Threshold: 2, Federation: "fed-example"}, now, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	kit, err := pki.LoadKit(filepath.Join(dir, "node-2"))
	if err != nil {
		fmt.Println(err)
		return
	}
	m := kit.Manifest
	fmt.Println(kit.Identity(), "of", m.Federation)
	fmt.Println("members:", m.Nodes(), "threshold:", m.Threshold, "mode:", m.Mode)
	fmt.Println(pki.InitFederation(dir, pki.InitOptions{Nodes: 3, Threshold: 2}, now, nil) != nil)
	// Output:
	// node node-2 of fed-example
	// members: [node-1 node-2 node-3] threshold: 2 mode: mhe
	// true
}

// A node announces its process keys in Hello evidence signed with its audit
// key; the coordinator and every member check it against the audit key the
// manifest lists. With a TEE, the TEE field carries evidence (package
// attest) bound to these keys.
func ExampleVerifyHello() {
	auditPub, auditKey, _ := ed25519.GenerateKey(nil)
	session := []byte("manifest hash")
	e := &pki.Hello{Session: session, Node: "node-1", Issued: time.Unix(1700000000, 0),
		HPKE: []byte("hpke public key"), Sign: make([]byte, ed25519.PublicKeySize)}
	hello := e.SignWith(auditKey)

	got, err := pki.VerifyHello(hello, "node-1", session, auditPub)
	fmt.Println(got.Node, got.Issued.UTC().Format(time.RFC3339), err)
	// Relayed as another member's, or for another session: refused.
	_, err = pki.VerifyHello(hello, "node-2", session, auditPub)
	fmt.Println(errors.Is(err, pki.ErrHello))
	_, err = pki.VerifyHello(hello, "node-1", []byte("another manifest"), auditPub)
	fmt.Println(errors.Is(err, pki.ErrHello))
	// Output:
	// node-1 2023-11-14T22:13:20Z <nil>
	// true
	// true
}
