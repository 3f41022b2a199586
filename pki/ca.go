package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cloisterfl/cloister/fl"
)

// Validity periods and the clock-skew allowance.
const (
	// CAValidity is how long a new federation CA is valid.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultValidity is how long a node or coordinator certificate is
	// valid unless [Request.Validity] says otherwise.
	DefaultValidity = 365 * 24 * time.Hour
	// Backdate is subtracted from "now" for every NotBefore, so that a peer
	// whose clock is a little behind accepts a certificate issued just now.
	Backdate = 5 * time.Minute
)

// File names inside a CA directory (see [CA.Save]) and a kit directory (see
// [WriteKit]).
const (
	CACertFile   = "ca.pem"
	CAKeyFile    = "ca-key.pem"
	CertFile     = "cert.pem"
	KeyFile      = "key.pem"
	AuditKeyFile = "audit-key.pem"
	ManifestFile = "manifest.json"
	ConfigFile   = "config.json"
)

// ErrBadKey reports a key file that does not hold the expected key, or a
// key that does not match its certificate.
var ErrBadKey = errors.New("pki: bad key")

// CA is the federation's certificate authority. It issues every node and
// coordinator certificate and signs the federation manifest. Its key lives
// with the federation admin, offline; daemons only ever need its
// certificate.
type CA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

// NewCA creates a self-signed federation CA named name with an ECDSA P-256
// key (the most widely supported key for TLS 1.3 client and server
// authentication), valid from now−[Backdate] for [CAValidity].
//
// rand supplies the serial number; nil means crypto/rand. Since Go 1.26 key
// generation and signing always use the system's secure random source (see
// testing/cryptotest.SetGlobalRandom for deterministic tests).
func NewCA(name string, now time.Time, random io.Reader) (*CA, error) {
	if err := validateCAName(name); err != nil {
		return nil, err
	}
	random = orCryptoRand(random)
	key, err := ecdsa.GenerateKey(elliptic.P256(), random)
	if err != nil {
		return nil, fmt.Errorf("pki: generating CA key: %w", err)
	}
	serial, err := newSerial(random)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Cloister federation"}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true, // leaves only: no intermediate CAs
	}
	der, err := x509.CreateCertificate(random, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: creating CA certificate %q: %w", name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parsing new CA certificate: %w", err)
	}
	return &CA{cert: cert, key: key}, nil
}

func validateCAName(name string) error {
	if name == "" || len(name) > 64 || !utf8.ValidString(name) || strings.TrimSpace(name) != name {
		return fmt.Errorf("%w: CA name %q must be 1 to 64 bytes of UTF-8 without surrounding spaces", fl.ErrBadName, truncate(name))
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("%w: CA name %q has a control character", fl.ErrBadName, truncate(name))
		}
	}
	return nil
}

func orCryptoRand(r io.Reader) io.Reader {
	if r == nil {
		return rand.Reader
	}
	return r
}

// newSerial returns a random positive 127-bit serial number.
func newSerial(random io.Reader) (*big.Int, error) {
	var b [16]byte
	if _, err := io.ReadFull(random, b[:]); err != nil {
		return nil, fmt.Errorf("pki: reading random serial number: %w", err)
	}
	b[0] &= 0x7f
	s := new(big.Int).SetBytes(b[:])
	if s.Sign() == 0 {
		return nil, errors.New("pki: random source returned an all-zero serial number")
	}
	return s, nil
}

// Public returns the CA's public key. With [CA.Sign] and [CA.Certificate],
// it makes the CA a federation.Signer: the key that signs the manifest.
func (ca *CA) Public() crypto.PublicKey { return ca.key.Public() }

// Sign signs digest with the CA key (crypto.Signer: an ASN.1 ECDSA
// signature). Package federation signs manifests with it.
func (ca *CA) Sign(random io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return ca.key.Sign(random, digest, opts)
}

// Certificate returns the CA's certificate, the federation's trust anchor.
// Callers must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Fingerprint returns the CA certificate's [Fingerprint].
func (ca *CA) Fingerprint() string { return Fingerprint(ca.cert) }

// Save writes the CA to a new directory dir: ca.pem (the certificate, 0644)
// and ca-key.pem (the private key, PKCS #8, 0600). dir must not exist; it is
// created with mode 0700, atomically.
func (ca *CA) Save(dir string) error {
	keyPEM, err := encodeKey(ca.key)
	if err != nil {
		return err
	}
	return createDir(dir, func(tmp string) error {
		if err := createFile(filepath.Join(tmp, CACertFile), encodeCert(ca.cert), publicPerm); err != nil {
			return err
		}
		return createFile(filepath.Join(tmp, CAKeyFile), keyPEM, secretPerm)
	})
}

// LoadCA reads a CA written by [CA.Save]. It refuses a key file that others
// can read ([ErrInsecureKey]) and a key that does not match the certificate
// ([ErrBadKey]).
func LoadCA(dir string) (*CA, error) {
	certPath := filepath.Join(dir, CACertFile)
	cert, err := readCertFile(certPath)
	if err != nil {
		return nil, err
	}
	if !cert.IsCA || !cert.BasicConstraintsValid {
		return nil, fmt.Errorf("pki: %s: certificate %s is not a CA certificate", certPath, describe(cert))
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	key, err := readKeyFile(keyPath)
	if err != nil {
		return nil, err
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("%w: %s does not match certificate %s in %s", ErrBadKey, keyPath, describe(cert), certPath)
	}
	return &CA{cert: cert, key: key}, nil
}

// Credential is a certificate and its private key: what a node or the
// coordinator presents in the mTLS handshake.
type Credential struct {
	Cert *x509.Certificate
	Key  *ecdsa.PrivateKey
}

// TLSCertificate returns the credential in the form crypto/tls takes.
func (c *Credential) TLSCertificate() tls.Certificate {
	return tls.Certificate{
		Certificate: [][]byte{c.Cert.Raw},
		PrivateKey:  c.Key,
		Leaf:        c.Cert,
	}
}

// check reports whether the credential is complete and its key matches.
func (c *Credential) check() error {
	if c == nil || c.Cert == nil || c.Key == nil {
		return fmt.Errorf("%w: missing certificate or key", ErrBadKey)
	}
	if !c.Key.PublicKey.Equal(c.Cert.PublicKey) {
		return fmt.Errorf("%w: key does not match certificate %s", ErrBadKey, describe(c.Cert))
	}
	return nil
}

// Request describes a certificate for [CA.Issue].
type Request struct {
	Role Role
	// Name is the node's NodeID (see [ValidateNodeID]) or the coordinator's
	// name (see [ValidateName]).
	Name string
	// Hosts are the DNS names and IP addresses a coordinator is reached at,
	// e.g. "localhost", "127.0.0.1", "coord.example.org". Nodes have none.
	Hosts []string
	// Validity defaults to DefaultValidity. It is clamped so the
	// certificate never outlives the CA.
	Validity time.Duration
}

// Issue creates a key pair and a certificate for req, signed by the CA and
// valid from now−[Backdate].
//
// Every certificate carries its identity twice: as the subject common name
// and as a URI SAN, cloister:node/<id> or cloister:coordinator/<name>. The
// URI is what [Identify] reads; its role is what the mTLS configurations
// check. Both roles get the client-auth and server-auth extended key
// usages, so either side may dial. Observer and admin certificates
// (cloister:observer/<name>, cloister:admin/<name>) are for reading the
// coordinator's metrics listener ([ObserverServerConfig]): client-auth only,
// and no member configuration accepts them.
func (ca *CA) Issue(req Request, now time.Time, random io.Reader) (*Credential, error) {
	switch req.Role {
	case RoleNode:
		if err := ValidateNodeID(fl.NodeID(req.Name)); err != nil {
			return nil, err
		}
		if len(req.Hosts) > 0 {
			return nil, fmt.Errorf("pki: node %q: node certificates carry no hosts", req.Name)
		}
	case RoleCoordinator:
		if err := ValidateName(req.Name); err != nil {
			return nil, err
		}
	case RoleObserver, RoleAdmin:
		if err := ValidateName(req.Name); err != nil {
			return nil, err
		}
		if len(req.Hosts) > 0 {
			return nil, fmt.Errorf("pki: %s %q: %s certificates carry no hosts", req.Role, req.Name, req.Role)
		}
	default:
		return nil, fmt.Errorf("pki: cannot issue a certificate with role %s", req.Role)
	}
	usages := []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}
	if req.Role == RoleObserver || req.Role == RoleAdmin {
		usages = usages[:1] // a client only: it never serves
	}
	var dns []string
	var ips []net.IP
	for _, h := range req.Hosts {
		if ip := net.ParseIP(h); ip != nil {
			ips = append(ips, ip)
			continue
		}
		if err := validateHostname(h); err != nil {
			return nil, fmt.Errorf("pki: coordinator %q: %w", req.Name, err)
		}
		dns = append(dns, h)
	}
	validity := req.Validity
	if validity == 0 {
		validity = DefaultValidity
	}
	if validity < 0 {
		return nil, fmt.Errorf("pki: %s %q: negative validity %v", req.Role, req.Name, validity)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	if !now.Before(ca.cert.NotAfter) {
		return nil, fmt.Errorf("pki: issuing for %s %q: %w", req.Role, req.Name, validityError(ca.cert, now))
	}
	random = orCryptoRand(random)
	key, err := ecdsa.GenerateKey(elliptic.P256(), random)
	if err != nil {
		return nil, fmt.Errorf("pki: generating key for %s %q: %w", req.Role, req.Name, err)
	}
	serial, err := newSerial(random)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: req.Name, OrganizationalUnit: []string{req.Role.String()}},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usages,
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{identityURI(req.Role, req.Name)},
		DNSNames:              dns,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(random, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: issuing certificate for %s %q: %w", req.Role, req.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: parsing new certificate: %w", err)
	}
	return &Credential{Cert: cert, Key: key}, nil
}

// IssueNode issues a node certificate for id with the default validity.
func (ca *CA) IssueNode(id fl.NodeID, now time.Time, random io.Reader) (*Credential, error) {
	return ca.Issue(Request{Role: RoleNode, Name: string(id)}, now, random)
}

// IssueCoordinator issues the coordinator certificate for name, reachable
// at hosts (DNS names or IP addresses), with the default validity.
func (ca *CA) IssueCoordinator(name string, hosts []string, now time.Time, random io.Reader) (*Credential, error) {
	return ca.Issue(Request{Role: RoleCoordinator, Name: name, Hosts: hosts}, now, random)
}

func validateHostname(h string) error {
	if h == "" || len(h) > 253 {
		return fmt.Errorf("host %q is neither an IP address nor a DNS name of 1 to 253 characters", truncate(h))
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("host %q is not a valid DNS name", truncate(h))
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("host %q is not a valid DNS name (character %q)", truncate(h), rune(c))
			}
		}
	}
	return nil
}

func encodeCert(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})
}

func encodeKey(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encoding private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// decodePEM returns the DER of the single PEM block of type typ in data.
func decodePEM(data []byte, typ, path string) ([]byte, error) {
	block, rest := pem.Decode(data)
	if block == nil {
		return nil, fmt.Errorf("pki: %s: no PEM data", path)
	}
	if block.Type != typ {
		return nil, fmt.Errorf("pki: %s: PEM block is %q, want %q", path, truncate(block.Type), typ)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("pki: %s: unexpected data after the %s block", path, typ)
	}
	return block.Bytes, nil
}

// ParseCertificatePEM parses one PEM "CERTIFICATE" block. name is used in
// error messages (a file name, say).
func ParseCertificatePEM(data []byte, name string) (*x509.Certificate, error) {
	der, err := decodePEM(data, "CERTIFICATE", name)
	if err != nil {
		return nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", name, err)
	}
	return cert, nil
}

func readCertFile(path string) (*x509.Certificate, error) {
	data, err := readPublic(path)
	if err != nil {
		return nil, err
	}
	return ParseCertificatePEM(data, path)
}

// readKeyFile reads a PKCS #8 ECDSA P-256 key from a 0600 file.
func readKeyFile(path string) (*ecdsa.PrivateKey, error) {
	key, err := readPKCS8(path)
	if err != nil {
		return nil, err
	}
	k, ok := key.(*ecdsa.PrivateKey)
	if !ok || k.Curve != elliptic.P256() {
		return nil, fmt.Errorf("%w: %s does not hold an ECDSA P-256 key", ErrBadKey, path)
	}
	return k, nil
}

func readPKCS8(path string) (any, error) {
	data, err := readSecret(path)
	if err != nil {
		return nil, err
	}
	der, err := decodePEM(data, "PRIVATE KEY", path)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadKey, path, err)
	}
	return key, nil
}

// SaveCredential writes a credential into the existing directory dir as
// cert.pem (0644) and key.pem (0600), refusing to overwrite either.
func SaveCredential(dir string, c *Credential) error {
	if err := c.check(); err != nil {
		return err
	}
	keyPEM, err := encodeKey(c.Key)
	if err != nil {
		return err
	}
	if err := createFile(filepath.Join(dir, CertFile), encodeCert(c.Cert), publicPerm); err != nil {
		return err
	}
	return createFile(filepath.Join(dir, KeyFile), keyPEM, secretPerm)
}

// LoadCredential reads cert.pem and key.pem from dir.
func LoadCredential(dir string) (*Credential, error) {
	certPath := filepath.Join(dir, CertFile)
	cert, err := readCertFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPath := filepath.Join(dir, KeyFile)
	key, err := readKeyFile(keyPath)
	if err != nil {
		return nil, err
	}
	c := &Credential{Cert: cert, Key: key}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s and %s: %w", certPath, keyPath, err)
	}
	return c, nil
}
