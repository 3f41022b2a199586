package federation

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/model"
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidManifest, fmt.Sprintf(format, args...))
}

// Validate checks the manifest's content. Errors wrap [ErrInvalidManifest]
// and name the field.
func (m *Manifest) Validate() error {
	if m.Version != ManifestVersion {
		return invalid("version %d, this build reads version %d", m.Version, ManifestVersion)
	}
	if err := ValidateID(m.Federation); err != nil {
		return err
	}
	if m.Session != "" {
		if _, err := m.SessionID(); err != nil {
			return err
		}
	}
	if err := validatePrincipal("coordinator", m.Coordinator); err != nil {
		return err
	}
	n := len(m.Members)
	if n == 0 {
		return invalid("no members")
	}
	names := map[string]bool{m.Coordinator.Name: true}
	fps := map[string]string{m.Coordinator.Fingerprint: "the coordinator"}
	keys := map[string]string{string(m.Coordinator.AuditKey): "the coordinator"}
	for i, p := range m.Members {
		what := fmt.Sprintf("member %d (%q)", i+1, truncate(p.Name))
		if err := fl.ValidateNodeID(fl.NodeID(p.Name)); err != nil {
			return invalid("%s: %v", what, err)
		}
		if err := validatePrincipal(what, p); err != nil {
			return err
		}
		if names[p.Name] {
			return invalid("%s: name listed twice (or equal to the coordinator's)", what)
		}
		names[p.Name] = true
		if other, dup := fps[p.Fingerprint]; dup {
			return invalid("%s: certificate fingerprint %s is also %s's", what, p.Fingerprint, other)
		}
		fps[p.Fingerprint] = p.Name
		if other, dup := keys[string(p.AuditKey)]; dup {
			return invalid("%s: audit key is also %s's", what, other)
		}
		keys[string(p.AuditKey)] = p.Name
	}
	if m.Threshold < 1 || m.Threshold > n {
		return invalid("threshold %d outside 1..%d (the member count)", m.Threshold, n)
	}
	if m.MinCohort < m.Threshold || m.MinCohort > n {
		return invalid("min_cohort %d outside %d..%d (threshold..member count): a minimal round must be revealable by its own members", m.MinCohort, m.Threshold, n)
	}
	if !slices.Contains(modes, m.Mode) {
		return invalid("mode %q, want one of %v", truncate(m.Mode), modes)
	}
	if m.Preset != "" {
		if err := validateLabel(m.Preset); err != nil {
			return invalid("he_preset %q: %v", truncate(m.Preset), err)
		}
	} else if m.Mode == ModeMHE {
		return invalid("mode %s needs an he_preset", m.Mode)
	}
	if err := m.DP.validate(); err != nil {
		return err
	}
	if err := m.validateCompress(); err != nil {
		return err
	}
	if err := m.validateRule(); err != nil {
		return err
	}
	if err := m.Model.validate(); err != nil {
		return err
	}
	if err := m.Training.validate(); err != nil {
		return err
	}
	if m.Model.External() && m.Training.Scaffold() {
		return invalid("training.strategy %q with model kind %q: SCAFFOLD's control variates need its drift-corrected local steps, which the trainer API does not carry; use fedavg, fedadam, fedyogi or fedadagrad (and prox_mu for FedProx)",
			truncate(m.Training.Strategy), ModelExternal)
	}
	if err := m.validateAggregator(names, fps, keys); err != nil {
		return err
	}
	return validateAttestation(m.Attestation)
}

// validateAggregator checks mode tee's aggregator: present with an
// attestation policy in mode tee (distinct from every party), absent in
// every other mode.
func (m *Manifest) validateAggregator(names map[string]bool, fps, keys map[string]string) error {
	zero := len(m.AggregatorAttestation.Formats) == 0 && validateAttestation(m.AggregatorAttestation) == nil
	if m.Mode != ModeTEE {
		if m.Aggregator != nil || !zero {
			return invalid("aggregator and aggregator_attestation are for mode %s only, the mode is %s", ModeTEE, m.Mode)
		}
		return nil
	}
	p := m.Aggregator
	if p == nil {
		return invalid("mode %s needs an aggregator (cloister init --mode tee writes its kit)", ModeTEE)
	}
	what := fmt.Sprintf("aggregator %q", truncate(p.Name))
	if err := fl.ValidateNodeID(fl.NodeID(p.Name)); err != nil {
		return invalid("%s: %v", what, err)
	}
	if err := validatePrincipal(what, *p); err != nil {
		return err
	}
	switch {
	case names[p.Name]:
		return invalid("%s: name of a member or of the coordinator", what)
	case fps[p.Fingerprint] != "":
		return invalid("%s: certificate fingerprint %s is also %s's", what, p.Fingerprint, fps[p.Fingerprint])
	case keys[string(p.AuditKey)] != "":
		return invalid("%s: audit key is also %s's", what, keys[string(p.AuditKey)])
	case len(m.AggregatorAttestation.Formats) == 0:
		return invalid("%s: mode %s needs aggregator_attestation with formats: a node seals its updates only to an aggregator whose evidence it verified", what, ModeTEE)
	}
	if err := m.AggregatorAttestation.Validate(); err != nil {
		return invalid("aggregator_attestation: %v", err)
	}
	return nil
}

// ValidateID checks a federation ID: 1 to 128 characters from
// [A-Za-z0-9._-]. Errors wrap [ErrInvalidManifest].
func ValidateID(id string) error {
	if id == "" || len(id) > 128 {
		return invalid("federation ID %q must have 1 to 128 characters", truncate(id))
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return invalid("federation ID %q has character %q; use A-Z, a-z, 0-9, '.', '_', '-'", truncate(id), rune(c))
		}
	}
	return nil
}

func validatePrincipal(what string, p Principal) error {
	if err := fl.ValidateName(p.Name); err != nil {
		return invalid("%s: %v", what, err)
	}
	if !validFingerprint(p.Fingerprint) {
		return invalid("%s: fingerprint %q is not 64 lowercase hex digits", what, truncate(p.Fingerprint))
	}
	if len(p.AuditKey) != ed25519.PublicKeySize {
		return invalid("%s: audit key has %d bytes, want %d", what, len(p.AuditKey), ed25519.PublicKeySize)
	}
	return nil
}

// validateLabel checks a short machine-readable label: 1 to 64 characters
// from [A-Za-z0-9._-].
func validateLabel(s string) error {
	if s == "" || len(s) > 64 {
		return errors.New("must have 1 to 64 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("has character %q", rune(c))
		}
	}
	return nil
}

func finiteNonNeg(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) && x >= 0 }

func (d DP) validate() error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"noise_multiplier", d.NoiseMultiplier}, {"clip", d.Clip}, {"epsilon", d.Epsilon}, {"delta", d.Delta}} {
		if !finiteNonNeg(f.v) {
			return invalid("dp.%s %v must be finite and non-negative", f.name, f.v)
		}
	}
	if d.NoiseMultiplier == 0 {
		if d.Epsilon != 0 || d.Delta != 0 {
			return invalid("dp: epsilon %v and delta %v are set but noise_multiplier is 0 (DP off)", d.Epsilon, d.Delta)
		}
		return nil
	}
	if d.Clip == 0 {
		return invalid("dp: noise_multiplier %v needs a clip > 0", d.NoiseMultiplier)
	}
	if d.Epsilon == 0 {
		return invalid("dp: noise_multiplier %v needs an epsilon budget > 0", d.NoiseMultiplier)
	}
	if d.Delta <= 0 || d.Delta >= 1 {
		return invalid("dp: delta %v outside (0, 1)", d.Delta)
	}
	return nil
}

func (s ModelSpec) validate() error {
	if s.External() {
		return s.validateExternal()
	}
	if s.Params != 0 || s.Layout != "" {
		return invalid("model.params %d and model.layout %q are for kind %q only", s.Params, truncate(s.Layout), ModelExternal)
	}
	if err := validateLabel(s.Kind); err != nil {
		return invalid("model.kind %q: %v", truncate(s.Kind), err)
	}
	if len(s.Hidden) > 64 {
		return invalid("model.hidden has %d layers, at most 64", len(s.Hidden))
	}
	for i, h := range s.Hidden {
		if h < 1 || h > 1<<20 {
			return invalid("model.hidden[%d] = %d outside 1..%d", i, h, 1<<20)
		}
	}
	if s.Inputs < 1 || s.Inputs > model.MaxParams {
		return invalid("model.inputs %d outside 1..%d", s.Inputs, model.MaxParams)
	}
	if s.Classes < 2 || s.Classes > model.MaxParams {
		return invalid("model.classes %d outside 2..%d", s.Classes, model.MaxParams)
	}
	if err := s.Spec().Validate(); err != nil {
		return invalid("model (kind %q, %d inputs, %d classes, hidden %v): %v", s.Kind, s.Inputs, s.Classes, s.Hidden, err)
	}
	return nil
}

// validateExternal checks an external trainer's model: a layout digest
// and a parameter count, and nothing of the built-in models.
func (s ModelSpec) validateExternal() error {
	if s.Inputs != 0 || s.Classes != 0 || len(s.Hidden) != 0 {
		return invalid("model kind %q: inputs %d, classes %d, hidden %v must be 0 and empty (the trainer owns the data; the layout fixes the parameters)",
			ModelExternal, s.Inputs, s.Classes, s.Hidden)
	}
	if s.Params < 1 || s.Params > model.MaxParams {
		return invalid("model.params %d outside 1..%d", s.Params, model.MaxParams)
	}
	if !validFingerprint(s.Layout) {
		return invalid("model.layout %q is not a SHA-256 in 64 lowercase hex digits (cloister trainer describe prints it)", truncate(s.Layout))
	}
	return nil
}

func (t Training) validate() error {
	if t.Rounds < 1 {
		return invalid("training.rounds %d < 1", t.Rounds)
	}
	if t.LocalEpochs < 1 {
		return invalid("training.local_epochs %d < 1", t.LocalEpochs)
	}
	if t.Batch < 1 {
		return invalid("training.batch %d < 1", t.Batch)
	}
	if !finiteNonNeg(t.LearningRate) || t.LearningRate == 0 {
		return invalid("training.learning_rate %v must be finite and > 0", t.LearningRate)
	}
	if !finiteNonNeg(t.Momentum) || t.Momentum >= 1 {
		return invalid("training.momentum %v outside [0, 1)", t.Momentum)
	}
	if !finiteNonNeg(t.ProxMu) {
		return invalid("training.prox_mu %v must be finite and ≥ 0", t.ProxMu)
	}
	if t.Strategy == "" {
		return nil
	}
	_, err := t.Optimizer()
	return err
}

func validateAttestation(p attest.Policy) error {
	if len(p.Formats) == 0 {
		if len(p.Measurements) > 0 || len(p.MinTCB) > 0 || p.MaxAge != 0 || p.AllowSim || p.AllowDebug {
			return invalid("attestation lists no formats (attestation off) but sets other fields: list the formats to require attestation")
		}
		return nil
	}
	if err := p.Validate(); err != nil {
		return invalid("attestation: %v", err)
	}
	return nil
}
