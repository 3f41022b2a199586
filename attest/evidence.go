package attest

import (
	"fmt"

	"golang.org/x/crypto/cryptobyte"
)

// MaxEvidenceSize bounds an evidence envelope. Real payloads are a few
// kilobytes (an SNP report and its VCEK: 2.5 KB; a TDX quote: 5 KB; a Nitro
// document: 4.5 KB).
const MaxEvidenceSize = 1 << 20

// EvidenceVersion is the envelope version this package writes and reads.
const EvidenceVersion = 1

// evidenceMagic starts every envelope, so that a file can be recognized.
const evidenceMagic = "CLEV"

// Evidence is the versioned envelope that carries a format's payload and
// the session [Binding] the payload's report data commits to. The binding
// travels in clear: it is not trusted, only compared (see [Binding]).
//
// The encoding ([Evidence.Marshal], [ParseEvidence]) is:
//
//	"CLEV" ‖ version (1 byte, 1)
//	‖ format (1-byte length ‖ bytes: "sim", "sev-snp", "tdx", "nitro")
//	‖ nonce (1-byte length) ‖ EKM (1-byte length)
//	‖ HPKE public key (2-byte length) ‖ signing public key (2-byte length)
//	‖ payload (3-byte length)
//
// with big-endian lengths and nothing after the payload. Payloads:
//
//   - sim: the simulated report (see [SimAttester]);
//   - sev-snp: the 1184-byte attestation report followed by the GHCB
//     certificate table holding its VCEK or VLEK (the output of an extended
//     guest request);
//   - tdx: the raw TDX quote (version 4);
//   - nitro: the attestation document (COSE_Sign1, CBOR).
type Evidence struct {
	Format  string
	Binding Binding
	Payload []byte
}

// Marshal encodes e. It fails if a field is too long for its length prefix
// or the whole exceeds [MaxEvidenceSize].
func (e *Evidence) Marshal() ([]byte, error) {
	if err := checkFormatName(e.Format); err != nil {
		return nil, err
	}
	var b cryptobyte.Builder
	b.AddBytes([]byte(evidenceMagic))
	b.AddUint8(EvidenceVersion)
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(e.Format)) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Binding.Nonce) })
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Binding.EKM) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Binding.HPKEPub) })
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Binding.SignPub) })
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.Payload) })
	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("attest: encoding evidence: a field is too long: %w", err)
	}
	if len(out) > MaxEvidenceSize {
		return nil, fmt.Errorf("attest: encoding evidence: %d bytes, more than %d", len(out), MaxEvidenceSize)
	}
	return out, nil
}

// ParseEvidence decodes an envelope. Anything but a well-formed version-1
// envelope of at most [MaxEvidenceSize] bytes is [ErrMalformed]. It checks
// the form only: the payload is neither parsed nor verified.
func ParseEvidence(data []byte) (*Evidence, error) {
	if len(data) > MaxEvidenceSize {
		return nil, fmt.Errorf("%w: %d bytes of evidence, more than %d", ErrMalformed, len(data), MaxEvidenceSize)
	}
	s := cryptobyte.String(data)
	var magic []byte
	var version uint8
	if !s.ReadBytes(&magic, len(evidenceMagic)) || string(magic) != evidenceMagic {
		return nil, fmt.Errorf("%w: not a Cloister evidence envelope", ErrMalformed)
	}
	if !s.ReadUint8(&version) || version != EvidenceVersion {
		return nil, fmt.Errorf("%w: envelope version %d, want %d", ErrMalformed, version, EvidenceVersion)
	}
	var format, nonce, ekm, hpke, sign, payload cryptobyte.String
	if !s.ReadUint8LengthPrefixed(&format) ||
		!s.ReadUint8LengthPrefixed(&nonce) ||
		!s.ReadUint8LengthPrefixed(&ekm) ||
		!s.ReadUint16LengthPrefixed(&hpke) ||
		!s.ReadUint16LengthPrefixed(&sign) ||
		!s.ReadUint24LengthPrefixed(&payload) {
		return nil, fmt.Errorf("%w: truncated envelope", ErrMalformed)
	}
	if !s.Empty() {
		return nil, fmt.Errorf("%w: %d bytes after the payload", ErrMalformed, len(s))
	}
	if err := checkFormatName(string(format)); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return &Evidence{
		Format: string(format),
		Binding: Binding{
			Nonce:   clone(nonce),
			EKM:     clone(ekm),
			HPKEPub: clone(hpke),
			SignPub: clone(sign),
		},
		Payload: clone(payload),
	}, nil
}

// clone copies b, keeping nil for empty so that a round trip is exact.
func clone(b []byte) []byte {
	if len(b) == 0 {
		return nil
	}
	return append([]byte(nil), b...)
}

// checkFormatName accepts 1 to 32 characters from [a-z0-9-]: any format
// name, known or not (an unknown format is refused by the verifier, with
// ErrFormatNotAllowed).
func checkFormatName(f string) error {
	if f == "" || len(f) > 32 {
		return fmt.Errorf("attest: format name %q must have 1 to 32 characters", trunc(f))
	}
	for i := 0; i < len(f); i++ {
		c := f[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return fmt.Errorf("attest: format name %q has a character outside [a-z0-9-]", trunc(f))
		}
	}
	return nil
}

// trunc shortens untrusted text quoted in an error.
func trunc(s string) string {
	if len(s) > 40 {
		return s[:40] + "…"
	}
	return s
}
