package federation_test

import (
	"crypto/rand"
	"fmt"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
)

func manifest(t *testing.T, o pki.InitOptions) *federation.Manifest {
	t.Helper()
	dir := t.TempDir() + "/fed"
	if err := pki.InitFederation(dir, o, time.Now(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	kit, err := pki.LoadKit(dir + "/node-1")
	if err != nil {
		t.Fatal(err)
	}
	return kit.Manifest
}

func TestPrivacy(t *testing.T) {
	man := manifest(t, pki.InitOptions{Nodes: 4, Threshold: 2, MinCohort: 3, Mode: federation.ModePlain,
		DP: &federation.DP{NoiseMultiplier: 2, Clip: 0.5, Epsilon: 8, Delta: 1e-6}})
	scheme, err := federation.Scheme(man.Mode, man.Preset)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := federation.RoundConfig(man)
	if err != nil {
		t.Fatal(err)
	}
	rule, ok, err := federation.Privacy(man, cfg, scheme.Capacity())
	if err != nil || !ok {
		t.Fatalf("Privacy = %+v, %v, %v", rule, ok, err)
	}
	// k is the minimum cohort, the dimension the scheme's bound less the
	// weight slot, q = 1 for a cohort of every live member.
	z, err := dp.DistributedMultiplier(2, 0.5, 3, scheme.Capacity().MaxDim-1, dp.DefaultBits)
	if err != nil {
		t.Fatal(err)
	}
	if rule != (dp.Rounds{Multiplier: z, SampleRate: 1, Delta: 1e-6}) {
		t.Errorf("rule %+v, want multiplier %v, q 1, δ 1e-6", rule, z)
	}
	cfg.Fraction = 0.5
	if rule, _, _ := federation.Privacy(man, cfg, scheme.Capacity()); rule.SampleRate != 0.5 {
		t.Errorf("sampling half the members: q = %v", rule.SampleRate)
	}

	off := manifest(t, pki.InitOptions{Nodes: 3, Threshold: 2, Mode: federation.ModePlain, DP: &federation.DP{}})
	if _, ok, err := federation.Privacy(off, cfg, scheme.Capacity()); ok || err != nil {
		t.Errorf("no DP: ok %v, err %v", ok, err)
	}
}

func ExamplePrivacy() {
	man := &federation.Manifest{MinCohort: 10, DP: federation.DP{NoiseMultiplier: 2.01649, Clip: 1, Epsilon: 8, Delta: 1e-5}}
	scheme, _ := federation.Scheme("mhe", "Agg128")
	rule, _, err := federation.Privacy(man, round.Config{}, scheme.Capacity())
	if err != nil {
		panic(err)
	}
	c, _ := rule.After(10)
	n, _ := rule.MaxRounds(man.DP.Epsilon)
	fmt.Printf("%s; %d rounds fit in ε = 8\n", c, n)
	// Output: ε=8.03754 after 10 rounds at δ=1e-05 (Balle et al. 2020, α=3.9; classic 8.7947, α=4); 9 rounds fit in ε = 8
}
