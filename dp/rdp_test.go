package dp

import (
	"errors"
	"math"
	"testing"
)

// Order grids of the published figures, so that each reference point is
// reproduced with the grid it was computed on.
var (
	// tfOldOrders is TF-Privacy's grid before 2019 (rdp_accountant users,
	// mnist_dpsgd_tutorial.py) and Opacus' RDPAccountant.DEFAULT_ALPHAS.
	tfOldOrders = func() []float64 {
		var o []float64
		for x := 1; x < 100; x++ {
			o = append(o, 1+float64(x)/10)
		}
		for a := 12; a < 64; a++ {
			o = append(o, float64(a))
		}
		return o
	}()
	// tfOrders is the grid of TF-Privacy's compute_dp_sgd_privacy.py.
	tfOrders = func() []float64 {
		o := []float64{1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, 3.5, 4, 4.5}
		for a := 5; a < 64; a++ {
			o = append(o, float64(a))
		}
		return append(o, 128, 256, 512)
	}()
	intOrders2to32 = func() []float64 {
		var o []float64
		for a := 2; a <= 32; a++ {
			o = append(o, float64(a))
		}
		return o
	}()
)

// mnistQ is the sampling rate of the TF-Privacy MNIST tutorial: batches of
// 256 out of 60,000 examples.
const mnistQ = 256.0 / 60000

// TestPublishedEpsilon reproduces published (ε, δ) figures of DP-SGD to within
// 1%. Each row names where the figure is published.
func TestPublishedEpsilon(t *testing.T) {
	tests := []struct {
		name    string
		source  string
		orders  []float64
		q       float64
		sigma   float64
		steps   int
		delta   float64
		classic bool
		want    float64
	}{
		{
			name:   "MNIST σ=1.1, 60 epochs",
			source: "TF-Privacy tutorials/README.md (2019), 'Select Parameters' table and compute_dp_sgd_privacy example: eps = 3.01",
			orders: tfOldOrders, q: mnistQ, sigma: 1.1, steps: 60 * 60000 / 256, delta: 1e-5, classic: true, want: 3.01,
		},
		{
			name:   "MNIST σ=1.1, 1 epoch",
			source: "TF-Privacy tutorials/README.md (2019), 'Expected Output': epsilon after 1 epoch is 1.03",
			orders: tfOldOrders, q: mnistQ, sigma: 1.1, steps: 60000 / 256, delta: 1e-5, classic: true, want: 1.03,
		},
		{
			name:   "MNIST σ=1.1, 2 epochs",
			source: "TF-Privacy tutorials/README.md (2019), 'Expected Output': epsilon after 2 epochs is 1.11",
			orders: tfOldOrders, q: mnistQ, sigma: 1.1, steps: 2 * 60000 / 256, delta: 1e-5, classic: true, want: 1.11,
		},
		{
			name:   "MNIST σ=1.3, 15 epochs",
			source: "TF-Privacy tutorials/README.md (2019), 'Select Parameters' table: eps = 1.19",
			orders: tfOldOrders, q: mnistQ, sigma: 1.3, steps: 15 * 60000 / 256, delta: 1e-5, classic: true, want: 1.19,
		},
		{
			name:   "MNIST σ=0.7, 45 epochs",
			source: "TF-Privacy tutorials/README.md (2019), 'Select Parameters' table: eps = 7.10",
			orders: tfOldOrders, q: mnistQ, sigma: 0.7, steps: 45 * 60000 / 256, delta: 1e-5, classic: true, want: 7.10,
		},
		{
			name:   "MNIST σ=1.12, 60 epochs",
			source: "TF-Privacy compute_dp_sgd_privacy.py docstring ('satisfies (2.92, 1e-5)-DP') and tutorials/README.md (2020) table",
			orders: tfOrders, q: mnistQ, sigma: 1.12, steps: 14063, delta: 1e-5, classic: true, want: 2.92,
		},
		{
			name:   "MNIST σ=0.6, 30 epochs",
			source: "TF-Privacy tutorials/README.md (2020), 'Select Parameters' table: eps = 9.74",
			orders: tfOrders, q: mnistQ, sigma: 0.6, steps: 30 * 60000 / 256, delta: 1e-5, classic: true, want: 9.74,
		},
		{
			name:   "MNIST σ=1.2, 10 epochs",
			source: "TF-Privacy tutorials/README.md (2020), 'Select Parameters' table: eps = 1.20",
			orders: tfOrders, q: mnistQ, sigma: 1.2, steps: 10 * 60000 / 256, delta: 1e-5, classic: true, want: 1.20,
		},
		{
			name:   "q=0.01, σ=4, 10,000 steps, orders 2..32",
			source: "TF-Privacy privacy/analysis/rdp_accountant_test.py, test_get_privacy_spent_check_target_delta: eps = 1.258575 (order 20)",
			orders: intOrders2to32, q: 0.01, sigma: 4, steps: 10000, delta: 1e-5, classic: true, want: 1.258575,
		},
		{
			name:   "q=0.04, σ=1.5, 2,250 steps, improved conversion",
			source: "Opacus opacus/tests/accountants_test.py, test_rdp_accountant: epsilon = 7.32911117143",
			orders: tfOldOrders, q: 0.04, sigma: 1.5, steps: 2250, delta: 1e-5, want: 7.32911117143,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := NewAccountant(tt.orders)
			if err != nil {
				t.Fatal(err)
			}
			if err := a.Compose(tt.q, tt.sigma, tt.steps); err != nil {
				t.Fatal(err)
			}
			eps, order, err := a.Epsilon(tt.delta)
			if tt.classic {
				eps, order, err = a.EpsilonClassic(tt.delta)
			}
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(eps-tt.want) > 0.01*tt.want {
				t.Errorf("ε = %.4f at order %v, want %v within 1%% (%s)", eps, order, tt.want, tt.source)
			}
			// The default grid is a superset of the published grids, so
			// it may only improve on the figure, and not by much.
			d, _ := NewAccountant(nil)
			if err := d.Compose(tt.q, tt.sigma, tt.steps); err != nil {
				t.Fatal(err)
			}
			epsDefault, _, _ := d.Epsilon(tt.delta)
			if tt.classic {
				epsDefault, _, _ = d.EpsilonClassic(tt.delta)
			}
			if epsDefault > eps*(1+1e-12) || epsDefault < 0.98*eps {
				t.Errorf("default orders give ε = %.4f, published grid %.4f", epsDefault, eps)
			}
		})
	}
}

// TestPublishedRDP checks the per-order RDP values of TF-Privacy's own unit
// tests (privacy/analysis/rdp_accountant_test.py), which cover fractional
// orders (1.5, 2.5) and integer ones.
func TestPublishedRDP(t *testing.T) {
	// test_compute_rdp_sequence: compute_rdp(0.01, 2.5, 50, orders).
	orders := []float64{1.5, 2.5, 5, 50, 100}
	want := []float64{0.00065, 0.001085, 0.00218075, 0.023846, 167.416307}
	for i, o := range orders {
		r, err := RDP(0.01, 2.5, o)
		if err != nil {
			t.Fatal(err)
		}
		if got := 50 * r; math.Abs(got-want[i]) > 1e-5 {
			t.Errorf("50·RDP(q=0.01, σ=2.5, α=%v) = %.8g, want %v", o, got, want[i])
		}
	}
	// test_compute_rdp_scalar: compute_rdp(0.1, 2, 10, 5) = 0.07737.
	if r, _ := RDP(0.1, 2, 5); math.Abs(10*r-0.07737) > 1e-5 {
		t.Errorf("10·RDP(q=0.1, σ=2, α=5) = %.8g, want 0.07737", 10*r)
	}
	// test_check_composition: heterogeneous composition, classic
	// conversion: ε = 8.509656 at order 2.5.
	a, _ := NewAccountant([]float64{1.25, 1.5, 1.75, 2., 2.5, 3., 4., 5., 6., 7., 8., 10., 12., 14., 16., 20., 24., 28., 32., 64., 256.})
	if err := a.Compose(1e-4, 0.4, 40000); err != nil {
		t.Fatal(err)
	}
	if err := a.Compose(0.1, 2, 100); err != nil {
		t.Fatal(err)
	}
	eps, order, _ := a.EpsilonClassic(1e-5)
	if math.Abs(eps-8.509656) > 1e-5 || order != 2.5 {
		t.Errorf("composition: ε = %.7f at order %v, want 8.509656 at 2.5", eps, order)
	}
}

// logAQuad computes log A_α = log E_{z~N(0,σ²)}[(1 − q + q·e^{(2z−1)/(2σ²)})^α]
// (MTZ19, Section 3.3) by the trapezoid rule in log space, independently of
// the series the accountant sums.
func logAQuad(q, sigma, alpha float64) float64 {
	lo, hi := -40*sigma, alpha+40*sigma+1
	h := sigma / 400
	n := int((hi-lo)/h) + 1
	logf := func(z float64) float64 {
		// log of the Gaussian density times the likelihood-ratio power
		r := math.Log1p(q * math.Expm1((2*z-1)/(2*sigma*sigma)))
		if math.IsInf(r, 1) || (2*z-1)/(2*sigma*sigma) > 700 {
			r = math.Log(q) + (2*z-1)/(2*sigma*sigma)
		}
		return -z*z/(2*sigma*sigma) - math.Log(sigma*math.Sqrt(2*math.Pi)) + alpha*r
	}
	m := math.Inf(-1)
	for i := range n {
		m = math.Max(m, logf(lo+float64(i)*h))
	}
	var s float64
	for i := range n {
		w := 1.0
		if i == 0 || i == n-1 {
			w = 0.5
		}
		s += w * math.Exp(logf(lo+float64(i)*h)-m)
	}
	return m + math.Log(s*h)
}

func TestRDPMatchesQuadrature(t *testing.T) {
	// The parameter sets of TF-Privacy's test_compute_log_a_equals_mp
	// that are in range for double-precision quadrature, plus the MNIST
	// setting at fractional and integer orders.
	cases := []struct{ q, sigma, alpha float64 }{
		{1e-4, 1, 1.5}, {1e-3, 1, 2}, {0.01, 10, 20}, {0.1, 100, 20.5},
		{0.1, 2, 5}, {0.01, 2.5, 2.5}, {0.5, 1, 3.3},
		{mnistQ, 1.1, 1.5}, {mnistQ, 1.1, 8}, {mnistQ, 1.1, 8.8}, {mnistQ, 1.1, 13}, {mnistQ, 0.7, 3.8},
		{0.04, 1.5, 3.9}, {0.3, 0.8, 11}, {0.9, 3, 7.25},
	}
	for _, c := range cases {
		var got float64
		if c.alpha == math.Trunc(c.alpha) {
			got = logAInt(c.q, c.sigma, int(c.alpha))
		} else {
			var err error
			if got, err = logAFrac(c.q, c.sigma, c.alpha); err != nil {
				t.Fatal(err)
			}
		}
		want := logAQuad(c.q, c.sigma, c.alpha)
		if math.Abs(got-want) > 1e-4*math.Abs(want)+1e-12 {
			t.Errorf("log A(q=%v, σ=%v, α=%v) = %.10g, quadrature %.10g", c.q, c.sigma, c.alpha, got, want)
		}
	}
}

// TestMNISTByQuadrature recomputes the headline MNIST figure with RDP
// obtained by quadrature at the integer orders, independently of the series.
func TestMNISTByQuadrature(t *testing.T) {
	if testing.Short() {
		t.Skip("quadrature over 52 orders")
	}
	const steps, delta = 14062, 1e-5
	best := math.Inf(1)
	for a := 2; a < 64; a++ {
		r := float64(steps) * logAQuad(mnistQ, 1.1, float64(a)) / float64(a-1)
		best = math.Min(best, r-math.Log(delta)/float64(a-1))
	}
	acct, _ := NewAccountant(nil)
	if err := acct.Compose(mnistQ, 1.1, steps); err != nil {
		t.Fatal(err)
	}
	eps, _, _ := acct.EpsilonClassic(delta)
	if math.Abs(best-3.01) > 0.0301 || math.Abs(best-eps) > 0.01*best {
		t.Errorf("quadrature ε = %.4f, accountant %.4f, published 3.01", best, eps)
	}
}

func TestRDPNoSampling(t *testing.T) {
	for _, sigma := range []float64{0.3, 1, 1.1, 10} {
		for _, alpha := range []float64{1.5, 2, 7.3, 32, 256} {
			r, err := RDP(1, sigma, alpha)
			if err != nil {
				t.Fatal(err)
			}
			if want := alpha / (2 * sigma * sigma); r != want {
				t.Errorf("RDP(q=1, σ=%v, α=%v) = %v, want exactly %v", sigma, alpha, r, want)
			}
		}
	}
	// q → 1 approaches the Gaussian mechanism continuously.
	r, _ := RDP(1-1e-9, 2, 5)
	if want := 5.0 / 8; math.Abs(r-want) > 1e-6 {
		t.Errorf("RDP(q=1−1e-9, σ=2, α=5) = %v, want ≈ %v", r, want)
	}
	if r, _ := RDP(0, 1, 5); r != 0 {
		t.Errorf("RDP(q=0) = %v, want 0", r)
	}
	if r, _ := RDP(0.1, 0, 5); !math.IsInf(r, 1) {
		t.Errorf("RDP(σ=0) = %v, want +Inf", r)
	}
}

func TestRDPFractionalMatchesInteger(t *testing.T) {
	for _, p := range []struct{ q, sigma float64 }{{mnistQ, 1.1}, {0.01, 0.7}, {0.1, 2}, {0.5, 5}} {
		for _, n := range []float64{2, 3, 8, 20, 50} {
			atInt, _ := RDP(p.q, p.sigma, n)
			// The series for fractional orders, evaluated next to an
			// integer, agrees with the exact binomial sum at it.
			below, err1 := RDP(p.q, p.sigma, n-1e-7)
			above, err2 := RDP(p.q, p.sigma, n+1e-7)
			if err1 != nil || err2 != nil {
				t.Fatal(err1, err2)
			}
			if math.Abs(below-atInt) > 1e-5*atInt || math.Abs(above-atInt) > 1e-5*atInt {
				t.Errorf("q=%v σ=%v: RDP(%v−) = %.10g, RDP(%v) = %.10g, RDP(%v+) = %.10g", p.q, p.sigma, n, below, n, atInt, n, above)
			}
		}
	}
}

func TestRDPMonotone(t *testing.T) {
	// RDP grows with the order, and falls as σ grows or q shrinks.
	orders := DefaultOrders()
	for _, p := range []struct{ q, sigma float64 }{{mnistQ, 1.1}, {0.01, 0.5}, {0.2, 3}} {
		prev := 0.0
		for _, a := range orders {
			r, err := RDP(p.q, p.sigma, a)
			if err != nil {
				t.Fatal(err)
			}
			if r < prev*(1-1e-9) {
				t.Errorf("q=%v σ=%v: RDP(%v) = %v < RDP at the previous order %v", p.q, p.sigma, a, r, prev)
			}
			prev = r
			r2, _ := RDP(p.q, p.sigma*1.1, a)
			r3, _ := RDP(p.q/2, p.sigma, a)
			if r2 > r || r3 > r {
				t.Errorf("q=%v σ=%v α=%v: RDP %v, more noise %v, less sampling %v", p.q, p.sigma, a, r, r2, r3)
			}
		}
	}
}

func TestEpsilonMonotone(t *testing.T) {
	eps := func(sigma float64, steps int) float64 {
		a, _ := NewAccountant(nil)
		if err := a.Compose(mnistQ, sigma, steps); err != nil {
			t.Fatal(err)
		}
		e, _, _ := a.Epsilon(1e-5)
		c, _, _ := a.EpsilonClassic(1e-5)
		if e > c {
			t.Errorf("σ=%v, %d steps: improved ε %v > classic %v", sigma, steps, e, c)
		}
		return e
	}
	prev := 0.0
	for _, steps := range []int{1, 10, 100, 1000, 10000, 100000} {
		e := eps(1.1, steps)
		if e <= prev {
			t.Errorf("ε(%d steps) = %v, not above ε with fewer steps %v", steps, e, prev)
		}
		prev = e
	}
	prev = math.Inf(1)
	for _, sigma := range []float64{0.5, 0.7, 1, 1.5, 2, 4, 8} {
		e := eps(sigma, 1000)
		if e >= prev {
			t.Errorf("ε(σ=%v) = %v, not below ε with less noise %v", sigma, e, prev)
		}
		prev = e
	}
}

func TestComposeAdds(t *testing.T) {
	a, _ := NewAccountant(nil)
	b, _ := NewAccountant(nil)
	if err := a.Compose(0.01, 1, 300); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if err := b.Compose(0.01, 1, 100); err != nil {
			t.Fatal(err)
		}
	}
	ra, rb := a.RDP(), b.RDP()
	for i := range ra {
		if math.Abs(ra[i]-rb[i]) > 1e-12*ra[i] {
			t.Fatalf("order %v: one compose %v, three %v", a.Orders()[i], ra[i], rb[i])
		}
	}
	// Heterogeneous rounds add order by order.
	if err := a.Compose(1, 5, 2); err != nil {
		t.Fatal(err)
	}
	for i, o := range a.Orders() {
		if want := rb[i] + 2*o/50; math.Abs(a.RDP()[i]-want) > 1e-12*want {
			t.Fatalf("order %v: %v, want %v", o, a.RDP()[i], want)
		}
	}
	// The zero value is an empty accountant over the default orders.
	var z Accountant
	if e, _, err := z.Epsilon(1e-5); e != 0 || err != nil {
		t.Errorf("empty accountant: ε = %v, %v", e, err)
	}
	if len(z.Orders()) != len(DefaultOrders()) {
		t.Errorf("zero Accountant tracks %d orders", len(z.Orders()))
	}
}

func TestAccountantErrors(t *testing.T) {
	a, _ := NewAccountant(nil)
	bad := []struct {
		q, sigma float64
		steps    int
	}{{-0.1, 1, 1}, {1.1, 1, 1}, {math.NaN(), 1, 1}, {0.1, -1, 1}, {0.1, math.NaN(), 1}, {0.1, math.Inf(1), 1}, {0.1, 1, -1}}
	for _, b := range bad {
		if err := a.Compose(b.q, b.sigma, b.steps); !errors.Is(err, ErrInvalid) {
			t.Errorf("Compose(%v, %v, %d) = %v, want ErrInvalid", b.q, b.sigma, b.steps, err)
		}
	}
	if r := a.RDP(); r[0] != 0 {
		t.Errorf("failed Compose changed the accountant: %v", r[0])
	}
	for _, d := range []float64{0, 1, -1, math.NaN()} {
		if _, _, err := a.Epsilon(d); !errors.Is(err, ErrInvalid) {
			t.Errorf("Epsilon(δ=%v) = %v, want ErrInvalid", d, err)
		}
	}
	for _, o := range [][]float64{{}, {1}, {0.5, 2}, {2, 2}, {math.Inf(1)}, {math.NaN()}, {2e5}} {
		if _, err := NewAccountant(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("NewAccountant(%v) = %v, want ErrInvalid", o, err)
		}
	}
	if _, err := RDP(0.1, 1, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("RDP at order 1: %v, want ErrInvalid", err)
	}
	// Zero steps cost nothing, even without noise.
	if err := a.Compose(0.1, 0, 0); err != nil || a.RDP()[0] != 0 {
		t.Errorf("zero steps without noise: %v, RDP %v", err, a.RDP()[0])
	}
	// A round without noise: infinite ε, not an error.
	if err := a.Compose(0.1, 0, 1); err != nil {
		t.Fatal(err)
	}
	if e, _, _ := a.Epsilon(1e-5); !math.IsInf(e, 1) {
		t.Errorf("ε after a round without noise = %v, want +Inf", e)
	}
}

// TestGaussianConversion checks the improved conversion at q = 1 against the
// exact privacy profile of the Gaussian mechanism (Balle and Wang 2018,
// Theorem 8): RDP can only be looser, and TF-Privacy's test picks σ =
// 4.530877117 to give exactly ε = 1 at δ = 1e-6 on a fine grid of orders.
func TestGaussianConversion(t *testing.T) {
	var orders []float64
	for i := 1001; i < 100000; i += 7 {
		orders = append(orders, float64(i)/1000)
	}
	a, _ := NewAccountant(orders)
	if err := a.Compose(1, 4.530877117, 1); err != nil {
		t.Fatal(err)
	}
	eps, _, _ := a.Epsilon(1e-6)
	if math.Abs(eps-1) > 1e-3 {
		t.Errorf("ε = %v, want 1 (TF-Privacy rdp_accountant_test.py, test_get_privacy_spent_check_target_delta)", eps)
	}
	// Exact δ of the Gaussian mechanism with σ = 4.530877117 at ε = 1:
	// it must not exceed 1e-6 (RDP is an upper bound).
	s := 4.530877117
	exact := 0.5*math.Erfc((1*s-0.5/s)/math.Sqrt2) - math.E*0.5*math.Erfc((1*s+0.5/s)/math.Sqrt2)
	if exact > 1e-6 {
		t.Errorf("exact δ = %v above the RDP bound", exact)
	}
}

func TestNoiseFor(t *testing.T) {
	cases := []struct {
		eps, delta, q float64
		steps         int
	}{{3.01, 1e-5, mnistQ, 14062}, {8, 1e-5, 0.04, 2250}, {1, 1e-6, 1, 10}, {0.5, 1e-5, 0.01, 1000}, {50, 1e-5, 0.5, 3}}
	for _, c := range cases {
		sigma, err := NoiseFor(c.eps, c.delta, c.q, c.steps)
		if err != nil {
			t.Fatal(err)
		}
		at := func(s float64) float64 {
			a, _ := NewAccountant(nil)
			if err := a.Compose(c.q, s, c.steps); err != nil {
				t.Fatal(err)
			}
			e, _, _ := a.Epsilon(c.delta)
			return e
		}
		if e := at(sigma); e > c.eps {
			t.Errorf("NoiseFor(%v) = %v gives ε = %v, above the target", c.eps, sigma, e)
		}
		if e := at(sigma * (1 - 1e-4)); e <= c.eps {
			t.Errorf("NoiseFor(%v) = %v is not the smallest: %v gives ε = %v", c.eps, sigma, sigma*(1-1e-4), e)
		}
	}
	// Opacus accountants_test.py, test_get_noise_multiplier_rdp_epochs:
	// ε = 8, δ = 1e-5, q = 0.04, 90 epochs → σ = 1.416, found by a bisection
	// stopped at width 0.01.
	if s, _ := NoiseFor(8, 1e-5, 0.04, 2250); math.Abs(s-1.416) > 0.01 {
		t.Errorf("NoiseFor(8, 1e-5, 0.04, 2250) = %v, Opacus 1.416", s)
	}
	// q = 1, one step: the classic analytic calibration of the Gaussian
	// mechanism is looser than RDP, so RDP needs less noise.
	s, _ := NoiseFor(1, 1e-5, 1, 1)
	if classic := math.Sqrt(2*math.Log(1.25/1e-5)) / 1; s > classic {
		t.Errorf("NoiseFor(1, 1e-5, 1, 1) = %v, above the classic bound %v", s, classic)
	}
	if _, err := NoiseFor(1e-9, 1e-12, 1, 1e6); !errors.Is(err, ErrUnreachable) {
		t.Errorf("unreachable target: %v", err)
	}
	if s, err := NoiseFor(1e6, 0.1, 1e-6, 1); err != nil || s != minNoise {
		t.Errorf("trivial target: σ = %v, %v; want %v", s, err, minNoise)
	}
	// A target met near, but not at, the bottom of the search range.
	for _, target := range []float64{2e5, 5e5, 8e5} {
		s, err := NoiseFor(target, 1e-5, 1, 1)
		if err != nil {
			t.Fatal(err)
		}
		a, _ := NewAccountant(nil)
		_ = a.Compose(1, s, 1)
		if e, _, _ := a.Epsilon(1e-5); e > target {
			t.Errorf("NoiseFor(%v) = %v gives ε = %v", target, s, e)
		}
	}
	for _, bad := range []struct {
		eps, delta, q float64
		steps         int
	}{{0, 1e-5, 0.1, 1}, {1, 0, 0.1, 1}, {1, 1e-5, 0, 1}, {1, 1e-5, 1.5, 1}, {1, 1e-5, 0.1, 0}, {math.Inf(1), 1e-5, 0.1, 1}} {
		if _, err := NoiseFor(bad.eps, bad.delta, bad.q, bad.steps); !errors.Is(err, ErrInvalid) {
			t.Errorf("NoiseFor(%v, %v, %v, %d) = %v, want ErrInvalid", bad.eps, bad.delta, bad.q, bad.steps, err)
		}
	}
}

func TestStepsFor(t *testing.T) {
	n, err := StepsFor(3.01, 1e-5, mnistQ, 1.1)
	if err != nil {
		t.Fatal(err)
	}
	at := func(steps int) float64 {
		a, _ := NewAccountant(nil)
		if err := a.Compose(mnistQ, 1.1, steps); err != nil {
			t.Fatal(err)
		}
		e, _, _ := a.Epsilon(1e-5)
		return e
	}
	if at(n) > 3.01 || at(n+1) <= 3.01 {
		t.Errorf("StepsFor = %d: ε(%d) = %v, ε(%d) = %v around 3.01", n, n, at(n), n+1, at(n+1))
	}
	// The improved conversion allows more than the tutorial's 14,062 steps.
	if n <= 14062 {
		t.Errorf("StepsFor(3.01) = %d, want more than 14062", n)
	}
	if n, _ := StepsFor(0.01, 1e-5, 1, 1); n != 0 {
		t.Errorf("StepsFor with a too-costly step = %d, want 0", n)
	}
	if _, err := StepsFor(1, 1e-5, 2, 1); !errors.Is(err, ErrInvalid) {
		t.Errorf("StepsFor(q=2) = %v, want ErrInvalid", err)
	}
}

func TestAccountantBinary(t *testing.T) {
	a, _ := NewAccountant(nil)
	if err := a.Compose(mnistQ, 1.1, 1000); err != nil {
		t.Fatal(err)
	}
	if err := a.Compose(0.1, 0, 1); err != nil { // +Inf RDP survives the round trip
		t.Fatal(err)
	}
	data, _ := a.MarshalBinary()
	var b Accountant
	if err := b.UnmarshalBinary(data); err != nil {
		t.Fatal(err)
	}
	ra, rb := a.RDP(), b.RDP()
	for i := range ra {
		if ra[i] != rb[i] || a.Orders()[i] != b.Orders()[i] {
			t.Fatalf("round trip differs at %d", i)
		}
	}
	for name, mut := range map[string]func([]byte) []byte{
		"magic":     func(d []byte) []byte { d[0] = 'x'; return d },
		"version":   func(d []byte) []byte { d[4] = 9; return d },
		"truncated": func(d []byte) []byte { return d[:len(d)-1] },
		"trailing":  func(d []byte) []byte { return append(d, 0) },
		"order":     func(d []byte) []byte { d[9+7] = 0; return d }, // first order's top byte: a tiny number
		"rdp NaN":   func(d []byte) []byte { copy(d[9+8:], []byte{1, 0, 0, 0, 0, 0, 0xf8, 0x7f}); return d },
		"empty":     func(d []byte) []byte { return d[:0] },
	} {
		var c Accountant
		if err := c.UnmarshalBinary(mut(append([]byte(nil), data...))); !errors.Is(err, ErrCorrupt) {
			t.Errorf("%s: %v, want ErrCorrupt", name, err)
		}
	}
}

func FuzzAccountantUnmarshal(f *testing.F) {
	a, _ := NewAccountant([]float64{1.5, 2, 8})
	_ = a.Compose(0.1, 1, 10)
	data, _ := a.MarshalBinary()
	f.Add(data)
	f.Fuzz(func(t *testing.T, data []byte) {
		var a Accountant
		if err := a.UnmarshalBinary(data); err != nil {
			return
		}
		again, _ := a.MarshalBinary()
		if string(again) != string(data) {
			t.Fatalf("decoded state re-encodes differently")
		}
		if _, _, err := a.Epsilon(1e-5); err != nil {
			t.Fatal(err)
		}
	})
}
