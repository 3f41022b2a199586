package federation

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/cloisterfl/cloister/internal/strictjson"
)

// The signed-manifest file: the canonical manifest and a signature over it.
type signedManifest struct {
	Manifest  json.RawMessage `json:"manifest"`
	Signature signature       `json:"signature"`
}

type signature struct {
	Alg   string `json:"alg"`   // sigAlg
	CA    string `json:"ca"`    // fingerprint of the signing CA's certificate
	Value []byte `json:"value"` // ASN.1 ECDSA signature, base64
}

const (
	sigAlg = "ecdsa-p256-sha256"
	// sigContext separates manifest signatures from anything else the CA
	// key might sign.
	sigContext = "cloister manifest v1\x00"
)

func manifestDigest(canonical []byte) []byte {
	h := sha256.New()
	h.Write([]byte(sigContext))
	h.Write(canonical)
	return h.Sum(nil)
}

// Signer is the federation CA as [Sign] needs it: its certificate and an
// ECDSA P-256 signer for its key. Package pki's *CA is one.
type Signer interface {
	crypto.Signer
	Certificate() *x509.Certificate
}

// Sign validates m and signs its canonical encoding with the CA key. The
// result is the manifest.json of every kit; [Verify] reads it. The output is indented for people; the signature covers the
// compact canonical form, so whitespace does not matter.
//
// rand is accepted for the house style; since Go 1.26 ECDSA signing always
// uses the system's secure random source.
func Sign(m *Manifest, ca Signer, random io.Reader) ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	canonical, err := m.Canonical()
	if err != nil {
		return nil, err
	}
	if random == nil {
		random = rand.Reader
	}
	cert := ca.Certificate()
	if _, ok := ca.Public().(*ecdsa.PublicKey); !ok || cert == nil {
		return nil, fmt.Errorf("federation: signing manifest: the CA %s has no ECDSA key", describe(cert))
	}
	sig, err := ca.Sign(random, manifestDigest(canonical), crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("federation: signing manifest: %w", err)
	}
	out, err := json.MarshalIndent(signedManifest{
		Manifest:  canonical,
		Signature: signature{Alg: sigAlg, CA: fingerprint(cert), Value: sig},
	}, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("federation: encoding signed manifest: %w", err)
	}
	return append(out, '\n'), nil
}

// Verify checks a manifest signed by [Sign] against the federation CA
// certificate ca and returns it.
//
// It verifies the signature before it parses the content, and refuses:
// a signature by any other key, or over other bytes ([ErrBadSignature]);
// malformed input, unknown fields, duplicate keys or a non-canonical
// encoding ([ErrBadManifest]); and content that fails
// [Manifest.Validate] ([ErrInvalidManifest]).
func Verify(data []byte, ca *x509.Certificate) (*Manifest, error) {
	if ca == nil {
		return nil, errors.New("federation: no CA certificate to verify the manifest with")
	}
	if len(data) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", ErrBadManifest, len(data), MaxSize)
	}
	var env signedManifest
	if err := strictjson.Decode(data, &env); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if env.Signature.Alg != sigAlg {
		return nil, fmt.Errorf("%w: signature algorithm %q, want %q", ErrBadSignature, truncate(env.Signature.Alg), sigAlg)
	}
	if want := fingerprint(ca); env.Signature.CA != want {
		return nil, fmt.Errorf("%w: signed by CA sha256 %s, not the federation CA %s (sha256 %s)",
			ErrBadSignature, truncate(env.Signature.CA), describe(ca), want)
	}
	pub, ok := ca.PublicKey.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: CA %s does not have an ECDSA key", ErrBadSignature, describe(ca))
	}
	var canonical bytes.Buffer
	if err := json.Compact(&canonical, env.Manifest); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	if !ecdsa.VerifyASN1(pub, manifestDigest(canonical.Bytes()), env.Signature.Value) {
		return nil, fmt.Errorf("%w: signature by CA %s does not match the manifest's content", ErrBadSignature, describe(ca))
	}
	var m Manifest
	if err := strictjson.Decode(canonical.Bytes(), &m); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadManifest, err)
	}
	again, err := m.Canonical()
	if err != nil || !bytes.Equal(again, canonical.Bytes()) {
		return nil, fmt.Errorf("%w: manifest is not in canonical form", ErrBadManifest)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return &m, nil
}

// fingerprint is package pki's Fingerprint: the lowercase hex SHA-256 of
// the certificate's DER encoding, the form the manifest lists parties by.
func fingerprint(cert *x509.Certificate) string {
	if cert == nil {
		return ""
	}
	sum := sha256.Sum256(cert.Raw)
	return hex.EncodeToString(sum[:])
}

func validFingerprint(s string) bool {
	if len(s) != 2*sha256.Size {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

// describe names a certificate in error messages: its CN and the start of
// its fingerprint.
func describe(cert *x509.Certificate) string {
	if cert == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%q (sha256 %s…)", truncate(cert.Subject.CommonName), fingerprint(cert)[:16])
}

func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
