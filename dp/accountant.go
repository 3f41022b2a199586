package dp

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
)

// Accountant accumulates the Rényi differential privacy of a sequence of
// sampled Gaussian mechanisms at a fixed list of orders, and converts the
// total to (ε, δ)-differential privacy.
//
// RDP composes by addition at each order (Mironov 2017, Proposition 1), so
// rounds with different sampling rates, noise multipliers and step counts
// simply add up. The zero value is an empty accountant over [DefaultOrders].
// An Accountant is not safe for concurrent use.
type Accountant struct {
	orders []float64
	rdp    []float64
}

// NewAccountant returns an empty accountant that tracks the given Rényi
// orders, or [DefaultOrders] if orders is nil. Every order must be finite, in
// (1, MaxOrder], and the orders must be distinct.
func NewAccountant(orders []float64) (*Accountant, error) {
	if orders == nil {
		orders = DefaultOrders()
	} else {
		orders = slices.Clone(orders)
		slices.Sort(orders)
	}
	if len(orders) == 0 {
		return nil, invalid("the list of Rényi orders is empty")
	}
	for i, a := range orders {
		if !(a > 1 && a <= MaxOrder) {
			return nil, invalid("Rényi order α=%v is outside (1, %g]", a, float64(MaxOrder))
		}
		if i > 0 && a == orders[i-1] {
			return nil, invalid("Rényi order α=%v is listed twice", a)
		}
	}
	return &Accountant{orders: orders, rdp: make([]float64, len(orders))}, nil
}

func (a *Accountant) init() {
	if a.orders == nil {
		a.orders = DefaultOrders()
		a.rdp = make([]float64, len(a.orders))
	}
}

// Orders returns a copy of the tracked Rényi orders, in increasing order.
func (a *Accountant) Orders() []float64 { a.init(); return slices.Clone(a.orders) }

// RDP returns a copy of the accumulated RDP (in nats) at each of [Accountant.Orders].
func (a *Accountant) RDP() []float64 { a.init(); return slices.Clone(a.rdp) }

// Clone returns an independent copy of a.
func (a *Accountant) Clone() *Accountant {
	a.init()
	return &Accountant{orders: slices.Clone(a.orders), rdp: slices.Clone(a.rdp)}
}

// Compose adds steps rounds of the sampled Gaussian mechanism with sampling
// rate q and noise multiplier sigma (noise standard deviation divided by the
// L2 sensitivity). It changes nothing if it returns an error.
func (a *Accountant) Compose(q, sigma float64, steps int) error {
	a.init()
	step, err := stepRDP(a.orders, q, sigma, steps)
	if err != nil || steps == 0 {
		return err // zero steps cost nothing, even without noise
	}
	for i, r := range step {
		a.rdp[i] += float64(steps) * r
	}
	return nil
}

// stepRDP returns the RDP of one step at each order, after checking the
// arguments of Compose.
func stepRDP(orders []float64, q, sigma float64, steps int) ([]float64, error) {
	if steps < 0 {
		return nil, invalid("step count %d is negative", steps)
	}
	out := make([]float64, len(orders))
	for i, alpha := range orders {
		r, err := RDP(q, sigma, alpha)
		if err != nil {
			return nil, fmt.Errorf("RDP of q=%v, σ=%v at order %v: %w", q, sigma, alpha, err)
		}
		out[i] = r
	}
	return out, nil
}

// Epsilon returns the smallest ε over the tracked orders such that the
// composed mechanism is (ε, delta)-differentially private, and the order
// that attains it. It uses the conversion of Balle, Barthe, Gaboardi, Hsu and
// Sato (2020), Theorem 21 (as TF-Privacy's compute_eps and Opacus'
// get_privacy_spent do):
//
//	ε = rdp + log1p(−1/α) − (log δ + log α)/(α − 1),
//
// together with TF-Privacy's two guards: ε = 0 where δ² ≥ 1 − e^{−rdp} (the
// bound through total variation and KL divergence), and orders α ≤ 1.01,
// where the formula is numerically unstable, are skipped. If ε is infinite the
// order returned is 0.
func (a *Accountant) Epsilon(delta float64) (eps, order float64, err error) {
	a.init()
	return epsilonFromRDP(a.orders, a.rdp, delta, false)
}

// EpsilonClassic is Epsilon with the original conversion of Mironov (2017),
// Proposition 3: ε = rdp + log(1/δ)/(α − 1). It is never smaller than
// Epsilon's answer and is the conversion most published DP-SGD figures
// before 2020 use.
func (a *Accountant) EpsilonClassic(delta float64) (eps, order float64, err error) {
	a.init()
	return epsilonFromRDP(a.orders, a.rdp, delta, true)
}

func checkDelta(delta float64) error {
	if !(delta > 0 && delta < 1) {
		return invalid("δ=%v is outside (0, 1)", delta)
	}
	return nil
}

func epsilonFromRDP(orders, rdp []float64, delta float64, classic bool) (eps, order float64, err error) {
	if err := checkDelta(delta); err != nil {
		return 0, 0, err
	}
	best, bestOrder := math.Inf(1), 0.0
	logDelta := math.Log(delta)
	for i, alpha := range orders {
		r := rdp[i]
		var e float64
		switch {
		case math.IsInf(r, 1):
			e = math.Inf(1)
		case classic:
			e = r - logDelta/(alpha-1)
		case delta*delta+math.Expm1(-r) >= 0:
			e = 0
		case alpha > 1.01:
			e = r + math.Log1p(-1/alpha) - (logDelta+math.Log(alpha))/(alpha-1)
		default:
			e = math.Inf(1)
		}
		if e < best {
			best, bestOrder = e, alpha
		}
	}
	return math.Max(best, 0), bestOrder, nil
}

// Search range of NoiseFor.
const (
	minNoise = 1e-3
	maxNoise = 1e7
)

// NoiseFor returns the smallest noise multiplier σ (to a relative precision
// of 1e-6, rounded up) for which steps rounds of the sampled Gaussian
// mechanism with sampling rate q are (epsilon, delta)-differentially private,
// according to an accountant over [DefaultOrders] with the conversion of
// [Accountant.Epsilon]. It bisects on σ, since ε falls as σ grows.
//
// The search covers σ in [1e-3, 1e7]: it returns 1e-3 if even that little
// noise meets the target, and ErrUnreachable if 1e7 does not.
func NoiseFor(epsilon, delta, q float64, steps int) (float64, error) {
	if !(epsilon > 0) || math.IsInf(epsilon, 1) {
		return 0, invalid("target ε=%v must be positive and finite", epsilon)
	}
	if err := checkDelta(delta); err != nil {
		return 0, err
	}
	if !(q > 0 && q <= 1) {
		return 0, invalid("sampling rate q=%v is outside (0, 1]", q)
	}
	if steps < 1 {
		return 0, invalid("step count %d must be at least 1", steps)
	}
	orders := DefaultOrders()
	eps := func(sigma float64) (float64, error) {
		step, err := stepRDP(orders, q, sigma, steps)
		if err != nil {
			return 0, err
		}
		for i := range step {
			step[i] *= float64(steps)
		}
		e, _, err := epsilonFromRDP(orders, step, delta, false)
		return e, err
	}
	meets := func(sigma float64) (bool, error) {
		e, err := eps(sigma)
		return e <= epsilon, err
	}
	// Bracket: meets(hi) and !meets(lo).
	lo, hi := 0.5, 1.0
	ok, err := meets(hi)
	if err != nil {
		return 0, err
	}
	if ok {
		for {
			lo = math.Max(lo, minNoise)
			if ok, err = meets(lo); err != nil {
				return 0, err
			}
			if !ok {
				break
			}
			if lo == minNoise {
				return minNoise, nil
			}
			hi, lo = lo, lo/2
		}
	} else {
		for {
			lo, hi = hi, hi*2
			if hi > maxNoise {
				return 0, fmt.Errorf("%w: ε=%v at δ=%v with q=%v over %d steps needs σ > %g", ErrUnreachable, epsilon, delta, q, steps, float64(maxNoise))
			}
			if ok, err = meets(hi); err != nil {
				return 0, err
			}
			if ok {
				break
			}
		}
	}
	for hi-lo > 1e-6*hi {
		mid := lo + (hi-lo)/2
		if ok, err = meets(mid); err != nil {
			return 0, err
		}
		if ok {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi, nil
}

// MaxSteps is the largest step count StepsFor reports.
const MaxSteps = 1 << 50

// StepsFor returns the largest number of steps of the sampled Gaussian
// mechanism with sampling rate q and noise multiplier sigma that stays
// (epsilon, delta)-differentially private under the conversion of
// [Accountant.Epsilon] over [DefaultOrders]. It returns 0 if a single step
// already exceeds epsilon, and at most MaxSteps.
func StepsFor(epsilon, delta, q, sigma float64) (int, error) {
	if !(epsilon > 0) || math.IsInf(epsilon, 1) {
		return 0, invalid("target ε=%v must be positive and finite", epsilon)
	}
	if err := checkDelta(delta); err != nil {
		return 0, err
	}
	orders := DefaultOrders()
	step, err := stepRDP(orders, q, sigma, 1)
	if err != nil {
		return 0, err
	}
	total := make([]float64, len(step))
	meets := func(t int) bool {
		for i, r := range step {
			total[i] = float64(t) * r
		}
		e, _, _ := epsilonFromRDP(orders, total, delta, false)
		return e <= epsilon
	}
	if !meets(1) {
		return 0, nil
	}
	lo, hi := 1, 2 // meets(lo); hi to be found with !meets(hi)
	for meets(hi) {
		if hi >= MaxSteps {
			return MaxSteps, nil
		}
		lo, hi = hi, hi*2
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if meets(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo, nil
}

// Serialized form of an Accountant, version 1, little-endian:
//
//	"cdpA" | version byte 1 | uint32 n | n × (float64 order, float64 rdp)
const (
	accountantMagic   = "cdpA"
	accountantVersion = 1
	maxOrders         = 1 << 12
)

// MarshalBinary encodes the tracked orders and the accumulated RDP.
func (a *Accountant) MarshalBinary() ([]byte, error) {
	a.init()
	return a.appendBinary(nil), nil
}

func (a *Accountant) appendBinary(b []byte) []byte {
	b = append(b, accountantMagic...)
	b = append(b, accountantVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(a.orders)))
	for i, o := range a.orders {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(o))
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(a.rdp[i]))
	}
	return b
}

// UnmarshalBinary decodes state written by MarshalBinary. It rejects
// anything malformed with an error wrapping ErrCorrupt and leaves a
// unchanged.
func (a *Accountant) UnmarshalBinary(data []byte) error {
	b, rest, err := decodeAccountant(data)
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after the accountant", ErrCorrupt, len(rest))
	}
	*a = *b
	return nil
}

func decodeAccountant(data []byte) (*Accountant, []byte, error) {
	const head = len(accountantMagic) + 1 + 4
	if len(data) < head || string(data[:4]) != accountantMagic {
		return nil, nil, fmt.Errorf("%w: not an accountant (bad magic)", ErrCorrupt)
	}
	if v := data[4]; v != accountantVersion {
		return nil, nil, fmt.Errorf("%w: accountant version %d, want %d", ErrCorrupt, v, accountantVersion)
	}
	n := binary.LittleEndian.Uint32(data[5:])
	if n == 0 || n > maxOrders {
		return nil, nil, fmt.Errorf("%w: %d orders, want 1 to %d", ErrCorrupt, n, maxOrders)
	}
	data = data[head:]
	if len(data) < int(n)*16 {
		return nil, nil, fmt.Errorf("%w: %d orders need %d bytes, have %d", ErrCorrupt, n, n*16, len(data))
	}
	a := &Accountant{orders: make([]float64, n), rdp: make([]float64, n)}
	for i := range a.orders {
		o := math.Float64frombits(binary.LittleEndian.Uint64(data[16*i:]))
		r := math.Float64frombits(binary.LittleEndian.Uint64(data[16*i+8:]))
		if !(o > 1 && o <= MaxOrder) || (i > 0 && o <= a.orders[i-1]) {
			return nil, nil, fmt.Errorf("%w: order %d is %v (orders must increase within (1, %g])", ErrCorrupt, i, o, float64(MaxOrder))
		}
		if !(r >= 0) { // rejects NaN and negatives; +Inf records a round without noise
			return nil, nil, fmt.Errorf("%w: RDP at order %v is %v", ErrCorrupt, o, r)
		}
		a.orders[i], a.rdp[i] = o, r
	}
	return a, data[16*n:], nil
}
