package pki

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Revocation.
//
// The federation CA revokes a party's certificate with a CRL (RFC 5280,
// x509.RevocationList) signed by the CA key. Each entry names the revoked
// certificate by its serial number, as usual, and also by its [Fingerprint]
// (the form the manifest lists parties by) in a non-critical entry
// extension, so that a node can tell which of its peers is revoked without
// holding the peers' certificates. The CRL's number only grows: a daemon
// refuses a CRL that is not signed by its federation CA ([ErrCRL]) or that
// is older than the one in force ([ErrStaleCRL]). The CA keeps the newest
// CRL next to its key ([CRLFile]); the next revocation starts from it.

// CRLFile is the name of the newest CRL in a CA directory.
const CRLFile = "crl.der"

// Sentinel errors of revocation lists.
var (
	// ErrCRL: a CRL that does not parse, is not signed by the federation
	// CA, or names a certificate without its fingerprint.
	ErrCRL = errors.New("pki: bad revocation list")
	// ErrStaleCRL: a CRL older than the one in force (a lower number, an
	// earlier ThisUpdate, or the same number with other contents).
	ErrStaleCRL = errors.New("pki: stale revocation list")
)

// oidFingerprint is the CRL entry extension that carries the revoked
// certificate's SHA-256 fingerprint (an OCTET STRING of 32 bytes). The arc
// is a private, unregistered one.
var oidFingerprint = asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7322, 1}

// RevocationList is a CRL of the federation CA that verified (see
// [ParseCRL]). Its methods accept a nil list, which revokes nothing.
type RevocationList struct {
	Number     *big.Int
	ThisUpdate time.Time
	Entries    []RevokedCert
	DER        []byte
	serials    map[string]bool // hex serial numbers
	prints     map[string]bool // fingerprints
}

// RevokedCert is one entry of a [RevocationList].
type RevokedCert struct {
	Serial      *big.Int
	Fingerprint string
	Time        time.Time
}

// ParseCRL parses a DER (or PEM "X509 CRL") revocation list and checks that
// ca signed it. Errors wrap [ErrCRL].
func ParseCRL(der []byte, ca *x509.Certificate) (*RevocationList, error) {
	if ca == nil {
		return nil, fmt.Errorf("%w: no federation CA certificate", ErrCRL)
	}
	if b, _ := pem.Decode(der); b != nil {
		if b.Type != "X509 CRL" {
			return nil, fmt.Errorf("%w: PEM block %q, want X509 CRL", ErrCRL, truncate(b.Type))
		}
		der = b.Bytes
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCRL, err)
	}
	if err := rl.CheckSignatureFrom(ca); err != nil || !bytes.Equal(rl.RawIssuer, ca.RawSubject) {
		return nil, fmt.Errorf("%w: not signed by federation CA %s (issuer %q)", ErrCRL, describe(ca), truncate(rl.Issuer.CommonName))
	}
	if rl.Number == nil || rl.Number.Sign() < 0 {
		return nil, fmt.Errorf("%w: no CRL number", ErrCRL)
	}
	l := &RevocationList{Number: rl.Number, ThisUpdate: rl.ThisUpdate, DER: bytes.Clone(der),
		serials: make(map[string]bool), prints: make(map[string]bool)}
	for _, e := range rl.RevokedCertificateEntries {
		if e.SerialNumber == nil {
			return nil, fmt.Errorf("%w: an entry without a serial number", ErrCRL)
		}
		rc := RevokedCert{Serial: e.SerialNumber, Time: e.RevocationTime}
		for _, x := range e.Extensions {
			if x.Id.Equal(oidFingerprint) {
				var fp []byte
				if rest, err := asn1.Unmarshal(x.Value, &fp); err != nil || len(rest) != 0 || len(fp) != 32 {
					return nil, fmt.Errorf("%w: entry %x: malformed fingerprint", ErrCRL, e.SerialNumber)
				}
				rc.Fingerprint = hex.EncodeToString(fp)
			}
		}
		if rc.Fingerprint == "" {
			return nil, fmt.Errorf("%w: entry %x has no certificate fingerprint (not made by cloister ca revoke)", ErrCRL, e.SerialNumber)
		}
		l.Entries = append(l.Entries, rc)
		l.serials[e.SerialNumber.Text(16)] = true
		l.prints[rc.Fingerprint] = true
	}
	return l, nil
}

// Revoked reports whether cert is revoked (by serial number or
// fingerprint).
func (l *RevocationList) Revoked(cert *x509.Certificate) bool {
	if l == nil || cert == nil {
		return false
	}
	return cert.SerialNumber != nil && l.serials[cert.SerialNumber.Text(16)] || l.prints[Fingerprint(cert)]
}

// RevokedFingerprint reports whether the certificate with fingerprint fp
// (as the manifest lists it) is revoked.
func (l *RevocationList) RevokedFingerprint(fp string) bool {
	return l != nil && fp != "" && l.prints[fp]
}

// String names the list for logs: its number and entry count.
func (l *RevocationList) String() string {
	if l == nil {
		return "no CRL"
	}
	return fmt.Sprintf("CRL number %s of %s (%d revoked)", l.Number, l.ThisUpdate.UTC().Format(time.RFC3339), len(l.Entries))
}

// Supersedes checks that l may replace old (nil: no list in force): its
// number is higher, or equal with the same contents, and it is not dated
// earlier. Errors wrap [ErrStaleCRL].
func (l *RevocationList) Supersedes(old *RevocationList) error {
	if old == nil {
		return nil
	}
	switch c := l.Number.Cmp(old.Number); {
	case c < 0:
		return fmt.Errorf("%w: number %s is lower than %s, the number of the CRL in force", ErrStaleCRL, l.Number, old.Number)
	case c == 0 && !bytes.Equal(l.DER, old.DER):
		return fmt.Errorf("%w: number %s is the number of the CRL in force, with other contents", ErrStaleCRL, l.Number)
	}
	if l.ThisUpdate.Before(old.ThisUpdate) {
		return fmt.Errorf("%w: dated %s, before the CRL in force (%s)", ErrStaleCRL,
			l.ThisUpdate.UTC().Format(time.RFC3339), old.ThisUpdate.UTC().Format(time.RFC3339))
	}
	return nil
}

// Revoke returns a new CRL, signed by the CA, that lists the entries of
// prev (nil: none) and certs, with a number one higher than prev's and
// ThisUpdate now (never earlier than prev's). Certificates already revoked
// are listed once. Each certificate must be issued by this CA.
func (ca *CA) Revoke(prev *RevocationList, certs []*x509.Certificate, now time.Time) (*RevocationList, error) {
	var entries []x509.RevocationListEntry
	number := big.NewInt(1)
	if prev != nil {
		now = maxTime(now, prev.ThisUpdate)
		number = new(big.Int).Add(prev.Number, big.NewInt(1))
		for _, e := range prev.Entries {
			x, err := fingerprintExtension(e.Fingerprint)
			if err != nil {
				return nil, err
			}
			entries = append(entries, x509.RevocationListEntry{SerialNumber: e.Serial, RevocationTime: e.Time, ExtraExtensions: []pkix.Extension{x}})
		}
	}
	for _, cert := range certs {
		if err := cert.CheckSignatureFrom(ca.cert); err != nil {
			return nil, fmt.Errorf("%w: certificate %s is not issued by federation CA %s", ErrUntrusted, describe(cert), describe(ca.cert))
		}
		if prev.Revoked(cert) || slices.ContainsFunc(entries, func(e x509.RevocationListEntry) bool { return e.SerialNumber.Cmp(cert.SerialNumber) == 0 }) {
			continue
		}
		x, err := fingerprintExtension(Fingerprint(cert))
		if err != nil {
			return nil, err
		}
		entries = append(entries, x509.RevocationListEntry{SerialNumber: cert.SerialNumber, RevocationTime: now.UTC(), ExtraExtensions: []pkix.Extension{x}})
	}
	tmpl := &x509.RevocationList{
		Number:                    number,
		ThisUpdate:                now.UTC(),
		NextUpdate:                maxTime(ca.cert.NotAfter, now.Add(time.Hour)).UTC(), // not an expiry: see docs/PROTOCOL.md
		RevokedCertificateEntries: entries,
	}
	der, err := x509.CreateRevocationList(nil, tmpl, ca.cert, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: signing the revocation list: %w", err)
	}
	return ParseCRL(der, ca.cert)
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func fingerprintExtension(fp string) (pkix.Extension, error) {
	b, err := hex.DecodeString(fp)
	if err != nil || len(b) != 32 {
		return pkix.Extension{}, fmt.Errorf("pki: bad certificate fingerprint %q", truncate(fp))
	}
	v, err := asn1.Marshal(b)
	if err != nil {
		return pkix.Extension{}, err
	}
	return pkix.Extension{Id: oidFingerprint, Value: v}, nil
}

// ReadCRL reads and verifies the CRL at path (a missing file is
// fs.ErrNotExist). Errors name the file.
func ReadCRL(path string, ca *x509.Certificate) (*RevocationList, error) {
	b, err := readPublic(path)
	if err != nil {
		return nil, err
	}
	l, err := ParseCRL(b, ca)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// SaveCRL atomically replaces dir/crl.der (the CA's newest CRL) with l,
// after checking that l supersedes the CRL there, if any.
func (ca *CA) SaveCRL(dir string, l *RevocationList) error {
	path := filepath.Join(dir, CRLFile)
	old, err := ReadCRL(path, ca.cert)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := l.Supersedes(old); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	return replaceFile(path, l.DER, publicPerm)
}

// CRL returns the CA's newest CRL in dir (its CRLFile), making and saving
// an empty one (number 1) if there is none: the file a federation's daemons
// start with (`--crl`) before anything is revoked.
func (ca *CA) CRL(dir string, now time.Time) (*RevocationList, error) {
	l, err := ReadCRL(filepath.Join(dir, CRLFile), ca.cert)
	if !errors.Is(err, os.ErrNotExist) {
		return l, err
	}
	if l, err = ca.Revoke(nil, nil, now); err != nil {
		return nil, err
	}
	if err := ca.SaveCRL(dir, l); err != nil {
		return nil, err
	}
	return l, nil
}

// Revocations is the revocation list a daemon has in force, read from a
// file it re-reads when asked ([Revocations.Reload]). It is safe for
// concurrent use: the TLS configurations ask [Revocations.Revoked] on every
// handshake while the daemon's loop reloads.
type Revocations struct {
	path string
	ca   *x509.Certificate
	cur  atomic.Pointer[RevocationList]

	mu      sync.Mutex // serializes Reload
	lastBad []byte     // the last contents refused, so that a refusal is reported once
}

// OpenRevocations reads the CRL at path, which must verify under ca.
func OpenRevocations(path string, ca *x509.Certificate) (*Revocations, error) {
	l, err := ReadCRL(path, ca)
	if err != nil {
		return nil, err
	}
	r := &Revocations{path: path, ca: ca}
	r.cur.Store(l)
	return r, nil
}

// Path returns the file the revocations are read from.
func (r *Revocations) Path() string { return r.path }

// List returns the list in force (nil for a nil r).
func (r *Revocations) List() *RevocationList {
	if r == nil {
		return nil
	}
	return r.cur.Load()
}

// Revoked reports whether the list in force revokes cert. It fits
// [Options.Revoked].
func (r *Revocations) Revoked(cert *x509.Certificate) bool { return r.List().Revoked(cert) }

// RevokedFingerprint reports whether the list in force revokes the
// certificate with fingerprint fp.
func (r *Revocations) RevokedFingerprint(fp string) bool { return r.List().RevokedFingerprint(fp) }

// Reload re-reads the file. If it holds a new CRL that verifies and
// supersedes the one in force, that CRL is in force from now on and Reload
// returns it; if the file is unchanged it returns nil, nil. A file that
// cannot be read, does not verify or is stale leaves the list in force as
// it is, and Reload returns an error naming the file; the same bad contents
// are reported once (later calls return nil, nil until they change).
func (r *Revocations) Reload() (*RevocationList, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := readPublic(r.path)
	if err != nil {
		if r.lastBad != nil && len(r.lastBad) == 0 {
			return nil, nil
		}
		r.lastBad = []byte{}
		return nil, fmt.Errorf("revocation list %s (keeping %s): %w", r.path, r.List(), err)
	}
	old := r.cur.Load()
	if bytes.Equal(b, old.DER) || r.lastBad != nil && bytes.Equal(b, r.lastBad) {
		return nil, nil
	}
	l, err := ParseCRL(b, r.ca)
	if err == nil {
		err = l.Supersedes(old)
	}
	if err != nil {
		r.lastBad = b
		return nil, fmt.Errorf("refused the revocation list in %s (keeping %s): %w", r.path, old, err)
	}
	r.lastBad = nil
	if bytes.Equal(l.DER, old.DER) {
		return nil, nil // the same list, re-encoded (PEM)
	}
	r.cur.Store(l)
	return l, nil
}

// ReadCertificate reads a PEM certificate file (such as a kit's cert.pem).
func ReadCertificate(path string) (*x509.Certificate, error) { return readCertFile(path) }
