package attest

import (
	"bytes"
	"crypto/elliptic"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// Seeds live in testdata/fuzz/<target>/ (real envelopes, the shipped
// vendor samples, a forged Nitro document); `go test` runs them, and
// `go test -fuzz=FuzzParseEvidence ./attest` explores from them.

// FuzzParseEvidence: ParseEvidence never panics, fails only with
// ErrMalformed, and what it accepts re-encodes to the same bytes.
func FuzzParseEvidence(f *testing.F) {
	f.Add([]byte("CLEV\x01\x03sim\x00\x00\x00\x00\x00\x00\x00\x00\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		e, err := ParseEvidence(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			return
		}
		out, err := e.Marshal()
		if err != nil {
			t.Fatalf("parsed evidence does not re-encode: %v", err)
		}
		if !bytes.Equal(out, data) {
			t.Fatalf("re-encoding differs:\n%x\n%x", data, out)
		}
	})
}

// FuzzSimReport: parseSimReport never panics, and what it accepts
// re-encodes to the same bytes; a report verifySim accepts is refused once
// any signed byte (here: the TCB, the flags) or its signature changes.
func FuzzSimReport(f *testing.F) {
	a, _ := NewSimAttester(SimConfig{TCB: 1, Rand: detRand(3)})
	p, _ := a.Attest([64]byte{1}, simNow)
	f.Add(p)
	vendor := SimVendorPublicKey()
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := parseSimReport(data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error without ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(append(r.marshalSigned(), r.Signature...), data) {
			t.Fatal("re-encoding differs")
		}
		if _, err := verifySim(data, vendor); err != nil {
			return
		}
		for _, i := range []int{212, 213, len(data) - 1} {
			d := bytes.Clone(data)
			d[i] ^= 0x01
			if _, err := verifySim(d, vendor); !errors.Is(err, ErrSignature) && !errors.Is(err, ErrMalformed) {
				t.Fatalf("byte %d changed and the report still verifies: %v", i, err)
			}
		}
	})
}

// FuzzVerify feeds payloads of every format to a verifier that allows
// them all: the vendor parsers (go-sev-guest, go-tdx-guest, nitrite) are
// reached only through the guards, and the recover backstop never fires.
func FuzzVerify(f *testing.F) {
	f.Add(uint8(0), []byte{})
	zero := strings.Repeat("00", 48)
	v, err := NewVerifier(Policy{Formats: Formats, AllowSim: true, AllowDebug: true, MaxAge: Duration(time.Hour),
		Measurements: map[string][]string{FormatSim: {zero}, FormatSNP: {zero}, FormatTDX: {zero}, FormatNitro: {zero}}}, Roots{})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, format uint8, payload []byte) {
		e := Evidence{Format: Formats[int(format)%len(Formats)], Payload: payload}
		ev, err := e.Marshal()
		if err != nil {
			return
		}
		for _, now := range []time.Time{snpNow, tdxNow} {
			_, err := v.VerifyReportData(ev, [64]byte{}, now, now)
			if err == nil {
				t.Fatalf("%s payload accepted", e.Format)
			}
			if strings.Contains(err.Error(), "crashed") {
				t.Fatalf("%s payload reached a panic: %v", e.Format, err)
			}
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrSignature) && !errors.Is(err, ErrReportData) &&
				!errors.Is(err, ErrMeasurement) && !errors.Is(err, ErrTCB) {
				t.Fatalf("%s payload: unexpected rejection %v", e.Format, err)
			}
		}
	})
}

var writeSeeds = flag.Bool("write-seeds", false, "rewrite the fuzz seed corpus in testdata/fuzz")

// TestWriteFuzzSeeds regenerates the committed seeds:
// go test ./attest -run WriteFuzzSeeds -args -write-seeds
func TestWriteFuzzSeeds(t *testing.T) {
	if !*writeSeeds {
		t.Skip("run with -write-seeds to rewrite testdata/fuzz")
	}
	b := testBinding(t, simNow, 1)
	sim := newSim(t, SimConfig{TCB: 1, Rand: detRand(3)})
	simPayload, _ := sim.Attest(b.ReportData(), simNow)
	debugPayload, _ := newSim(t, SimConfig{TCB: 2, Debug: true, Rand: detRand(4)}).Attest([64]byte{}, simNow)
	nitro := newNitroForger(t, simNow, elliptic.P384()).document(t, make([]byte, 64))
	snp := snpSamplePayload(t)
	tdx := tdxRawQuote()
	write := func(target, name string, vals ...string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		body := "go test fuzz v1\n" + strings.Join(vals, "")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	bs := func(b []byte) string { return fmt.Sprintf("[]byte(%q)\n", b) }
	format := func(f string) string { return fmt.Sprintf("byte(%q)\n", rune(slices.Index(Formats, f))) }
	for name, p := range map[string]struct {
		format  string
		payload []byte
	}{"sim": {FormatSim, simPayload}, "snp-sample": {FormatSNP, snp}, "tdx-sample": {FormatTDX, tdx}, "nitro-forged": {FormatNitro, nitro}} {
		write("FuzzParseEvidence", name, bs(envelope(t, p.format, b, p.payload)))
		write("FuzzVerify", name, format(p.format), bs(p.payload))
	}
	write("FuzzParseEvidence", "empty-binding", bs(envelope(t, FormatSim, Binding{}, nil)))
	write("FuzzVerify", "snp-cert-table-wraps", format(FormatSNP), bs(append(bytes.Clone(snp[:0x4A0]),
		append(append(bytes.Clone(vcekGUID[:]), 0xF8, 0xFF, 0xFF, 0xFF, 0x10, 0, 0, 0), make([]byte, 32)...)...)))
	write("FuzzVerify", "tdx-signed-data-size-0", format(FormatTDX), bs(forgeSize(t, 0)))
	write("FuzzSimReport", "report", bs(simPayload))
	write("FuzzSimReport", "debug", bs(debugPayload))
}
