package attest

import (
	"bytes"
	"crypto/x509"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/go-sev-guest/abi"
	"github.com/google/go-sev-guest/client"
	"github.com/google/go-sev-guest/kds"
	spb "github.com/google/go-sev-guest/proto/sevsnp"
	"github.com/google/go-sev-guest/verify"
	"github.com/google/go-sev-guest/verify/trust"
	"github.com/google/uuid"
)

// maxSNPPayload bounds an sev-snp payload: the report and a certificate
// table (VCEK, ASK, ARK: about 5 KB in practice).
const maxSNPPayload = 64 << 10

// maxCertTableEntries bounds the entries of a GHCB certificate table.
const maxCertTableEntries = 32

var (
	vcekGUID = uuid.MustParse(abi.VcekGUID)
	vlekGUID = uuid.MustParse(abi.VlekGUID)
	askGUID  = uuid.MustParse(abi.AskGUID)
	arkGUID  = uuid.MustParse(abi.ArkGUID)
)

// parseCertTable decodes a GHCB certificate table (entries of GUID ‖
// offset ‖ length, little-endian, ended by an all-zero entry, then the
// certificates). It replaces abi.CertTable.Unmarshal, whose 32-bit
// offset+length check overflows and panics on hostile tables.
func parseCertTable(b []byte) (*spb.CertificateChain, error) {
	chain := &spb.CertificateChain{}
	if len(b) == 0 {
		return chain, nil
	}
	type entry struct {
		guid     uuid.UUID
		off, len uint64
	}
	var entries []entry
	headerEnd := 0
	for i := 0; ; i++ {
		at := i * abi.CertTableEntrySize
		if at+abi.CertTableEntrySize > len(b) {
			return nil, fmt.Errorf("certificate table is not terminated")
		}
		var e entry
		copy(e.guid[:], b[at:at+16])
		e.off = uint64(binary.LittleEndian.Uint32(b[at+16 : at+20]))
		e.len = uint64(binary.LittleEndian.Uint32(b[at+20 : at+24]))
		if e.guid == (uuid.UUID{}) && e.off == 0 && e.len == 0 {
			headerEnd = at + abi.CertTableEntrySize
			break
		}
		if i == maxCertTableEntries {
			return nil, fmt.Errorf("certificate table has more than %d entries", maxCertTableEntries)
		}
		entries = append(entries, e)
	}
	for i, e := range entries {
		if e.off < uint64(headerEnd) || e.off+e.len > uint64(len(b)) {
			return nil, fmt.Errorf("certificate table entry %d (offset %d, length %d) lies outside the %d-byte table",
				i, e.off, e.len, len(b))
		}
		cert := bytes.Clone(b[e.off : e.off+e.len])
		var dst *[]byte
		switch e.guid {
		case vcekGUID:
			dst = &chain.VcekCert
		case vlekGUID:
			dst = &chain.VlekCert
		case askGUID:
			dst = &chain.AskCert
		case arkGUID:
			dst = &chain.ArkCert
		default:
			continue // other entries (ASVK, platform info) are not used
		}
		if *dst != nil {
			return nil, fmt.Errorf("certificate table has two %v entries", e.guid)
		}
		*dst = cert
	}
	return chain, nil
}

// certTable encodes certificates as a GHCB certificate table.
func certTable(certs map[uuid.UUID][]byte) []byte {
	t := &abi.CertTable{}
	for _, g := range []uuid.UUID{arkGUID, askGUID, vcekGUID, vlekGUID} {
		if c := certs[g]; len(c) > 0 {
			t.Entries = append(t.Entries, abi.CertTableEntry{GUID: g, RawCert: c})
		}
	}
	return t.Marshal()
}

// SNPPayload builds an sev-snp payload from a raw 1184-byte attestation
// report and the DER certificate of the VCEK that signed it (as AMD's KDS
// serves it): for reports obtained without the host's certificate table.
func SNPPayload(report, vcek []byte) ([]byte, error) {
	if len(report) != abi.ReportSize {
		return nil, fmt.Errorf("attest: SNP report has %d bytes, want %d", len(report), abi.ReportSize)
	}
	return append(bytes.Clone(report), certTable(map[uuid.UUID][]byte{vcekGUID: vcek})...), nil
}

// verifySNP checks an sev-snp payload offline: the VCEK (or VLEK)
// certificate it carries chains to a trusted AMD root at now, the VCEK signs
// the report, and the VCEK certifies the very TCB and chip the report
// names (so a key leaked from old firmware cannot vouch for a newer TCB).
func verifySNP(payload []byte, roots map[string][]*trust.AMDRootCerts, now time.Time) (*report, error) {
	if len(payload) < abi.ReportSize || len(payload) > maxSNPPayload {
		return nil, fmt.Errorf("%w: sev-snp payload has %d bytes, want %d to %d", ErrMalformed, len(payload), abi.ReportSize, maxSNPPayload)
	}
	raw := payload[:abi.ReportSize]
	rep, err := abi.ReportToProto(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: sev-snp report: %v", ErrMalformed, err)
	}
	if rt, err := abi.ReportToAbiBytes(rep); err != nil || !bytes.Equal(rt, raw) {
		return nil, fmt.Errorf("%w: sev-snp report does not re-encode to the same bytes", ErrMalformed)
	}
	chain, err := parseCertTable(payload[abi.ReportSize:])
	if err != nil {
		return nil, fmt.Errorf("%w: sev-snp %v", ErrMalformed, err)
	}
	info, err := abi.ParseSignerInfo(rep.GetSignerInfo())
	if err != nil {
		return nil, fmt.Errorf("%w: sev-snp signer info: %v", ErrMalformed, err)
	}
	var ekDER []byte
	switch info.SigningKey {
	case abi.VcekReportSigner:
		ekDER = chain.GetVcekCert()
	case abi.VlekReportSigner:
		ekDER = chain.GetVlekCert()
	default:
		return nil, fmt.Errorf("%w: sev-snp report signed by %v, want a VCEK or VLEK", ErrSignature, info.SigningKey)
	}
	if len(ekDER) == 0 {
		return nil, fmt.Errorf("%w: sev-snp evidence carries no %v certificate", ErrSignature, info.SigningKey)
	}
	att := &spb.Attestation{Report: rep, CertificateChain: chain}
	opts := &verify.Options{DisableCertFetching: true, Now: now, TrustedRoots: roots}
	if err := verify.SnpAttestation(att, opts); err != nil {
		return nil, fmt.Errorf("%w: sev-snp: %v", ErrSignature, err)
	}
	ek, err := x509.ParseCertificate(ekDER)
	if err != nil {
		return nil, fmt.Errorf("%w: sev-snp %v certificate: %v", ErrSignature, info.SigningKey, err)
	}
	exts, err := kds.CertificateExtensions(ek, info.SigningKey)
	if err != nil {
		return nil, fmt.Errorf("%w: sev-snp %v certificate extensions: %v", ErrSignature, info.SigningKey, err)
	}
	if uint64(exts.TCBVersion) != rep.GetReportedTcb() {
		return nil, fmt.Errorf("%w: sev-snp %v certifies TCB %#x but the report claims %#x", ErrSignature,
			info.SigningKey, uint64(exts.TCBVersion), rep.GetReportedTcb())
	}
	if info.SigningKey == abi.VcekReportSigner && !bytes.Equal(exts.HWID, rep.GetChipId()) {
		return nil, fmt.Errorf("%w: sev-snp VCEK is for chip %x…, the report names chip %x…", ErrSignature,
			exts.HWID[:min(8, len(exts.HWID))], rep.GetChipId()[:8])
	}
	pol, err := abi.ParseSnpPolicy(rep.GetPolicy())
	if err != nil {
		return nil, fmt.Errorf("%w: sev-snp guest policy: %v", ErrMalformed, err)
	}
	tcb := kds.DecomposeTCBVersion(kds.TCBVersion(rep.GetReportedTcb()))
	var rd [64]byte
	copy(rd[:], rep.GetReportData())
	return &report{
		claims: Claims{
			Platform:   fmt.Sprintf("AMD SEV-SNP %s, chip %x…, VMPL %d", exts.ProductName, rep.GetChipId()[:8], rep.GetVmpl()),
			TCB:        TCB{uint32(tcb.BlSpl), uint32(tcb.TeeSpl), uint32(tcb.SnpSpl), uint32(tcb.UcodeSpl)},
			Debug:      pol.Debug,
			ReportData: rd,
		},
		regs: [][]byte{rep.GetMeasurement()},
	}, nil
}

// SNPAttester produces sev-snp evidence on an AMD SEV-SNP guest, through
// the sev-guest device (/dev/sev-guest) and go-sev-guest's client: an
// extended report, whose certificate table the host fills with the VCEK.
type SNPAttester struct {
	dev  client.Device
	vcek []byte
}

// NewSNPAttester returns an attester that asks dev for reports. vcek, if
// not nil, is the DER VCEK certificate to send when the host provides no
// certificate table (download it once from AMD's KDS for the chip and TCB).
func NewSNPAttester(dev client.Device, vcek []byte) *SNPAttester {
	return &SNPAttester{dev: dev, vcek: bytes.Clone(vcek)}
}

// OpenSNP opens the SEV guest device of this machine; it fails with
// [ErrUnsupported] where there is none.
func OpenSNP(vcek []byte) (*SNPAttester, error) {
	d, err := client.OpenDevice()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnsupported, err)
	}
	return NewSNPAttester(d, vcek), nil
}

// Close closes the device.
func (a *SNPAttester) Close() error { return a.dev.Close() }

// Format returns FormatSNP.
func (*SNPAttester) Format() string { return FormatSNP }

// Attest asks the SEV firmware for an extended report over reportData at
// VMPL 0 and returns it with its certificate table.
func (a *SNPAttester) Attest(reportData [64]byte, _ time.Time) ([]byte, error) {
	rep, certs, err := client.GetRawExtendedReport(a.dev, reportData)
	if err != nil {
		return nil, fmt.Errorf("SEV-SNP extended report: %w", err)
	}
	if len(rep) != abi.ReportSize {
		return nil, fmt.Errorf("SEV-SNP report has %d bytes, want %d", len(rep), abi.ReportSize)
	}
	if !bytes.Equal(rep[0x50:0x90], reportData[:]) {
		return nil, fmt.Errorf("SEV-SNP device returned a report over other report data")
	}
	chain, err := parseCertTable(certs)
	if err != nil {
		return nil, fmt.Errorf("SEV-SNP host certificate table: %w", err)
	}
	if len(chain.GetVcekCert()) == 0 && len(chain.GetVlekCert()) == 0 {
		if a.vcek == nil {
			return nil, fmt.Errorf("SEV-SNP host provided no VCEK certificate, and none is configured")
		}
		certs = certTable(map[uuid.UUID][]byte{vcekGUID: a.vcek, askGUID: chain.GetAskCert(), arkGUID: chain.GetArkCert()})
	}
	return append(bytes.Clone(rep), certs...), nil
}
