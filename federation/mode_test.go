package federation_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/paillier"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/secagg"
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
		{"secagg", "", "secagg", nil},
		{"secagg", "secagg64-k7", "secagg", nil},
		{"secagg", "secagg16", "", secagg.ErrUnknownPreset},
		{"secagg", "secagg32-k2", "", secagg.ErrUnknownPreset},
		{"tee", "", "tee", nil},
		{"paillier", "", "paillier", nil},
		{"paillier", "InsecureTest", "paillier", nil},
		{"paillier", "paillier1024", "", paillier.ErrUnknownPreset},
		{"", "", "", federation.ErrUnsupported},
	} {
		s, err := federation.Scheme(tc.mode, tc.preset)
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
	s, err := federation.Scheme("mhe", "Agg128")
	fmt.Println(s.Name(), err, s.Capacity().MaxParties)
	// Output: mhe <nil> 1000
}

func TestRoundConfig(t *testing.T) {
	dir := t.TempDir() + "/fed"
	if err := pki.InitFederation(dir, pki.InitOptions{Nodes: 3, Threshold: 2}, time.Now(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	kit, err := pki.LoadKit(dir + "/node-1")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := federation.RoundConfig(kit.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	h, _ := kit.Manifest.Hash()
	if !bytes.Equal(cfg.Session, h[:]) || cfg.Threshold != 2 || len(cfg.Members) != 3 {
		t.Errorf("RoundConfig = %+v; want session %x, t 2, 3 members", cfg, h)
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("RoundConfig gives an invalid engine configuration: %v", err)
	}
}
