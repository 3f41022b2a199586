package attest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	sevtd "github.com/google/go-sev-guest/verify/testdata"
	tpb "github.com/google/go-tdx-guest/proto/tdx"
	tdxtd "github.com/google/go-tdx-guest/testing/testdata"
)

// rejections are the sentinels a verification may fail with.
var rejections = []error{
	ErrMalformed, ErrFormatNotAllowed, ErrSignature, ErrKeyBinding, ErrSessionBinding, ErrStaleNonce,
	ErrReportData, ErrDebug, ErrMeasurement, ErrTCB, ErrTooOld, ErrFuture,
}

// A matrixCase is one row of the rejection matrix: evidence altered in one
// way, and the one sentinel it must be refused with (nil: accepted).
type matrixCase struct {
	name string
	want error
	run  func(t *testing.T) (*Claims, error)
}

// runMatrix runs the rows, checks that each fails with exactly its own
// sentinel (errors.Is is true for it and false for every other), and logs
// the matrix: go test -run Matrix -v prints it.
func runMatrix(t *testing.T, format string, cases []matrixCase) {
	var out strings.Builder
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			claims, err := c.run(t)
			result := "accepted"
			if err != nil {
				result = err.Error()
				if len(result) > 150 {
					result = result[:150] + "…"
				}
			}
			fmt.Fprintf(&out, "  %-8s %-36s %s\n", format, c.name, result)
			if c.want == nil {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				if claims == nil || claims.Format != format {
					t.Fatalf("claims %+v", claims)
				}
				return
			}
			if err == nil {
				t.Fatalf("accepted, want %v", c.want)
			}
			for _, s := range rejections {
				if got := errors.Is(err, s); got != (s == c.want) {
					t.Errorf("errors.Is(err, %v) = %v; err = %v", s, got, err)
				}
			}
		})
	}
	t.Logf("rejection matrix (%s):\n%s", format, out.String())
}

func TestMatrixSim(t *testing.T) {
	prog, changed := testBinary(t)
	launch := []byte("manifest-sha256=0123…; flags=--tee sim")
	m := mustMeasure(t, prog, launch)
	p := Policy{
		Formats:      []string{FormatSim},
		Measurements: map[string][]string{FormatSim: {hexOf(m[:])}},
		MinTCB:       map[string]TCB{FormatSim: {3}},
		MaxAge:       Duration(time.Hour),
		AllowSim:     true,
	}
	v := mustVerifier(t, p, Roots{})
	good := newSim(t, SimConfig{Measurement: m, TCB: 3})
	made := simNow.Add(-30 * time.Second)
	want := testBinding(t, simNow.Add(-time.Minute), 1)
	other := testBinding(t, simNow.Add(-2*time.Hour), 2)

	with := func(edit func(*Binding)) Binding {
		b := want.clone()
		edit(&b)
		return b
	}
	verify := func(a Attester, b Binding, at time.Time) func(*testing.T) (*Claims, error) {
		return func(t *testing.T) (*Claims, error) {
			return v.Verify(mustAttest(t, a, b, at), want, simNow)
		}
	}
	runMatrix(t, FormatSim, []matrixCase{
		{"exact allowed evidence", nil, verify(good, want, made)},
		{"bound to another key", ErrKeyBinding, verify(good, with(func(b *Binding) { b.HPKEPub = other.HPKEPub }), made)},
		{"bound to another session (relay)", ErrSessionBinding, verify(good, with(func(b *Binding) { b.EKM = other.EKM }), made)},
		{"stale nonce", ErrStaleNonce, verify(good, with(func(b *Binding) { b.Nonce = other.Nonce }), made)},
		{"TCB below the floor", ErrTCB, verify(newSim(t, SimConfig{Measurement: m, TCB: 2}), want, made)},
		{"debug TEE", ErrDebug, verify(newSim(t, SimConfig{Measurement: m, TCB: 3, Debug: true}), want, made)},
		{"older than max age (pinned clock)", ErrTooOld, verify(good, want, simNow.Add(-time.Hour-time.Second))},
		{"unknown measurement (+1 byte)", ErrMeasurement,
			verify(newSim(t, SimConfig{Measurement: mustMeasure(t, changed, launch), TCB: 3}), want, made)},
		{"tampered signature", ErrSignature, func(t *testing.T) (*Claims, error) {
			ev := alterPayload(t, mustAttest(t, good, want, made), func(p []byte) []byte { p[len(p)-1] ^= 1; return p })
			return v.Verify(ev, want, simNow)
		}},
		{"tampered report (TCB raised)", ErrSignature, func(t *testing.T) (*Claims, error) {
			ev := alterPayload(t, mustAttest(t, newSim(t, SimConfig{Measurement: m, TCB: 2}), want, made),
				func(p []byte) []byte { p[212] = 3; return p })
			return v.Verify(ev, want, simNow)
		}},
		{"platform key of another vendor", ErrSignature, verify(newSim(t, SimConfig{Measurement: m, TCB: 3,
			Vendor: newSim(t, SimConfig{Rand: detRand(99)}).platform}), want, made)},
		{"clear binding altered in transit", ErrReportData, func(t *testing.T) (*Claims, error) {
			ev := mustAttest(t, good, with(func(b *Binding) { b.HPKEPub = other.HPKEPub }), made)
			e, _ := ParseEvidence(ev)
			e.Binding = want
			ev, _ = e.Marshal()
			return v.Verify(ev, want, simNow)
		}},
		{"dated in the future", ErrFuture, verify(good, want, simNow.Add(time.Hour))},
		{"sim under a policy without sim", ErrFormatNotAllowed, func(t *testing.T) (*Claims, error) {
			return mustVerifier(t, snpPolicy(), Roots{}).Verify(mustAttest(t, good, want, made), want, simNow)
		}},
		{"truncated envelope", ErrMalformed, func(t *testing.T) (*Claims, error) {
			ev := mustAttest(t, good, want, made)
			return v.Verify(ev[:len(ev)-1], want, simNow)
		}},
	})
}

func TestMatrixSNP(t *testing.T) {
	payload := snpSamplePayload(t)
	rd := snpSampleReportData()
	issued := snpNow.Add(-time.Minute)
	claimed := testBinding(t, issued, 1)
	other := testBinding(t, issued, 2)
	ev := envelope(t, FormatSNP, claimed, payload)

	with := func(edit func(*Binding)) Binding {
		b := claimed.clone()
		edit(&b)
		return b
	}
	policy := func(edit func(*Policy)) *Verifier {
		p := snpPolicy()
		if edit != nil {
			edit(&p)
		}
		return mustVerifier(t, p, Roots{})
	}
	raw := func(v *Verifier, ev []byte, issued time.Time) func(*testing.T) (*Claims, error) {
		return func(*testing.T) (*Claims, error) { return v.VerifyReportData(ev, rd, issued, snpNow) }
	}
	bound := func(want Binding) func(*testing.T) (*Claims, error) {
		return func(*testing.T) (*Claims, error) { return policy(nil).Verify(ev, want, snpNow) }
	}
	runMatrix(t, FormatSNP, []matrixCase{
		{"exact allowed evidence (shipped)", nil, raw(policy(nil), ev, issued)},
		{"bound to another key", ErrKeyBinding, bound(with(func(b *Binding) { b.SignPub = other.SignPub }))},
		{"bound to another session (relay)", ErrSessionBinding, bound(with(func(b *Binding) { b.EKM = other.EKM }))},
		{"stale nonce", ErrStaleNonce, bound(with(func(b *Binding) { b.Nonce = other.Nonce }))},
		{"TCB below the floor (snp 5 < 6)", ErrTCB, raw(policy(func(p *Policy) { p.MinTCB[FormatSNP] = TCB{2, 0, 6, 68} }), ev, issued)},
		{"debug TEE (policy forbids)", ErrDebug, raw(policy(func(p *Policy) { p.AllowDebug = false }), ev, issued)},
		{"older than max age (pinned clock)", ErrTooOld, raw(policy(nil), ev, snpNow.Add(-time.Hour-time.Second))},
		{"unknown measurement", ErrMeasurement, raw(policy(func(p *Policy) {
			p.Measurements[FormatSNP] = []string{strings.Repeat("ab", 48)}
		}), ev, issued)},
		{"tampered signature (measurement byte)", ErrSignature, raw(policy(nil),
			alterPayload(t, ev, func(p []byte) []byte { p[0x90] ^= 1; return p }), issued)},
		{"other report data", ErrReportData, func(*testing.T) (*Claims, error) {
			return policy(nil).VerifyReportData(ev, [64]byte{9}, issued, snpNow)
		}},
		{"VCEK expired (clock in 2030)", ErrSignature, func(*testing.T) (*Claims, error) {
			later := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
			return policy(nil).VerifyReportData(ev, rd, later, later)
		}},
		{"no VCEK in the evidence", ErrSignature, raw(policy(nil),
			envelope(t, FormatSNP, claimed, sevtd.AttestationBytes), issued)},
	})
}

func TestMatrixTDX(t *testing.T) {
	sample := tdxSample(t)
	rd := tdxReportData(sample)
	issued := tdxNow.Add(-time.Minute)
	claimed := testBinding(t, issued, 1)
	other := testBinding(t, issued, 2)
	ev := envelope(t, FormatTDX, claimed, tdxtd.RawQuote)
	forger := newTDXForger(t)

	with := func(edit func(*Binding)) Binding {
		b := claimed.clone()
		edit(&b)
		return b
	}
	policy := func(edit func(*Policy), roots Roots) *Verifier {
		p := tdxPolicy(sample)
		if edit != nil {
			edit(&p)
		}
		return mustVerifier(t, p, roots)
	}
	raw := func(v *Verifier, ev []byte, issued time.Time) func(*testing.T) (*Claims, error) {
		return func(*testing.T) (*Claims, error) { return v.VerifyReportData(ev, rd, issued, tdxNow) }
	}
	bound := func(want Binding) func(*testing.T) (*Claims, error) {
		return func(*testing.T) (*Claims, error) { return policy(nil, Roots{}).Verify(ev, want, tdxNow) }
	}
	tcb := tdxTCB(sample)
	higher := append(TCB(nil), tcb...)
	higher[2]++
	runMatrix(t, FormatTDX, []matrixCase{
		{"exact allowed evidence (shipped)", nil, raw(policy(nil, Roots{}), ev, issued)},
		{"bound to another key", ErrKeyBinding, bound(with(func(b *Binding) { b.HPKEPub = other.HPKEPub }))},
		{"bound to another session (relay)", ErrSessionBinding, bound(with(func(b *Binding) { b.EKM = other.EKM }))},
		{"stale nonce", ErrStaleNonce, bound(with(func(b *Binding) { b.Nonce = other.Nonce }))},
		{"TCB below the floor (svn[2] 4 < 5)", ErrTCB, raw(policy(func(p *Policy) { p.MinTCB[FormatTDX] = higher }, Roots{}), ev, issued)},
		{"debug TEE (forged, test PCK chain)", ErrDebug, raw(policy(nil, Roots{TDX: forger.pool}),
			envelope(t, FormatTDX, claimed, forger.quote(t, func(b *tpb.TDQuoteBody) { b.TdAttributes[0] |= 1 })), issued)},
		{"older than max age (pinned clock)", ErrTooOld, raw(policy(nil, Roots{}), ev, tdxNow.Add(-time.Hour-time.Second))},
		{"unknown measurement (RTMR2 pinned)", ErrMeasurement, raw(policy(func(p *Policy) {
			b := sample.GetTdQuoteBody()
			p.Measurements[FormatTDX] = []string{formatMeasurement(b.GetMrTd(), b.Rtmrs[0], b.Rtmrs[1], make([]byte, 48))}
		}, Roots{}), ev, issued)},
		{"tampered signature (MRTD byte)", ErrSignature, raw(policy(nil, Roots{}),
			alterPayload(t, ev, func(p []byte) []byte { p[0x30+0x88] ^= 1; return p }), issued)},
		{"forged chain, Intel root trusted", ErrSignature, raw(policy(nil, Roots{}),
			envelope(t, FormatTDX, claimed, forger.quote(t, nil)), issued)},
		{"forged chain, its root trusted", nil, raw(policy(nil, Roots{TDX: forger.pool}),
			envelope(t, FormatTDX, claimed, forger.quote(t, nil)), issued)},
	})
}
