package strategy

import (
	"fmt"
	"math"

	"github.com/cloisterfl/cloister/fl"
)

// FedAvg is federated averaging with a server learning rate:
// x ← x + η·Δ̄. With η = 1 the new model is the weighted mean of the local
// models (McMahan et al. 2017). It keeps no optimizer state beyond the
// number of rounds applied.
type FedAvg struct {
	lr   float64
	step uint64
}

// NewFedAvg returns FedAvg with server learning rate lr > 0.
func NewFedAvg(lr float64) (*FedAvg, error) {
	if err := checkParam("fedavg", "lr", lr, 0, math.MaxFloat64, true, false); err != nil {
		return nil, err
	}
	return &FedAvg{lr: lr}, nil
}

// Name returns "FedAvg".
func (s *FedAvg) Name() string { return "FedAvg" }

// String returns the canonical spec, "fedavg:lr=η".
func (s *FedAvg) String() string { return "fedavg:lr=" + fmtFloat(s.lr) }

// Rounds returns the number of rounds applied so far.
func (s *FedAvg) Rounds() uint64 { return s.step }

// Apply returns global + η·meanDelta.
func (s *FedAvg) Apply(global, meanDelta fl.Vector) (fl.Vector, error) {
	next, err := step(global, meanDelta, s.lr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", s.Name(), err)
	}
	s.step++
	return next, nil
}

// step returns global + lr·delta, checked.
func step(global, delta fl.Vector, lr float64) (fl.Vector, error) {
	if err := checkInputs(global, delta); err != nil {
		return nil, err
	}
	next := global.Clone()
	if next == nil {
		next = fl.Vector{}
	}
	for i, d := range delta {
		next[i] += lr * d
	}
	if i := firstNonFinite(next); i >= 0 {
		return nil, fmt.Errorf("%w: value %d overflows (%v + %v·%v)", ErrNonFinite, i, global[i], lr, delta[i])
	}
	return next, nil
}

// StateSize returns the length of the state, which does not grow with d.
func (s *FedAvg) StateSize(d int) int { return stateSize(s.String(), 0, d) }

// MarshalBinary returns the state: the spec and the round count.
func (s *FedAvg) MarshalBinary() ([]byte, error) {
	return marshalState(s.String(), s.step), nil
}

// UnmarshalBinary restores state written by a FedAvg with the same learning
// rate.
func (s *FedAvg) UnmarshalBinary(data []byte) error {
	st, _, err := unmarshalState(data, s.String(), 0)
	if err != nil {
		return err
	}
	s.step = st
	return nil
}
