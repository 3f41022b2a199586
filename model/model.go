package model

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/fl"
)

// Errors callers can test with [errors.Is]. The returned errors wrap them
// with the offending value.
var (
	// ErrSpec reports an architecture this package cannot build.
	ErrSpec = errors.New("model: invalid spec")
	// ErrParams reports a parameter vector of the wrong length or with a
	// NaN or infinite element.
	ErrParams = errors.New("model: invalid parameters")
	// ErrInput reports a batch or data set whose shape does not fit the
	// model: a wrong number of features, a gradient buffer of the wrong
	// length, or no examples at all.
	ErrInput = errors.New("model: invalid input")
	// ErrLabel reports a label outside [0, Classes).
	ErrLabel = errors.New("model: label out of range")
	// ErrHyperparameter reports an unusable optimizer setting.
	ErrHyperparameter = errors.New("model: invalid hyperparameter")
	// ErrDiverged reports that training produced a NaN or infinite loss.
	// The model is left as it was before training.
	ErrDiverged = errors.New("model: training diverged")
)

// Model is a classifier whose parameters form one flat [fl.Vector].
//
// A Model keeps scratch buffers between calls, so it is not safe for
// concurrent use; give each goroutine its own [Model.Clone].
//
// The interface is sealed: only this package implements it, so that
// trainers such as [SGD] can update parameters in place.
type Model interface {
	// Spec returns the model's architecture.
	Spec() Spec
	// NumParams returns the length of the parameter vector.
	NumParams() int
	// Params returns a copy of the parameters. The layout is described in
	// the package documentation.
	Params() fl.Vector
	// SetParams copies p into the model. It returns an error wrapping
	// ErrParams, and leaves the model unchanged, if p has the wrong
	// length or a non-finite element.
	SetParams(p fl.Vector) error
	// Gradient computes the mean cross-entropy loss over a batch and
	// overwrites grad with its gradient with respect to the parameters.
	// x holds len(y) examples row-major; y holds their labels. grad must
	// have length NumParams.
	Gradient(x []float64, y []int, grad fl.Vector) (loss float64, err error)
	// Predict returns the most likely class of each example in x
	// (row-major, a whole number of rows).
	Predict(x []float64) ([]int, error)
	// Evaluate returns the accuracy and mean cross-entropy loss of the
	// model on set.
	Evaluate(set *dataset.Set) (fl.Metrics, error)
	// Clone returns an independent copy of the model.
	Clone() Model

	// live returns the model's own parameter slice, for in-place updates.
	live() fl.Vector
}

// New returns a model with the given architecture, its weights drawn from
// rng and its biases zero. Hidden layers (followed by ReLU) use He
// initialization, N(0, 2/fan_in); the output layer uses Glorot
// initialization, U(±√(6/(fan_in+fan_out))). The same spec and rng state
// give the same parameters every time.
func New(spec Spec, rng *rand.Rand) (Model, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	if rng == nil {
		return nil, fmt.Errorf("model: New(%s): nil *rand.Rand", spec)
	}
	n := newNetwork(spec)
	for l, ly := range n.layers {
		w := n.w[ly.off : ly.off+ly.in*ly.out]
		if l < len(n.layers)-1 {
			std := math.Sqrt(2 / float64(ly.in))
			for i := range w {
				w[i] = std * rng.NormFloat64()
			}
		} else {
			limit := math.Sqrt(6 / float64(ly.in+ly.out))
			for i := range w {
				w[i] = limit * (2*rng.Float64() - 1)
			}
		}
	}
	return n, nil
}

// NewFromParams returns a model with the given architecture and a copy of
// params, for example a global model received in a round.
func NewFromParams(spec Spec, params fl.Vector) (Model, error) {
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	n := newNetwork(spec)
	if err := n.SetParams(params); err != nil {
		return nil, err
	}
	return n, nil
}

// checkParams validates a parameter-shaped vector named what.
func checkParams(what string, p fl.Vector, spec Spec, want int) error {
	if len(p) != want {
		return fmt.Errorf("%w: %s has %d values, %s needs %d", ErrParams, what, len(p), spec, want)
	}
	for i, v := range p {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%w: %s[%d] is %v", ErrParams, what, i, v)
		}
	}
	return nil
}
