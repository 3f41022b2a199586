package attest

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Policy says which evidence a [Verifier] accepts. It is part of the signed
// federation manifest, so it is plain JSON-serializable data; its zero value
// accepts nothing. Everything not allowed is refused:
//
//   - evidence in a format not in Formats ([ErrFormatNotAllowed]); sim
//     needs AllowSim too;
//   - a measurement not in Measurements[format] ([ErrMeasurement]);
//   - a TCB below MinTCB[format], component by component ([ErrTCB]);
//   - a debug TEE, unless AllowDebug ([ErrDebug]);
//   - evidence older than MaxAge ([ErrTooOld]).
type Policy struct {
	// Formats are the accepted evidence formats (FormatSim, FormatSNP,
	// FormatTDX, FormatNitro).
	Formats []string `json:"formats"`
	// Measurements are, per format, the allowed measurements in the form
	// [Claims.Measurement] prints: lowercase hex registers joined by ':'.
	// An entry may list only the first registers (for tdx: MRTD, then
	// RTMR0…RTMR3; for nitro: PCR0, PCR1, PCR2); it then pins those and
	// leaves the rest free. Every format in Formats needs at least one.
	Measurements map[string][]string `json:"measurements,omitempty"`
	// MinTCB is, per format, the lowest accepted TCB version: sim has one
	// component, sev-snp four (bootloader, TEE, SNP firmware, microcode
	// security patch levels, as in AMD's KDS URLs), tdx sixteen (the bytes
	// of TEE_TCB_SVN). nitro has no TCB. A format without an entry has no
	// floor, which [Policy.Warnings] reports.
	MinTCB map[string]TCB `json:"min_tcb,omitempty"`
	// MaxAge is the oldest evidence accepted, between 1 s and 30 days:
	// evidence must be refreshed more often than this.
	MaxAge Duration `json:"max_age"`
	// AllowSim admits sim evidence, which anyone can forge with the
	// published test vendor key. Development only: off unless set, and
	// flagged by [Policy.Warnings] when on.
	AllowSim bool `json:"allow_sim"`
	// AllowDebug admits TEEs in debug mode, whose memory the host can read.
	// Development only, flagged by [Policy.Warnings].
	AllowDebug bool `json:"allow_debug"`
}

// MaxPolicyAge is the largest MaxAge a policy may set.
const MaxPolicyAge = 30 * 24 * time.Hour

// Duration is a time.Duration that encodes in JSON as a Go duration string
// ("1h0m0s"), which is also its canonical form.
type Duration time.Duration

// MarshalText encodes d as time.Duration.String does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText decodes a Go duration string such as "1h" or "90m".
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("attest: duration %q: %w", trunc(string(b)), err)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) String() string { return time.Duration(d).String() }

// TCB is a trusted computing base version: a vector of security version
// numbers whose meaning depends on the format (see [Policy.MinTCB]).
type TCB []uint32

// AtLeast reports whether t is at least min: as long, and no component
// lower.
func (t TCB) AtLeast(min TCB) bool {
	if len(t) != len(min) {
		return false
	}
	for i := range t {
		if t[i] < min[i] {
			return false
		}
	}
	return true
}

// tcbSize is the number of TCB components per format; 0: no TCB.
var tcbSize = map[string]int{FormatSim: 1, FormatSNP: 4, FormatTDX: 16, FormatNitro: 0}

// registers is, per format, the most registers a measurement has.
var registers = map[string]int{FormatSim: 1, FormatSNP: 1, FormatTDX: 5, FormatNitro: 3}

// registerSize is the size of every measurement register: SHA-384.
const registerSize = 48

// parseMeasurement decodes a measurement string of format f into its
// registers.
func parseMeasurement(f, m string) ([][]byte, error) {
	parts := strings.Split(m, ":")
	if len(parts) > registers[f] {
		return nil, fmt.Errorf("%s measurement %q has %d registers, at most %d", f, trunc(m), len(parts), registers[f])
	}
	regs := make([][]byte, len(parts))
	for i, p := range parts {
		if len(p) != 2*registerSize || strings.ToLower(p) != p {
			return nil, fmt.Errorf("%s measurement %q: register %d must be %d lowercase hex digits", f, trunc(m), i, 2*registerSize)
		}
		b, err := hex.DecodeString(p)
		if err != nil {
			return nil, fmt.Errorf("%s measurement %q: register %d is not hex", f, trunc(m), i)
		}
		regs[i] = b
	}
	return regs, nil
}

// formatMeasurement prints registers the way policies spell them.
func formatMeasurement(regs ...[]byte) string {
	s := make([]string, len(regs))
	for i, r := range regs {
		s[i] = hex.EncodeToString(r)
	}
	return strings.Join(s, ":")
}

// Validate checks that p is a usable policy: known formats listed once, sim
// only with AllowSim, every format with an allow-list of well-formed
// measurements, TCB floors of the right shape, and 0 < MaxAge ≤ 30 days.
// Errors wrap [ErrPolicy].
func (p Policy) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrPolicy, fmt.Sprintf(format, args...))
	}
	if len(p.Formats) == 0 {
		return bad("no formats: every evidence would be refused")
	}
	for i, f := range p.Formats {
		if !knownFormat(f) {
			return bad("formats[%d]: unknown format %q, want one of %v", i, trunc(f), Formats)
		}
		if slices.Index(p.Formats, f) != i {
			return bad("format %q listed twice", f)
		}
	}
	if slices.Contains(p.Formats, FormatSim) && !p.AllowSim {
		return bad(`formats lists "sim" but allow_sim is false`)
	}
	for f, list := range p.Measurements {
		if !slices.Contains(p.Formats, f) {
			return bad("measurements for %q, which formats does not list", trunc(f))
		}
		for i, m := range list {
			if _, err := parseMeasurement(f, m); err != nil {
				return bad("measurements[%s][%d]: %v", f, i, err)
			}
			if slices.Index(list, m) != i {
				return bad("measurements[%s]: %q listed twice", f, trunc(m))
			}
		}
	}
	for _, f := range p.Formats {
		if len(p.Measurements[f]) == 0 {
			return bad("format %q has no allowed measurements: its evidence would always be refused", f)
		}
	}
	for f, min := range p.MinTCB {
		if !slices.Contains(p.Formats, f) {
			return bad("min_tcb for %q, which formats does not list", trunc(f))
		}
		if tcbSize[f] == 0 {
			return bad("min_tcb for %q: the format has no TCB version", f)
		}
		if len(min) != tcbSize[f] {
			return bad("min_tcb[%s] has %d components, want %d", f, len(min), tcbSize[f])
		}
	}
	if p.MaxAge <= 0 || time.Duration(p.MaxAge) > MaxPolicyAge {
		return bad("max_age %s must be positive and at most %s", p.MaxAge, MaxPolicyAge)
	}
	if time.Duration(p.MaxAge) < time.Second {
		return bad("max_age %s is shorter than a second", p.MaxAge)
	}
	return nil
}

// Warnings returns what an operator must see about p, loudly, in logs and
// on the dashboard: sim or debug TEEs allowed, formats without a TCB floor,
// tdx entries that pin only the firmware. It returns nil for a strict
// policy.
func (p Policy) Warnings() []string {
	var w []string
	if p.AllowSim && slices.Contains(p.Formats, FormatSim) {
		w = append(w, "INSECURE: the attestation policy accepts SIMULATED evidence (sim): anyone can make it "+
			"for any measurement with the published test vendor key, so it proves nothing about the code a node runs. "+
			"Development and tests only: never admit real data under this policy.")
	}
	if p.AllowDebug {
		w = append(w, "INSECURE: the attestation policy accepts DEBUG TEEs, whose memory the host can read and write. "+
			"Development only.")
	}
	for _, f := range p.Formats {
		if tcbSize[f] > 0 && f != FormatSim && p.MinTCB[f] == nil {
			w = append(w, fmt.Sprintf("the attestation policy sets no minimum TCB for %s: platforms with firmware "+
				"of any age, including versions with published vulnerabilities, are accepted", f))
		}
	}
	for _, m := range p.Measurements[FormatTDX] {
		if !strings.Contains(m, ":") {
			w = append(w, fmt.Sprintf("tdx allow-list entry %s… pins only MRTD (the TD firmware), not the "+
				"kernel, command line and application measured in RTMR0-3", m[:min(16, len(m))]))
		}
	}
	return w
}

// compiled is a validated policy in the form the verifier uses.
type compiled struct {
	Policy
	allowed map[string][][][]byte // format → entries → registers
}

func compile(p Policy) (*compiled, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	c := &compiled{Policy: clonePolicy(p), allowed: map[string][][][]byte{}}
	for f, list := range c.Measurements {
		for _, m := range list {
			regs, _ := parseMeasurement(f, m) // checked by Validate
			c.allowed[f] = append(c.allowed[f], regs)
		}
	}
	return c, nil
}

func clonePolicy(p Policy) Policy {
	q := p
	q.Formats = slices.Clone(p.Formats)
	q.Measurements = make(map[string][]string, len(p.Measurements))
	for f, l := range p.Measurements {
		q.Measurements[f] = slices.Clone(l)
	}
	q.MinTCB = make(map[string]TCB, len(p.MinTCB))
	for f, t := range p.MinTCB {
		q.MinTCB[f] = slices.Clone(t)
	}
	return q
}

// measurementAllowed reports whether some allow-list entry for f pins a
// prefix of regs.
func (c *compiled) measurementAllowed(f string, regs [][]byte) bool {
	for _, entry := range c.allowed[f] {
		if len(entry) > len(regs) {
			continue
		}
		ok := true
		for i := range entry {
			if string(entry[i]) != string(regs[i]) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
	}
	return false
}
