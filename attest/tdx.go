package attest

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"encoding/pem"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/google/go-configfs-tsm/configfs/configfsi"
	"github.com/google/go-configfs-tsm/configfs/linuxtsm"
	tsmreport "github.com/google/go-configfs-tsm/report"
	tabi "github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	tverify "github.com/google/go-tdx-guest/verify"
)

// maxTDXPayload bounds a tdx payload: a quote with its PCK chain (about
// 5 KB in practice).
const maxTDXPayload = 64 << 10

// IntelSGXRootCA is Intel's SGX Root CA certificate, the root of every PCK
// chain in TDX quotes (SHA-256 fingerprint
// 44:A0:19:6B:2B:99:F8:89:B8:E1:49:E9:5B:80:7A:35:0E:74:24:96:43:99:E8:85:A7:CB:B8:CC:FA:B6:74:D3,
// valid until 2049; https://certificates.trustedservices.intel.com/Intel_SGX_Provisioning_Certification_RootCA.pem).
// It is the same certificate go-tdx-guest embeds; passing it explicitly
// keeps that library from logging a warning to stdout on every
// verification.
const IntelSGXRootCA = `-----BEGIN CERTIFICATE-----
MIICjzCCAjSgAwIBAgIUImUM1lqdNInzg7SVUr9QGzknBqwwCgYIKoZIzj0EAwIw
aDEaMBgGA1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENv
cnBvcmF0aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJ
BgNVBAYTAlVTMB4XDTE4MDUyMTEwNDUxMFoXDTQ5MTIzMTIzNTk1OVowaDEaMBgG
A1UEAwwRSW50ZWwgU0dYIFJvb3QgQ0ExGjAYBgNVBAoMEUludGVsIENvcnBvcmF0
aW9uMRQwEgYDVQQHDAtTYW50YSBDbGFyYTELMAkGA1UECAwCQ0ExCzAJBgNVBAYT
AlVTMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEC6nEwMDIYZOj/iPWsCzaEKi7
1OiOSLRFhWGjbnBVJfVnkY4u3IjkDYYL0MxO4mqsyYjlBalTVYxFP2sJBK5zlKOB
uzCBuDAfBgNVHSMEGDAWgBQiZQzWWp00ifODtJVSv1AbOScGrDBSBgNVHR8ESzBJ
MEegRaBDhkFodHRwczovL2NlcnRpZmljYXRlcy50cnVzdGVkc2VydmljZXMuaW50
ZWwuY29tL0ludGVsU0dYUm9vdENBLmRlcjAdBgNVHQ4EFgQUImUM1lqdNInzg7SV
Ur9QGzknBqwwDgYDVR0PAQH/BAQDAgEGMBIGA1UdEwEB/wQIMAYBAf8CAQEwCgYI
KoZIzj0EAwIDSQAwRgIhAOW/5QkR+S9CiSDcNoowLuPRLsWGf/Yi7GSX94BgwTwg
AiEA4J0lrHoMs+Xo5o/sX6O9QWxHRAvZUGOdRQ7cvqRXaqI=
-----END CERTIFICATE-----
`

var intelRoots = sync.OnceValue(func() *x509.CertPool {
	block, _ := pem.Decode([]byte(IntelSGXRootCA))
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		panic("attest: embedded Intel SGX root does not parse: " + err.Error()) // a constant: cannot happen
	}
	p := x509.NewCertPool()
	p.AddCert(cert)
	return p
})

// verifyTDX checks a tdx payload offline with go-tdx-guest: the quote's
// embedded PCK chain leads to a trusted Intel root at now, the PCK key signs
// the quoting enclave's report, which binds the attestation key, which
// signs the TD quote body. Intel's TCB-info and QE-identity collateral is
// not fetched (see the package documentation).
func verifyTDX(payload []byte, roots *x509.CertPool, now time.Time) (*report, error) {
	if len(payload) == 0 || len(payload) > maxTDXPayload {
		return nil, fmt.Errorf("%w: tdx payload has %d bytes, want 1 to %d", ErrMalformed, len(payload), maxTDXPayload)
	}
	if err := checkTDXLayout(payload); err != nil {
		return nil, fmt.Errorf("%w: tdx quote: %v", ErrMalformed, err)
	}
	q, err := tabi.QuoteToProto(payload)
	if err != nil {
		return nil, fmt.Errorf("%w: tdx quote: %v", ErrMalformed, err)
	}
	quote, ok := q.(*tpb.QuoteV4)
	if !ok {
		return nil, fmt.Errorf("%w: tdx quote of type %T, want version 4", ErrMalformed, q)
	}
	if err := tabi.CheckQuoteV4(quote); err != nil {
		return nil, fmt.Errorf("%w: tdx quote: %v", ErrMalformed, err)
	}
	if err := tverify.TdxQuote(quote, &tverify.Options{Now: now, TrustedRoots: roots}); err != nil {
		return nil, fmt.Errorf("%w: tdx: %v", ErrSignature, err)
	}
	body := quote.GetTdQuoteBody()
	rtmrs := body.GetRtmrs()
	if len(rtmrs) != 4 || len(body.GetTdAttributes()) != 8 || len(body.GetTeeTcbSvn()) != 16 || len(body.GetReportData()) != 64 {
		return nil, fmt.Errorf("%w: tdx quote body has fields of the wrong size", ErrMalformed)
	}
	tcb := make(TCB, 16)
	for i, b := range body.GetTeeTcbSvn() {
		tcb[i] = uint32(b)
	}
	var rd [64]byte
	copy(rd[:], body.GetReportData())
	return &report{
		claims: Claims{
			Platform:   fmt.Sprintf("Intel TDX, TDX module %x…", body.GetMrSeam()[:8]),
			TCB:        tcb,
			Debug:      body.GetTdAttributes()[0]&1 != 0, // TUD.DEBUG
			ReportData: rd,
		},
		regs: [][]byte{body.GetMrTd(), rtmrs[0], rtmrs[1], rtmrs[2], rtmrs[3]},
	}, nil
}

// checkTDXLayout checks the nested lengths of a version-4 quote before
// go-tdx-guest's parser slices by them: it trusts them, and panics on a
// quote whose signed data or certification data is shorter than its fixed
// fields. Layout: header (0x30) ‖ TD quote body (0x248) ‖ signed data size
// (4) ‖ signed data: signature (0x40) ‖ attestation key (0x40) ‖
// certification data: type (2) ‖ size (4) ‖ QE report (0x180) ‖ QE report
// signature (0x40) ‖ QE auth data: size (2) ‖ data ‖ PCK chain: type (2) ‖
// size (4) ‖ PEM, with every size exact.
func checkTDXLayout(b []byte) error {
	const signedStart = 0x27C
	if len(b) < signedStart {
		return fmt.Errorf("%d bytes, shorter than a header and a TD quote body", len(b))
	}
	size := uint64(binary.LittleEndian.Uint32(b[signedStart-4 : signedStart]))
	signed := b[signedStart:]
	if size > uint64(len(signed)) {
		return fmt.Errorf("signed data size %d exceeds the %d bytes left", size, len(signed))
	}
	signed = signed[:size]
	if len(signed) < 0x80+6 {
		return fmt.Errorf("signed data of %d bytes is too short", len(signed))
	}
	cert := signed[0x80:]
	if uint64(binary.LittleEndian.Uint32(cert[2:6])) != uint64(len(cert)-6) {
		return fmt.Errorf("certification data size does not match the %d bytes left", len(cert)-6)
	}
	qe := cert[6:]
	if len(qe) < 0x1C0+2 {
		return fmt.Errorf("QE report certification data of %d bytes is too short", len(qe))
	}
	auth := int(binary.LittleEndian.Uint16(qe[0x1C0:0x1C2]))
	rest := qe[0x1C2:]
	if auth > len(rest) {
		return fmt.Errorf("QE auth data size %d exceeds the %d bytes left", auth, len(rest))
	}
	rest = rest[auth:]
	if len(rest) < 6 {
		return fmt.Errorf("PCK certificate chain header is truncated")
	}
	if uint64(binary.LittleEndian.Uint32(rest[2:6])) != uint64(len(rest)-6) {
		return fmt.Errorf("PCK certificate chain size does not match the %d bytes left", len(rest)-6)
	}
	return nil
}

// TDXAttester produces tdx evidence inside an Intel TDX guest through the
// kernel's configfs-tsm interface (/sys/kernel/config/tsm/report, Linux
// 6.7 and later): it writes the report data to an entry's inblob and reads
// the quote from its outblob.
type TDXAttester struct {
	fs configfsi.Client
}

// NewTDXAttester returns an attester that talks to configfs through fs.
func NewTDXAttester(fs configfsi.Client) *TDXAttester { return &TDXAttester{fs: fs} }

// OpenTDX opens this machine's configfs-tsm report interface; it fails with
// [ErrUnsupported] where there is none.
func OpenTDX() (*TDXAttester, error) {
	fs, err := linuxtsm.MakeClient()
	if err != nil {
		return nil, fmt.Errorf("%w: configfs-tsm: %v", ErrUnsupported, err)
	}
	return NewTDXAttester(fs), nil
}

// Format returns FormatTDX.
func (*TDXAttester) Format() string { return FormatTDX }

// Attest returns a TDX quote over reportData.
func (a *TDXAttester) Attest(reportData [64]byte, _ time.Time) ([]byte, error) {
	resp, err := tsmreport.Get(a.fs, &tsmreport.Request{InBlob: reportData[:]})
	if err != nil {
		return nil, fmt.Errorf("configfs-tsm report: %w", err)
	}
	if p := strings.TrimSpace(resp.Provider); p != "tdx_guest" {
		return nil, fmt.Errorf("configfs-tsm report from provider %q, want tdx_guest", trunc(p))
	}
	if err := checkTDXLayout(resp.OutBlob); err != nil {
		return nil, fmt.Errorf("configfs-tsm returned a malformed quote: %w", err)
	}
	q, err := tabi.QuoteToProto(resp.OutBlob)
	if err != nil {
		return nil, fmt.Errorf("configfs-tsm returned a quote that does not parse: %w", err)
	}
	quote, ok := q.(*tpb.QuoteV4)
	if !ok || !bytes.Equal(quote.GetTdQuoteBody().GetReportData(), reportData[:]) {
		return nil, fmt.Errorf("configfs-tsm returned a quote over other report data")
	}
	return resp.OutBlob, nil
}
