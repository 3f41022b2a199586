package attest

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"time"
)

// SimVendorSeed is the published seed of the simulated vendor's root key.
// Because it is public, ANYONE can certify a sim platform and make sim
// evidence for any measurement: sim evidence proves nothing. It exists so
// that development federations and tests exercise the whole attestation
// path, and a verifier trusts it only under a policy with AllowSim.
const SimVendorSeed = "cloister/attest sim vendor root v1: INSECURE, PUBLISHED TEST KEY"

// SimVendorKey returns the simulated vendor's root key, derived from
// [SimVendorSeed]: ed25519.NewKeyFromSeed(SHA-256(SimVendorSeed)).
// INSECURE by design.
func SimVendorKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte(SimVendorSeed))
	return ed25519.NewKeyFromSeed(seed[:])
}

// SimVendorPublicKey returns the public half of [SimVendorKey]: the root a
// [Verifier] trusts for sim evidence by default.
func SimVendorPublicKey() ed25519.PublicKey {
	return SimVendorKey().Public().(ed25519.PublicKey)
}

// Signature contexts: the vendor's certificate and the platform's report.
const (
	simCertContext   = "cloister/attest sim platform certificate v1\x00"
	simReportContext = "cloister/attest sim report v1\x00"
)

// The sim report, the payload of sim evidence (286 bytes, integers
// big-endian):
//
//	offset size
//	     0    1  version (1)
//	     1   32  platform public key (Ed25519)
//	    33   64  vendor signature over simCertContext ‖ platform public key
//	    97   48  measurement (SHA-384, see MeasureFile)
//	   145   64  report data
//	   209    4  TCB version (security version number)
//	   213    1  flags: bit 0 = debug; other bits zero
//	   214    8  time (Unix milliseconds, signed)
//	   222   64  platform signature over simReportContext ‖ bytes 0…221
const (
	simVersion    = 1
	simSignedSize = 222
	simReportSize = simSignedSize + ed25519.SignatureSize
	simFlagDebug  = 1
)

// SimReport is a parsed sim report. Parsing checks the form only;
// verifySim checks the signatures.
type simReport struct {
	Platform    ed25519.PublicKey
	Cert        []byte // vendor signature over the platform key
	Measurement [48]byte
	ReportData  [64]byte
	TCB         uint32
	Debug       bool
	Time        time.Time
	Signature   []byte // platform signature
}

func (r *simReport) marshalSigned() []byte {
	b := make([]byte, simSignedSize, simReportSize)
	b[0] = simVersion
	copy(b[1:33], r.Platform)
	copy(b[33:97], r.Cert)
	copy(b[97:145], r.Measurement[:])
	copy(b[145:209], r.ReportData[:])
	binary.BigEndian.PutUint32(b[209:213], r.TCB)
	if r.Debug {
		b[213] = simFlagDebug
	}
	binary.BigEndian.PutUint64(b[214:222], uint64(r.Time.UnixMilli()))
	return b
}

// parseSimReport decodes a sim report; anything but exactly one
// well-formed version-1 report is ErrMalformed.
func parseSimReport(b []byte) (*simReport, error) {
	if len(b) != simReportSize {
		return nil, fmt.Errorf("%w: sim report has %d bytes, want %d", ErrMalformed, len(b), simReportSize)
	}
	if b[0] != simVersion {
		return nil, fmt.Errorf("%w: sim report version %d, want %d", ErrMalformed, b[0], simVersion)
	}
	if b[213]&^simFlagDebug != 0 {
		return nil, fmt.Errorf("%w: sim report has unknown flags %#x", ErrMalformed, b[213])
	}
	r := &simReport{
		Platform:  ed25519.PublicKey(clone(b[1:33])),
		Cert:      clone(b[33:97]),
		TCB:       binary.BigEndian.Uint32(b[209:213]),
		Debug:     b[213]&simFlagDebug != 0,
		Time:      time.UnixMilli(int64(binary.BigEndian.Uint64(b[214:222]))),
		Signature: clone(b[simSignedSize:]),
	}
	copy(r.Measurement[:], b[97:145])
	copy(r.ReportData[:], b[145:209])
	return r, nil
}

// verifySim checks a sim report: the vendor root certifies the platform key,
// which signs the report.
func verifySim(payload []byte, root ed25519.PublicKey) (*report, error) {
	r, err := parseSimReport(payload)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(root, append([]byte(simCertContext), r.Platform...), r.Cert) {
		return nil, fmt.Errorf("%w: sim platform key %x is not certified by the trusted sim vendor root", ErrSignature, r.Platform[:8])
	}
	if !ed25519.Verify(r.Platform, append([]byte(simReportContext), payload[:simSignedSize]...), r.Signature) {
		return nil, fmt.Errorf("%w: sim report signature does not verify under platform key %x", ErrSignature, r.Platform[:8])
	}
	return &report{
		claims: Claims{
			Platform:   "simulated TEE, platform key " + hex.EncodeToString(r.Platform[:8]),
			TCB:        TCB{r.TCB},
			Debug:      r.Debug,
			Time:       r.Time,
			ReportData: r.ReportData,
		},
		regs:     [][]byte{r.Measurement[:]},
		hasClock: true,
	}, nil
}

// SimConfig configures a [SimAttester].
type SimConfig struct {
	// Measurement is the measured code: [MeasureFile] or [MeasureSelf].
	Measurement [48]byte
	// TCB is the platform's simulated TCB version.
	TCB uint32
	// Debug simulates a TEE in debug mode.
	Debug bool
	// Vendor is the vendor root key that certifies the platform key; nil
	// means the published [SimVendorKey].
	Vendor ed25519.PrivateKey
	// Rand is the source of the platform key (crypto/rand.Reader in
	// production).
	Rand io.Reader
}

// SimAttester is a simulated TEE: a platform key, certified by the sim
// vendor root, signs reports over the configured measurement. It runs
// anywhere and proves nothing: development and tests only.
type SimAttester struct {
	platform ed25519.PrivateKey
	cert     []byte
	cfg      SimConfig
}

// NewSimAttester makes a sim platform: a fresh platform key from c.Rand,
// certified by c.Vendor.
func NewSimAttester(c SimConfig) (*SimAttester, error) {
	if c.Rand == nil {
		return nil, errors.New("attest: SimConfig.Rand is nil")
	}
	vendor := c.Vendor
	if vendor == nil {
		vendor = SimVendorKey()
	}
	if len(vendor) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("attest: sim vendor key has %d bytes, want %d", len(vendor), ed25519.PrivateKeySize)
	}
	pub, priv, err := ed25519.GenerateKey(c.Rand)
	if err != nil {
		return nil, fmt.Errorf("attest: sim platform key: %w", err)
	}
	cert := ed25519.Sign(vendor, append([]byte(simCertContext), pub...))
	c.Vendor = nil
	return &SimAttester{platform: priv, cert: cert, cfg: c}, nil
}

// Format returns FormatSim.
func (*SimAttester) Format() string { return FormatSim }

// Attest returns a sim report over reportData, dated now.
func (a *SimAttester) Attest(reportData [64]byte, now time.Time) ([]byte, error) {
	r := simReport{
		Platform:    a.platform.Public().(ed25519.PublicKey),
		Cert:        a.cert,
		Measurement: a.cfg.Measurement,
		ReportData:  reportData,
		TCB:         a.cfg.TCB,
		Debug:       a.cfg.Debug,
		Time:        now,
	}
	b := r.marshalSigned()
	return append(b, ed25519.Sign(a.platform, append([]byte(simReportContext), b...))...), nil
}
