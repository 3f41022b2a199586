package federation_test

import (
	"errors"
	"testing"

	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect/plain"
)

func resolveManifest() *federation.Manifest {
	return &federation.Manifest{Version: federation.ManifestVersion, Federation: "fed-test",
		Members: make([]federation.Principal, 4), Threshold: 2, MinCohort: 3, Mode: federation.ModePlain,
		DP:       federation.DP{NoiseMultiplier: 2, Clip: 0.5, Epsilon: 8, Delta: 1e-6},
		Model:    federation.ModelSpec{Kind: "softmax", Inputs: 20, Classes: 3},
		Training: federation.Training{Rounds: 5, LocalEpochs: 1, Batch: 8, LearningRate: 0.1}}
}

// Resolve agrees with the pieces it is made of, and applies the overrides.
func TestResolve(t *testing.T) {
	man := resolveManifest()
	fed, err := federation.Resolve(man, federation.Overrides{})
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := federation.RoundConfig(man)
	sizes, _ := federation.MessageSizes(man, nil)
	rule, _, _ := federation.Privacy(man, cfg, plain.Scheme{}.Capacity())
	n, _ := rule.MaxRounds(man.DP.Epsilon)
	b := fed.Budget
	if fed.Scheme.Name() != plain.Name || string(fed.Round.Session) != string(cfg.Session) || fed.MaxMessage != sizes.MaxMessage ||
		b == nil || b.Rule != rule || b.MaxRound != fl.Round(n) || fed.Round.MaxRound != b.MaxRound || b.Epsilon != 8 || b.Local != 0 {
		t.Fatalf("Resolve = %+v, budget %+v; want scheme plain, limit %d, rule %+v capped at %d", fed, b, sizes.MaxMessage, rule, n)
	}
	// Prices add up to the cumulative ε; a round paid for costs nothing.
	var spent int64
	for r := fl.Round(1); r <= 3; r++ {
		_, inc, total, err := b.Price(r, spent)
		if err != nil || inc <= 0 || spent+inc != total {
			t.Fatalf("round %d: inc %d, total %d, %v after %d", r, inc, total, err, spent)
		}
		spent = total
	}
	if _, inc, _, _ := b.Price(2, spent); inc != 0 {
		t.Errorf("round 2 again costs %d", inc)
	}

	if fed, err := federation.Resolve(man, federation.Overrides{MaxMessage: sizes.Need, MaxEpsilon: 3}); err != nil ||
		fed.MaxMessage != sizes.Need || fed.Budget.Local != 3 {
		t.Errorf("overrides: %+v, %v", fed, err)
	}
	if _, err := federation.Resolve(man, federation.Overrides{MaxMessage: sizes.Need - 1}); !errors.Is(err, federation.ErrLimitTooSmall) {
		t.Errorf("a limit below the need: %v, want ErrLimitTooSmall", err)
	}
	off := resolveManifest()
	off.DP = federation.DP{}
	if fed, err := federation.Resolve(off, federation.Overrides{}); err != nil || fed.Budget != nil || fed.Round.MaxRound != 0 {
		t.Errorf("no DP: %+v, %v; want no budget and no cap", fed, err)
	}
	if _, err := federation.Resolve(off, federation.Overrides{MaxEpsilon: 3}); err == nil {
		t.Error("a local ε limit without DP accepted")
	}
	mhe := resolveManifest()
	mhe.Mode = "mhe"
	if fed, err := federation.Resolve(mhe, federation.Overrides{Scheme: plain.Scheme{}}); err != nil || fed.Scheme.Name() != plain.Name {
		t.Errorf("scheme override: %v", err)
	}
}
