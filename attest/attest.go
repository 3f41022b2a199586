package attest

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Evidence formats. A format names both the platform that signs a report and
// the payload layout that carries it (see the package documentation).
const (
	FormatSim   = "sim"     // simulated TEE: development and tests only, INSECURE
	FormatSNP   = "sev-snp" // AMD SEV-SNP attestation report and its VCEK/VLEK certificate
	FormatTDX   = "tdx"     // Intel TDX quote (version 4) with its embedded PCK chain
	FormatNitro = "nitro"   // AWS Nitro Enclaves attestation document (COSE_Sign1)
)

// Formats are the known evidence formats, in a fixed order.
var Formats = []string{FormatSim, FormatSNP, FormatTDX, FormatNitro}

func knownFormat(f string) bool { return slices.Contains(Formats, f) }

// Rejection reasons. Every error the [Verifier] returns wraps exactly one of
// them, so callers branch with errors.Is; the message says what was found.
var (
	// ErrMalformed: bytes that are not well-formed evidence (bad envelope,
	// truncated or oversized payload, a report that does not parse).
	ErrMalformed = errors.New("attest: malformed evidence")
	// ErrFormatNotAllowed: a format the policy does not list, or sim
	// evidence under a policy without AllowSim.
	ErrFormatNotAllowed = errors.New("attest: evidence format not allowed")
	// ErrSignature: the report's signature or its certificate chain does not
	// verify to the vendor root the verifier trusts (tampered, forged, signed
	// by another vendor, expired certificate).
	ErrSignature = errors.New("attest: evidence signature does not verify")
	// ErrKeyBinding: the evidence binds other session public keys than the
	// ones expected: it vouches for another key.
	ErrKeyBinding = errors.New("attest: evidence bound to another key")
	// ErrSessionBinding: the evidence binds another TLS session (exported
	// keying material): it was made for another connection and relayed.
	ErrSessionBinding = errors.New("attest: evidence bound to another session")
	// ErrStaleNonce: the evidence answers another (earlier) nonce.
	ErrStaleNonce = errors.New("attest: evidence answers a stale nonce")
	// ErrReportData: the signed report data is not what was expected, and
	// the evidence's clear binding fields do not say why (they were altered,
	// or the report was made over other data).
	ErrReportData = errors.New("attest: report data mismatch")
	// ErrDebug: the TEE runs in debug mode (its memory is open to the host)
	// and the policy does not allow debug TEEs.
	ErrDebug = errors.New("attest: debug TEE")
	// ErrMeasurement: the measured code is not on the policy's allow-list.
	// The error is a [*MeasurementError].
	ErrMeasurement = errors.New("attest: measurement not allowed")
	// ErrTCB: the platform's TCB version is below the policy's floor. The
	// error is a [*TCBError].
	ErrTCB = errors.New("attest: TCB below the minimum")
	// ErrTooOld: the evidence is older than the policy's maximum age, or its
	// age cannot be established. The error is an [*AgeError] when the time
	// is known.
	ErrTooOld = errors.New("attest: evidence too old")
	// ErrFuture: the evidence is dated after now (beyond [ClockSkew]).
	ErrFuture = errors.New("attest: evidence dated in the future")
	// ErrPolicy: a [Policy] that fails [Policy.Validate].
	ErrPolicy = errors.New("attest: invalid policy")
	// ErrUnsupported: a hardware attester on a machine without the device.
	ErrUnsupported = errors.New("attest: TEE device not available")
)

// ClockSkew is how far in the future a report's time may lie before it is
// refused with [ErrFuture]: platform and verifier clocks drift.
const ClockSkew = 5 * time.Minute

// MeasurementError is the [ErrMeasurement] rejection: the measurement found
// and the allow-list it is not on.
type MeasurementError struct {
	Format  string
	Got     string   // the evidence's measurement, as in [Claims.Measurement]
	Allowed []string // the policy's allow-list for Format
}

func (e *MeasurementError) Error() string {
	return fmt.Sprintf("attest: %s measurement %s is not allowed (allow-list: %s)",
		e.Format, e.Got, strings.Join(e.Allowed, ", "))
}

// Unwrap returns ErrMeasurement.
func (e *MeasurementError) Unwrap() error { return ErrMeasurement }

// TCBError is the [ErrTCB] rejection: the platform's TCB and the floor it
// does not reach.
type TCBError struct {
	Format string
	Got    TCB
	Min    TCB
}

func (e *TCBError) Error() string {
	return fmt.Sprintf("attest: %s TCB %v is below the minimum %v", e.Format, e.Got, e.Min)
}

// Unwrap returns ErrTCB.
func (e *TCBError) Unwrap() error { return ErrTCB }

// AgeError is the [ErrTooOld] rejection when the evidence's time is known.
type AgeError struct {
	Time   time.Time     // when the evidence was made, as in [Claims.Time]
	Now    time.Time     // the verifier's clock
	MaxAge time.Duration // the policy's maximum age
}

func (e *AgeError) Error() string {
	return fmt.Sprintf("attest: evidence from %s is %s old at %s, more than the maximum %s",
		e.Time.UTC().Format(time.RFC3339), e.Now.Sub(e.Time).Round(time.Second),
		e.Now.UTC().Format(time.RFC3339), e.MaxAge)
}

// Unwrap returns ErrTooOld.
func (e *AgeError) Unwrap() error { return ErrTooOld }

// Claims are what verified evidence says about the node: which platform
// vouches for it and what code it runs there.
type Claims struct {
	// Format is the evidence format (FormatSim, FormatSNP, …).
	Format string
	// Platform describes the hardware the vendor chain vouched for (product
	// line, module ID): for logs and dashboards, not for decisions.
	Platform string
	// Measurement is the measured code, as the policy's allow-list spells
	// it: lowercase hex registers separated by ':' (see "Measurements" in the
	// package documentation).
	Measurement string
	// TCB is the platform's trusted computing base version, one component
	// per security version number; nil for nitro, which has none.
	TCB TCB
	// Debug reports a TEE in debug mode, whose memory the host can read.
	Debug bool
	// Time is when the evidence was made: the platform's signed clock (sim,
	// nitro) or, for formats without a clock (sev-snp, tdx), the issue time
	// of the nonce it answers (a lower bound). Zero if unknown.
	Time time.Time
	// ReportData are the 64 bytes the platform signed.
	ReportData [64]byte
}

// An Attester produces evidence in one format: a platform report over 64
// bytes of report data, signed by a key its vendor certifies. Attesters are
// the producing side of the pair; the [Verifier] is the checking side.
//
// Wrap an Attester's payload in an envelope with [Attest], which also
// computes the report data from a session [Binding].
type Attester interface {
	// Format names the evidence format the Attester produces.
	Format() string
	// Attest returns a report over reportData, as the format's payload
	// bytes. now is the time a format with a simulated clock (sim) puts in
	// its report; hardware formats take time from their own clock (nitro)
	// or carry none (sev-snp, tdx).
	Attest(reportData [64]byte, now time.Time) ([]byte, error)
}

// Attest produces evidence bound to a session: it has a report made over
// b.ReportData() and wraps it, with b's nonce, keying material and public
// keys in clear, in a versioned [Evidence] envelope.
func Attest(a Attester, b Binding, now time.Time) ([]byte, error) {
	if !knownFormat(a.Format()) {
		return nil, fmt.Errorf("attest: attester has unknown format %q", a.Format())
	}
	payload, err := a.Attest(b.ReportData(), now)
	if err != nil {
		return nil, fmt.Errorf("attest: producing %s evidence: %w", a.Format(), err)
	}
	e := Evidence{Format: a.Format(), Binding: b.clone(), Payload: payload}
	return e.Marshal()
}
