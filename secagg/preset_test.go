package secagg

import (
	"errors"
	"testing"

	"github.com/cloisterfl/cloister/protect"
)

// TestPresets: the named presets, the default that an empty manifest
// preset means, rings by name, and the literals NewPreset refuses.
func TestPresets(t *testing.T) {
	if Default != Q64 || Presets()[0] != Default {
		t.Fatalf("the default is %s, Presets()[0] %s; want secagg64 first", Default.Name(), Presets()[0].Name())
	}
	for name, want := range map[string]string{"": "secagg64", "secagg64": "secagg64", "secagg32": "secagg32", "-k7": "secagg64-k7", "secagg32-k5": "secagg32-k5"} {
		p, err := PresetByName(name)
		if err != nil || p.Name() != want {
			t.Errorf("PresetByName(%q) = %v, %v; want %s", name, p, err, want)
			continue
		}
		l := p.Literal()
		if top := l.MaxAbs*float64(uint64(1)<<l.Frac) + float64(l.MaxParties)/2; top >= float64(uint64(1)<<(l.Bits-1)) {
			t.Errorf("%s: sums up to %g do not fit 2^%d", want, top, l.Bits-1)
		}
	}
	for _, name := range []string{"secagg16", "secagg32-k2", "secagg32-k07", "secagg64-k1001", "secagg32-kx"} {
		if _, err := PresetByName(name); !errors.Is(err, ErrUnknownPreset) {
			t.Errorf("PresetByName(%q): %v, want ErrUnknownPreset", name, err)
		}
	}
	// A modulus that a sum of accepted inputs could wrap is refused.
	wrap := Q32.Literal()
	wrap.Name, wrap.Frac = "wraps", 21
	if _, err := NewPreset(wrap); !errors.Is(err, protect.ErrRange) {
		t.Errorf("NewPreset with sums up to 2^31: %v, want ErrRange", err)
	}
	if c := Q64.Capacity(); c.MaxError > 1e-9 || c.MaxAbs != 1<<20 {
		t.Errorf("secagg64's capacity %+v", c)
	}
}
