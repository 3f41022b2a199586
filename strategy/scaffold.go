package strategy

import (
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
)

// Scaffold is the server step of SCAFFOLD (Karimireddy et al. 2020,
// Algorithm 1). Its global vector is the join (x, c) of the model and the
// server control variate, and its mean update is the join (Δ̄y, Δ̄c) of the
// nodes' model and control updates (see package
// [github.com/cloisterfl/cloister/strategy/scaffold] for the layout and the
// node side):
//
//	x ← x + η·Δ̄y
//	c ← c + (|S|/N)·Δ̄c
//
// where |S|/N (frac) is the fraction of the population in each cohort. The
// control travels inside the model, so Scaffold keeps no state of its own
// beyond the round count.
type Scaffold struct {
	lr, frac float64
	step     uint64
}

// NewScaffold returns SCAFFOLD's server step with global learning rate
// lr > 0 and cohort fraction frac in (0, 1].
func NewScaffold(lr, frac float64) (*Scaffold, error) {
	if err := checkParam("scaffold", "lr", lr, 0, math.MaxFloat64, true, false); err != nil {
		return nil, err
	}
	if err := checkParam("scaffold", "frac", frac, 0, 1, true, false); err != nil {
		return nil, err
	}
	return &Scaffold{lr: lr, frac: frac}, nil
}

// Name returns "SCAFFOLD".
func (s *Scaffold) Name() string { return "SCAFFOLD" }

// String returns the canonical spec, "scaffold:lr=η,frac=f".
func (s *Scaffold) String() string {
	return "scaffold:lr=" + fmtFloat(s.lr) + ",frac=" + fmtFloat(s.frac)
}

// Rounds returns the number of rounds applied so far.
func (s *Scaffold) Rounds() uint64 { return s.step }

// Apply returns Join(x + η·Δ̄y, c + frac·Δ̄c) from global = Join(x, c) and
// meanDelta = Join(Δ̄y, Δ̄c). Both must have the same even length.
func (s *Scaffold) Apply(global, meanDelta fl.Vector) (fl.Vector, error) {
	if err := checkInputs(global, meanDelta); err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name(), err)
	}
	if len(global)%2 != 0 {
		return nil, fmt.Errorf("%s: %w: global vector has odd length %d, want Join(model, control)", s.Name(), fl.ErrDimension, len(global))
	}
	h := len(global) / 2
	next := global.Clone()
	for i, d := range meanDelta {
		a := s.lr
		if i >= h {
			a = s.frac
		}
		next[i] += a * d
		if math.IsInf(next[i], 0) {
			return nil, fmt.Errorf("%s: %w: value %d overflows", s.Name(), ErrNonFinite, i)
		}
	}
	s.step++
	return next, nil
}

// StateSize returns the length of the state, which does not grow with d
// (the control variates are not part of it).
func (s *Scaffold) StateSize(d int) int { return stateSize(s.String(), 0, d) }

// MarshalBinary returns the state: the spec and the round count.
func (s *Scaffold) MarshalBinary() ([]byte, error) {
	return marshalState(s.String(), s.step), nil
}

// UnmarshalBinary restores state written by a Scaffold with the same spec.
func (s *Scaffold) UnmarshalBinary(data []byte) error {
	st, _, err := unmarshalState(data, s.String(), 0)
	if err != nil {
		return err
	}
	s.step = st
	return nil
}
