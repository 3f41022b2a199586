package attest

import (
	"crypto/ed25519"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-sev-guest/verify/trust"
)

// Roots are the vendor trust anchors a [Verifier] checks certificate chains
// against. The zero value trusts each vendor's published root; tests and
// private deployments replace them.
type Roots struct {
	// Sim is the simulated vendor's Ed25519 root key; nil means the
	// published, insecure [SimVendorPublicKey]. It is trusted only if the
	// policy allows sim.
	Sim ed25519.PublicKey
	// SNP are the AMD root (ARK) and intermediate (ASK) certificates per
	// product line; nil means AMD's, as embedded in go-sev-guest.
	SNP []SNPRoot
	// TDX is the pool of Intel SGX root CAs; nil means Intel's
	// ([IntelSGXRootCA]).
	TDX *x509.CertPool
	// Nitro is the pool of AWS Nitro Enclaves roots; nil means AWS's
	// (nitrite.DefaultCARoots, "aws.nitro-enclaves" root G1).
	Nitro *x509.CertPool
}

// SNPRoot is an AMD root of trust for one product line ("Milan", "Genoa",
// …): the AMD Root Key certificate and the AMD SEV Key certificate it signs,
// which signs VCEKs; optionally the AMD SEV VLEK Key certificate, which
// signs cloud providers' VLEKs.
type SNPRoot struct {
	ProductLine    string
	ARK, ASK, ASVK *x509.Certificate
}

// Verifier checks evidence against a [Policy] and the expected session
// binding, and returns the [Claims] of evidence it accepts. It dispatches on
// the envelope's format; one Verifier checks every format its policy
// allows. It is immutable and safe for concurrent use.
type Verifier struct {
	policy *compiled
	*anchors
}

// anchors are the trust anchors in the form the format verifiers use.
type anchors struct {
	sim   ed25519.PublicKey
	snp   map[string][]*trust.AMDRootCerts // nil: go-sev-guest's embedded AMD roots
	tdx   *x509.CertPool
	nitro *x509.CertPool
}

func newAnchors(r Roots) (*anchors, error) {
	a := &anchors{sim: r.Sim, tdx: r.TDX, nitro: r.Nitro}
	if a.sim == nil {
		a.sim = SimVendorPublicKey()
	} else if len(a.sim) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("attest: sim root key has %d bytes, want %d", len(a.sim), ed25519.PublicKeySize)
	}
	if a.tdx == nil {
		a.tdx = intelRoots()
	}
	if a.nitro == nil {
		a.nitro = awsNitroRoots()
	}
	if r.SNP != nil {
		a.snp = map[string][]*trust.AMDRootCerts{}
		for _, root := range r.SNP {
			if root.ProductLine == "" || root.ARK == nil || root.ASK == nil {
				return nil, errors.New("attest: an SNP root needs a product line, an ARK and an ASK")
			}
			c := trust.AMDRootCertsProduct(root.ProductLine)
			c.ProductCerts = &trust.ProductCerts{Ark: root.ARK, Ask: root.ASK, Asvk: root.ASVK}
			a.snp[root.ProductLine] = append(a.snp[root.ProductLine], c)
		}
	}
	return a, nil
}

// NewVerifier returns a Verifier for a valid policy (see [Policy.Validate])
// and the given trust anchors.
func NewVerifier(p Policy, r Roots) (*Verifier, error) {
	c, err := compile(p)
	if err != nil {
		return nil, err
	}
	a, err := newAnchors(r)
	if err != nil {
		return nil, err
	}
	return &Verifier{policy: c, anchors: a}, nil
}

// Inspect decodes evidence and verifies its signature chain to the given
// roots at now, and applies NO policy and no binding: for `cloister attest
// inspect` and for reading what a known-good deployment reports. The claims
// are authentic but not approved: never admit a node on them. Their Time is
// zero for formats without a clock (sev-snp, tdx).
func Inspect(evidence []byte, r Roots, now time.Time) (*Evidence, *Claims, error) {
	e, err := ParseEvidence(evidence)
	if err != nil {
		return nil, nil, err
	}
	a, err := newAnchors(r)
	if err != nil {
		return nil, nil, err
	}
	rep, err := a.payload(e.Format, e.Payload, now)
	if err != nil {
		return e, nil, err
	}
	rep.claims.Format = e.Format
	rep.claims.Measurement = formatMeasurement(rep.regs...)
	return e, &rep.claims, nil
}

// Policy returns a copy of the verifier's policy.
func (v *Verifier) Policy() Policy { return clonePolicy(v.policy.Policy) }

// Verify checks evidence a node sent on this connection: its signature
// chain to a trusted vendor root at now, that its report data is
// want.ReportData() (the node's keys, this connection's keying material and
// the nonce this verifier issued), and the policy. A binding mismatch is
// reported as [ErrKeyBinding], [ErrSessionBinding] or [ErrStaleNonce],
// according to which part of the evidence's clear binding differs from
// want.
//
// For formats without a clock (sev-snp, tdx), the evidence's time is the
// issue time of want.Nonce, which must then come from [NewNonce].
func (v *Verifier) Verify(evidence []byte, want Binding, now time.Time) (*Claims, error) {
	return v.verify(evidence, now, func(e *Evidence, r *report) error {
		if r.claims.ReportData != want.ReportData() {
			return mismatch(e.Binding, want, false)
		}
		if !r.hasClock {
			r.claims.Time, _ = NonceTime(want.Nonce)
		}
		return nil
	})
}

// VerifyRelayed checks evidence relayed by the coordinator from another
// member's connection, whose TLS keying material this verifier cannot know:
// it accepts the EKM the evidence carries, and checks everything else as
// [Verifier.Verify] does. want.EKM is ignored. The evidence still binds the
// member's process keys (want.HPKEPub, want.SignPub, which the member signs
// with its certificate) and the nonce.
func (v *Verifier) VerifyRelayed(evidence []byte, want Binding, now time.Time) (*Claims, error) {
	return v.verify(evidence, now, func(e *Evidence, r *report) error {
		w := want
		w.EKM = e.Binding.EKM
		if r.claims.ReportData != w.ReportData() {
			return mismatch(e.Binding, w, true)
		}
		if !r.hasClock {
			r.claims.Time, _ = NonceTime(want.Nonce)
		}
		return nil
	})
}

// VerifyReportData checks evidence whose report data is not a Cloister
// [Binding] (a vendor sample, another protocol's challenge): the report data
// must equal reportData ([ErrReportData] otherwise). issued is when
// reportData was issued as a challenge, the time of evidence in formats
// without a clock; zero means unknown, which fails the age check.
func (v *Verifier) VerifyReportData(evidence []byte, reportData [64]byte, issued, now time.Time) (*Claims, error) {
	return v.verify(evidence, now, func(e *Evidence, r *report) error {
		if r.claims.ReportData != reportData {
			return fmt.Errorf("%w: the report signs %s, want %s", ErrReportData,
				short(r.claims.ReportData[:]), short(reportData[:]))
		}
		if !r.hasClock {
			r.claims.Time = issued
		}
		return nil
	})
}

// report is what a format's payload verifier extracts from an authentic
// report.
type report struct {
	claims   Claims
	regs     [][]byte // measurement registers
	hasClock bool     // claims.Time is the platform's signed clock
}

// verify runs the checks in a fixed order: form, format, signature chain,
// binding (bind), debug, measurement, TCB, age. The first failure is
// returned.
func (v *Verifier) verify(evidence []byte, now time.Time, bind func(*Evidence, *report) error) (*Claims, error) {
	e, err := ParseEvidence(evidence)
	if err != nil {
		return nil, err
	}
	p := v.policy
	if !slices.Contains(p.Formats, e.Format) {
		return nil, fmt.Errorf("%w: %q (the policy allows %v)", ErrFormatNotAllowed, e.Format, p.Formats)
	}
	if e.Format == FormatSim && !p.AllowSim {
		return nil, fmt.Errorf("%w: sim evidence and the policy does not allow sim", ErrFormatNotAllowed)
	}
	r, err := v.payload(e.Format, e.Payload, now)
	if err != nil {
		return nil, err
	}
	r.claims.Format = e.Format
	r.claims.Measurement = formatMeasurement(r.regs...)
	if err := bind(e, r); err != nil {
		return nil, err
	}
	c := r.claims
	if c.Debug && !p.AllowDebug {
		return nil, fmt.Errorf("%w: the %s TEE runs in debug mode (%s)", ErrDebug, e.Format, c.Platform)
	}
	if !p.measurementAllowed(e.Format, r.regs) {
		return nil, &MeasurementError{Format: e.Format, Got: c.Measurement, Allowed: slices.Clone(p.Measurements[e.Format])}
	}
	if min := p.MinTCB[e.Format]; min != nil && !c.TCB.AtLeast(min) {
		return nil, &TCBError{Format: e.Format, Got: slices.Clone(c.TCB), Min: slices.Clone(min)}
	}
	maxAge := time.Duration(p.MaxAge)
	switch {
	case c.Time.IsZero():
		return nil, fmt.Errorf("%w: %s evidence carries no time, and its nonce records none (issue nonces with NewNonce)",
			ErrTooOld, e.Format)
	case c.Time.After(now.Add(ClockSkew)):
		return nil, fmt.Errorf("%w: made at %s, now is %s", ErrFuture,
			c.Time.UTC().Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	case now.Sub(c.Time) > maxAge:
		return nil, &AgeError{Time: c.Time, Now: now, MaxAge: maxAge}
	}
	return &c, nil
}

// payload verifies a format's payload: its parse and its signature chain.
// Nothing in it may panic on hostile bytes; the recover is a last resort
// for the vendor libraries it calls.
func (v *anchors) payload(format string, payload []byte, now time.Time) (r *report, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("%w: %s payload crashed its parser: %v", ErrMalformed, format, p)
		}
	}()
	switch format {
	case FormatSim:
		return verifySim(payload, v.sim)
	case FormatSNP:
		return verifySNP(payload, v.snp, now)
	case FormatTDX:
		return verifyTDX(payload, v.tdx, now)
	case FormatNitro:
		return verifyNitro(payload, v.nitro, now)
	}
	return nil, fmt.Errorf("%w: %q", ErrFormatNotAllowed, format)
}
