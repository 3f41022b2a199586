package strategy

import (
	"encoding"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"strconv"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/spec"
)

// Strategy turns the round's aggregated update into the next global model.
//
// A Strategy is not safe for concurrent use: the round's leader owns it.
type Strategy interface {
	// Name returns the strategy's name in Flower's vocabulary ("FedAvg",
	// "FedAdam", …).
	Name() string

	// String returns the canonical spec, which New accepts back.
	String() string

	// Apply returns the next global model from the current one and the
	// weighted mean update Δ̄ = Σ wᵢΔᵢ / Σ wᵢ (Δ = local − global). It does not
	// modify its arguments. On error the optimizer state is unchanged.
	Apply(global, meanDelta fl.Vector) (fl.Vector, error)

	// StateSize returns the largest length MarshalBinary's output reaches
	// for a model of d parameters (after the first round), so that a
	// runtime can bound the sealed model it carries.
	StateSize(d int) int

	// MarshalBinary and UnmarshalBinary carry the optimizer state, which
	// travels sealed with the model. UnmarshalBinary rejects state written by
	// a different strategy or configuration.
	encoding.BinaryMarshaler
	encoding.BinaryUnmarshaler
}

var (
	// ErrSpec reports a strategy spec that New cannot parse.
	ErrSpec = errors.New("strategy: bad spec")

	// ErrNonFinite reports a NaN or infinite input, or a step whose result
	// would not be finite.
	ErrNonFinite = errors.New("strategy: non-finite value")

	// ErrZeroWeight reports a set of updates whose total weight is not
	// positive.
	ErrZeroWeight = errors.New("strategy: total weight is zero")

	// ErrState reports optimizer state bytes that are malformed or belong to
	// another strategy or configuration.
	ErrState = errors.New("strategy: bad state")
)

// New returns the strategy a spec names, as described in the package
// documentation: "fedavg", "fedavg:0.5",
// "fedadam:lr=0.01,b1=0.9,b2=0.99,tau=1e-3", "fedyogi", "fedadagrad",
// "scaffold:frac=0.1".
func New(text string) (Strategy, error) {
	s, err := spec.Parse(text)
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrSpec, err)
	}
	name := s.Name
	var p params
	switch name {
	case "fedavg":
		p = params{"lr": 1}
	case "fedadam":
		p = params{"lr": 0.1, "b1": 0.9, "b2": 0.99, "tau": 1e-3}
	case "fedyogi":
		p = params{"lr": 0.01, "b1": 0.9, "b2": 0.99, "tau": 1e-3}
	case "fedadagrad":
		p = params{"lr": 0.1, "b1": 0, "tau": 1e-3}
	case "scaffold":
		p = params{"lr": 1, "frac": 1}
	default:
		return nil, fmt.Errorf("%w %w", ErrSpec, s.Errorf("unknown strategy %q (want fedavg, fedadam, fedyogi, fedadagrad or scaffold)", name))
	}
	vals, err := s.Args("lr", slices.Collect(maps.Keys(p))...)
	if err != nil {
		return nil, fmt.Errorf("%w %w", ErrSpec, err)
	}
	maps.Copy(p, vals)
	if err := p.check(); err != nil {
		return nil, fmt.Errorf("%w %w", ErrSpec, s.Errorf("%v", err))
	}
	switch name {
	case "fedavg":
		return NewFedAvg(p["lr"])
	case "fedadam":
		return NewFedAdam(p["lr"], p["b1"], p["b2"], p["tau"])
	case "fedyogi":
		return NewFedYogi(p["lr"], p["b1"], p["b2"], p["tau"])
	case "fedadagrad":
		return NewFedAdagrad(p["lr"], p["b1"], p["tau"])
	default:
		return NewScaffold(p["lr"], p["frac"])
	}
}

// params holds a spec's arguments. Its keys are exactly those the strategy
// accepts, preset to their defaults.
type params map[string]float64

// check validates ranges; the constructors check again, so this only gives
// the spec's own wording.
func (p params) check() error {
	for _, k := range []string{"lr", "tau"} {
		if x, ok := p[k]; ok && !(x > 0) {
			return fmt.Errorf("%s=%v must be positive", k, x)
		}
	}
	for _, k := range []string{"b1", "b2"} {
		if x, ok := p[k]; ok && !(x >= 0 && x < 1) {
			return fmt.Errorf("%s=%v must be in [0, 1)", k, x)
		}
	}
	if x, ok := p["frac"]; ok && !(x > 0 && x <= 1) {
		return fmt.Errorf("frac=%v must be in (0, 1]", x)
	}
	return nil
}

// checkParam is the constructors' validation of one hyperparameter.
func checkParam(strategy, key string, x, lo, hi float64, loOpen, hiOpen bool) error {
	bad := math.IsNaN(x) || x < lo || x > hi || (loOpen && x == lo) || (hiOpen && x == hi)
	if !bad {
		return nil
	}
	l, h := "[", "]"
	if loOpen {
		l = "("
	}
	if hiOpen {
		h = ")"
	}
	return fmt.Errorf("%w: %s %s=%v outside %s%v, %v%s", ErrSpec, strategy, key, x, l, lo, hi, h)
}

func fmtFloat(x float64) string { return strconv.FormatFloat(x, 'g', -1, 64) }

// checkInputs validates Apply's arguments: same length, all finite.
func checkInputs(global, meanDelta fl.Vector) error {
	if len(global) != len(meanDelta) {
		return fmt.Errorf("%w: global model has %d values, mean update %d", fl.ErrDimension, len(global), len(meanDelta))
	}
	if i := firstNonFinite(global); i >= 0 {
		return fmt.Errorf("%w: global model value %d is %v", ErrNonFinite, i, global[i])
	}
	if i := firstNonFinite(meanDelta); i >= 0 {
		return fmt.Errorf("%w: mean update value %d is %v", ErrNonFinite, i, meanDelta[i])
	}
	return nil
}

func firstNonFinite(v fl.Vector) int {
	for i, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return i
		}
	}
	return -1
}

// WeightedMean returns Δ̄ = Σ wᵢΔᵢ / Σ wᵢ over plaintext updates, and the total
// weight Σ wᵢ.
//
// Weights must be finite and non-negative; an update of weight zero
// contributes nothing but must still be well-formed. Every Delta must have
// the same length and finite values. Errors name the offending update by
// index and node. WeightedMean returns ErrZeroWeight if no update has a
// positive weight, and ErrNonFinite if the mean itself overflows.
func WeightedMean(updates []fl.Update) (fl.Vector, float64, error) {
	if len(updates) == 0 {
		return nil, 0, fmt.Errorf("%w: no updates", ErrZeroWeight)
	}
	dim := len(updates[0].Delta)
	var total float64
	for i, u := range updates {
		if len(u.Delta) != dim {
			return nil, 0, fmt.Errorf("%w: update %d (node %q) has %d values, update 0 (node %q) has %d",
				fl.ErrDimension, i, u.Node, len(u.Delta), updates[0].Node, dim)
		}
		if math.IsNaN(u.Weight) || math.IsInf(u.Weight, 0) || u.Weight < 0 {
			return nil, 0, fmt.Errorf("strategy: update %d (node %q): weight %v is not a finite non-negative number", i, u.Node, u.Weight)
		}
		if j := firstNonFinite(u.Delta); j >= 0 {
			return nil, 0, fmt.Errorf("%w: update %d (node %q): value %d is %v", ErrNonFinite, i, u.Node, j, u.Delta[j])
		}
		total += u.Weight
	}
	if math.IsInf(total, 0) {
		return nil, 0, fmt.Errorf("%w: total weight overflows", ErrNonFinite)
	}
	if total == 0 {
		return nil, 0, ErrZeroWeight
	}
	// Σ (wᵢ/W)·Δᵢ: a convex combination, so huge values don't overflow on the
	// way unless the mean itself is out of range.
	mean := make(fl.Vector, dim)
	for _, u := range updates {
		if u.Weight == 0 {
			continue
		}
		p := u.Weight / total
		for j, x := range u.Delta {
			mean[j] += p * x
		}
	}
	if j := firstNonFinite(mean); j >= 0 {
		return nil, 0, fmt.Errorf("%w: mean value %d overflows", ErrNonFinite, j)
	}
	return mean, total, nil
}
