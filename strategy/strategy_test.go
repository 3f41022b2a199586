package strategy

import (
	"errors"
	"math"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

func TestNewSpecs(t *testing.T) {
	for _, tc := range []struct{ spec, want, name string }{
		{"fedavg", "fedavg:lr=1", "FedAvg"},
		{" FedAvg : 0.5 ", "fedavg:lr=0.5", "FedAvg"},
		{"fedavg:lr=2", "fedavg:lr=2", "FedAvg"},
		{"fedadam", "fedadam:lr=0.1,b1=0.9,b2=0.99,tau=0.001", "FedAdam"},
		{"fedadam:lr=0.01,b1=0.9,b2=0.99,tau=1e-3", "fedadam:lr=0.01,b1=0.9,b2=0.99,tau=0.001", "FedAdam"},
		{"fedadam:tau=1e-9", "fedadam:lr=0.1,b1=0.9,b2=0.99,tau=1e-09", "FedAdam"},
		{"fedyogi", "fedyogi:lr=0.01,b1=0.9,b2=0.99,tau=0.001", "FedYogi"},
		{"fedadagrad", "fedadagrad:lr=0.1,b1=0,tau=0.001", "FedAdagrad"},
		{"fedadagrad:0.3", "fedadagrad:lr=0.3,b1=0,tau=0.001", "FedAdagrad"},
		{"scaffold", "scaffold:lr=1,frac=1", "SCAFFOLD"},
		{"scaffold:frac=0.1", "scaffold:lr=1,frac=0.1", "SCAFFOLD"},
	} {
		s, err := New(tc.spec)
		if err != nil {
			t.Errorf("New(%q): %v", tc.spec, err)
			continue
		}
		if s.String() != tc.want || s.Name() != tc.name {
			t.Errorf("New(%q) = %s %q, want %s %q", tc.spec, s.Name(), s.String(), tc.name, tc.want)
		}
		// The canonical spec round-trips.
		s2, err := New(s.String())
		if err != nil || s2.String() != s.String() {
			t.Errorf("New(%q) = %v, %v; want %q", s.String(), s2, err, s.String())
		}
	}
}

func TestNewRejects(t *testing.T) {
	for _, spec := range []string{
		"", "fedsgd", "fedavg:", "fedavg:x", "fedavg:0", "fedavg:-1", "fedavg:NaN", "fedavg:Inf",
		"fedavg:lr=1,lr=2", "fedavg:b1=0.9", "fedavg:lr", "fedadam:b1=1", "fedadam:b2=-0.1",
		"fedadam:tau=0", "fedadagrad:b2=0.9", "fedadam:lr=1,", "fedadam:LR=1", "scaffold:frac=0",
		"scaffold:frac=1.5", "fedadam:eta_l=0.1",
	} {
		if _, err := New(spec); !errors.Is(err, ErrSpec) {
			t.Errorf("New(%q) error = %v, want ErrSpec", spec, err)
		} else if !strings.Contains(err.Error(), spec) {
			t.Errorf("New(%q) error %q does not quote the spec", spec, err)
		}
	}
}

func TestFedAvg(t *testing.T) {
	s, _ := New("fedavg:0.5")
	global := fl.Vector{1, 2, 3}
	next, err := s.Apply(global, fl.Vector{2, -2, 0})
	if err != nil {
		t.Fatal(err)
	}
	if want := (fl.Vector{2, 1, 3}); !equal(next, want) {
		t.Errorf("Apply = %v, want %v", next, want)
	}
	if !equal(global, fl.Vector{1, 2, 3}) {
		t.Errorf("Apply modified global: %v", global)
	}
	if next, err := s.Apply(fl.Vector{}, fl.Vector{}); err != nil || len(next) != 0 {
		t.Errorf("Apply on empty vectors = %v, %v", next, err)
	}
}

func TestApplyRejects(t *testing.T) {
	for _, spec := range []string{"fedavg", "fedadam", "fedyogi", "fedadagrad", "scaffold"} {
		for _, tc := range []struct {
			global, delta fl.Vector
			want          error
		}{
			{fl.Vector{1, 2}, fl.Vector{1, 2, 3, 4}, fl.ErrDimension},
			{fl.Vector{1, 2}, fl.Vector{1, math.NaN()}, ErrNonFinite},
			{fl.Vector{1, 2}, fl.Vector{math.Inf(-1), 0}, ErrNonFinite},
			{fl.Vector{math.Inf(1), 2}, fl.Vector{0, 0}, ErrNonFinite},
			{fl.Vector{math.MaxFloat64, 0}, fl.Vector{math.MaxFloat64, 0}, ErrNonFinite},
			{fl.Vector{0, 0}, fl.Vector{1e300, 0}, ErrNonFinite},
		} {
			s, _ := New(spec)
			if (spec == "fedavg" || spec == "scaffold") && tc.delta[0] == 1e300 {
				continue // a legitimate FedAvg step
			}
			before, _ := s.MarshalBinary()
			next, err := s.Apply(tc.global, tc.delta)
			if !errors.Is(err, tc.want) {
				t.Errorf("%s: Apply(%v, %v) = %v, %v; want %v", spec, tc.global, tc.delta, next, err, tc.want)
			}
			after, _ := s.MarshalBinary()
			if string(before) != string(after) {
				t.Errorf("%s: failed Apply changed the state", spec)
			}
		}
	}
}

func TestWeightedMean(t *testing.T) {
	mean, total, err := WeightedMean([]fl.Update{
		{Node: "a", Delta: fl.Vector{1, 0}, Weight: 1},
		{Node: "b", Delta: fl.Vector{4, 3}, Weight: 2},
		{Node: "c", Delta: fl.Vector{100, 100}, Weight: 0},
	})
	if err != nil {
		t.Fatal(err)
	}
	if total != 3 || !equal(mean, fl.Vector{3, 2}) {
		t.Errorf("WeightedMean = %v, %v; want [3 2], 3", mean, total)
	}
	// Huge values don't overflow on the way.
	mean, _, err = WeightedMean([]fl.Update{
		{Delta: fl.Vector{1e308}, Weight: 1},
		{Delta: fl.Vector{1e308}, Weight: 1},
	})
	if err != nil || mean[0] != 1e308 {
		t.Errorf("WeightedMean of huge values = %v, %v", mean, err)
	}
}

func TestWeightedMeanRejects(t *testing.T) {
	ok := fl.Update{Node: "a", Delta: fl.Vector{1, 2}, Weight: 1}
	for _, tc := range []struct {
		name    string
		updates []fl.Update
		want    error
		quote   string
	}{
		{"empty", nil, ErrZeroWeight, ""},
		{"zero weight", []fl.Update{{Node: "a", Delta: fl.Vector{1}}}, ErrZeroWeight, ""},
		{"length", []fl.Update{ok, {Node: "bad", Delta: fl.Vector{1}, Weight: 1}}, fl.ErrDimension, `"bad"`},
		{"nan", []fl.Update{ok, {Node: "bad", Delta: fl.Vector{1, math.NaN()}, Weight: 1}}, ErrNonFinite, `"bad"`},
		{"inf", []fl.Update{ok, {Node: "bad", Delta: fl.Vector{math.Inf(1), 0}, Weight: 1}}, ErrNonFinite, `"bad"`},
		{"negative weight", []fl.Update{ok, {Node: "bad", Delta: fl.Vector{1, 2}, Weight: -1}}, nil, `"bad"`},
		{"nan weight", []fl.Update{ok, {Node: "bad", Delta: fl.Vector{1, 2}, Weight: math.NaN()}}, nil, `"bad"`},
		{"weight overflow", []fl.Update{{Delta: fl.Vector{1}, Weight: math.MaxFloat64}, {Delta: fl.Vector{1}, Weight: math.MaxFloat64}}, ErrNonFinite, ""},
	} {
		m, _, err := WeightedMean(tc.updates)
		if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.quote) {
			t.Errorf("%s: WeightedMean = %v, %v; want %v quoting %s", tc.name, m, err, tc.want, tc.quote)
		}
	}
}

func equal(a, b fl.Vector) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Abs(a[i]-b[i]) > 1e-12*math.Max(1, math.Abs(b[i])) {
			return false
		}
	}
	return true
}

func FuzzNew(f *testing.F) {
	for _, s := range []string{"fedavg", "fedavg:0.5", "fedadam:lr=0.01,b1=0.9,b2=0.99,tau=1e-3", "scaffold:frac=0.1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, spec string) {
		s, err := New(spec)
		if err != nil {
			if s != nil {
				t.Fatal("strategy and error")
			}
			return
		}
		again, err := New(s.String())
		if err != nil || again.String() != s.String() {
			t.Fatalf("canonical spec %q: %v", s, err)
		}
		if _, err := s.Apply(fl.Vector{1, 2}, fl.Vector{0.5, -0.5}); err != nil && !errors.Is(err, ErrNonFinite) {
			t.Fatalf("%s: Apply: %v", s, err)
		}
	})
}

// TestStateSize checks that StateSize is the length of the state before
// and after rounds are applied (never exceeded).
func TestStateSize(t *testing.T) {
	const d = 38 // even: SCAFFOLD's global vector is model ‖ control
	for _, spec := range []string{"fedavg", "fedadam", "fedyogi:lr=0.02", "fedadagrad", "scaffold:frac=0.5"} {
		s, err := New(spec)
		if err != nil {
			t.Fatal(err)
		}
		global, delta := make(fl.Vector, d), make(fl.Vector, d)
		for i := range delta {
			delta[i] = float64(i%5) - 2
		}
		for r := 0; r <= 2; r++ {
			if r > 0 {
				if global, err = s.Apply(global, delta); err != nil {
					t.Fatal(err)
				}
			}
			b, err := s.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > s.StateSize(d) {
				t.Errorf("%s after %d rounds: state of %d bytes, StateSize(%d) = %d", spec, r, len(b), d, s.StateSize(d))
			}
			if r == 2 && len(b) != s.StateSize(d) {
				t.Errorf("%s after %d rounds: state of %d bytes, StateSize(%d) = %d, want equal", spec, r, len(b), d, s.StateSize(d))
			}
		}
	}
}
