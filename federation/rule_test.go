package federation

import (
	"errors"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/protect/tee"
	"github.com/cloisterfl/cloister/robust"
)

// plainManifest is testManifest in mode plain, with the clip alone (no DP
// noise) and the given minimum cohort.
func plainManifest(n, minCohort int) *Manifest {
	m := testManifest(n, 3)
	m.Mode, m.Preset, m.MinCohort = ModePlain, "", minCohort
	m.DP = DP{Clip: 1}
	return m
}

func TestCanonicalRule(t *testing.T) {
	for _, tc := range []struct {
		spec      string
		minCohort int
		want      string
	}{
		{"", 5, ""},
		{"mean", 5, ""},
		{"median", 5, "median:f=2"},
		{"krum", 5, "krum:f=1"},
		{"krum", 10, "krum:f=3"},
		{"multikrum:m=3", 5, "multikrum:m=3,f=1"},
		{"bulyan", 7, "bulyan:f=1"},
		{"bulyan", 10, "bulyan:f=1"},
		{"bulyan", 11, "bulyan:f=2"},
		{"trimmed:0.2", 10, "trimmed:beta=0.2,f=2"},
		{"cclip", 5, "cclip:tau=0,iters=3,f=2"},
	} {
		got, err := CanonicalRule(tc.spec, tc.minCohort)
		if err != nil || got != tc.want {
			t.Errorf("CanonicalRule(%q, %d) = %q, %v; want %q", tc.spec, tc.minCohort, got, err, tc.want)
		}
	}
	// Bulyan needs n ≥ 4f+3: f=1 needs a minimum cohort of 7.
	for _, tc := range []struct {
		spec      string
		minCohort int
		want      error
	}{
		{"bulyan:f=1", 6, robust.ErrInfeasible},
		{"krum:f=2", 6, robust.ErrInfeasible},
		{"median:f=3", 6, robust.ErrInfeasible},
		{"fedmedian", 5, robust.ErrSpec},
	} {
		_, err := CanonicalRule(tc.spec, tc.minCohort)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.spec) {
			t.Errorf("CanonicalRule(%q, %d): got %v, want an error naming the spec and wrapping %v", tc.spec, tc.minCohort, err, tc.want)
		}
	}
}

func TestValidateRule(t *testing.T) {
	ok := map[string]func(m *Manifest){
		"median":      func(m *Manifest) { m.Rule = "median:f=2" },
		"mean spelt":  func(m *Manifest) { m.Rule = "mean" },
		"bulyan at 7": func(m *Manifest) { m.MinCohort, m.Rule = 7, "bulyan:f=1" },
		"krum in tee": func(m *Manifest) { withAggregator(m).Rule = "krum:f=1" },
		"mean in mhe": func(m *Manifest) {
			m.Mode, m.Preset, m.DP = ModeMHE, "test", DP{NoiseMultiplier: 1.1, Clip: 1, Epsilon: 8, Delta: 1e-5}
		},
	}
	for name, edit := range ok {
		m := plainManifest(7, 5)
		edit(m)
		if err := m.Validate(); err != nil {
			t.Errorf("%s: Validate() = %v", name, err)
		}
	}
	bad := map[string]struct {
		edit func(m *Manifest)
		says string
	}{
		"in mhe":      {func(m *Manifest) { m.Mode, m.Preset, m.Rule = ModeMHE, "test", "median:f=2" }, "only the clip"},
		"in secagg":   {func(m *Manifest) { m.Mode, m.Rule = ModeSecAgg, "krum:f=1" }, "only the clip"},
		"in paillier": {func(m *Manifest) { m.Mode, m.Rule = ModePaillier, "krum:f=1" }, "only the clip"},
		"with noise": {func(m *Manifest) {
			m.Rule, m.DP = "median:f=2", DP{NoiseMultiplier: 1, Clip: 1, Epsilon: 8, Delta: 1e-5}
		}, "noise shares"},
		"no f":         {func(m *Manifest) { m.Rule = "krum" }, `write "krum:f=1"`},
		"bulyan at 5":  {func(m *Manifest) { m.Rule = "bulyan:f=1" }, "4f+3"},
		"unknown rule": {func(m *Manifest) { m.Rule = "geomed" }, "unknown rule"},
	}
	for name, c := range bad {
		m := plainManifest(7, 5)
		c.edit(m)
		err := m.Validate()
		if !errors.Is(err, ErrInvalidManifest) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: Validate() = %v, want ErrInvalidManifest saying %q", name, err, c.says)
		}
	}
}

func TestSchemeOf(t *testing.T) {
	m := plainManifest(7, 5)
	m.Rule = "krum:f=1"
	s, err := SchemeOf(m)
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := s.(plain.Scheme); !ok || p.Rule != "krum:f=1" {
		t.Errorf("SchemeOf(plain, krum:f=1) = %#v, want plain.Scheme{Rule: \"krum:f=1\"}", s)
	}
	f, err := Resolve(m, Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	if p, ok := f.Scheme.(plain.Scheme); !ok || p.Rule != m.Rule {
		t.Errorf("Resolve's scheme %#v does not apply the rule %q", f.Scheme, m.Rule)
	}
	m.Rule = ""
	if s, err = SchemeOf(m); err != nil || s != (plain.Scheme{}) {
		t.Errorf("SchemeOf(plain, mean) = %#v, %v; want plain.Scheme{}", s, err)
	}
	m.Mode, m.Rule = ModeTEE, "median:f=2"
	if s, err = SchemeOf(m); err != nil {
		t.Fatal(err)
	} else if p, ok := s.(tee.Scheme); !ok || p.Rule != m.Rule || p.Key != nil || p.Identity != nil {
		t.Errorf("SchemeOf(tee, median:f=2) = %#v, want the coordinator's tee.Scheme{Rule: %q}", s, m.Rule)
	}
}
