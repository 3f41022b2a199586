package attest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/json"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// Known answers for the formats that are ours: anyone reimplementing them
// (a verifier in another language) checks against these. They were
// cross-checked with Python's hashlib.
func TestKnownAnswers(t *testing.T) {
	rd := ReportData([]byte("nonce"), []byte("ekm"), []byte("hpke"), []byte("sign"))
	if got := hex.EncodeToString(rd[:]); got != "7bf317fca6dae604af19ccf0ef84934350a66472e50a767a12b261ffac27d8a1"+
		"cb9e6953b438d23f2fe0b34ff78b11bff44af8fa605926aa7f821a943788d6c0" {
		t.Errorf("ReportData = %s", got)
	}
	if got := hex.EncodeToString(SimVendorPublicKey()); got != "d8c4658046b6886583d2ae1ee7bb25325b5da652366790edaf890460e8c83e63" {
		t.Errorf("SimVendorPublicKey = %s", got)
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, []byte("cloister"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := mustMeasure(t, p, []byte("launch"))
	if got := hex.EncodeToString(m[:]); got != "68e13cbfaa4dde4cfecf9c9359814c1c9479ac7f60a3da05"+
		"ad6b01fe67ed628618eacf5773f43ce10a83899417826fd7" {
		t.Errorf("MeasureFile = %s", got)
	}
	a := newSim(t, SimConfig{Measurement: m, TCB: 7, Rand: detRand(1)})
	payload, err := a.Attest(rd, simNow)
	if err != nil {
		t.Fatal(err)
	}
	if h := sha256.Sum256(payload); hex.EncodeToString(h[:]) != "7395453e873c12baa0f71341c825bc057f94401ac3c93d54b287f82b0cd63a79" {
		t.Errorf("sim report SHA-256 = %x", h)
	}
	if len(payload) != simReportSize || payload[0] != 1 || !bytes.Equal(payload[97:145], m[:]) ||
		!bytes.Equal(payload[145:209], rd[:]) || !bytes.Equal(payload[209:213], []byte{0, 0, 0, 7}) || payload[213] != 0 {
		t.Errorf("sim report layout: %x", payload)
	}
}

// Every field of the binding is length-prefixed: moving bytes from one
// field to the next changes the report data.
func TestReportDataFieldsAreSeparate(t *testing.T) {
	a := ReportData([]byte("ab"), []byte("c"), nil, nil)
	b := ReportData([]byte("a"), []byte("bc"), nil, nil)
	c := ReportData(nil, nil, []byte("x"), nil)
	d := ReportData(nil, nil, nil, []byte("x"))
	if a == b || c == d {
		t.Fatal("report data does not separate its fields")
	}
	if (Binding{Nonce: []byte("ab"), EKM: []byte("c")}).ReportData() != a {
		t.Fatal("Binding.ReportData differs from ReportData")
	}
}

func TestNonce(t *testing.T) {
	n, err := NewNonce(rand.Reader, simNow)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := NewNonce(rand.Reader, simNow)
	if len(n) != NonceSize || bytes.Equal(n, m) {
		t.Fatalf("nonces %x %x", n, m)
	}
	if at, ok := NonceTime(n); !ok || !at.Equal(simNow) {
		t.Fatalf("NonceTime = %v %v", at, ok)
	}
	if _, ok := NonceTime([]byte("short")); ok {
		t.Fatal("a foreign nonce has a time")
	}
	if _, err := NewNonce(bytes.NewReader(nil), simNow); err == nil {
		t.Fatal("a nonce without randomness")
	}
}

// SessionEKM agrees on both ends of one TLS 1.3 connection and differs
// between connections: evidence relayed from one to another is caught.
func TestSessionEKM(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "coordinator"},
		DNSNames: []string{"coordinator"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	cert := tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
	pool := x509.NewCertPool()
	leaf, _ := x509.ParseCertificate(der)
	pool.AddCert(leaf)

	connect := func(maxVersion uint16) (client, server []byte, cerr error) {
		cc, sc := net.Pipe()
		defer cc.Close()
		defer sc.Close()
		done := make(chan []byte)
		go func() {
			s := tls.Server(sc, &tls.Config{Certificates: []tls.Certificate{cert}})
			if err := s.Handshake(); err != nil {
				done <- nil
				return
			}
			ekm, _ := SessionEKM(s.ConnectionState())
			done <- ekm
		}()
		c := tls.Client(cc, &tls.Config{RootCAs: pool, ServerName: "coordinator", MaxVersion: maxVersion})
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		client, cerr = SessionEKM(c.ConnectionState())
		return client, <-done, cerr
	}
	c1, s1, err := connect(tls.VersionTLS13)
	if err != nil || len(c1) != EKMLength || !bytes.Equal(c1, s1) {
		t.Fatalf("one connection: %x %x %v", c1, s1, err)
	}
	c2, _, _ := connect(tls.VersionTLS13)
	if bytes.Equal(c1, c2) {
		t.Fatal("two connections share keying material")
	}
	if _, _, err := connect(tls.VersionTLS12); err == nil {
		t.Fatal("TLS 1.2 accepted")
	}
	if _, err := SessionEKM(tls.ConnectionState{}); err == nil {
		t.Fatal("an unfinished handshake accepted")
	}
}

func TestEvidenceRoundTrip(t *testing.T) {
	e := &Evidence{Format: FormatTDX, Binding: testBinding(t, simNow, 1), Payload: []byte("quote")}
	b, err := e.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip: %+v, want %+v", got, e)
	}
	empty := &Evidence{Format: FormatSim}
	b, _ = empty.Marshal()
	if got, err := ParseEvidence(b); err != nil || !reflect.DeepEqual(got, empty) {
		t.Fatalf("empty round trip: %+v %v", got, err)
	}
	for name, bad := range map[string]*Evidence{
		"no format":      {},
		"format case":    {Format: "SIM"},
		"long nonce":     {Format: FormatSim, Binding: Binding{Nonce: make([]byte, 256)}},
		"long key":       {Format: FormatSim, Binding: Binding{HPKEPub: make([]byte, 1<<16)}},
		"huge payload":   {Format: FormatSim, Payload: make([]byte, MaxEvidenceSize)},
		"payload > 2^24": {Format: FormatSim, Payload: make([]byte, 1<<24)},
	} {
		if _, err := bad.Marshal(); err == nil {
			t.Errorf("%s: marshalled", name)
		}
	}
}

// Hostile envelopes are ErrMalformed, never a panic or a huge allocation.
func TestHostileEnvelopes(t *testing.T) {
	good := envelope(t, FormatSim, testBinding(t, simNow, 1), make([]byte, simReportSize))
	v := mustVerifier(t, Policy{Formats: []string{FormatSim}, AllowSim: true,
		Measurements: map[string][]string{FormatSim: {strings.Repeat("00", 48)}}, MaxAge: Duration(time.Hour)}, Roots{})
	hostile := map[string][]byte{
		"empty":           nil,
		"magic only":      []byte("CLEV"),
		"wrong magic":     append([]byte("XLEV"), good[4:]...),
		"version 2":       append(append([]byte("CLEV"), 2), good[5:]...),
		"trailing byte":   append(bytes.Clone(good), 0),
		"huge length":     append(append([]byte("CLEV\x01\x03sim\x00\x00\x00\x00\x00\x00"), 0xff, 0xff, 0xff), make([]byte, 16)...),
		"over the limit":  make([]byte, MaxEvidenceSize+1),
		"bad format name": append([]byte("CLEV\x01\x03S;m"), good[9:]...),
		"empty format":    append([]byte("CLEV\x01\x00"), good[9:]...),
	}
	for i := 0; i < len(good); i++ {
		hostile["truncated at "+string(rune('0'+i%10))+"/"+hex.EncodeToString([]byte{byte(i)})] = good[:i]
	}
	for name, b := range hostile {
		if _, err := ParseEvidence(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: ParseEvidence: %v", name, err)
		}
		if _, err := v.Verify(b, Binding{}, simNow); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Verify: %v", name, err)
		}
	}
	// A well-formed envelope of an unknown format is not malformed: it is
	// not allowed.
	if _, err := v.Verify(envelope(t, "sgx", Binding{}, []byte{1}), Binding{}, simNow); !errors.Is(err, ErrFormatNotAllowed) {
		t.Errorf("unknown format: %v", err)
	}
	// Garbage payloads of every format are malformed or unsigned, and the
	// recover backstop never fires.
	all := mustVerifier(t, Policy{Formats: Formats, AllowSim: true, MaxAge: Duration(time.Hour), Measurements: map[string][]string{
		FormatSim: {strings.Repeat("00", 48)}, FormatSNP: {strings.Repeat("00", 48)},
		FormatTDX: {strings.Repeat("00", 48)}, FormatNitro: {strings.Repeat("00", 48)},
	}}, Roots{})
	for _, f := range Formats {
		for _, p := range [][]byte{nil, {0}, bytes.Repeat([]byte{0xff}, 5000), make([]byte, 2000), make([]byte, 70000)} {
			_, err := all.Verify(envelope(t, f, Binding{}, p), Binding{}, simNow)
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) || strings.Contains(err.Error(), "crashed") {
				t.Errorf("%s payload of %d bytes: %v", f, len(p), err)
			}
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	m := strings.Repeat("ab", 48)
	good := Policy{Formats: []string{FormatSim, FormatTDX}, AllowSim: true, MaxAge: Duration(time.Hour),
		Measurements: map[string][]string{FormatSim: {m}, FormatTDX: {m, m + ":" + m}},
		MinTCB:       map[string]TCB{FormatTDX: make(TCB, 16)}}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(*Policy){
		"zero value":             func(p *Policy) { *p = Policy{} },
		"unknown format":         func(p *Policy) { p.Formats = append(p.Formats, "sgx") },
		"format twice":           func(p *Policy) { p.Formats = append(p.Formats, FormatSim) },
		"sim without allow_sim":  func(p *Policy) { p.AllowSim = false },
		"format without list":    func(p *Policy) { p.Formats = append(p.Formats, FormatSNP) },
		"list for unlisted":      func(p *Policy) { p.Measurements[FormatNitro] = []string{m} },
		"uppercase hex":          func(p *Policy) { p.Measurements[FormatSim] = []string{strings.ToUpper(m)} },
		"short register":         func(p *Policy) { p.Measurements[FormatSim] = []string{"abcd"} },
		"not hex":                func(p *Policy) { p.Measurements[FormatSim] = []string{strings.Repeat("zz", 48)} },
		"two sim registers":      func(p *Policy) { p.Measurements[FormatSim] = []string{m + ":" + m} },
		"six tdx registers":      func(p *Policy) { p.Measurements[FormatTDX] = []string{strings.Repeat(m+":", 5) + m} },
		"measurement twice":      func(p *Policy) { p.Measurements[FormatSim] = []string{m, m} },
		"tcb for unlisted":       func(p *Policy) { p.MinTCB[FormatSNP] = TCB{0, 0, 0, 0} },
		"tcb of the wrong shape": func(p *Policy) { p.MinTCB[FormatTDX] = TCB{1} },
		"no max age":             func(p *Policy) { p.MaxAge = 0 },
		"negative max age":       func(p *Policy) { p.MaxAge = Duration(-time.Hour) },
		"max age of a year":      func(p *Policy) { p.MaxAge = Duration(365 * 24 * time.Hour) },
		"nitro tcb": func(p *Policy) {
			p.Formats = append(p.Formats, FormatNitro)
			p.Measurements[FormatNitro] = []string{m}
			p.MinTCB[FormatNitro] = TCB{}
		},
	}
	for name, edit := range bad {
		p := clonePolicy(good)
		edit(&p)
		err := p.Validate()
		if !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: %v", name, err)
		}
		if _, err := NewVerifier(p, Roots{}); !errors.Is(err, ErrPolicy) {
			t.Errorf("%s: NewVerifier: %v", name, err)
		}
	}
}

func TestPolicyJSON(t *testing.T) {
	p := Policy{Formats: []string{FormatSNP, FormatSim}, AllowSim: true, MaxAge: Duration(90 * time.Minute),
		Measurements: map[string][]string{FormatSNP: {snpSampleMeasurement}, FormatSim: {snpSampleMeasurement}},
		MinTCB:       map[string]TCB{FormatSNP: snpSampleTCB}}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"formats":["sev-snp","sim"],"measurements":{"sev-snp":["` + snpSampleMeasurement + `"],"sim":["` +
		snpSampleMeasurement + `"]},"min_tcb":{"sev-snp":[2,0,5,68]},"max_age":"1h30m0s","allow_sim":true,"allow_debug":false}`
	if string(b) != want {
		t.Fatalf("JSON:\n%s\nwant\n%s", b, want)
	}
	var q Policy
	if err := json.Unmarshal(b, &q); err != nil || !reflect.DeepEqual(p, q) {
		t.Fatalf("round trip: %+v %v", q, err)
	}
	if err := json.Unmarshal([]byte(`{"max_age":"forever"}`), &q); err == nil {
		t.Fatal("a bad duration decoded")
	}
	// The verifier keeps its own copy.
	v := mustVerifier(t, p, Roots{})
	p.Measurements[FormatSNP][0] = "changed"
	if v.Policy().Measurements[FormatSNP][0] != snpSampleMeasurement {
		t.Fatal("the verifier shares the caller's policy")
	}
}

func TestPolicyWarnings(t *testing.T) {
	strict := snpPolicy()
	strict.AllowDebug = false
	if w := strict.Warnings(); w != nil {
		t.Fatalf("strict policy warns: %q", w)
	}
	m := strings.Repeat("ab", 48)
	loose := Policy{Formats: []string{FormatSim, FormatTDX}, AllowSim: true, AllowDebug: true, MaxAge: Duration(time.Hour),
		Measurements: map[string][]string{FormatSim: {m}, FormatTDX: {m}}}
	w := strings.Join(loose.Warnings(), "\n")
	for _, s := range []string{"INSECURE", "SIMULATED", "DEBUG", "no minimum TCB for tdx", "pins only MRTD"} {
		if !strings.Contains(w, s) {
			t.Errorf("warnings lack %q:\n%s", s, w)
		}
	}
	t.Logf("warnings for a development policy:\n%s", w)
}

func TestMeasureFile(t *testing.T) {
	prog, changed := testBinary(t)
	a, b := mustMeasure(t, prog, nil), mustMeasure(t, changed, nil)
	c := mustMeasure(t, prog, []byte("--tee sim"))
	if a == b || a == c {
		t.Fatal("a changed binary or launch configuration keeps its measurement")
	}
	if _, err := MeasureFile(filepath.Join(t.TempDir(), "missing"), nil); err == nil {
		t.Fatal("measured a missing file")
	}
	if _, err := MeasureFile(t.TempDir(), nil); err == nil {
		t.Fatal("measured a directory")
	}
	self, err := MeasureSelf(nil)
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()
	if self != mustMeasure(t, exe, nil) {
		t.Fatal("MeasureSelf differs from MeasureFile(os.Executable())")
	}
}

func TestSimReportParse(t *testing.T) {
	a := newSim(t, SimConfig{TCB: 1, Debug: true})
	p, _ := a.Attest([64]byte{1}, simNow)
	r, err := parseSimReport(p)
	if err != nil {
		t.Fatal(err)
	}
	if !r.Debug || r.TCB != 1 || r.ReportData != [64]byte{1} || !r.Time.Equal(simNow) {
		t.Fatalf("%+v", r)
	}
	for name, edit := range map[string]func([]byte) []byte{
		"short":         func(b []byte) []byte { return b[:len(b)-1] },
		"long":          func(b []byte) []byte { return append(b, 0) },
		"version 2":     func(b []byte) []byte { b[0] = 2; return b },
		"unknown flags": func(b []byte) []byte { b[213] = 2; return b },
	} {
		if _, err := parseSimReport(edit(bytes.Clone(p))); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if _, err := NewSimAttester(SimConfig{}); err == nil {
		t.Fatal("a sim attester without randomness")
	}
}

// Verify and VerifyRelayed agree on what they accept, and the claims carry
// the platform's time and measurement.
func TestVerifyClaims(t *testing.T) {
	prog, _ := testBinary(t)
	m := mustMeasure(t, prog, nil)
	v := mustVerifier(t, Policy{Formats: []string{FormatSim}, AllowSim: true, MaxAge: Duration(time.Hour),
		Measurements: map[string][]string{FormatSim: {hexOf(m[:])}}}, Roots{})
	want := testBinding(t, simNow, 1)
	ev := mustAttest(t, newSim(t, SimConfig{Measurement: m, TCB: 9}), want, simNow.Add(-time.Minute))
	c, err := v.Verify(ev, want, simNow)
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != FormatSim || c.Measurement != hexOf(m[:]) || c.TCB[0] != 9 || c.Debug ||
		!c.Time.Equal(simNow.Add(-time.Minute)) || c.ReportData != want.ReportData() || !strings.Contains(c.Platform, "simulated") {
		t.Fatalf("claims %+v", c)
	}
	peer := want.clone()
	peer.EKM = nil
	if _, err := v.VerifyRelayed(ev, peer, simNow); err != nil {
		t.Fatal(err)
	}
	if _, err := v.VerifyReportData(ev, want.ReportData(), time.Time{}, simNow); err != nil {
		t.Fatal(err)
	}
	// Relayed evidence still binds the member's keys and the nonce.
	other := testBinding(t, simNow, 2)
	peer.SignPub = other.SignPub
	if _, err := v.VerifyRelayed(ev, peer, simNow); !errors.Is(err, ErrKeyBinding) {
		t.Fatalf("relayed, another key: %v", err)
	}
	peer = want.clone()
	peer.Nonce = other.Nonce
	if _, err := v.VerifyRelayed(ev, peer, simNow); !errors.Is(err, ErrStaleNonce) {
		t.Fatalf("relayed, another nonce: %v", err)
	}
	var me *MeasurementError
	bad := mustAttest(t, newSim(t, SimConfig{}), want, simNow)
	if _, err := v.Verify(bad, want, simNow); !errors.As(err, &me) || me.Got != strings.Repeat("00", 48) || len(me.Allowed) != 1 {
		t.Fatalf("MeasurementError: %v", err)
	}
	var ae *AgeError
	old := mustAttest(t, newSim(t, SimConfig{Measurement: m}), want, simNow.Add(-2*time.Hour))
	if _, err := v.Verify(old, want, simNow); !errors.As(err, &ae) || ae.MaxAge != time.Hour {
		t.Fatalf("AgeError: %v", err)
	}
}

// One Verifier serves concurrent verifications of every format (run with
// -race).
func TestVerifierConcurrent(t *testing.T) {
	zero := strings.Repeat("00", 48)
	q := tdxSample(t)
	f := newNitroForger(t, snpNow, elliptic.P384())
	p := Policy{Formats: Formats, AllowSim: true, AllowDebug: true, MaxAge: Duration(time.Hour),
		Measurements: map[string][]string{FormatSim: {zero}, FormatSNP: {snpSampleMeasurement},
			FormatTDX: {tdxMeasurement(q)}, FormatNitro: {f.measurement()}}}
	v := mustVerifier(t, p, Roots{Nitro: f.pool})
	b := testBinding(t, snpNow, 1)
	var nrd [64]byte
	cases := []struct {
		ev  []byte
		rd  [64]byte
		now time.Time
	}{
		{mustAttest(t, newSim(t, SimConfig{}), b, snpNow), b.ReportData(), snpNow},
		{envelope(t, FormatSNP, Binding{}, snpSamplePayload(t)), snpSampleReportData(), snpNow},
		{envelope(t, FormatTDX, Binding{}, tdxRawQuote()), tdxReportData(q), tdxNow},
		{envelope(t, FormatNitro, Binding{}, f.document(t, nrd[:])), nrd, snpNow},
	}
	errs := make(chan error, 4*len(cases))
	for i := 0; i < 4; i++ {
		for _, c := range cases {
			go func() {
				_, err := v.VerifyReportData(c.ev, c.rd, c.now, c.now)
				errs <- err
			}()
		}
	}
	for range 4 * len(cases) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}

func TestInspect(t *testing.T) {
	ev := envelope(t, FormatSNP, testBinding(t, snpNow, 1), snpSamplePayload(t))
	e, c, err := Inspect(ev, Roots{}, snpNow)
	if err != nil {
		t.Fatal(err)
	}
	if e.Format != FormatSNP || c.Measurement != snpSampleMeasurement || !c.Debug || !c.Time.IsZero() {
		t.Fatalf("%+v %+v", e, c)
	}
	bad := alterPayload(t, ev, func(p []byte) []byte { p[0x90] ^= 1; return p })
	if _, _, err := Inspect(bad, Roots{}, snpNow); !errors.Is(err, ErrSignature) {
		t.Fatalf("tampered: %v", err)
	}
	if _, _, err := Inspect([]byte("junk"), Roots{}, snpNow); !errors.Is(err, ErrMalformed) {
		t.Fatalf("junk: %v", err)
	}
	if _, _, err := Inspect(envelope(t, "sgx", Binding{}, nil), Roots{}, snpNow); !errors.Is(err, ErrFormatNotAllowed) {
		t.Fatalf("unknown format: %v", err)
	}
}
