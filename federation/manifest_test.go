package federation

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"io"
	"math"
	"math/big"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/attest"
)

// testManifest returns a valid manifest with n members and fake (but
// well-formed) fingerprints and keys.
func testManifest(n, t int) *Manifest {
	party := func(name string, i int) Principal {
		fp := strings.Repeat(strconv.FormatInt(int64(i%16), 16), 64)
		key := make(ed25519.PublicKey, ed25519.PublicKeySize)
		key[0] = byte(i)
		return Principal{Name: name, Fingerprint: fp, AuditKey: key}
	}
	m := &Manifest{
		Version:     ManifestVersion,
		Federation:  "fed-test",
		Serial:      1,
		Coordinator: party("coordinator", 0),
		Threshold:   t,
		MinCohort:   t,
		Mode:        ModeMHE,
		Preset:      "test",
		DP:          DP{NoiseMultiplier: 1.1, Clip: 1, Epsilon: 8, Delta: 1e-5},
		Model:       ModelSpec{Kind: "mlp", Inputs: 784, Classes: 10, Hidden: []int{64, 32}},
		Training:    Training{Rounds: 5, LocalEpochs: 1, Batch: 32, LearningRate: 0.05, Momentum: 0.9, Strategy: "fedadam:lr=0.1,b1=0.9,b2=0.99,tau=0.001"},
		Attestation: attest.Policy{Formats: []string{"sim"}, AllowSim: true, MaxAge: attest.Duration(time.Hour),
			Measurements: map[string][]string{"sim": {strings.Repeat("ab", 48)}}, MinTCB: map[string]attest.TCB{"sim": {2}}},
	}
	for i := 1; i <= n; i++ {
		m.Members = append(m.Members, party("node-"+strconv.Itoa(i), i))
	}
	return m
}

func TestManifestSignVerify(t *testing.T) {
	f := newFixture(t)
	m := testManifest(5, 3)
	signed, err := Sign(m, f.ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Verify(signed, f.ca.Certificate())
	if err != nil {
		t.Fatal(err)
	}
	h1, _ := m.Hash()
	h2, _ := got.Hash()
	if h1 != h2 {
		t.Error("hash changed across sign/verify")
	}
	if got.Threshold != 3 || len(got.Members) != 5 || got.Members[4].Name != "node-5" || !got.Members[2].AuditKey.Equal(m.Members[2].AuditKey) {
		t.Errorf("round trip lost data: %+v", got)
	}
	// Whitespace outside the canonical content does not matter.
	var compact bytes.Buffer
	if err := json.Compact(&compact, signed); err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(compact.Bytes(), f.ca.Certificate()); err != nil {
		t.Errorf("compacted file: %v", err)
	}
}

func TestManifestTampered(t *testing.T) {
	f := newFixture(t)
	signed, err := Sign(testManifest(5, 3), f.ca, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, edit := range []struct{ from, to string }{
		{`"threshold": 3`, `"threshold": 2`},
		{`"name": "node-5"`, `"name": "node-6"`},
		{`"allow_sim": true`, `"allow_sim": false`},
		{`"epsilon": 8`, `"epsilon": 80`},
	} {
		bad := bytes.Replace(signed, []byte(edit.from), []byte(edit.to), 1)
		if bytes.Equal(bad, signed) {
			t.Fatalf("edit %q not found in\n%s", edit.from, signed)
		}
		if _, err := Verify(bad, f.ca.Certificate()); !errors.Is(err, ErrBadSignature) {
			t.Errorf("edit %q → %q: error %v, want ErrBadSignature", edit.from, edit.to, err)
		}
	}
	// A flipped signature byte.
	var env signedManifest
	if err := json.Unmarshal(signed, &env); err != nil {
		t.Fatal(err)
	}
	env.Signature.Value[len(env.Signature.Value)-1] ^= 1
	bad, _ := json.Marshal(env)
	if _, err := Verify(bad, f.ca.Certificate()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("flipped signature: %v, want ErrBadSignature", err)
	}
}

func TestManifestOtherCA(t *testing.T) {
	f := newFixture(t)
	other := newTestCA(t, "Other CA")
	signed, err := Sign(testManifest(3, 2), other, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Verify(signed, f.ca.Certificate()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("manifest of another CA: %v, want ErrBadSignature", err)
	}
	// Claiming our CA's fingerprint does not help either.
	var env signedManifest
	json.Unmarshal(signed, &env)
	env.Signature.CA = fingerprint(f.ca.Certificate())
	bad, _ := json.Marshal(env)
	if _, err := Verify(bad, f.ca.Certificate()); !errors.Is(err, ErrBadSignature) {
		t.Errorf("manifest of another CA with our fingerprint: %v, want ErrBadSignature", err)
	}
}

// signRaw signs arbitrary manifest bytes with the CA key, bypassing
// SignManifest's checks, to test what VerifyManifest does with content
// that is signed but wrong.
func signRaw(t *testing.T, ca *testCA, raw []byte) []byte {
	t.Helper()
	var c bytes.Buffer
	if err := json.Compact(&c, raw); err != nil {
		t.Fatal(err)
	}
	sig, err := ecdsa.SignASN1(rand.Reader, ca.key, manifestDigest(c.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	out, err := json.Marshal(signedManifest{Manifest: c.Bytes(), Signature: signature{Alg: sigAlg, CA: fingerprint(ca.Certificate()), Value: sig}})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestManifestSignedButMalformed(t *testing.T) {
	f := newFixture(t)
	canonical, _ := testManifest(3, 2).Canonical()
	var generic map[string]any
	json.Unmarshal(canonical, &generic)
	reordered, _ := json.Marshal(generic) // keys sorted: not canonical order
	cases := map[string][]byte{
		"unknown field":  bytes.Replace(canonical, []byte(`{"version":1,`), []byte(`{"version":1,"extra":true,`), 1),
		"duplicate key":  bytes.Replace(canonical, []byte(`{"version":1,`), []byte(`{"version":1,"threshold":1,`), 1),
		"reordered keys": reordered,
		"float form":     bytes.Replace(canonical, []byte(`"clip":1,`), []byte(`"clip":1.0,`), 1),
		"case folding":   bytes.Replace(canonical, []byte(`"threshold"`), []byte(`"Threshold"`), 1),
	}
	for name, raw := range cases {
		if bytes.Equal(raw, canonical) {
			t.Fatalf("%s: edit did not apply", name)
		}
		if _, err := Verify(signRaw(t, f.ca, raw), f.ca.Certificate()); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: error %v, want ErrBadManifest", name, err)
		}
	}
	// Signed, canonical, but invalid content.
	bad := testManifest(3, 2)
	bad.Threshold = 4
	raw, _ := bad.Canonical()
	if _, err := Verify(signRaw(t, f.ca, raw), f.ca.Certificate()); !errors.Is(err, ErrInvalidManifest) {
		t.Errorf("threshold above n: error %v, want ErrInvalidManifest", err)
	}
	for name, data := range map[string][]byte{
		"empty":    nil,
		"garbage":  []byte("not json"),
		"trailing": append(signRaw(t, f.ca, canonical), []byte(`{}`)...),
		"huge":     make([]byte, MaxSize+1),
	} {
		if _, err := Verify(data, f.ca.Certificate()); !errors.Is(err, ErrBadManifest) {
			t.Errorf("%s: error %v, want ErrBadManifest", name, err)
		}
	}
}

func TestManifestValidate(t *testing.T) {
	cases := map[string]func(m *Manifest){
		"version":            func(m *Manifest) { m.Version = 2 },
		"no federation":      func(m *Manifest) { m.Federation = "" },
		"federation charset": func(m *Manifest) { m.Federation = "fed/1" },
		"no members":         func(m *Manifest) { m.Members = nil },
		"threshold 0":        func(m *Manifest) { m.Threshold = 0; m.MinCohort = 1 },
		"threshold > n":      func(m *Manifest) { m.Threshold = 6; m.MinCohort = 6 },
		"min cohort < t":     func(m *Manifest) { m.MinCohort = 2 },
		"min cohort > n":     func(m *Manifest) { m.MinCohort = 6 },
		"duplicate name":     func(m *Manifest) { m.Members[1].Name = m.Members[0].Name },
		"duplicate fp":       func(m *Manifest) { m.Members[1].Fingerprint = m.Members[0].Fingerprint },
		"fp equals coord":    func(m *Manifest) { m.Members[1].Fingerprint = m.Coordinator.Fingerprint },
		"duplicate key":      func(m *Manifest) { m.Members[1].AuditKey = m.Members[0].AuditKey },
		"bad fingerprint":    func(m *Manifest) { m.Members[0].Fingerprint = strings.ToUpper(m.Members[0].Fingerprint) + "0" },
		"short audit key":    func(m *Manifest) { m.Members[0].AuditKey = m.Members[0].AuditKey[:31] },
		"bad member name":    func(m *Manifest) { m.Members[0].Name = "Node 1" },
		"member coordinator": func(m *Manifest) { m.Members[0].Name = "coordinator" },
		"bad coord name":     func(m *Manifest) { m.Coordinator.Name = "" },
		"mode":               func(m *Manifest) { m.Mode = "magic" },
		"mhe without preset": func(m *Manifest) { m.Preset = "" },
		"dp NaN":             func(m *Manifest) { m.DP.Clip = math.NaN() },
		"dp negative":        func(m *Manifest) { m.DP.Epsilon = -1 },
		"dp no clip":         func(m *Manifest) { m.DP.Clip = 0 },
		"dp delta 1":         func(m *Manifest) { m.DP.Delta = 1 },
		"dp budget w/o dp":   func(m *Manifest) { m.DP.NoiseMultiplier = 0 },
		"model kind":         func(m *Manifest) { m.Model.Kind = "" },
		"model kind unknown": func(m *Manifest) { m.Model.Kind = "cnn" },
		"hidden 0":           func(m *Manifest) { m.Model.Hidden = []int{0} },
		"softmax hidden":     func(m *Manifest) { m.Model.Kind = "softmax" },
		"mlp no hidden":      func(m *Manifest) { m.Model.Hidden = nil },
		"no inputs":          func(m *Manifest) { m.Model.Inputs = 0 },
		"one class":          func(m *Manifest) { m.Model.Classes = 1 },
		"too many params":    func(m *Manifest) { m.Model.Inputs, m.Model.Hidden = 1<<20, []int{1 << 20} },
		"rounds":             func(m *Manifest) { m.Training.Rounds = 0 },
		"lr inf":             func(m *Manifest) { m.Training.LearningRate = math.Inf(1) },
		"momentum 1":         func(m *Manifest) { m.Training.Momentum = 1 },
		"momentum negative":  func(m *Manifest) { m.Training.Momentum = -0.1 },
		"prox mu NaN":        func(m *Manifest) { m.Training.ProxMu = math.NaN() },
		"prox mu negative":   func(m *Manifest) { m.Training.ProxMu = -1 },
		"strategy unknown":   func(m *Manifest) { m.Training.Strategy = "fedsgd:lr=1" },
		"strategy order":     func(m *Manifest) { m.Training.Strategy = "scaffold:frac=1,lr=1" },
		"strategy short":     func(m *Manifest) { m.Training.Strategy = "fedadam" },
		"strategy bad b1":    func(m *Manifest) { m.Training.Strategy = "fedadam:lr=0.1,b1=1,b2=0.99,tau=0.001" },
		"strategy bad lr":    func(m *Manifest) { m.Training.Strategy = "fedavg:lr=0" },
		"strategy garbage":   func(m *Manifest) { m.Training.Strategy = "fedadam:lr=x" },
		"format":             func(m *Manifest) { m.Attestation.Formats = []string{"sgx"} },
		"sim not allowed":    func(m *Manifest) { m.Attestation.AllowSim = false },
		"measurement space":  func(m *Manifest) { m.Attestation.Measurements["sim"] = []string{"a b"} },
		"no measurement":     func(m *Manifest) { m.Attestation.Measurements = nil },
		"no max age":         func(m *Manifest) { m.Attestation.MaxAge = 0 },
		"off but sim":        func(m *Manifest) { m.Attestation.Formats = nil },
	}
	if err := testManifest(5, 3).Validate(); err != nil {
		t.Fatalf("valid manifest: %v", err)
	}
	for name, edit := range cases {
		m := testManifest(5, 3)
		edit(m)
		if err := m.Validate(); !errors.Is(err, ErrInvalidManifest) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidManifest", name, err)
		}
	}
	// Edges that are fine: t = n = min cohort, DP off, plain mode without
	// preset, no momentum, the default strategy, each strategy the runtime
	// runs in canonical form.
	m := testManifest(3, 3)
	m.DP = DP{}
	m.Mode, m.Preset = ModePlain, ""
	m.Training.Momentum, m.Training.ProxMu, m.Training.Strategy = 0, 0.01, ""
	if err := m.Validate(); err != nil {
		t.Errorf("t = n, DP off, plain, default strategy: %v", err)
	}
	for _, spec := range []string{"fedavg:lr=0.5", "fedyogi:lr=0.01,b1=0.9,b2=0.99,tau=0.001", "fedadagrad:lr=0.1,b1=0,tau=0.001", "scaffold:lr=1,frac=1"} {
		m.Training.Strategy = spec
		if err := m.Validate(); err != nil {
			t.Errorf("strategy %s: %v", spec, err)
		}
	}
	// Attestation off: the zero policy.
	m.Attestation = attest.Policy{}
	if err := m.Validate(); err != nil || m.AttestationRequired() {
		t.Errorf("attestation off: Validate() = %v, AttestationRequired() = %v", err, m.AttestationRequired())
	}
}

func TestManifestStrategy(t *testing.T) {
	for spec, want := range map[string]string{
		"":                 DefaultStrategy,
		"fedadam":          "fedadam:lr=0.1,b1=0.9,b2=0.99,tau=0.001",
		"FedYogi: lr=0.02": "fedyogi:lr=0.02,b1=0.9,b2=0.99,tau=0.001",
		"fedavg:0.5":       "fedavg:lr=0.5",
		"scaffold":         "scaffold:lr=1,frac=1",
	} {
		got, err := CanonicalStrategy(spec)
		if err != nil || got != want {
			t.Errorf("CanonicalStrategy(%q) = %q, %v, want %q", spec, got, err, want)
		}
		opt, err := Training{Strategy: got}.Optimizer()
		if err != nil || opt.String() != want {
			t.Errorf("Optimizer of %q = %v, %v", got, opt, err)
		}
	}
	for _, spec := range []string{"krum", "fedadam:lr=-1", "scaffold:frac=2"} {
		if got, err := CanonicalStrategy(spec); err == nil {
			t.Errorf("CanonicalStrategy(%q) = %q, want an error", spec, got)
		}
	}
	if opt, err := (Training{}).Optimizer(); err != nil || opt.String() != DefaultStrategy {
		t.Errorf("empty strategy: %v, %v, want %s", opt, err, DefaultStrategy)
	}
}

func TestManifestAuditKeys(t *testing.T) {
	m := testManifest(2, 1)
	keys := m.AuditKeys()
	if len(keys) != 3 || !keys["node-2"].Equal(m.Members[1].AuditKey) {
		t.Errorf("AuditKeys = %v", keys)
	}
}

// testCA is a self-signed ECDSA P-256 CA, a Signer like package pki's CA
// (which this package's tests cannot import).
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
}

func (ca *testCA) Certificate() *x509.Certificate { return ca.cert }
func (ca *testCA) Public() crypto.PublicKey       { return ca.key.Public() }
func (ca *testCA) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return ca.key.Sign(r, digest, opts)
}

func newTestCA(t *testing.T, name string) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: t0.Add(-time.Hour), NotAfter: t0.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return &testCA{cert: cert, key: key}
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type fixture struct{ ca *testCA }

func newFixture(t *testing.T) fixture { return fixture{ca: newTestCA(t, "Test federation CA")} }

// withAggregator makes m a manifest of mode tee, with an aggregator and
// its attestation policy (another measurement than the members').
func withAggregator(m *Manifest) *Manifest {
	key := make(ed25519.PublicKey, ed25519.PublicKeySize)
	key[0] = 0xee
	m.Mode, m.Preset = ModeTEE, ""
	m.Aggregator = &Principal{Name: "aggregator", Fingerprint: strings.Repeat("e", 64), AuditKey: key}
	m.AggregatorAttestation = attest.Policy{Formats: []string{"sim"}, AllowSim: true, MaxAge: attest.Duration(time.Hour),
		Measurements: map[string][]string{"sim": {strings.Repeat("cd", 48)}}}
	return m
}

// TestValidateAggregator: mode tee needs an aggregator, distinct from every
// party, with an attestation policy that has formats; other modes have none.
func TestValidateAggregator(t *testing.T) {
	if err := withAggregator(testManifest(5, 3)).Validate(); err != nil {
		t.Fatalf("a tee manifest: %v", err)
	}
	b, err := withAggregator(testManifest(5, 3)).Canonical()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"aggregator":{"name":"aggregator"`) || !strings.Contains(string(b), `"aggregator_attestation":{`) {
		t.Errorf("the canonical JSON lacks the aggregator: %s", b)
	}
	if b, _ := testManifest(5, 3).Canonical(); strings.Contains(string(b), "aggregator") {
		t.Errorf("an mhe manifest names an aggregator: %s", b)
	}
	for name, c := range map[string]struct {
		edit func(m *Manifest)
		says string
	}{
		"no aggregator":     {func(m *Manifest) { m.Aggregator = nil }, "needs an aggregator"},
		"no policy":         {func(m *Manifest) { m.AggregatorAttestation = attest.Policy{} }, "needs aggregator_attestation with formats"},
		"a member's name":   {func(m *Manifest) { m.Aggregator.Name = "node-2" }, "name of a member"},
		"the coordinator":   {func(m *Manifest) { m.Aggregator.Name = "coordinator" }, "reserved for the coordinator"},
		"a member's cert":   {func(m *Manifest) { m.Aggregator.Fingerprint = m.Members[0].Fingerprint }, "fingerprint"},
		"a member's key":    {func(m *Manifest) { m.Aggregator.AuditKey = m.Members[1].AuditKey }, "audit key"},
		"bad policy":        {func(m *Manifest) { m.AggregatorAttestation.MaxAge = 0 }, "aggregator_attestation"},
		"in mhe":            {func(m *Manifest) { m.Mode, m.Preset = ModeMHE, "test" }, "for mode tee only"},
		"policy in plain":   {func(m *Manifest) { m.Mode, m.Aggregator = ModePlain, nil }, "for mode tee only"},
		"bad name":          {func(m *Manifest) { m.Aggregator.Name = "a b" }, "aggregator"},
		"short fingerprint": {func(m *Manifest) { m.Aggregator.Fingerprint = "ab" }, "fingerprint"},
	} {
		m := withAggregator(testManifest(5, 3))
		c.edit(m)
		err := m.Validate()
		if !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidManifest saying %q", name, err, c.says)
		}
	}
}
