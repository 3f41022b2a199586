package dp

import (
	"errors"
	"math"
	"testing"
)

func TestBudget(t *testing.T) {
	// The MNIST tutorial's 60 epochs cost ε ≈ 2.60 with the improved
	// conversion; a budget of 3 fits them, and not 60 more.
	b, err := NewBudget(3, 1e-5)
	if err != nil {
		t.Fatal(err)
	}
	if b.Spent() != 0 || b.Remaining() != 3 {
		t.Fatalf("new budget: spent %v, remaining %v", b.Spent(), b.Remaining())
	}
	for epoch := range 60 {
		if err := b.Check(mnistQ, 1.1, 234); err != nil {
			t.Fatalf("epoch %d: %v", epoch, err)
		}
		if err := b.Spend(mnistQ, 1.1, 234); err != nil {
			t.Fatalf("epoch %d: %v", epoch, err)
		}
	}
	spent := b.Spent()
	if math.Abs(spent-2.597) > 0.01 || b.Rounds() != 60 {
		t.Errorf("spent ε = %v over %d rounds, want about 2.597 over 60", spent, b.Rounds())
	}
	err = b.Check(mnistQ, 1.1, 60*234)
	var ex *BudgetExceededError
	if !errors.As(err, &ex) || !errors.Is(err, ErrBudgetExceeded) {
		t.Fatalf("Check past the budget: %v", err)
	}
	if ex.Spent != spent || ex.Next <= 3 || ex.Limit != 3 || ex.Delta != 1e-5 {
		t.Errorf("error fields %+v", ex)
	}
	if b.Spent() != spent {
		t.Error("Check changed the budget")
	}
	// A round without noise never fits.
	if err := b.Check(0.01, 0, 1); !errors.As(err, &ex) || !math.IsInf(ex.Next, 1) {
		t.Errorf("Check without noise: %v", err)
	}
	// Spend records a round that happened even past the budget.
	if err := b.Spend(mnistQ, 1.1, 60*234); !errors.Is(err, ErrBudgetExceeded) {
		t.Errorf("Spend past the budget: %v", err)
	}
	if b.Spent() <= 3 || b.Remaining() != 0 || b.Rounds() != 61 {
		t.Errorf("after overspending: spent %v, remaining %v, rounds %d", b.Spent(), b.Remaining(), b.Rounds())
	}
	// Bad arguments record nothing.
	before := b.Spent()
	if err := b.Spend(2, 1, 1); !errors.Is(err, ErrInvalid) || b.Spent() != before || b.Rounds() != 61 {
		t.Errorf("Spend(q=2) = %v", err)
	}
	if err := b.Check(0.1, -1, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("Check(σ=−1) = %v", err)
	}
}

func TestBudgetErrors(t *testing.T) {
	for _, c := range []struct{ eps, delta float64 }{{0, 1e-5}, {-1, 1e-5}, {math.Inf(1), 1e-5}, {math.NaN(), 1e-5}, {1, 0}, {1, 1}} {
		if _, err := NewBudget(c.eps, c.delta); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewBudget(%v, %v) = %v", c.eps, c.delta, err)
		}
	}
	var zero Budget
	if err := zero.Check(0.1, 1, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero Budget Check = %v, want ErrInvalid", err)
	}
	if err := zero.Spend(0.1, 1, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("zero Budget Spend = %v, want ErrInvalid", err)
	}
	if s := (&BudgetExceededError{Spent: 1, Next: 2.5, Limit: 2, Delta: 1e-5}).Error(); s != "dp: privacy budget exceeded: spent ε=1, after the round ε=2.5, limit ε=2 (δ=1e-05)" {
		t.Errorf("message %q", s)
	}
}

func TestBudgetBinary(t *testing.T) {
	b, _ := NewBudget(8, 1e-6)
	if err := b.Spend(0.01, 1.3, 500); err != nil {
		t.Fatal(err)
	}
	if err := b.Spend(1, 20, 3); err != nil {
		t.Fatal(err)
	}
	data, err := b.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var c Budget
	if err := c.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	eps, delta := c.Limit()
	if eps != 8 || delta != 1e-6 || c.Rounds() != 2 || c.Spent() != b.Spent() {
		t.Errorf("restored budget: limit (%v, %v), rounds %d, spent %v; want (8, 1e-6), 2, %v", eps, delta, c.Rounds(), c.Spent(), b.Spent())
	}
	// The restored budget goes on where the original stopped.
	if err1, err2 := b.Check(0.01, 1.3, 10000), c.Check(0.01, 1.3, 10000); (err1 == nil) != (err2 == nil) {
		t.Errorf("original and restored disagree: %v, %v", err1, err2)
	}
	for name, mut := range map[string]func([]byte) []byte{
		"magic":      func(d []byte) []byte { d[3] = 'x'; return d },
		"version":    func(d []byte) []byte { d[4] = 0; return d },
		"ε negative": func(d []byte) []byte { d[12] |= 0x80; return d },
		"δ one":      func(d []byte) []byte { copy(d[13:], []byte{0, 0, 0, 0, 0, 0, 0xf0, 0x3f}); return d },
		"truncated":  func(d []byte) []byte { return d[:20] },
		"trailing":   func(d []byte) []byte { return append(d, 1) },
		"accountant": func(d []byte) []byte { d[29] = 'x'; return d },
	} {
		var c Budget
		if err := c.UnmarshalBinary(mut(append([]byte(nil), data...))); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzBudgetUnmarshal(f *testing.F) {
	b, _ := NewBudget(2, 1e-5)
	_ = b.Spend(0.1, 1, 10)
	data, _ := b.MarshalBinary()
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Budget
		if err := b.UnmarshalBinary(data); err != nil {
			return
		}
		again, _ := b.MarshalBinary()
		if string(again) != string(data) {
			t.Fatal("decoded budget re-encodes differently")
		}
		_ = b.Check(0.1, 1, 1)
		_ = b.Spent()
	})
}

func TestMicroEpsilon(t *testing.T) {
	for _, c := range []struct {
		eps  float64
		want int64
	}{{0, 0}, {3.01, 3010000}, {1e-7, 1}, {2.5970001, 2597001}, {1, 1000000}} {
		got, err := MicroEpsilon(c.eps)
		if err != nil || got != c.want {
			t.Errorf("MicroEpsilon(%v) = %d, %v; want %d", c.eps, got, err, c.want)
		}
		// Rounding up: the logged figure never understates the loss.
		if EpsilonFromMicro(got) < c.eps {
			t.Errorf("MicroEpsilon(%v) = %d understates ε", c.eps, got)
		}
	}
	for _, bad := range []float64{-1, math.NaN(), math.Inf(1), 1e13} {
		if _, err := MicroEpsilon(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("MicroEpsilon(%v) = %v", bad, err)
		}
	}
}

func BenchmarkCompose(b *testing.B) {
	a, _ := NewAccountant(nil)
	for b.Loop() {
		if err := a.Compose(mnistQ, 1.1, 234); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkEpsilon(b *testing.B) {
	a, _ := NewAccountant(nil)
	_ = a.Compose(mnistQ, 1.1, 14062)
	for b.Loop() {
		_, _, _ = a.Epsilon(1e-5)
	}
}

func BenchmarkNoiseFor(b *testing.B) {
	for b.Loop() {
		if _, err := NoiseFor(3, 1e-5, mnistQ, 14062); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBudgetCheck(b *testing.B) {
	bud, _ := NewBudget(10, 1e-5)
	for b.Loop() {
		if err := bud.Check(mnistQ, 1.1, 234); err != nil {
			b.Fatal(err)
		}
	}
}
