package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/fxamacker/cbor/v2"
	"github.com/hf/nitrite"
)

// nitroForger makes Nitro attestation documents under a test-only chain
// (no real document ships with nitrite): a P-384 root standing in for AWS's
// and an enclave certificate valid for three hours, as AWS issues them.
type nitroForger struct {
	pool      *x509.CertPool
	root      *x509.Certificate
	rootKey   *ecdsa.PrivateKey
	leaf      *x509.Certificate
	leafKey   *ecdsa.PrivateKey
	pcrs      map[uint][]byte
	timestamp time.Time
	edit      func(*nitrite.Document)
}

func newNitroForger(t testing.TB, now time.Time, curve elliptic.Curve) *nitroForger {
	t.Helper()
	f := &nitroForger{timestamp: now, pcrs: map[uint][]byte{}}
	var err error
	if f.rootKey, err = ecdsa.GenerateKey(elliptic.P384(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	if f.leafKey, err = ecdsa.GenerateKey(curve, rand.Reader); err != nil {
		t.Fatal(err)
	}
	rootTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test.nitro-enclaves (NOT AWS)"},
		NotBefore: now.Add(-24 * time.Hour), NotAfter: now.Add(10 * 365 * 24 * time.Hour), IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign, SignatureAlgorithm: x509.ECDSAWithSHA384}
	der, err := x509.CreateCertificate(rand.Reader, rootTmpl, rootTmpl, &f.rootKey.PublicKey, f.rootKey)
	if err != nil {
		t.Fatal(err)
	}
	f.root, _ = x509.ParseCertificate(der)
	leafTmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "i-0123-enc0123"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(3 * time.Hour), SignatureAlgorithm: x509.ECDSAWithSHA384}
	if der, err = x509.CreateCertificate(rand.Reader, leafTmpl, f.root, f.leafKey.Public(), f.rootKey); err != nil {
		t.Fatal(err)
	}
	f.leaf, _ = x509.ParseCertificate(der)
	f.pool = x509.NewCertPool()
	f.pool.AddCert(f.root)
	for i := uint(0); i < 16; i++ {
		f.pcrs[i] = make([]byte, 48)
		if i < 3 {
			for j := range f.pcrs[i] {
				f.pcrs[i][j] = byte(0x10*i + 1)
			}
		}
	}
	return f
}

func (f *nitroForger) measurement() string { return formatMeasurement(f.pcrs[0], f.pcrs[1], f.pcrs[2]) }

// document returns a COSE_Sign1 attestation document over userData.
func (f *nitroForger) document(t testing.TB, userData []byte) []byte {
	t.Helper()
	doc := nitrite.Document{
		ModuleID: "i-0123-enc0123", Timestamp: uint64(f.timestamp.UnixMilli()), Digest: "SHA384",
		PCRs: f.pcrs, Certificate: f.leaf.Raw, CABundle: [][]byte{f.root.Raw}, UserData: userData,
	}
	if f.edit != nil {
		f.edit(&doc)
	}
	payload, err := cbor.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	protected, _ := cbor.Marshal(map[int]int{1: -35}) // alg: ES384
	sigStruct, _ := cbor.Marshal([]any{"Signature1", protected, []byte{}, payload})
	h := sha512.Sum384(sigStruct)
	r, s, err := ecdsa.Sign(rand.Reader, f.leafKey, h[:])
	if err != nil {
		t.Fatal(err)
	}
	n := (f.leafKey.Curve.Params().BitSize + 7) / 8
	sig := make([]byte, 2*n)
	r.FillBytes(sig[:n])
	s.FillBytes(sig[n:])
	out, err := cbor.Marshal([]any{protected, map[int]any{}, payload, sig})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// fakeNSM answers NSM attestation requests with forged documents.
type fakeNSM struct {
	f        *nitroForger
	requests []map[string]map[string][]byte
	fail     string
}

func (n *fakeNSM) Send(req []byte) ([]byte, error) {
	var r map[string]map[string][]byte
	if err := cbor.Unmarshal(req, &r); err != nil {
		return nil, err
	}
	n.requests = append(n.requests, r)
	if n.fail != "" {
		return cbor.Marshal(map[string]string{"Error": n.fail})
	}
	doc := n.f.document(testingTB{}, r["Attestation"]["user_data"])
	return cbor.Marshal(map[string]map[string][]byte{"Attestation": {"document": doc}})
}

// testingTB lets the fake NSM call the forger outside a test's goroutine
// bookkeeping; the forger only fails on broken crypto.
type testingTB struct{ testing.TB }

func (testingTB) Helper()           {}
func (testingTB) Fatal(args ...any) { panic(args) }

func TestNitroAttesterAndVerifier(t *testing.T) {
	now := simNow
	want := testBinding(t, now.Add(-time.Minute), 1)
	f := newNitroForger(t, now.Add(-10*time.Second), elliptic.P384())
	policy := Policy{
		Formats:      []string{FormatNitro},
		Measurements: map[string][]string{FormatNitro: {f.measurement()}},
		MaxAge:       Duration(time.Hour),
	}
	v := mustVerifier(t, policy, Roots{Nitro: f.pool})

	t.Run("accepted", func(t *testing.T) {
		nsm := &fakeNSM{f: f}
		ev := mustAttest(t, NewNitroAttester(nsm), want, now)
		c, err := v.Verify(ev, want, now)
		if err != nil {
			t.Fatal(err)
		}
		if c.Measurement != f.measurement() || c.Debug || c.TCB != nil || !c.Time.Equal(f.timestamp) {
			t.Fatalf("claims %+v", c)
		}
		rd := want.ReportData()
		req := nsm.requests[0]["Attestation"]
		if !bytes.Equal(req["user_data"], rd[:]) || req["nonce"] != nil || req["public_key"] != nil {
			t.Fatalf("NSM request %x", req)
		}
		// Pinning PCR0 alone (the enclave image) accepts it too.
		p := policy
		p.Measurements = map[string][]string{FormatNitro: {hexOf(f.pcrs[0])}}
		if _, err := mustVerifier(t, p, Roots{Nitro: f.pool}).Verify(ev, want, now); err != nil {
			t.Fatal(err)
		}
	})
	doc := func(t *testing.T, f *nitroForger) []byte {
		rd := want.ReportData()
		return envelope(t, FormatNitro, want, f.document(t, rd[:]))
	}
	cases := []struct {
		name string
		ev   func(t *testing.T) []byte
		v    *Verifier
		at   time.Time
		want error
	}{
		{"AWS root trusted", func(t *testing.T) []byte { return doc(t, f) }, mustVerifier(t, policy, Roots{}), now, ErrSignature},
		{"tampered signature", func(t *testing.T) []byte {
			return alterPayload(t, doc(t, f), func(p []byte) []byte { p[len(p)-1] ^= 1; return p })
		}, v, now, ErrSignature},
		{"enclave certificate expired", func(t *testing.T) []byte { return doc(t, f) }, v, now.Add(4 * time.Hour), ErrSignature},
		{"older than max age", func(t *testing.T) []byte {
			g := *f
			g.timestamp = now.Add(-time.Hour - time.Second)
			return doc(t, &g)
		}, v, now, ErrTooOld},
		{"debug enclave (zero PCRs)", func(t *testing.T) []byte {
			g := *f
			g.pcrs = map[uint][]byte{0: make([]byte, 48), 1: make([]byte, 48), 2: make([]byte, 48)}
			return doc(t, &g)
		}, v, now, ErrDebug},
		{"unknown PCR2", func(t *testing.T) []byte {
			g := *f
			g.edit = func(d *nitrite.Document) { d.PCRs = map[uint][]byte{0: f.pcrs[0], 1: f.pcrs[1], 2: f.pcrs[0]} }
			return doc(t, &g)
		}, v, now, ErrMeasurement},
		{"public_key set", func(t *testing.T) []byte {
			g := *f
			g.edit = func(d *nitrite.Document) { d.PublicKey = []byte("a key") }
			return doc(t, &g)
		}, v, now, ErrMalformed},
		{"no PCR1", func(t *testing.T) []byte {
			g := *f
			g.edit = func(d *nitrite.Document) { d.PCRs = map[uint][]byte{0: f.pcrs[0], 2: f.pcrs[2]} }
			return doc(t, &g)
		}, v, now, ErrMalformed},
		{"user_data of another session", func(t *testing.T) []byte {
			return envelope(t, FormatNitro, want, f.document(t, make([]byte, 64)))
		}, v, now, ErrReportData},
		{"not CBOR", func(t *testing.T) []byte { return envelope(t, FormatNitro, want, []byte("garbage")) }, v, now, ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := c.v.Verify(c.ev(t), want, c.at)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
		})
	}
	t.Run("NSM error", func(t *testing.T) {
		if _, err := Attest(NewNitroAttester(&fakeNSM{f: f, fail: "InvalidArgument"}), want, now); err == nil ||
			!strings.Contains(err.Error(), "InvalidArgument") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("no NSM here", func(t *testing.T) {
		if _, err := OpenNitro(); !errors.Is(err, ErrUnsupported) {
			t.Fatalf("got %v, want ErrUnsupported", err)
		}
	})
}

// nitrite.Verify panics on a document signed by a P-521 key (its curve
// switch has no "P-521" case), even when the chain does not verify: the
// verifier refuses such a leaf before calling it.
func TestNitroP521Leaf(t *testing.T) {
	now := simNow
	f := newNitroForger(t, now, elliptic.P521())
	raw := f.document(t, make([]byte, 64))
	panicked := func() (p bool) {
		defer func() { p = recover() != nil }()
		nitrite.Verify(raw, nitrite.VerifyOptions{CurrentTime: now})
		return false
	}()
	t.Logf("nitrite.Verify panics on a P-521 leaf: %v", panicked)
	v := mustVerifier(t, Policy{Formats: []string{FormatNitro},
		Measurements: map[string][]string{FormatNitro: {f.measurement()}}, MaxAge: Duration(time.Hour)}, Roots{Nitro: f.pool})
	_, err := v.VerifyReportData(envelope(t, FormatNitro, Binding{}, raw), [64]byte{}, now, now)
	if !errors.Is(err, ErrSignature) || strings.Contains(err.Error(), "crashed") {
		t.Fatalf("got %v, want ErrSignature from the pre-check", err)
	}
}
