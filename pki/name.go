package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/cloisterfl/cloister/fl"
)

// Sentinel errors callers branch on. They are wrapped with context that
// names the certificate, file or field at fault.
var (
	// ErrNoIdentity: a certificate that carries no (or an ambiguous) Cloister
	// identity: no cloister: URI SAN, several of them, or a subject CN that
	// does not match it.
	ErrNoIdentity = errors.New("pki: certificate carries no Cloister identity")
	// ErrWrongRole: a valid federation certificate of the wrong role, such as
	// a node certificate presented by a server that should be the
	// coordinator. See [RoleError].
	ErrWrongRole = errors.New("pki: certificate has the wrong role")
)

// ValidateName checks a node or coordinator name by [fl.ValidateName]'s
// rule (1 to 64 characters from [a-z0-9-]); errors wrap [fl.ErrBadName].
func ValidateName(name string) error { return fl.ValidateName(name) }

// ValidateNodeID checks a node name by [fl.ValidateNodeID]'s rule: a valid
// name, and not the reserved name "coordinator".
func ValidateNodeID(id fl.NodeID) error { return fl.ValidateNodeID(id) }

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}

// Role is what a federation certificate entitles its holder to be.
type Role uint8

const (
	// RoleNone is the zero Role; no valid certificate has it.
	RoleNone Role = iota
	// RoleNode is a member site: `cloister node`.
	RoleNode
	// RoleCoordinator is the coordinator: `cloister coordinator`.
	RoleCoordinator
	// RoleObserver is a person or program that may read the coordinator's
	// dashboard, /status, /rounds and /metrics, and do nothing else
	// (`cloister ca issue --role observer`). It is never a member: the
	// federation's mTLS configurations refuse it.
	RoleObserver
	// RoleAdmin may read what an observer reads. It is reserved for the
	// actions an admin will take over the metrics listener; today there are
	// none, so it sees and does exactly what an observer does.
	RoleAdmin
)

// String returns "node", "coordinator", "observer", "admin" or "none".
func (r Role) String() string {
	switch r {
	case RoleNode:
		return "node"
	case RoleCoordinator:
		return "coordinator"
	case RoleObserver:
		return "observer"
	case RoleAdmin:
		return "admin"
	}
	return "none"
}

// MarshalText implements encoding.TextMarshaler.
func (r Role) MarshalText() ([]byte, error) {
	if r.String() == "none" {
		return nil, fmt.Errorf("pki: cannot encode role %d", uint8(r))
	}
	return []byte(r.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (r *Role) UnmarshalText(b []byte) error {
	switch string(b) {
	case "node":
		*r = RoleNode
	case "coordinator":
		*r = RoleCoordinator
	case "observer":
		*r = RoleObserver
	case "admin":
		*r = RoleAdmin
	default:
		return fmt.Errorf("pki: unknown role %q (want node, coordinator, observer or admin)", truncate(string(b)))
	}
	return nil
}

// uriScheme is the scheme of the URI SAN that carries a certificate's
// identity: cloister:node/<id> or cloister:coordinator/<name>.
const uriScheme = "cloister"

func identityURI(r Role, name string) *url.URL {
	return &url.URL{Scheme: uriScheme, Opaque: r.String() + "/" + name}
}

// Identity is who a certificate says its holder is.
type Identity struct {
	Role Role
	Name string // a node's fl.NodeID, or the coordinator's name
}

// String returns "node node-3" or "coordinator coordinator".
func (id Identity) String() string { return id.Role.String() + " " + id.Name }

// Identify reads the identity of a federation certificate: exactly one
// cloister:node/<id>, cloister:coordinator/<name>, cloister:observer/<name>
// or cloister:admin/<name> URI SAN, whose name is
// also the subject common name.
//
// Identify does not verify the certificate. Call it only on certificates
// that a configuration from [ServerConfig] or [ClientConfig] (or
// [VerifyPeer]) has verified, such as tls.ConnectionState.PeerCertificates[0]
// after a completed handshake.
func Identify(cert *x509.Certificate) (Identity, error) {
	if cert == nil {
		return Identity{}, fmt.Errorf("%w: no certificate", ErrNoIdentity)
	}
	var found []Identity
	for _, u := range cert.URIs {
		if u == nil || u.Scheme != uriScheme {
			continue
		}
		kind, name, ok := strings.Cut(u.Opaque, "/")
		var r Role
		switch {
		case !ok:
		case kind == "node":
			r = RoleNode
		case kind == "coordinator":
			r = RoleCoordinator
		case kind == "observer":
			r = RoleObserver
		case kind == "admin":
			r = RoleAdmin
		}
		if r == RoleNone {
			return Identity{}, fmt.Errorf("%w: certificate %s has unknown identity URI %q", ErrNoIdentity, describe(cert), truncate(u.String()))
		}
		found = append(found, Identity{Role: r, Name: name})
	}
	switch len(found) {
	case 0:
		return Identity{}, fmt.Errorf("%w: certificate %s has no cloister: URI SAN", ErrNoIdentity, describe(cert))
	case 1:
	default:
		return Identity{}, fmt.Errorf("%w: certificate %s has %d cloister: URI SANs", ErrNoIdentity, describe(cert), len(found))
	}
	id := found[0]
	if err := ValidateName(id.Name); err != nil {
		return Identity{}, fmt.Errorf("%w: certificate %s: %w", ErrNoIdentity, describe(cert), err)
	}
	if id.Role == RoleNode && id.Name == fl.ReservedName {
		return Identity{}, fmt.Errorf("%w: certificate %s: node name %q is reserved", ErrNoIdentity, describe(cert), id.Name)
	}
	if cert.Subject.CommonName != id.Name {
		return Identity{}, fmt.Errorf("%w: certificate %s: subject CN %q does not match identity %s", ErrNoIdentity, describe(cert), truncate(cert.Subject.CommonName), id)
	}
	return id, nil
}

// NodeID returns the node identity of a node certificate. A coordinator
// certificate yields an error wrapping [ErrWrongRole].
//
// This is the only place a node's identity comes from: a peer's
// certificate, never a field of a message. Like [Identify], it does not
// verify the certificate.
func NodeID(cert *x509.Certificate) (fl.NodeID, error) {
	id, err := Identify(cert)
	if err != nil {
		return "", err
	}
	if id.Role != RoleNode {
		return "", &RoleError{Cert: describe(cert), Got: id.Role, Want: RoleNode}
	}
	return fl.NodeID(id.Name), nil
}

// RoleError reports a certificate of the wrong role. It matches
// [ErrWrongRole] with errors.Is.
type RoleError struct {
	Cert      string // the certificate, as "name" (sha256 1a2b3c4d…)
	Got, Want Role
}

func (e *RoleError) Error() string {
	return fmt.Sprintf("pki: certificate %s has role %s, want %s", e.Cert, e.Got, e.Want)
}

// Is reports whether target is ErrWrongRole.
func (e *RoleError) Is(target error) bool { return target == ErrWrongRole }

// Fingerprint returns the lowercase hex SHA-256 of the certificate's DER
// encoding, the form the manifest lists members by. It returns "" for nil.
func Fingerprint(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

// describe names a certificate in error messages: its CN and the start of
// its fingerprint.
func describe(cert *x509.Certificate) string {
	if cert == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%q (sha256 %s…)", truncate(cert.Subject.CommonName), Fingerprint(cert)[:16])
}
