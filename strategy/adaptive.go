package strategy

import (
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
)

// adaptiveKind selects the second-moment rule of Reddi et al.'s Algorithm 2.
type adaptiveKind uint8

const (
	kindAdam adaptiveKind = iota
	kindYogi
	kindAdagrad
)

// Adaptive is FedAdam, FedYogi or FedAdagrad: an adaptive server optimizer
// that treats −Δ̄ as a pseudo-gradient (Reddi et al. 2021, Algorithm 2). Its
// state is the first and second moments m and v, both zero before the first
// round and then of the model's length.
type Adaptive struct {
	kind       adaptiveKind
	lr, b1, b2 float64
	tau        float64
	m, v       fl.Vector
	step       uint64
}

// NewFedAdam returns FedAdam: m ← β₁m + (1−β₁)Δ̄, v ← β₂v + (1−β₂)Δ̄²,
// x ← x + η·m/(√v + τ). It requires lr > 0, b1 and b2 in [0, 1), tau > 0.
func NewFedAdam(lr, b1, b2, tau float64) (*Adaptive, error) {
	return newAdaptive(kindAdam, lr, b1, b2, tau)
}

// NewFedYogi returns FedYogi, which differs from FedAdam in the second
// moment: v ← v − (1−β₂)·Δ̄²·sign(v − Δ̄²). It requires lr > 0, b1 and b2 in
// [0, 1), tau > 0.
func NewFedYogi(lr, b1, b2, tau float64) (*Adaptive, error) {
	return newAdaptive(kindYogi, lr, b1, b2, tau)
}

// NewFedAdagrad returns FedAdagrad: v ← v + Δ̄², with first-moment decay b1
// (Flower fixes it at 0, so that m = Δ̄). It requires lr > 0, b1 in [0, 1),
// tau > 0.
func NewFedAdagrad(lr, b1, tau float64) (*Adaptive, error) {
	return newAdaptive(kindAdagrad, lr, b1, 0, tau)
}

func newAdaptive(kind adaptiveKind, lr, b1, b2, tau float64) (*Adaptive, error) {
	s := &Adaptive{kind: kind, lr: lr, b1: b1, b2: b2, tau: tau}
	key := s.key()
	if err := checkParam(key, "lr", lr, 0, math.MaxFloat64, true, false); err != nil {
		return nil, err
	}
	if err := checkParam(key, "b1", b1, 0, 1, false, true); err != nil {
		return nil, err
	}
	if err := checkParam(key, "b2", b2, 0, 1, false, true); err != nil {
		return nil, err
	}
	if err := checkParam(key, "tau", tau, 0, math.MaxFloat64, true, false); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Adaptive) key() string {
	switch s.kind {
	case kindYogi:
		return "fedyogi"
	case kindAdagrad:
		return "fedadagrad"
	default:
		return "fedadam"
	}
}

// Name returns "FedAdam", "FedYogi" or "FedAdagrad".
func (s *Adaptive) Name() string {
	switch s.kind {
	case kindYogi:
		return "FedYogi"
	case kindAdagrad:
		return "FedAdagrad"
	default:
		return "FedAdam"
	}
}

// String returns the canonical spec, with every hyperparameter spelled out.
func (s *Adaptive) String() string {
	spec := s.key() + ":lr=" + fmtFloat(s.lr) + ",b1=" + fmtFloat(s.b1)
	if s.kind != kindAdagrad {
		spec += ",b2=" + fmtFloat(s.b2)
	}
	return spec + ",tau=" + fmtFloat(s.tau)
}

// Rounds returns the number of rounds applied so far.
func (s *Adaptive) Rounds() uint64 { return s.step }

// Moments returns copies of the first and second moments m and v; both are
// nil before the first round.
func (s *Adaptive) Moments() (m, v fl.Vector) { return s.m.Clone(), s.v.Clone() }

// Apply performs one step of Algorithm 2 and returns the next global model.
// The model's length is fixed by the first round; later rounds of another
// length fail with fl.ErrDimension.
func (s *Adaptive) Apply(global, meanDelta fl.Vector) (fl.Vector, error) {
	if err := checkInputs(global, meanDelta); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name(), err)
	}
	d := len(global)
	m, v := s.m, s.v
	if m == nil {
		m, v = make(fl.Vector, d), make(fl.Vector, d)
	} else if len(m) != d {
		return nil, fmt.Errorf("%s: %w: optimizer state has %d values, model %d", s.Name(), fl.ErrDimension, len(m), d)
	}
	m2, v2, next := make(fl.Vector, d), make(fl.Vector, d), make(fl.Vector, d)
	for i, g := range meanDelta {
		g2 := g * g
		m2[i] = s.b1*m[i] + (1-s.b1)*g
		switch s.kind {
		case kindAdam:
			v2[i] = s.b2*v[i] + (1-s.b2)*g2
		case kindYogi:
			v2[i] = v[i] - (1-s.b2)*g2*sign(v[i]-g2)
		case kindAdagrad:
			v2[i] = v[i] + g2
		}
		next[i] = global[i] + s.lr*m2[i]/(math.Sqrt(v2[i])+s.tau)
		if math.IsInf(g2, 0) || math.IsInf(v2[i], 0) || math.IsNaN(v2[i]) || math.IsInf(next[i], 0) || math.IsNaN(next[i]) {
			return nil, fmt.Errorf("%s: %w: value %d overflows (global %v, mean update %v)", s.Name(), ErrNonFinite, i, global[i], g)
		}
	}
	s.m, s.v = m2, v2
	s.step++
	return next, nil
}

func sign(x float64) float64 {
	switch {
	case x > 0:
		return 1
	case x < 0:
		return -1
	}
	return 0
}

// StateSize returns the length of the state after the first round: the
// spec, the round count, and m and v of d values each.
func (s *Adaptive) StateSize(d int) int { return stateSize(s.String(), 2, d) }

// MarshalBinary returns the state: the spec, the round count, m and v.
func (s *Adaptive) MarshalBinary() ([]byte, error) {
	return marshalState(s.String(), s.step, s.m, s.v), nil
}

// UnmarshalBinary restores state written by a strategy with the same spec.
// The second moment must be non-negative.
func (s *Adaptive) UnmarshalBinary(data []byte) error {
	st, vecs, err := unmarshalState(data, s.String(), 2)
	if err != nil {
		return err
	}
	for i, x := range vecs[1] {
		if x < 0 {
			return fmt.Errorf("%w: second moment value %d is negative (%v)", ErrState, i, x)
		}
	}
	s.step, s.m, s.v = st, vecs[0], vecs[1]
	return nil
}
