package attest

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha512"
	"testing"
	"time"
)

// Re-attestation cost per node: one Attest on the node, then one Verify by
// the coordinator and one VerifyRelayed by each other member. The hardware
// Attest calls (firmware, NSM) are not measured here; their verification
// is, on the shipped samples.
//
//	go test -run '^$' -bench . -benchmem ./attest

func BenchmarkSimAttest(b *testing.B) {
	a := newSim(b, SimConfig{TCB: 1})
	bind := testBinding(b, simNow, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Attest(a, bind, simNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSimAttestVerify(b *testing.B) {
	prog, _ := testBinary(b)
	m := mustMeasure(b, prog, nil)
	a := newSim(b, SimConfig{Measurement: m, TCB: 1})
	v := mustVerifier(b, Policy{Formats: []string{FormatSim}, AllowSim: true, MaxAge: Duration(time.Hour),
		Measurements: map[string][]string{FormatSim: {hexOf(m[:])}}}, Roots{})
	bind := testBinding(b, simNow, 1)
	b.ReportAllocs()
	for b.Loop() {
		ev, err := Attest(a, bind, simNow)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := v.Verify(ev, bind, simNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySim(b *testing.B) {
	prog, _ := testBinary(b)
	m := mustMeasure(b, prog, nil)
	v := mustVerifier(b, Policy{Formats: []string{FormatSim}, AllowSim: true, MaxAge: Duration(time.Hour),
		Measurements: map[string][]string{FormatSim: {hexOf(m[:])}}}, Roots{})
	bind := testBinding(b, simNow, 1)
	ev := mustAttest(b, newSim(b, SimConfig{Measurement: m, TCB: 1}), bind, simNow)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(ev, bind, simNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifySNPSample(b *testing.B) {
	v := mustVerifier(b, snpPolicy(), Roots{})
	ev := envelope(b, FormatSNP, Binding{}, snpSamplePayload(b))
	rd := snpSampleReportData()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyReportData(ev, rd, snpNow, snpNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyTDXSample(b *testing.B) {
	q := tdxSample(b)
	v := mustVerifier(b, tdxPolicy(q), Roots{})
	ev := envelope(b, FormatTDX, Binding{}, tdxRawQuote())
	rd := tdxReportData(q)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyReportData(ev, rd, tdxNow, tdxNow); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerifyNitroForged(b *testing.B) {
	f := newNitroForger(b, simNow, elliptic.P384())
	v := mustVerifier(b, Policy{Formats: []string{FormatNitro}, MaxAge: Duration(time.Hour),
		Measurements: map[string][]string{FormatNitro: {f.measurement()}}}, Roots{Nitro: f.pool})
	var rd [64]byte
	ev := envelope(b, FormatNitro, Binding{}, f.document(b, rd[:]))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.VerifyReportData(ev, rd, simNow, simNow); err != nil {
			b.Fatal(err)
		}
	}
}

// Baselines, measured in the same run (absolute times drift on shared
// machines): the signature checks the formats are made of.

func BenchmarkBaselineEd25519Verify(b *testing.B) {
	pub, priv, _ := ed25519.GenerateKey(detRand(1))
	msg := make([]byte, simSignedSize)
	sig := ed25519.Sign(priv, msg)
	for b.Loop() {
		if !ed25519.Verify(pub, msg, sig) {
			b.Fatal("no")
		}
	}
}

func BenchmarkBaselineP384Verify(b *testing.B) {
	k, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	h := sha512.Sum384([]byte("report"))
	sig, _ := ecdsa.SignASN1(rand.Reader, k, h[:])
	for b.Loop() {
		if !ecdsa.VerifyASN1(&k.PublicKey, h[:], sig) {
			b.Fatal("no")
		}
	}
}
