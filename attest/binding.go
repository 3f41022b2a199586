package attest

import (
	"bytes"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// The TLS exporter the runtime must use for [Binding.EKM]: RFC 8446 §7.5
// keying material, exported on both ends of the node's TLS 1.3 connection to
// the coordinator with this label, no context, and this length. [SessionEKM]
// does it.
const (
	EKMLabel  = "EXPORTER-cloister-attestation"
	EKMLength = 32
)

// SessionEKM exports the keying material that binds evidence to one TLS
// connection: cs.ExportKeyingMaterial(EKMLabel, nil, EKMLength). Both ends
// of the connection compute the same value; a relay between two connections
// cannot make them agree. It refuses connections older than TLS 1.3, whose
// exporters are only safe with the extended master secret.
func SessionEKM(cs tls.ConnectionState) ([]byte, error) {
	if !cs.HandshakeComplete {
		return nil, errors.New("attest: TLS handshake not complete")
	}
	if cs.Version < tls.VersionTLS13 {
		return nil, fmt.Errorf("attest: TLS version %#x: session binding needs TLS 1.3", cs.Version)
	}
	ekm, err := cs.ExportKeyingMaterial(EKMLabel, nil, EKMLength)
	if err != nil {
		return nil, fmt.Errorf("attest: exporting keying material: %w", err)
	}
	return ekm, nil
}

// Binding is what evidence is bound to: the verifier's nonce, the TLS
// session, and the node's session public keys. Its hash is the report data
// the platform signs ([Binding.ReportData]).
//
// Evidence carries its Binding in clear, so that a verifier can tell which
// part differs from what it expects: another key ([ErrKeyBinding]), another
// session ([ErrSessionBinding]) or another nonce ([ErrStaleNonce]).
type Binding struct {
	// Nonce is the challenge the evidence answers: fresh for every
	// attestation, from [NewNonce]. At most 255 bytes.
	Nonce []byte
	// EKM is the TLS session's exported keying material ([SessionEKM]). At
	// most 255 bytes.
	EKM []byte
	// HPKEPub is the node's session HPKE public key (crypto/hpke), to which
	// key shares are sealed. At most 65535 bytes.
	HPKEPub []byte
	// SignPub is the node's session signing public key. At most 65535
	// bytes.
	SignPub []byte
}

// reportDataContext separates Cloister's report data from any other use of
// SHA-512 over the same bytes.
const reportDataContext = "cloister/attest report data v1\x00"

// ReportData returns the 64 bytes of report data that bind evidence to a
// session:
//
//	SHA-512("cloister/attest report data v1" ‖ 0x00 ‖
//	        len(nonce) ‖ nonce ‖ len(tlsEKM) ‖ tlsEKM ‖
//	        len(hpkePub) ‖ hpkePub ‖ len(signPub) ‖ signPub)
//
// where every len is a 4-byte big-endian byte count, so no two different
// inputs hash the same bytes.
func ReportData(nonce, tlsEKM, hpkePub, signPub []byte) [64]byte {
	h := sha512.New()
	h.Write([]byte(reportDataContext))
	var n [4]byte
	for _, f := range [][]byte{nonce, tlsEKM, hpkePub, signPub} {
		binary.BigEndian.PutUint32(n[:], uint32(len(f)))
		h.Write(n[:])
		h.Write(f)
	}
	var rd [64]byte
	h.Sum(rd[:0])
	return rd
}

// ReportData returns the report data that binds evidence to b.
func (b Binding) ReportData() [64]byte {
	return ReportData(b.Nonce, b.EKM, b.HPKEPub, b.SignPub)
}

func (b Binding) clone() Binding {
	return Binding{
		Nonce:   bytes.Clone(b.Nonce),
		EKM:     bytes.Clone(b.EKM),
		HPKEPub: bytes.Clone(b.HPKEPub),
		SignPub: bytes.Clone(b.SignPub),
	}
}

// mismatch explains why evidence whose clear binding is got does not match
// the expected binding want. It compares the parts in order of gravity:
// keys, nonce, session. If they all agree, the signed report data is simply
// not H(want): the clear fields were altered or the report was made over
// other data. The kind is a diagnosis: any of them means reject.
func mismatch(got, want Binding, relayed bool) error {
	switch {
	case !bytes.Equal(got.HPKEPub, want.HPKEPub) || !bytes.Equal(got.SignPub, want.SignPub):
		return fmt.Errorf("%w: it binds HPKE key %s and signing key %s, want %s and %s", ErrKeyBinding,
			short(got.HPKEPub), short(got.SignPub), short(want.HPKEPub), short(want.SignPub))
	case !bytes.Equal(got.Nonce, want.Nonce):
		return fmt.Errorf("%w: it answers nonce %s, want %s", ErrStaleNonce, nonceDesc(got.Nonce), nonceDesc(want.Nonce))
	case !relayed && !bytes.Equal(got.EKM, want.EKM):
		return fmt.Errorf("%w: it binds TLS keying material %s, this connection's is %s (relayed from another connection?)",
			ErrSessionBinding, short(got.EKM), short(want.EKM))
	}
	return fmt.Errorf("%w: the signed report data is not the hash of the evidence's binding (altered in transit?)", ErrReportData)
}

// nonceDesc prints a nonce for an error message: its issue time if it has
// one, and its random tail.
func nonceDesc(n []byte) string {
	if t, ok := NonceTime(n); ok {
		return fmt.Sprintf("…%x issued %s", n[len(n)-4:], t.UTC().Format(time.RFC3339))
	}
	return short(n)
}

// short prints a byte string for an error message: hex, truncated.
func short(b []byte) string {
	if len(b) == 0 {
		return "(none)"
	}
	if len(b) > 8 {
		return fmt.Sprintf("%x…(%d bytes)", b[:8], len(b))
	}
	return fmt.Sprintf("%x", b)
}

// Timed nonces: "CLN1" ‖ issue time (Unix milliseconds, 8 bytes big-endian)
// ‖ 20 random bytes.
const (
	nonceMagic = "CLN1"
	NonceSize  = 32 // the size of a [NewNonce] nonce
)

// NewNonce returns a fresh 32-byte nonce that records when it was issued.
// The random part comes from rand (crypto/rand.Reader in production). For
// evidence formats without a clock (sev-snp, tdx), the issue time is the
// evidence's time: it was made after its nonce existed.
func NewNonce(rand io.Reader, now time.Time) ([]byte, error) {
	n := make([]byte, NonceSize)
	copy(n, nonceMagic)
	binary.BigEndian.PutUint64(n[4:12], uint64(now.UnixMilli()))
	if _, err := io.ReadFull(rand, n[12:]); err != nil {
		return nil, fmt.Errorf("attest: nonce randomness: %w", err)
	}
	return n, nil
}

// NonceTime returns the issue time of a [NewNonce] nonce, and false for any
// other nonce.
func NonceTime(nonce []byte) (time.Time, bool) {
	if len(nonce) != NonceSize || string(nonce[:4]) != nonceMagic {
		return time.Time{}, false
	}
	return time.UnixMilli(int64(binary.BigEndian.Uint64(nonce[4:12]))), true
}
