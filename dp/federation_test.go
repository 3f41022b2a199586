package dp

import (
	"errors"
	"math"
	"testing"
)

// Rounds prices r rounds exactly as an Accountant composing r steps of the
// distributed multiplier does, by both conversions, and MaxRounds is the
// last r whose ε fits.
func TestRoundsAgainstAccountant(t *testing.T) {
	for _, tc := range []struct {
		sigma, clip float64
		k, dim      int
		q, delta    float64
	}{
		{1, 1, 10, 101_770, 1, 1e-5},
		{2.01649, 1, 10, 101_770, 1, 1e-5},
		{4.72194, 0.3, 3, 1 << 24, 1, 1e-6},
		{1.1, 1, 5, 7850, 256.0 / 60000, 1e-5},
	} {
		rule, err := NewRounds(tc.sigma, tc.clip, tc.k, tc.dim, tc.q, tc.delta)
		if err != nil {
			t.Fatal(err)
		}
		z, err := DistributedMultiplier(tc.sigma, tc.clip, tc.k, tc.dim, DefaultBits)
		if err != nil {
			t.Fatal(err)
		}
		if rule.Multiplier != z || rule.SampleRate != tc.q || rule.Delta != tc.delta || !(z < tc.sigma) {
			t.Errorf("%+v: rule %+v, distributed multiplier %v", tc, rule, z)
		}
		var acct Accountant
		for r := 1; r <= 12; r++ {
			if err := acct.Compose(tc.q, z, 1); err != nil {
				t.Fatal(err)
			}
			c, err := rule.After(r)
			if err != nil {
				t.Fatal(err)
			}
			eps, order, _ := acct.Epsilon(tc.delta)
			classic, corder, _ := acct.EpsilonClassic(tc.delta)
			if c.Rounds != r || c.Delta != tc.delta || math.Abs(c.Epsilon-eps) > 1e-12*eps || c.Order != order ||
				math.Abs(c.Classic-classic) > 1e-12*classic || c.ClassicOrder != corder {
				t.Errorf("%+v round %d: %+v; accountant ε %v (α %v), classic %v (α %v)", tc, r, c, eps, order, classic, corder)
			}
			if !(c.Epsilon <= c.Classic) {
				t.Errorf("round %d: improved ε %v above classic %v", r, c.Epsilon, c.Classic)
			}
		}
		for _, budget := range []float64{1, 3, 8} {
			n, err := rule.MaxRounds(budget)
			if err != nil {
				t.Fatal(err)
			}
			if n > 0 {
				if c, _ := rule.After(n); c.Epsilon > budget {
					t.Errorf("%+v: MaxRounds(%v) = %d, but ε(%d) = %v", tc, budget, n, n, c.Epsilon)
				}
			}
			if c, _ := rule.After(n + 1); !(c.Epsilon > budget) {
				t.Errorf("%+v: MaxRounds(%v) = %d, but ε(%d) = %v fits too", tc, budget, n, n+1, c.Epsilon)
			}
		}
	}
}

// The q = 1 Gaussian mechanism has RDP α/(2z²) per round: the classic
// conversion is then a closed-form minimum over the tracked orders.
func TestRoundsClosedForm(t *testing.T) {
	rule, err := NewRounds(2, 1, 10, 100, 1, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	c, err := rule.After(10)
	if err != nil {
		t.Fatal(err)
	}
	want := math.Inf(1)
	for _, a := range DefaultOrders() {
		want = math.Min(want, 10*a/(2*rule.Multiplier*rule.Multiplier)+math.Log(1e5)/(a-1))
	}
	if math.Abs(c.Classic-want) > 1e-9*want {
		t.Errorf("classic ε after 10 rounds = %v, closed form %v", c.Classic, want)
	}
	if zero, _ := rule.After(0); zero.Epsilon != 0 || zero.Rounds != 0 {
		t.Errorf("no round costs %+v", zero)
	}
	if m, err := c.Micro(); err != nil || m != int64(math.Ceil(c.Epsilon*1e6)) {
		t.Errorf("Micro() = %d, %v for ε %v", m, err, c.Epsilon)
	}
}

func TestRoundsInvalid(t *testing.T) {
	for _, tc := range []struct {
		sigma, clip float64
		k, dim      int
		q, delta    float64
	}{
		{0, 1, 3, 10, 1, 1e-5},
		{1, 0, 3, 10, 1, 1e-5},
		{1, 1, 0, 10, 1, 1e-5},
		{1, 1, 3, -1, 1, 1e-5},
		{1, 1, 3, 10, 0, 1e-5},
		{1, 1, 3, 10, 1.5, 1e-5},
		{1, 1, 3, 10, 1, 0},
		{1, 1, 3, 10, 1, 1},
		{math.NaN(), 1, 3, 10, 1, 1e-5},
	} {
		if _, err := NewRounds(tc.sigma, tc.clip, tc.k, tc.dim, tc.q, tc.delta); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewRounds(%+v) = %v, want ErrInvalid", tc, err)
		}
	}
	var zero Rounds
	if _, err := zero.After(1); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero Rounds: %v", err)
	}
	if _, err := zero.MaxRounds(1); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero Rounds: %v", err)
	}
	rule, _ := NewRounds(1, 1, 3, 10, 1, 1e-5)
	if _, err := rule.After(-1); !errors.Is(err, ErrInvalid) {
		t.Errorf("After(-1): %v", err)
	}
}
