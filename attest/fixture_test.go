package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"encoding/hex"
	"encoding/pem"
	"math/big"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	sevtd "github.com/google/go-sev-guest/verify/testdata"
	tabi "github.com/google/go-tdx-guest/abi"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxtd "github.com/google/go-tdx-guest/testing/testdata"
	"google.golang.org/protobuf/proto"
)

// detRand is a deterministic randomness source for tests.
func detRand(seed uint64) *mrand.ChaCha8 {
	var s [32]byte
	binary.BigEndian.PutUint64(s[:], seed)
	return mrand.NewChaCha8(s)
}

// The pinned clocks: the sim tests run at simNow; the shipped vendor samples
// are checked at times their certificates were valid, as the vendor
// libraries' own tests do.
var (
	simNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	snpNow = time.Date(2024, 1, 15, 12, 0, 0, 0, time.UTC) // VCEK valid 2022-09-24 … 2029-09-24
	tdxNow = time.Date(2023, 7, 1, 1, 0, 0, 0, time.UTC)   // go-tdx-guest's currentTime
)

// A session binding and variations on each of its parts.
func testBinding(t testing.TB, now time.Time, seed uint64) Binding {
	t.Helper()
	r := detRand(seed)
	nonce, err := NewNonce(r, now)
	if err != nil {
		t.Fatal(err)
	}
	b := Binding{Nonce: nonce, EKM: make([]byte, EKMLength), HPKEPub: make([]byte, 1216), SignPub: make([]byte, 32)}
	r.Read(b.EKM)
	r.Read(b.HPKEPub)
	r.Read(b.SignPub)
	return b
}

// testBinary writes a fake program and the same program with one byte
// appended, and returns their paths.
func testBinary(t testing.TB) (path, changed string) {
	t.Helper()
	dir := t.TempDir()
	prog := bytes.Repeat([]byte("cloister node binary "), 1000)
	path, changed = filepath.Join(dir, "cloister"), filepath.Join(dir, "cloister-changed")
	if err := os.WriteFile(path, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(changed, append(prog, 0), 0o755); err != nil {
		t.Fatal(err)
	}
	return path, changed
}

func mustMeasure(t testing.TB, path string, cfg []byte) [48]byte {
	t.Helper()
	m, err := MeasureFile(path, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func newSim(t testing.TB, c SimConfig) *SimAttester {
	t.Helper()
	if c.Rand == nil {
		c.Rand = detRand(7)
	}
	a, err := NewSimAttester(c)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustVerifier(t testing.TB, p Policy, r Roots) *Verifier {
	t.Helper()
	v, err := NewVerifier(p, r)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustAttest(t testing.TB, a Attester, b Binding, now time.Time) []byte {
	t.Helper()
	ev, err := Attest(a, b, now)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

func envelope(t testing.TB, format string, b Binding, payload []byte) []byte {
	t.Helper()
	ev, err := (&Evidence{Format: format, Binding: b, Payload: payload}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// alterPayload returns evidence with f applied to a copy of its payload.
func alterPayload(t testing.TB, ev []byte, f func([]byte) []byte) []byte {
	t.Helper()
	e, err := ParseEvidence(ev)
	if err != nil {
		t.Fatal(err)
	}
	e.Payload = f(bytes.Clone(e.Payload))
	out, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The shipped SEV-SNP sample: go-sev-guest's verify/testdata attestation.bin
// (a Milan report from a VM launched without an ID block, in debug mode)
// and the VCEK that signs it.
const (
	snpSampleMeasurement = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
)

var snpSampleTCB = TCB{2, 0, 5, 68}

func snpSamplePayload(t testing.TB) []byte {
	t.Helper()
	p, err := SNPPayload(sevtd.AttestationBytes, sevtd.VcekBytes)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func snpSampleReportData() [64]byte {
	var rd [64]byte
	copy(rd[:], sevtd.AttestationBytes[0x50:0x90]) // 01 02 03 04 05 00 …
	return rd
}

func snpPolicy() Policy {
	return Policy{
		Formats:      []string{FormatSNP},
		Measurements: map[string][]string{FormatSNP: {snpSampleMeasurement}},
		MinTCB:       map[string]TCB{FormatSNP: snpSampleTCB},
		MaxAge:       Duration(time.Hour),
		AllowDebug:   true, // the shipped sample is a debug guest
	}
}

// The shipped TDX sample: go-tdx-guest's testing/testdata
// tdx_prod_quote_SPR_E4.dat, a production quote with its PCK chain.
func tdxSample(t testing.TB) *tpb.QuoteV4 {
	t.Helper()
	q, err := tabi.QuoteToProto(tdxtd.RawQuote)
	if err != nil {
		t.Fatal(err)
	}
	return q.(*tpb.QuoteV4)
}

func tdxMeasurement(q *tpb.QuoteV4) string {
	b := q.GetTdQuoteBody()
	return formatMeasurement(b.GetMrTd(), b.Rtmrs[0], b.Rtmrs[1], b.Rtmrs[2], b.Rtmrs[3])
}

func tdxTCB(q *tpb.QuoteV4) TCB {
	var t TCB
	for _, b := range q.GetTdQuoteBody().GetTeeTcbSvn() {
		t = append(t, uint32(b))
	}
	return t
}

func tdxReportData(q *tpb.QuoteV4) [64]byte {
	var rd [64]byte
	copy(rd[:], q.GetTdQuoteBody().GetReportData())
	return rd
}

func tdxPolicy(q *tpb.QuoteV4) Policy {
	return Policy{
		Formats:      []string{FormatTDX},
		Measurements: map[string][]string{FormatTDX: {tdxMeasurement(q)}},
		MinTCB:       map[string]TCB{FormatTDX: tdxTCB(q)},
		MaxAge:       Duration(time.Hour),
	}
}

// tdxForger re-signs TDX quotes under a test-only PCK chain (root, PCK
// platform CA, PCK leaf carrying the sample's SGX extensions), to make
// quotes the shipped sample cannot provide (a debug TD, a quote over our
// report data). Its root is trusted only by verifiers given tdxForger.pool.
type tdxForger struct {
	pool      *x509.CertPool
	chainPEM  []byte
	pck, att  *ecdsa.PrivateKey
	template  *tpb.QuoteV4
	notBefore time.Time
}

func newTDXForger(t testing.TB) *tdxForger {
	t.Helper()
	sample := tdxSample(t)
	chain := sample.GetSignedData().GetCertificationData().GetQeReportCertificationData().GetPckCertificateChainData().GetPckCertChain()
	block, _ := pem.Decode(chain)
	realLeaf, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	key := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	rootKey, caKey, pckKey, attKey := key(), key(), key(), key()
	nb := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	na := time.Date(2040, 1, 1, 0, 0, 0, 0, time.UTC)
	name := func(cn string) pkix.Name {
		return pkix.Name{CommonName: cn, Organization: []string{"Cloister test, NOT Intel"}}
	}
	create := func(tmpl, parent *x509.Certificate, pub *ecdsa.PublicKey, priv *ecdsa.PrivateKey) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, priv)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	ca := func(serial int64, cn string) *x509.Certificate {
		return &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: name(cn), NotBefore: nb, NotAfter: na,
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
			SignatureAlgorithm: x509.ECDSAWithSHA256}
	}
	root := create(ca(1, "Intel SGX Root CA"), ca(1, "Intel SGX Root CA"), &rootKey.PublicKey, rootKey)
	inter := create(ca(2, "Intel SGX PCK Platform CA"), root, &caKey.PublicKey, rootKey)
	var exts []pkix.Extension
	for _, e := range realLeaf.Extensions {
		if !e.Id.Equal([]int{2, 5, 29, 35}) { // authority key ID: ours comes from inter
			exts = append(exts, e)
		}
	}
	leaf := create(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: name("Intel SGX PCK Certificate"),
		NotBefore: nb, NotAfter: na, ExtraExtensions: exts, SignatureAlgorithm: x509.ECDSAWithSHA256},
		inter, &pckKey.PublicKey, caKey)
	var pemChain []byte
	for _, c := range []*x509.Certificate{leaf, inter, root} {
		pemChain = append(pemChain, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	pool := x509.NewCertPool()
	pool.AddCert(root)
	return &tdxForger{pool: pool, chainPEM: pemChain, pck: pckKey, att: attKey, template: sample, notBefore: nb}
}

// quote returns a quote with the sample's body, changed by edit, signed
// under the forger's chain.
func (f *tdxForger) quote(t testing.TB, edit func(*tpb.TDQuoteBody)) []byte {
	t.Helper()
	q := proto.Clone(f.template).(*tpb.QuoteV4)
	if edit != nil {
		edit(q.TdQuoteBody)
	}
	sd := q.SignedData
	qe := sd.CertificationData.QeReportCertificationData
	delta := uint32(len(f.chainPEM)) - qe.PckCertificateChainData.Size
	qe.PckCertificateChainData.PckCertChain = f.chainPEM
	qe.PckCertificateChainData.Size += delta
	sd.CertificationData.Size += delta
	q.SignedDataSize += delta

	sign := func(k *ecdsa.PrivateKey, msg []byte) []byte {
		h := sha256.Sum256(msg)
		r, s, err := ecdsa.Sign(rand.Reader, k, h[:])
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, 64)
		r.FillBytes(out[:32])
		s.FillBytes(out[32:])
		return out
	}
	attPub := make([]byte, 64)
	f.att.PublicKey.X.FillBytes(attPub[:32])
	f.att.PublicKey.Y.FillBytes(attPub[32:])
	sd.EcdsaAttestationKey = attPub
	h := sha256.Sum256(append(bytes.Clone(attPub), qe.QeAuthData.Data...))
	qe.QeReport.ReportData = append(h[:], make([]byte, 32)...)
	qeRaw, err := tabi.EnclaveReportToAbiBytes(qe.QeReport)
	if err != nil {
		t.Fatal(err)
	}
	qe.QeReportSignature = sign(f.pck, qeRaw)
	header, err := tabi.HeaderToAbiBytes(q.Header)
	if err != nil {
		t.Fatal(err)
	}
	body, err := tabi.TdQuoteBodyToAbiBytes(q.TdQuoteBody)
	if err != nil {
		t.Fatal(err)
	}
	sd.Signature = sign(f.att, append(header, body...))
	raw, err := tabi.QuoteToAbiBytes(q)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func tdxRawQuote() []byte { return bytes.Clone(tdxtd.RawQuote) }
