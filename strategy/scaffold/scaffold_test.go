package scaffold_test

import (
	"errors"
	"math"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/strategy"
	"github.com/cloisterfl/cloister/strategy/scaffold"
)

func TestJoinSplit(t *testing.T) {
	v, err := scaffold.Join(fl.Vector{1, 2}, fl.Vector{3, 4})
	if err != nil || len(v) != 4 || v[0] != 1 || v[3] != 4 {
		t.Fatalf("Join = %v, %v", v, err)
	}
	a, b, err := scaffold.Split(v)
	if err != nil || a[1] != 2 || b[0] != 3 {
		t.Fatalf("Split = %v, %v, %v", a, b, err)
	}
	a[0] = 99 // copies, not views
	if v[0] != 1 {
		t.Error("Split returned a view")
	}
	if _, err := scaffold.Join(fl.Vector{1}, fl.Vector{1, 2}); !errors.Is(err, fl.ErrDimension) {
		t.Errorf("Join of unequal halves = %v", err)
	}
	if _, _, err := scaffold.Split(fl.Vector{1, 2, 3}); !errors.Is(err, fl.ErrDimension) {
		t.Errorf("Split of odd length = %v", err)
	}
}

func TestNextControl(t *testing.T) {
	// cᵢ⁺ = cᵢ − c + (x − y)/(Kη) with K = 2, η = 0.5.
	next, delta, err := scaffold.NextControl(fl.Vector{1}, fl.Vector{0.5}, fl.Vector{3}, fl.Vector{1}, 2, 0.5)
	if err != nil || next[0] != 2.5 || delta[0] != 1.5 {
		t.Errorf("NextControl = %v, %v, %v; want [2.5], [1.5]", next, delta, err)
	}
	for _, tc := range []struct {
		steps int
		lr    float64
		x     fl.Vector
	}{
		{0, 0.5, fl.Vector{3}}, {2, 0, fl.Vector{3}}, {2, math.NaN(), fl.Vector{3}},
		{2, math.Inf(1), fl.Vector{3}}, {2, 0.5, fl.Vector{3, 4}}, {2, 0.5, fl.Vector{math.NaN()}},
		{1, 1e-320, fl.Vector{1e300}},
	} {
		if _, _, err := scaffold.NextControl(fl.Vector{1}, fl.Vector{0.5}, tc.x, fl.Vector{1}, tc.steps, tc.lr); err == nil {
			t.Errorf("NextControl(steps=%d, lr=%v, x=%v) succeeded", tc.steps, tc.lr, tc.x)
		}
	}
	g := fl.Vector{1, 1}
	if err := scaffold.Correct(g, fl.Vector{1, 0}, fl.Vector{0, 2}); err != nil || g[0] != 0 || g[1] != 3 {
		t.Errorf("Correct = %v, %v", g, err)
	}
	if err := scaffold.Correct(g, fl.Vector{1}, fl.Vector{0, 2}); !errors.Is(err, fl.ErrDimension) {
		t.Errorf("Correct with a short control = %v", err)
	}
}

// Two nodes with quadratic losses fᵢ(y) = hᵢ(y − aᵢ)²/2 of different
// curvature: with many local steps FedAvg drifts away from the optimum of
// the mean loss, Σhᵢaᵢ/Σhᵢ, and SCAFFOLD does not.
func TestScaffoldRemovesDrift(t *testing.T) {
	h := []float64{1, 10}
	a := []float64{0, 1}
	optimum := (h[0]*a[0] + h[1]*a[1]) / (h[0] + h[1])
	const K, lr, rounds = 20, 0.05, 300

	run := func(useScaffold bool) float64 {
		s, _ := strategy.New("scaffold")
		model, _ := scaffold.Join(fl.Vector{0.3}, fl.Vector{0})
		ci := []fl.Vector{{0}, {0}}
		for r := 0; r < rounds; r++ {
			x, c, _ := scaffold.Split(model)
			var updates []fl.Update
			for i := range h {
				y := x.Clone()
				for k := 0; k < K; k++ {
					g := fl.Vector{h[i] * (y[0] - a[i])}
					if useScaffold {
						scaffold.Correct(g, ci[i], c)
					}
					y.Add(-lr, g)
				}
				dy := y.Clone()
				dy.Add(-1, x)
				dc := fl.Vector{0}
				if useScaffold {
					var err error
					ci[i], dc, err = scaffold.NextControl(ci[i], c, x, y, K, lr)
					if err != nil {
						t.Fatal(err)
					}
				}
				u, _ := scaffold.Join(dy, dc)
				updates = append(updates, fl.Update{Delta: u, Weight: 1})
			}
			mean, _, err := strategy.WeightedMean(updates)
			if err != nil {
				t.Fatal(err)
			}
			if model, err = s.Apply(model, mean); err != nil {
				t.Fatal(err)
			}
		}
		return model[0]
	}
	fedavg, scaf := run(false), run(true)
	if math.Abs(scaf-optimum) > 1e-6 {
		t.Errorf("SCAFFOLD ends at %v, optimum %v", scaf, optimum)
	}
	if math.Abs(fedavg-optimum) < 1e-2 {
		t.Errorf("FedAvg ends at %v, expected visible drift from %v", fedavg, optimum)
	}
}
