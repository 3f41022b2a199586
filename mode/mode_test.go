package mode_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/mode"
)

func TestScheme(t *testing.T) {
	for _, tc := range []struct {
		mode, preset, want string
		err                error
	}{
		{"mhe", "Agg128", "mhe", nil},
		{"mhe", "InsecureTest", "mhe", nil},
		{"plain", "", "plain", nil},
		{"mhe", "Agg64", "", mhe.ErrUnknownPreset},
		{"secagg", "", "", mode.ErrUnsupported},
		{"", "", "", mode.ErrUnsupported},
	} {
		s, err := mode.Scheme(tc.mode, tc.preset)
		if !errors.Is(err, tc.err) {
			t.Errorf("Scheme(%q, %q) error = %v, want %v", tc.mode, tc.preset, err, tc.err)
			continue
		}
		if err == nil && s.Name() != tc.want {
			t.Errorf("Scheme(%q, %q).Name() = %q, want %q", tc.mode, tc.preset, s.Name(), tc.want)
		}
	}
}

func ExampleScheme() {
	s, err := mode.Scheme("mhe", "Agg128")
	fmt.Println(s.Name(), err, s.Limits().MaxParties)
	// Output: mhe <nil> 1000
}
