package federation

import (
	"fmt"
	"slices"
	"strings"

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

// SchemeOf returns the scheme of the manifest's mode ([Scheme]) set to
// apply the manifest's rule.
func SchemeOf(m *Manifest) (protect.Scheme, error) {
	s, err := Scheme(m.Mode, m.Preset)
	if err != nil || !m.Robust() {
		return s, err
	}
	switch s := s.(type) {
	case plain.Scheme:
		s.Rule = m.Rule
		return s, nil
	case tee.Scheme:
		s.Rule = m.Rule
		return s, nil
	}
	return nil, fmt.Errorf("%w: rule %q in mode %s", ErrInvalidManifest, truncate(m.Rule), m.Mode)
}

// WarnInsecureAttacks is what every daemon and the command line say when the
// manifest allows Byzantine members (InsecureAttacks).
const WarnInsecureAttacks = "INSECURE: the manifest allows attacks (insecure_attacks): any member may run as a Byzantine attacker " +
	"(cloister node --insecure-attack). Tests and research on robust rules only."
