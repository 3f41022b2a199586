package federation

import (
	"fmt"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/protect"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/protect/tee"
	"github.com/cloisterfl/cloister/robust"
)

// RuleModes are the modes that can apply a robust rule: those in which
// something sees the individual updates (in mode tee, only the attested
// aggregator). Under mhe and secagg nobody does, so the only defence
// against a malicious member is the clip (DP.Clip), applied on every node.
var RuleModes = []string{ModePlain, ModeTEE}

// Robust reports whether the manifest names a robust rule (anything but
// the mean).
func (m *Manifest) Robust() bool { return m.Rule != "" && m.Rule != "mean" }

// CanonicalRule returns the canonical form of a rule spec of package
// robust for a federation whose rounds aggregate at least minCohort
// updates, with f written out: "" for the mean ("" or "mean"), else what
// the rule's String returns, e.g. "krum" → "krum:f=1" for a minimum cohort
// of 5. f is the number of Byzantine members the rule withstands; when the
// spec does not give it, it is the largest the rule tolerates with
// minCohort updates, the smallest cohort a round can close with: median
// and cclip ⌊(n−1)/2⌋, krum and multikrum ⌊(n−3)/2⌋, bulyan ⌊(n−3)/4⌋,
// trimmed ⌊βn⌋. The rule must be feasible for minCohort updates (Bulyan
// needs n ≥ 4f+3, Krum n ≥ 2f+3, median n ≥ 2f+1, …); larger cohorts
// then are too.
func CanonicalRule(spec string, minCohort int) (string, error) {
	spec = strings.TrimSpace(spec)
	if spec == "" || spec == "mean" {
		return "", nil
	}
	r, err := robust.Parse(spec, minCohort)
	if err != nil {
		return "", fmt.Errorf("rule %q for a minimum cohort of %d updates: %w", truncate(spec), minCohort, err)
	}
	return r.String(), nil
}

// validateRule checks the manifest's rule: canonical, feasible from the
// minimum cohort to every member, in a mode that can apply it, and without
// DP noise, whose accounting assumes that the noise shares are summed.
func (m *Manifest) validateRule() error {
	if !m.Robust() {
		return nil
	}
	switch {
	case m.Mode == ModeMHE || m.Mode == ModeSecAgg || m.Mode == ModePaillier:
		return invalid("rule %q in mode %s: nobody sees an individual update under %s, so no robust rule can run; only the clip (dp.clip) bounds a malicious member: leave the rule out (the mean), or use mode %s",
			truncate(m.Rule), m.Mode, m.Mode, strings.Join(RuleModes, ", "))
	case !slices.Contains(RuleModes, m.Mode):
		return invalid("rule %q in mode %s: this build applies robust rules in modes %s only", truncate(m.Rule), m.Mode, strings.Join(RuleModes, ", "))
	case m.DP.NoiseMultiplier > 0:
		return invalid("rule %q with dp.noise_multiplier %v: the privacy accounting assumes the noise shares are summed, which a robust rule does not do; use dp.clip alone", truncate(m.Rule), m.DP.NoiseMultiplier)
	}
	canon, err := CanonicalRule(m.Rule, m.MinCohort)
	if err != nil {
		return invalid("%v", err)
	}
	if canon != m.Rule {
		return invalid("rule %q is not in canonical form: write %q", truncate(m.Rule), canon)
	}
	if _, err := robust.Parse(m.Rule, len(m.Members)); err != nil {
		return invalid("rule %q with all %d members: %v", truncate(m.Rule), len(m.Members), err)
	}
	return nil
}

// CompressModes are the modes whose updates may travel compressed (the
// manifest's Compress): those whose payloads carry the update's values as
// such, in the clear or sealed to the aggregator. mhe encrypts them, secagg
// and paillier encode them as fixed-point integers whose width is the
// preset's.
var CompressModes = []string{ModePlain, ModeTEE}

// CanonicalCompress returns the canonical form of a compression spec of
// package compress: "" for none ("" or "none"), else what its String
// returns ("topk:0.01", "q8", "q8:64").
func CanonicalCompress(spec string) (string, error) {
	c, err := compress.Parse(strings.TrimSpace(spec))
	if err != nil {
		return "", fmt.Errorf("compression %q: %w", truncate(spec), err)
	}
	if c.IsNone() {
		return "", nil
	}
	return c.String(), nil
}

// validateCompress checks the manifest's compression: canonical, in a
// mode that carries compressed updates.
func (m *Manifest) validateCompress() error {
	if m.Compress == "" {
		return nil
	}
	canon, err := CanonicalCompress(m.Compress)
	if err != nil {
		return invalid("%v", err)
	}
	if canon != m.Compress {
		return invalid("compression %q is not in canonical form: write %q", truncate(m.Compress), canon)
	}
	if !slices.Contains(CompressModes, m.Mode) {
		return invalid("compression %q in mode %s: only modes %s carry compressed updates (secagg's quantization width is its preset: secagg32 or secagg64)",
			truncate(m.Compress), m.Mode, strings.Join(CompressModes, ", "))
	}
	return nil
}

// SchemeOf returns the scheme of the manifest's mode ([Scheme]) set to
// apply the manifest's rule and compression.
func SchemeOf(m *Manifest) (protect.Scheme, error) {
	s, err := Scheme(m.Mode, m.Preset)
	if err != nil || (!m.Robust() && m.Compress == "") {
		return s, err
	}
	c, err := compress.Parse(m.Compress)
	if err != nil {
		return nil, fmt.Errorf("%w: compression %q: %v", ErrInvalidManifest, truncate(m.Compress), err)
	}
	switch s := s.(type) {
	case plain.Scheme:
		s.Rule, s.Compress = m.Rule, c
		return s, nil
	case tee.Scheme:
		s.Rule, s.Compress = m.Rule, c
		return s, nil
	}
	if m.Robust() {
		return nil, fmt.Errorf("%w: rule %q in mode %s", ErrInvalidManifest, truncate(m.Rule), m.Mode)
	}
	return nil, fmt.Errorf("%w: compression %q in mode %s", ErrInvalidManifest, truncate(m.Compress), m.Mode)
}

// WarnInsecureAttacks is what every daemon and the command line say when the
// manifest allows Byzantine members (InsecureAttacks).
const WarnInsecureAttacks = "INSECURE: the manifest allows attacks (insecure_attacks): any member may run as a Byzantine attacker " +
	"(cloister node --insecure-attack). Tests and research on robust rules only."
