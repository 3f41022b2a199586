// Package fl is Cloister's shared vocabulary: the names every other package
// uses for members, rounds, parameter vectors, updates and metrics.
//
// It imports nothing outside the standard library, so every package can
// depend on it without pulling in anything else.
package fl

import (
	"errors"
	"fmt"
	"math"
)

// NodeID names a federation member. It is taken from the member's
// certificate, never from a message.
type NodeID string

// Round numbers the federated rounds of a session, starting at 1.
type Round uint64

// Vector is a flat parameter vector: a model's parameters, an update Δ, or
// a sum of updates.
type Vector []float64

// ErrDimension reports that two vectors that must have the same length
// do not.
var ErrDimension = errors.New("fl: vector lengths differ")

// Clone returns a copy of v.
func (v Vector) Clone() Vector {
	if v == nil {
		return nil
	}
	return append(Vector(nil), v...)
}

// Norm returns the Euclidean (L2) norm of v.
func (v Vector) Norm() float64 {
	var s float64
	for _, x := range v {
		s += x * x
	}
	return math.Sqrt(s)
}

// Add sets v = v + a·w. It returns ErrDimension if the lengths differ.
func (v Vector) Add(a float64, w Vector) error {
	if len(v) != len(w) {
		return fmt.Errorf("%w: %d and %d", ErrDimension, len(v), len(w))
	}
	for i := range v {
		v[i] += a * w[i]
	}
	return nil
}

// Scale sets v = a·v.
func (v Vector) Scale(a float64) {
	for i := range v {
		v[i] *= a
	}
}

// Finite reports whether every element of v is a finite number.
func (v Vector) Finite() bool {
	for _, x := range v {
		if math.IsNaN(x) || math.IsInf(x, 0) {
			return false
		}
	}
	return true
}

// Update is one node's contribution to a round: the change Δ = local − global
// of its model and the number of examples it trained on.
type Update struct {
	Node   NodeID
	Round  Round
	Delta  Vector
	Weight float64 // example count, or another non-negative weight
}

// Metrics are the evaluation results a node reports. They are the only
// plaintext the coordinator sees, apart from sizes and timings.
type Metrics struct {
	Accuracy float64 // fraction of correctly classified examples, in [0, 1]
	Loss     float64 // mean cross-entropy loss
	Examples int     // number of examples evaluated
}
