package attest

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/google/go-sev-guest/abi"
	labi "github.com/google/go-sev-guest/client/linuxabi"
	"github.com/google/go-sev-guest/kds"
	sevtest "github.com/google/go-sev-guest/testing"
	sevtd "github.com/google/go-sev-guest/verify/testdata"
	"github.com/google/uuid"
)

// snpFake is a fake SEV guest device (go-sev-guest's testing.Device) whose
// firmware signs with a test-only AMD chain: ARK → ASK → VCEK for one chip
// at one TCB.
type snpFake struct {
	dev   *sevtest.Device
	roots []SNPRoot
	chip  [64]byte
	tcb   kds.TCBParts
}

// snpSigner builds the test chain once: RSA-4096 signing is slow on a
// shared machine.
var snpSigner = func() func(*sevtest.AmdSignerBuilder) (*sevtest.AmdSigner, error) {
	var once sync.Once
	var s *sevtest.AmdSigner
	var err error
	return func(b *sevtest.AmdSignerBuilder) (*sevtest.AmdSigner, error) {
		once.Do(func() { s, err = b.TestOnlyCertChain() })
		return s, err
	}
}()

func newSNPFake(t *testing.T) *snpFake {
	t.Helper()
	f := &snpFake{tcb: kds.TCBParts{BlSpl: 3, TeeSpl: 0, SnpSpl: 14, UcodeSpl: 209}}
	for i := range f.chip {
		f.chip[i] = byte(i + 1)
	}
	created := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	tcbVersion, err := kds.ComposeTCBParts(f.tcb)
	if err != nil {
		t.Fatal(err)
	}
	b := &sevtest.AmdSignerBuilder{
		Keys: sevtest.DefaultAmdKeys(), ProductName: "Milan-B0", CSPID: "cloister-test",
		ArkCreationTime: created, AskCreationTime: created, AsvkCreationTime: created, VcekCreationTime: created,
		HWID: f.chip, TCB: tcbVersion,
		VcekCustom: sevtest.CertOverride{Extensions: sevtest.CustomExtensions(f.tcb, f.chip[:], "", "Milan-B0")},
	}
	signer, err := snpSigner(b)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := signer.CertTableBytes()
	if err != nil {
		t.Fatal(err)
	}
	f.dev = &sevtest.Device{ReportDataRsp: map[string]any{}, Certs: certs, Signer: signer}
	if err := f.dev.Open(""); err != nil {
		t.Fatal(err)
	}
	f.roots = []SNPRoot{{ProductLine: "Milan", ARK: signer.Ark, ASK: signer.Ask}}
	return f
}

// expect programs the firmware to answer a request for rd with a report
// of the given measurement and debug policy, edited by edit.
func (f *snpFake) expect(t *testing.T, rd [64]byte, measurement []byte, debug bool, edit func([]byte)) {
	t.Helper()
	var raw [labi.SnpReportRespReportSize]byte
	binary.LittleEndian.PutUint32(raw[0x00:], 2)
	binary.LittleEndian.PutUint64(raw[0x08:], abi.SnpPolicyToBytes(abi.SnpPolicy{SMT: true, Debug: debug}))
	binary.LittleEndian.PutUint32(raw[0x34:], 1) // ECDSA P-384 with SHA-384
	tcb, _ := kds.ComposeTCBParts(f.tcb)
	binary.LittleEndian.PutUint64(raw[0x38:], uint64(tcb)) // current TCB
	copy(raw[0x50:0x90], rd[:])
	copy(raw[0x90:0xC0], measurement)
	binary.LittleEndian.PutUint64(raw[0x180:], uint64(tcb)) // reported TCB
	copy(raw[0x1A0:0x1E0], f.chip[:])
	if edit != nil {
		edit(raw[:abi.ReportSize])
	}
	f.dev.ReportDataRsp[hex.EncodeToString(rd[:])] = &sevtest.GetReportResponse{Resp: labi.SnpReportRespABI{Data: raw}}
}

func TestSNPAttesterAndVerifier(t *testing.T) {
	measurement := bytes.Repeat([]byte{0x5a}, 48)
	policy := Policy{
		Formats:      []string{FormatSNP},
		Measurements: map[string][]string{FormatSNP: {hexOf(measurement)}},
		MinTCB:       map[string]TCB{FormatSNP: {3, 0, 14, 209}},
		MaxAge:       Duration(time.Hour),
	}
	now := simNow
	want := testBinding(t, now.Add(-time.Minute), 1)

	t.Run("accepted", func(t *testing.T) {
		f := newSNPFake(t)
		f.expect(t, want.ReportData(), measurement, false, nil)
		a := NewSNPAttester(f.dev, nil)
		ev := mustAttest(t, a, want, now)
		c, err := mustVerifier(t, policy, Roots{SNP: f.roots}).Verify(ev, want, now)
		if err != nil {
			t.Fatal(err)
		}
		if c.Measurement != hexOf(measurement) || !c.TCB.AtLeast(TCB{3, 0, 14, 209}) || c.Debug || !c.Time.Equal(now.Add(-time.Minute)) {
			t.Fatalf("claims %+v", c)
		}
		if err := a.Close(); err != nil {
			t.Fatal(err)
		}
		// The same evidence under AMD's real roots: the test chain is refused.
		if _, err := mustVerifier(t, policy, Roots{}).Verify(ev, want, now); !errors.Is(err, ErrSignature) {
			t.Fatalf("test chain under AMD roots: %v", err)
		}
	})
	t.Run("report claims a TCB its VCEK does not certify", func(t *testing.T) {
		f := newSNPFake(t)
		f.expect(t, want.ReportData(), measurement, false, func(r []byte) { r[0x180+6]++ }) // SNP SPL 14 → 15
		ev := mustAttest(t, NewSNPAttester(f.dev, nil), want, now)
		_, err := mustVerifier(t, policy, Roots{SNP: f.roots}).Verify(ev, want, now)
		if !errors.Is(err, ErrSignature) {
			t.Fatalf("got %v, want ErrSignature", err)
		}
		t.Log(err)
	})
	t.Run("report names another chip", func(t *testing.T) {
		f := newSNPFake(t)
		f.expect(t, want.ReportData(), measurement, false, func(r []byte) { r[0x1A0] ^= 0xff })
		ev := mustAttest(t, NewSNPAttester(f.dev, nil), want, now)
		if _, err := mustVerifier(t, policy, Roots{SNP: f.roots}).Verify(ev, want, now); !errors.Is(err, ErrSignature) {
			t.Fatalf("got %v, want ErrSignature", err)
		}
	})
	t.Run("debug guest", func(t *testing.T) {
		f := newSNPFake(t)
		f.expect(t, want.ReportData(), measurement, true, nil)
		ev := mustAttest(t, NewSNPAttester(f.dev, nil), want, now)
		if _, err := mustVerifier(t, policy, Roots{SNP: f.roots}).Verify(ev, want, now); !errors.Is(err, ErrDebug) {
			t.Fatalf("got %v, want ErrDebug", err)
		}
	})
	t.Run("nonce without a time", func(t *testing.T) {
		f := newSNPFake(t)
		w := want.clone()
		w.Nonce = []byte("a nonce that records no time")
		f.expect(t, w.ReportData(), measurement, false, nil)
		ev := mustAttest(t, NewSNPAttester(f.dev, nil), w, now)
		if _, err := mustVerifier(t, policy, Roots{SNP: f.roots}).Verify(ev, w, now); !errors.Is(err, ErrTooOld) {
			t.Fatalf("got %v, want ErrTooOld", err)
		}
	})
	t.Run("host provides no VCEK", func(t *testing.T) {
		f := newSNPFake(t)
		vcek := f.dev.Signer.Vcek.Raw
		f.dev.Certs = certTable(map[uuid.UUID][]byte{askGUID: f.dev.Signer.Ask.Raw, arkGUID: f.dev.Signer.Ark.Raw})
		f.expect(t, want.ReportData(), measurement, false, nil)
		if _, err := Attest(NewSNPAttester(f.dev, nil), want, now); err == nil {
			t.Fatal("attested without a VCEK")
		}
		ev := mustAttest(t, NewSNPAttester(f.dev, vcek), want, now)
		if _, err := mustVerifier(t, policy, Roots{SNP: f.roots}).Verify(ev, want, now); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("device answers over other report data", func(t *testing.T) {
		f := newSNPFake(t)
		f.expect(t, want.ReportData(), measurement, false, func(r []byte) { r[0x50] ^= 1 })
		if _, err := Attest(NewSNPAttester(f.dev, nil), want, now); err == nil {
			t.Fatal("accepted a report over other data")
		}
	})
}

// The shipped sample verifies through VerifyRelayed and Inspect-like
// paths too, and its claims are what AMD's documentation says they are.
func TestSNPSampleClaims(t *testing.T) {
	v := mustVerifier(t, snpPolicy(), Roots{})
	ev := envelope(t, FormatSNP, Binding{}, snpSamplePayload(t))
	c, err := v.VerifyReportData(ev, snpSampleReportData(), snpNow, snpNow)
	if err != nil {
		t.Fatal(err)
	}
	if c.Format != FormatSNP || c.Measurement != snpSampleMeasurement || !c.Debug ||
		len(c.TCB) != 4 || !c.TCB.AtLeast(snpSampleTCB) || !snpSampleTCB.AtLeast(c.TCB) || !c.Time.Equal(snpNow) {
		t.Fatalf("claims %+v", c)
	}
	t.Logf("shipped SNP sample: %s, measurement %s…, TCB %v", c.Platform, c.Measurement[:16], c.TCB)
}

// abi.CertTable.Unmarshal computes offset+length in 32 bits; a table whose
// entry wraps around passes its bounds check and then panics. parseCertTable
// refuses it.
func TestSNPCertTableOverflow(t *testing.T) {
	table := make([]byte, 2*abi.CertTableEntrySize+8)
	copy(table, vcekGUID[:])
	binary.LittleEndian.PutUint32(table[16:], 0xFFFFFFF8) // offset
	binary.LittleEndian.PutUint32(table[20:], 0x10)       // length: offset+length wraps to 8
	if _, err := parseCertTable(table); err == nil {
		t.Fatal("parseCertTable accepted a wrapping entry")
	}
	panicked := func() (p bool) {
		defer func() { p = recover() != nil }()
		new(abi.CertTable).Unmarshal(table)
		return false
	}()
	t.Logf("go-sev-guest abi.CertTable.Unmarshal panics on this table: %v", panicked)

	ev := envelope(t, FormatSNP, Binding{}, append(bytes.Clone(sevtd.AttestationBytes), table...))
	_, err := mustVerifier(t, snpPolicy(), Roots{}).VerifyReportData(ev, snpSampleReportData(), snpNow, snpNow)
	if !errors.Is(err, ErrMalformed) {
		t.Fatalf("got %v, want ErrMalformed", err)
	}
}
