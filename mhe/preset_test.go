package mhe

import (
	"errors"
	"testing"
)

func TestPresetAllowList(t *testing.T) {
	base := Agg128.Literal()
	for _, c := range []struct {
		name     string
		edit     func(*PresetLiteral)
		insecure bool // want ErrInsecure
	}{
		{"LogN 12 without Insecure", func(l *PresetLiteral) { l.LogN = 12; l.Name = "Small" }, true},
		{"LogN 10 without Insecure", func(l *PresetLiteral) { l.LogN = 10 }, true},
		{"log2 Q above 218 at N = 2^13", func(l *PresetLiteral) {
			l.Q = append(l.Q, 1152921504606683137, 1152921504606584833) // 4 × 60 bits = 240
		}, true},
		{"insecure without the name prefix", func(l *PresetLiteral) { l.LogN = 10; l.Insecure = true }, false},
		{"MaxAbs·Δ above Q/2", func(l *PresetLiteral) { l.MaxAbs = 8192 }, false},
		{"flooding σ above 2^100", func(l *PresetLiteral) { l.LogFlood = 101 }, false},
		{"no parties", func(l *PresetLiteral) { l.MaxParties = 0 }, false},
		{"one prime", func(l *PresetLiteral) { l.Q = l.Q[:1] }, false},
		{"no name", func(l *PresetLiteral) { l.Name = "" }, false},
		{"a prime that is not NTT-friendly", func(l *PresetLiteral) { l.Q = []uint64{l.Q[0], 1152921504606846883} }, false},
	} {
		l := base
		l.Q = append([]uint64(nil), base.Q...)
		c.edit(&l)
		p, err := NewPresetFromLiteral(l)
		if err == nil {
			t.Errorf("%s: accepted as %v", c.name, p)
			continue
		}
		if got := errors.Is(err, ErrInsecure); got != c.insecure {
			t.Errorf("%s: %v (ErrInsecure: %v, want %v)", c.name, err, got, c.insecure)
		}
	}
	if _, err := NewPresetFromLiteral(base); err != nil {
		t.Errorf("Agg128's literal is refused: %v", err)
	}
	if Agg128.Insecure() || !InsecureTest.Insecure() {
		t.Error("Insecure() is wrong")
	}
	if Agg128.LogQ() > heStandardMaxLogQP[13] {
		t.Errorf("Agg128 log2 Q = %.1f", Agg128.LogQ())
	}
}

func TestPresetCapacity(t *testing.T) {
	l := Agg128.Capacity()
	if l.MaxError > 1e-6 || l.MaxAbs < 1000 || l.MaxParties < 1000 || l.MaxDim < 1<<24-1 {
		t.Errorf("Agg128 limits %+v", l)
	}
	if s := Agg128.FloodSecurity(); s < 58 {
		t.Errorf("Agg128 flooding security %.1f bits per coefficient", s)
	}
}

// The literal is immutable: editing a returned copy changes nothing.
func TestPresetImmutable(t *testing.T) {
	l := Agg128.Literal()
	l.Q[0] = 7
	if Agg128.Literal().Q[0] == 7 {
		t.Fatal("Literal returned the preset's own moduli")
	}
}

func TestPresetByName(t *testing.T) {
	for _, p := range Presets() {
		if got, err := PresetByName(p.Name()); err != nil || got != p {
			t.Errorf("PresetByName(%q) = %v, %v", p.Name(), got, err)
		}
	}
	if _, err := PresetByName("Agg256"); !errors.Is(err, ErrUnknownPreset) {
		t.Errorf("PresetByName(Agg256): %v", err)
	}
}
