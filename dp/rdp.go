package dp

import (
	"errors"
	"math"
	"slices"
)

// MaxOrder is the largest Rényi order the accountant accepts. The cost of
// one order grows linearly with it.
const MaxOrder = 1e5

// DefaultOrders returns the Rényi orders the accountant tracks unless told
// otherwise: the union of Opacus' default grid (1.1, 1.2, …, 10.9 and
// 12, …, 63) and TF-Privacy's (1.25, 1.5, 1.75, 2, 2.25, 2.5, 3, …, 4.5,
// 5, …, 63, 128, 256, 512), so 11 is included too. Because ε is a minimum
// over the orders, a superset of both grids never reports more ε than either
// library does for the same mechanism.
func DefaultOrders() []float64 {
	orders := make([]float64, 0, 99+3+53+3)
	for x := 1; x < 100; x++ {
		orders = append(orders, 1+float64(x)/10)
	}
	orders = append(orders, 1.25, 1.75, 2.25)
	for a := 11; a < 64; a++ {
		orders = append(orders, float64(a))
	}
	orders = append(orders, 128, 256, 512)
	slices.Sort(orders)
	return orders
}

// RDP returns the Rényi differential privacy, at order alpha, of one step of
// the sampled Gaussian mechanism: each record is included independently with
// probability q (Poisson subsampling), the sum of the included records'
// contributions (each of L2 norm at most C) receives Gaussian noise of
// standard deviation sigma·C. The value is in nats.
//
// It implements Mironov, Talwar and Zhang (2019), Section 3.3: for integer
// orders the binomial expansion of A_α is summed exactly in log space; for
// fractional orders the two convergent series of that section are summed until
// their terms drop below e^-30. This is the computation of TF-Privacy's
// rdp_accountant and Opacus' analysis.rdp.
//
// Special cases: q = 0 gives 0; q = 1 gives α/(2σ²) exactly (the Gaussian
// mechanism); sigma = 0 with q > 0 gives +Inf (no privacy).
func RDP(q, sigma, alpha float64) (float64, error) {
	if !(q >= 0 && q <= 1) {
		return 0, invalid("sampling rate q=%v is outside [0, 1]", q)
	}
	if !(sigma >= 0) || math.IsInf(sigma, 1) {
		return 0, invalid("noise multiplier σ=%v must be finite and non-negative", sigma)
	}
	if !(alpha > 1 && alpha <= MaxOrder) {
		return 0, invalid("Rényi order α=%v is outside (1, %g]", alpha, float64(MaxOrder))
	}
	switch {
	case q == 0:
		return 0, nil
	case sigma == 0:
		return math.Inf(1), nil
	case q == 1:
		return alpha / (2 * sigma * sigma), nil
	}
	var logA float64
	if alpha == math.Trunc(alpha) {
		logA = logAInt(q, sigma, int(alpha))
	} else {
		var err error
		if logA, err = logAFrac(q, sigma, alpha); err != nil {
			return 0, err
		}
	}
	r := logA / (alpha - 1)
	if math.IsNaN(r) {
		return 0, errNumeric
	}
	return math.Max(r, 0), nil
}

var errNumeric = errors.New("dp: numerical failure in the RDP series")

// logAInt returns log A_α for integer α ≥ 2 (MTZ19, Section 3.3):
//
//	A_α = Σ_{i=0}^{α} C(α,i) (1−q)^{α−i} q^i exp((i²−i)/(2σ²)).
func logAInt(q, sigma float64, alpha int) float64 {
	lq, l1q := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	logA := math.Inf(-1)
	logC := 0.0 // log C(α, i)
	for i := 0; i <= alpha; i++ {
		if i > 0 {
			logC += math.Log(float64(alpha-i+1)) - math.Log(float64(i))
		}
		fi := float64(i)
		logA = logAdd(logA, logC+fi*lq+float64(alpha-i)*l1q+(fi*fi-fi)/s2)
	}
	return logA
}

// maxSeriesTerms bounds the fractional-order series. The terms decrease
// geometrically once i exceeds z0 + a few σ, so real inputs stop long before.
const maxSeriesTerms = 1 << 20

// logAFrac returns log A_α for fractional α > 1 (MTZ19, Section 3.3), as the
// sum of two series whose terms involve the Gaussian tail beyond
// z0 = σ² log(1/q − 1) + 1/2.
func logAFrac(q, sigma, alpha float64) (float64, error) {
	logA0, logA1 := math.Inf(-1), math.Inf(-1)
	lq, l1q := math.Log(q), math.Log1p(-q)
	s2 := 2 * sigma * sigma
	z0 := sigma*sigma*math.Log((1-q)/q) + 0.5
	den := math.Sqrt2 * sigma
	logC, sign := 0.0, 1.0 // log|C(α, i)| and its sign
	for i := 0; ; i++ {
		if i > maxSeriesTerms {
			return 0, errNumeric
		}
		fi := float64(i)
		if i > 0 {
			f := alpha - fi + 1
			if f < 0 {
				sign = -sign
			}
			logC += math.Log(math.Abs(f)) - math.Log(fi)
		}
		j := alpha - fi
		logS0 := logC + fi*lq + j*l1q + (fi*fi-fi)/s2 + math.Log(0.5) + logErfc((fi-z0)/den)
		logS1 := logC + j*lq + fi*l1q + (j*j-j)/s2 + math.Log(0.5) + logErfc((z0-j)/den)
		if sign > 0 {
			logA0 = logAdd(logA0, logS0)
			logA1 = logAdd(logA1, logS1)
		} else {
			var err error
			if logA0, err = logSub(logA0, logS0); err != nil {
				return 0, err
			}
			if logA1, err = logSub(logA1, logS1); err != nil {
				return 0, err
			}
		}
		if math.Max(logS0, logS1) < -30 {
			break
		}
	}
	return logAdd(logA0, logA1), nil
}

// logAdd returns log(e^x + e^y).
func logAdd(x, y float64) float64 {
	a, b := math.Min(x, y), math.Max(x, y)
	if math.IsInf(a, -1) {
		return b
	}
	return math.Log1p(math.Exp(a-b)) + b
}

// logSub returns log(e^x − e^y) for x ≥ y.
func logSub(x, y float64) (float64, error) {
	switch {
	case x < y:
		return 0, errNumeric
	case math.IsInf(y, -1):
		return x, nil
	case x == y:
		return math.Inf(-1), nil
	case x-y > 700:
		return x, nil
	}
	return math.Log(math.Expm1(x-y)) + y, nil
}

// logErfc returns log(erfc(x)), accurately also where erfc(x) underflows.
func logErfc(x float64) float64 {
	if x < 25 {
		return math.Log(math.Erfc(x))
	}
	// Asymptotic expansion of log erfc for large x (Abramowitz and Stegun
	// 7.1.23, with the logarithm of the series expanded).
	x2 := x * x
	x4 := x2 * x2
	return -0.5*math.Log(math.Pi) - math.Log(x) - x2 - 0.5/x2 + 0.625/x4 - 37.0/24.0/(x4*x2) + 353.0/64.0/(x4*x4)
}
