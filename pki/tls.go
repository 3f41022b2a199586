package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/cloisterfl/cloister/federation"
)

// Sentinel errors of peer verification (see [VerifyPeer]).
var (
	// ErrNoCertificate: the peer presented no certificate.
	ErrNoCertificate = errors.New("pki: peer presented no certificate")
	// ErrUntrusted: the peer's certificate is not issued by the federation
	// CA (another CA, a self-signed certificate, or the wrong key usage).
	ErrUntrusted = errors.New("pki: certificate not issued by the federation CA")
	// ErrExpired: a certificate is past its NotAfter. See [ValidityError].
	ErrExpired = errors.New("pki: certificate expired")
	// ErrNotYetValid: a certificate is before its NotBefore. See [ValidityError].
	ErrNotYetValid = errors.New("pki: certificate not yet valid")
	// ErrRevoked: the revocation hook ([Options.Revoked]) rejected the peer.
	ErrRevoked = errors.New("pki: certificate revoked")
	// ErrWrongPeer: a valid certificate of the right role but not the
	// expected name ([Options.PeerName]).
	ErrWrongPeer = errors.New("pki: unexpected peer")
	// ErrNotMember: a certificate the federation manifest does not list
	// ([Admit]), or a kit the manifest does not list.
	ErrNotMember = errors.New("pki: not a federation member")
)

// ValidityError reports a certificate used outside its validity period at
// the (injected) time Now. It matches [ErrExpired] or [ErrNotYetValid] with
// errors.Is.
type ValidityError struct {
	Cert                     string // the certificate, as "name" (sha256 1a2b3c4d…)
	NotBefore, NotAfter, Now time.Time
}

func (e *ValidityError) Error() string {
	if e.Now.After(e.NotAfter) {
		return fmt.Sprintf("pki: certificate %s expired at %s (it is now %s)", e.Cert,
			e.NotAfter.UTC().Format(time.RFC3339), e.Now.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("pki: certificate %s is not valid before %s (it is now %s)", e.Cert,
		e.NotBefore.UTC().Format(time.RFC3339), e.Now.UTC().Format(time.RFC3339))
}

// Is matches ErrExpired or ErrNotYetValid.
func (e *ValidityError) Is(target error) bool {
	if e.Now.After(e.NotAfter) {
		return target == ErrExpired
	}
	return target == ErrNotYetValid
}

func validityError(cert *x509.Certificate, now time.Time) error {
	if now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return &ValidityError{Cert: describe(cert), NotBefore: cert.NotBefore, NotAfter: cert.NotAfter, Now: now}
	}
	return nil
}

// Options tune the peer checks of [ServerConfig], [ClientConfig] and
// [VerifyPeer]. The zero value is usable.
type Options struct {
	// Now returns the time at which validity periods are checked. nil means
	// time.Now. Tests inject a fixed clock.
	Now func() time.Time
	// PeerName, if set, is the only peer name accepted (for a node's client
	// configuration: the manifest's coordinator name).
	PeerName string
	// Revoked, if set, is asked about every peer certificate that chains to
	// the federation CA; true refuses the peer with ErrRevoked. Use it for a
	// deny-list of serial numbers, fingerprints or NodeIDs.
	Revoked func(cert *x509.Certificate) bool
	// Authorize, if set, runs last, on a verified peer certificate; a
	// non-nil error refuses the peer. A closure over [Admit] fits here: it admits
	// only the certificates the signed manifest lists.
	Authorize func(cert *x509.Certificate) error
	// Manifests, if set, returns the manifests a peer may be listed in
	// ([Kit.TLSConfig] admits a peer listed in any of them): the one in
	// force and one scheduled by an amendment. Nil: the kit's manifest.
	Manifests func() []*federation.Manifest
}

func (o Options) now() time.Time {
	if o.Now == nil {
		return time.Now()
	}
	return o.Now()
}

// VerifyPeer checks a peer certificate the way the mTLS configurations do:
// it must chain directly to ca with the given extended key usage
// (x509.ExtKeyUsageClientAuth for a client, x509.ExtKeyUsageServerAuth for
// a server), both certificates must be valid at opts.Now, the certificate
// must carry an identity of role want (and name opts.PeerName if set), and
// it must pass opts.Revoked and opts.Authorize. It returns the peer's
// identity.
//
// Errors name the certificate and wrap [ErrUntrusted], [ErrExpired],
// [ErrNotYetValid], [ErrNoIdentity], [ErrWrongRole], [ErrWrongPeer] or
// [ErrRevoked].
func VerifyPeer(ca, cert *x509.Certificate, usage x509.ExtKeyUsage, want Role, opts Options) (Identity, error) {
	if ca == nil {
		return Identity{}, fmt.Errorf("pki: no federation CA certificate configured")
	}
	if cert == nil {
		return Identity{}, ErrNoCertificate
	}
	now := opts.now()
	// Check the issuer first: an expired certificate from another CA is
	// reported as untrusted, not as expired.
	if err := cert.CheckSignatureFrom(ca); err != nil || cert.Issuer.String() != ca.Subject.String() {
		return Identity{}, fmt.Errorf("%w: certificate %s (issuer %q) is not signed by federation CA %s",
			ErrUntrusted, describe(cert), truncate(cert.Issuer.CommonName), describe(ca))
	}
	if err := validityError(ca, now); err != nil {
		return Identity{}, fmt.Errorf("pki: federation CA: %w", err)
	}
	if err := validityError(cert, now); err != nil {
		return Identity{}, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	if _, err := cert.Verify(x509.VerifyOptions{
		Roots:       roots,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	}); err != nil {
		return Identity{}, fmt.Errorf("%w: certificate %s: %w", ErrUntrusted, describe(cert), err)
	}
	id, err := Identify(cert)
	if err != nil {
		return Identity{}, err
	}
	if id.Role != want {
		return Identity{}, &RoleError{Cert: describe(cert), Got: id.Role, Want: want}
	}
	if opts.PeerName != "" && id.Name != opts.PeerName {
		return Identity{}, fmt.Errorf("%w: certificate %s is %s, want %s %s", ErrWrongPeer, describe(cert), id, want, opts.PeerName)
	}
	if opts.Revoked != nil && opts.Revoked(cert) {
		return Identity{}, fmt.Errorf("%w: certificate %s of %s (serial %x)", ErrRevoked, describe(cert), id, cert.SerialNumber)
	}
	if opts.Authorize != nil {
		if err := opts.Authorize(cert); err != nil {
			return Identity{}, fmt.Errorf("pki: %s refused: %w", id, err)
		}
	}
	return id, nil
}

// ServerConfig returns the coordinator's mTLS configuration: TLS 1.3 only,
// the credential cred, a client certificate required, and every client
// checked by [VerifyPeer] as a node of the federation whose CA is ca.
//
// The check runs in tls.Config.VerifyConnection, which crypto/tls calls on
// every handshake, including resumed ones (VerifyPeerCertificate is skipped
// on resumption). Session tickets are disabled as well, so every connection
// is a full handshake that re-checks the certificate, its validity and its
// revocation.
//
// The returned configuration is ready for tls.NewListener or gRPC's
// credentials.NewTLS. Don't loosen it: in particular, don't enable session
// tickets or replace VerifyConnection.
func ServerConfig(ca *x509.Certificate, cred *Credential, opts Options) (*tls.Config, error) {
	if err := checkOwn(ca, cred); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cred.TLSCertificate()},
		ClientAuth:             tls.RequireAnyClientCert, // chain checked by VerifyConnection
		SessionTicketsDisabled: true,
		Time:                   opts.Now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyConnection(cs, ca, x509.ExtKeyUsageClientAuth, RoleNode, opts)
		},
	}, nil
}

// ClientConfig returns a node's mTLS configuration for dialing the
// coordinator: TLS 1.3 only, the credential cred, no session cache, and the
// server checked by [VerifyPeer] as the federation's coordinator
// (opts.PeerName, if set, pins its name).
//
// The server is identified by its certificate's coordinator role, not by
// its host name: InsecureSkipVerify only turns off crypto/tls's built-in
// verification, which VerifyConnection replaces with the full chain, time,
// role and revocation check on every handshake.
func ClientConfig(ca *x509.Certificate, cred *Credential, opts Options) (*tls.Config, error) {
	if err := checkOwn(ca, cred); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{cred.TLSCertificate()},
		// Built-in verification would check the host name with the wall
		// clock; VerifyConnection below does the federation's checks.
		InsecureSkipVerify: true,
		ClientSessionCache: nil, // no resumption: every handshake is full
		Time:               opts.Now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyConnection(cs, ca, x509.ExtKeyUsageServerAuth, RoleCoordinator, opts)
		},
	}, nil
}

func checkOwn(ca *x509.Certificate, cred *Credential) error {
	if ca == nil {
		return errors.New("pki: no federation CA certificate")
	}
	if err := cred.check(); err != nil {
		return err
	}
	if err := cred.Cert.CheckSignatureFrom(ca); err != nil {
		return fmt.Errorf("%w: own certificate %s is not issued by federation CA %s", ErrUntrusted, describe(cred.Cert), describe(ca))
	}
	return nil
}

func verifyConnection(cs tls.ConnectionState, ca *x509.Certificate, usage x509.ExtKeyUsage, want Role, opts Options) error {
	if cs.Version < tls.VersionTLS13 {
		return fmt.Errorf("pki: TLS version %#x is older than 1.3", cs.Version)
	}
	if len(cs.PeerCertificates) == 0 {
		return ErrNoCertificate
	}
	// Only the leaf counts: federation certificates are issued directly by
	// the CA, so anything else the peer sent is ignored.
	_, err := VerifyPeer(ca, cs.PeerCertificates[0], usage, want, opts)
	return err
}

// PeerIdentity returns the identity of the peer of a completed handshake
// made with a configuration from [ServerConfig] or [ClientConfig].
func PeerIdentity(cs tls.ConnectionState) (Identity, error) {
	if !cs.HandshakeComplete {
		return Identity{}, errors.New("pki: handshake not complete")
	}
	if len(cs.PeerCertificates) == 0 {
		return Identity{}, ErrNoCertificate
	}
	return Identify(cs.PeerCertificates[0])
}

// ObserverServerConfig returns the TLS configuration of the coordinator's
// metrics listener (the dashboard, /status, /rounds, /metrics): TLS 1.3
// only, the coordinator's credential cred, session tickets off, and a
// client certificate requested but not required. A client that presents
// one must pass [VerifyObserver] in VerifyConnection (every handshake), or
// the handshake fails: a member's node certificate, the coordinator's own,
// or a certificate of another CA never gets through. A client without a
// certificate completes the handshake; what it may then read (a bearer
// token's /metrics, or nothing) is the HTTP layer's decision.
func ObserverServerConfig(ca *x509.Certificate, cred *Credential, opts Options) (*tls.Config, error) {
	if err := checkOwn(ca, cred); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:             tls.VersionTLS13,
		Certificates:           []tls.Certificate{cred.TLSCertificate()},
		ClientAuth:             tls.RequestClientCert, // checked by VerifyConnection when given
		SessionTicketsDisabled: true,
		Time:                   opts.Now,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.Version < tls.VersionTLS13 {
				return fmt.Errorf("pki: TLS version %#x is older than 1.3", cs.Version)
			}
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			_, err := VerifyObserver(ca, cs.PeerCertificates[0], opts)
			return err
		},
	}, nil
}

// VerifyObserver checks a client certificate of the metrics listener like
// [VerifyPeer] (chain to ca, client-auth usage, validity, opts.Revoked,
// opts.Authorize) and requires the role [RoleObserver] or [RoleAdmin]. It
// returns the identity; its Role is what the holder may do. A valid
// certificate of another role fails with a [*RoleError] that wants an
// observer.
func VerifyObserver(ca, cert *x509.Certificate, opts Options) (Identity, error) {
	want := RoleObserver
	if cert != nil {
		if id, err := Identify(cert); err == nil && id.Role == RoleAdmin {
			want = RoleAdmin
		}
	}
	return VerifyPeer(ca, cert, x509.ExtKeyUsageClientAuth, want, opts)
}
