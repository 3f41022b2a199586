package dp

import (
	"fmt"
	"math"
)

// Rounds is the privacy accounting of a federation that releases one noised
// sum per round: in each round, at least k honest nodes clip their update to
// L2 norm C, round it to the grid of [AddNoise] and add their noise share
// σ·C/√k ([NoiseShare]), and only the sum is decrypted. The coordinator and
// every node account with the same Rounds, so that they agree on the ε of
// every round.
//
// Round r composes r steps of the sampled Gaussian mechanism with noise
// multiplier Multiplier and sampling rate SampleRate; ε is stated at Delta.
// Make a Rounds with [NewRounds].
type Rounds struct {
	// Multiplier is the noise multiplier one round has for the accountant:
	// DistributedMultiplier(σ, C, k, dim, DefaultBits), slightly below σ.
	Multiplier float64
	// SampleRate is the probability q that a given site's update is in a
	// round's aggregate: 1 when every member takes part in every round.
	SampleRate float64
	// Delta is the δ at which ε is stated.
	Delta float64
}

// NewRounds returns the accounting of rounds in which at least k honest
// nodes each clip their update, of dimension at most dim, to clip and add
// NoiseShare(sigma, clip, k) of discrete Gaussian noise on the grid of
// resolution 2^-DefaultBits (what [AddNoise] does), with sampling rate q,
// stated at delta.
//
// dim may be an upper bound of the update's dimension: the rounding term of
// the sensitivity ([QuantizedSensitivity]) only grows with it, so a bound
// overstates ε, never understates it.
func NewRounds(sigma, clip float64, k, dim int, q, delta float64) (Rounds, error) {
	z, err := DistributedMultiplier(sigma, clip, k, dim, DefaultBits)
	if err != nil {
		return Rounds{}, err
	}
	if !(q > 0 && q <= 1) {
		return Rounds{}, invalid("sampling rate q=%v is outside (0, 1]", q)
	}
	if err := checkDelta(delta); err != nil {
		return Rounds{}, err
	}
	return Rounds{Multiplier: z, SampleRate: q, Delta: delta}, nil
}

// Cost is the privacy spent after a number of rounds, at δ, by both
// conversions from RDP. Epsilon (Balle et al. 2020) is never larger than
// Classic (Mironov 2017); both are valid bounds, and Epsilon is the one a
// budget is checked against.
type Cost struct {
	Rounds       int
	Delta        float64
	Epsilon      float64 // improved conversion, Balle et al. 2020 ([Accountant.Epsilon])
	Order        float64 // the Rényi order that attains Epsilon
	Classic      float64 // classic conversion, Mironov 2017 ([Accountant.EpsilonClassic])
	ClassicOrder float64 // the Rényi order that attains Classic
}

// String describes the cost with both conversions.
func (c Cost) String() string {
	return fmt.Sprintf("ε=%.6g after %d rounds at δ=%g (Balle et al. 2020, α=%g; classic %.6g, α=%g)",
		c.Epsilon, c.Rounds, c.Delta, c.Order, c.Classic, c.ClassicOrder)
}

// Micro returns Epsilon in integer millionths, rounded up ([MicroEpsilon]).
func (c Cost) Micro() (int64, error) { return MicroEpsilon(c.Epsilon) }

func (s Rounds) valid() error {
	if !(s.Multiplier > 0) || math.IsInf(s.Multiplier, 1) {
		return invalid("noise multiplier %v must be positive and finite (make Rounds with NewRounds)", s.Multiplier)
	}
	if !(s.SampleRate > 0 && s.SampleRate <= 1) {
		return invalid("sampling rate q=%v is outside (0, 1]", s.SampleRate)
	}
	return checkDelta(s.Delta)
}

// After returns the privacy spent by rounds 1 to r, r ≥ 0.
func (s Rounds) After(r int) (Cost, error) {
	if err := s.valid(); err != nil {
		return Cost{}, err
	}
	if r < 0 {
		return Cost{}, invalid("round count %d is negative", r)
	}
	var a Accountant
	if err := a.Compose(s.SampleRate, s.Multiplier, r); err != nil {
		return Cost{}, err
	}
	c := Cost{Rounds: r, Delta: s.Delta}
	var err error
	if c.Epsilon, c.Order, err = a.Epsilon(s.Delta); err != nil {
		return Cost{}, err
	}
	if c.Classic, c.ClassicOrder, err = a.EpsilonClassic(s.Delta); err != nil {
		return Cost{}, err
	}
	return c, nil
}

// MaxRounds returns the largest r whose [Rounds.After] Epsilon is at most
// budget: 0 if a single round already exceeds it, and at most MaxSteps.
func (s Rounds) MaxRounds(budget float64) (int, error) {
	if err := s.valid(); err != nil {
		return 0, err
	}
	return StepsFor(budget, s.Delta, s.SampleRate, s.Multiplier)
}
