package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nitrite"
)

// maxNitroPayload bounds a nitro payload: the NSM answers in at most 12 KB.
const maxNitroPayload = 16 << 10

var awsNitroRoots = sync.OnceValue(func() *x509.CertPool {
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM([]byte(nitrite.DefaultCARoots)) {
		panic("attest: nitrite's AWS root does not parse") // a constant: cannot happen
	}
	return p
})

// nitrite's errors about the form of a document, as opposed to its
// signature or certificates.
var nitriteFormErrors = []error{
	nitrite.ErrBadCOSESign1Structure, nitrite.ErrCOSESign1EmptyProtectedSection,
	nitrite.ErrCOSESign1EmptyPayloadSection, nitrite.ErrCOSESign1EmptySignatureSection,
	nitrite.ErrBadAttestationDocument, nitrite.ErrMandatoryFieldsMissing, nitrite.ErrBadDigest,
	nitrite.ErrBadTimestamp, nitrite.ErrBadPCRs, nitrite.ErrBadPCRIndex, nitrite.ErrBadPCRValue,
	nitrite.ErrBadCABundle, nitrite.ErrBadCABundleItem, nitrite.ErrBadPublicKey, nitrite.ErrBadUserData,
	nitrite.ErrBadNonce,
}

// nitroLeaf pre-parses what nitrite.Verify trusts blindly: it panics on a
// leaf certificate whose ECDSA curve is not P-224, P-256 or P-384 (P-521),
// while checking the signature of a document whose chain has already
// failed. AWS signs with P-384; anything else is refused first.
func nitroLeaf(payload []byte) error {
	var cose struct {
		_           struct{} `cbor:",toarray"`
		Protected   []byte
		Unprotected cbor.RawMessage
		Payload     []byte
		Signature   []byte
	}
	if err := cbor.Unmarshal(payload, &cose); err != nil {
		return fmt.Errorf("%w: nitro document is not a COSE_Sign1 array: %v", ErrMalformed, err)
	}
	var doc struct {
		Certificate []byte `cbor:"certificate"`
	}
	if err := cbor.Unmarshal(cose.Payload, &doc); err != nil {
		return fmt.Errorf("%w: nitro document payload: %v", ErrMalformed, err)
	}
	cert, err := x509.ParseCertificate(doc.Certificate)
	if err != nil {
		return fmt.Errorf("%w: nitro document certificate: %v", ErrMalformed, err)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P384() {
		return fmt.Errorf("%w: nitro document certificate has a %v key, want ECDSA P-384", ErrSignature, cert.PublicKeyAlgorithm)
	}
	return nil
}

// verifyNitro checks a nitro payload with nitrite: the COSE_Sign1
// signature by the document's certificate, which chains to a trusted AWS
// root at now. nitrite returns a result even when verification fails; only
// its error says whether it passed.
func verifyNitro(payload []byte, roots *x509.CertPool, now time.Time) (*report, error) {
	if len(payload) == 0 || len(payload) > maxNitroPayload {
		return nil, fmt.Errorf("%w: nitro payload has %d bytes, want 1 to %d", ErrMalformed, len(payload), maxNitroPayload)
	}
	if err := nitroLeaf(payload); err != nil {
		return nil, err
	}
	res, err := nitrite.Verify(payload, nitrite.VerifyOptions{Roots: roots, CurrentTime: now})
	if err != nil {
		for _, e := range nitriteFormErrors {
			if errors.Is(err, e) {
				return nil, fmt.Errorf("%w: nitro document: %v", ErrMalformed, err)
			}
		}
		return nil, fmt.Errorf("%w: nitro document: %v", ErrSignature, err)
	}
	if res == nil || res.Document == nil || !res.SignatureOK {
		return nil, fmt.Errorf("%w: nitro document: not verified", ErrSignature)
	}
	doc := res.Document
	regs := make([][]byte, 3)
	for i := range regs {
		if len(doc.PCRs[uint(i)]) != registerSize {
			return nil, fmt.Errorf("%w: nitro document PCR%d has %d bytes, want %d", ErrMalformed, i, len(doc.PCRs[uint(i)]), registerSize)
		}
		regs[i] = doc.PCRs[uint(i)]
	}
	if len(doc.UserData) != 64 {
		return nil, fmt.Errorf("%w: nitro document user_data has %d bytes, want the 64 bytes of report data", ErrMalformed, len(doc.UserData))
	}
	if len(doc.Nonce) != 0 && !bytes.Equal(doc.Nonce, doc.UserData) {
		return nil, fmt.Errorf("%w: nitro document nonce differs from its user_data", ErrMalformed)
	}
	if len(doc.PublicKey) != 0 {
		return nil, fmt.Errorf("%w: nitro document has a public_key; process keys are bound through user_data", ErrMalformed)
	}
	if doc.Timestamp > math.MaxInt64 {
		return nil, fmt.Errorf("%w: nitro document timestamp %d", ErrMalformed, doc.Timestamp)
	}
	var rd [64]byte
	copy(rd[:], doc.UserData)
	return &report{
		claims: Claims{
			Platform:   "AWS Nitro Enclave " + trunc(doc.ModuleID),
			Debug:      allZero(regs[0]), // debug-mode enclaves report zero PCRs
			Time:       time.UnixMilli(int64(doc.Timestamp)),
			ReportData: rd,
		},
		regs:     regs,
		hasClock: true,
	}, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// NSM is the Nitro Secure Module: the /dev/nsm device of a Nitro Enclave.
// It answers one CBOR request with one CBOR response.
type NSM interface {
	Send(request []byte) (response []byte, err error)
}

// nsmMaxResponse is the largest NSM response.
const nsmMaxResponse = 0x3000

// NitroAttester produces nitro evidence inside an AWS Nitro Enclave: it
// asks the NSM for an attestation document whose user_data is the report
// data. The document's nonce and public_key fields are left empty.
type NitroAttester struct {
	nsm NSM
}

// NewNitroAttester returns an attester that talks to nsm.
func NewNitroAttester(nsm NSM) *NitroAttester { return &NitroAttester{nsm: nsm} }

// OpenNitro opens this enclave's /dev/nsm; it fails with [ErrUnsupported]
// where there is none.
func OpenNitro() (*NitroAttester, error) {
	d, err := openNSM()
	if err != nil {
		return nil, err
	}
	return NewNitroAttester(d), nil
}

// Close closes the device, if it can be closed.
func (a *NitroAttester) Close() error {
	if c, ok := a.nsm.(io.Closer); ok {
		return c.Close()
	}
	return nil
}

// Format returns FormatNitro.
func (*NitroAttester) Format() string { return FormatNitro }

type nsmAttestationRequest struct {
	UserData  []byte `cbor:"user_data"`
	Nonce     []byte `cbor:"nonce"`
	PublicKey []byte `cbor:"public_key"`
}

type nsmResponse struct {
	Attestation *struct {
		Document []byte `cbor:"document"`
	} `cbor:"Attestation"`
	Error string `cbor:"Error"`
}

// Attest asks the NSM for an attestation document over reportData.
func (a *NitroAttester) Attest(reportData [64]byte, _ time.Time) ([]byte, error) {
	req, err := cbor.Marshal(map[string]nsmAttestationRequest{"Attestation": {UserData: reportData[:]}})
	if err != nil {
		return nil, fmt.Errorf("encoding NSM request: %w", err)
	}
	raw, err := a.nsm.Send(req)
	if err != nil {
		return nil, fmt.Errorf("NSM: %w", err)
	}
	if len(raw) > nsmMaxResponse {
		return nil, fmt.Errorf("NSM response has %d bytes, more than %d", len(raw), nsmMaxResponse)
	}
	var resp nsmResponse
	if err := cbor.Unmarshal(raw, &resp); err != nil {
		return nil, fmt.Errorf("decoding NSM response: %w", err)
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("NSM error %q", trunc(resp.Error))
	}
	if resp.Attestation == nil || len(resp.Attestation.Document) == 0 {
		return nil, errors.New("NSM response has no attestation document")
	}
	return resp.Attestation.Document, nil
}
