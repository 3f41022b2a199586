package model

import (
	"fmt"
	"strconv"
	"strings"
)

// Model kinds, the values of [Spec.Kind].
const (
	// Softmax is multinomial logistic regression: one affine layer followed
	// by a softmax. Its loss is convex.
	Softmax = "softmax"
	// MLP is a multilayer perceptron: affine layers with ReLU between them
	// and a softmax output.
	MLP = "mlp"
)

// MaxParams bounds the number of parameters a [Spec] may describe, so that
// a spec read from a manifest or a flag cannot make [New] allocate without
// limit. It is 2²⁷ (128 Mi parameters, 1 GiB of float64).
const MaxParams = 1 << 27

// Spec describes a model's architecture. Two models with equal specs have
// parameter vectors of the same length and layout.
type Spec struct {
	Kind    string // Softmax or MLP
	Inputs  int    // features per example, at least 1
	Classes int    // number of classes, at least 2
	Hidden  []int  // MLP hidden layer sizes, in order; empty for Softmax
}

// Validate reports whether s describes a model this package can build. The
// error wraps [ErrSpec] and names the offending field.
func (s Spec) Validate() error {
	_, err := s.numParams()
	return err
}

// NumParams returns the length of the parameter vector of a model with this
// spec, or 0 if the spec is invalid.
func (s Spec) NumParams() int {
	n, err := s.numParams()
	if err != nil {
		return 0
	}
	return n
}

// String returns the kind and the layer sizes, as in "mlp 784-128-10".
func (s Spec) String() string {
	var b strings.Builder
	if s.Kind == "" {
		b.WriteString("(no kind)")
	} else {
		b.WriteString(s.Kind)
	}
	b.WriteByte(' ')
	for i, n := range s.sizes() {
		if i > 0 {
			b.WriteByte('-')
		}
		b.WriteString(strconv.Itoa(n))
	}
	return b.String()
}

// Equal reports whether s and t describe the same architecture.
func (s Spec) Equal(t Spec) bool {
	if s.Kind != t.Kind || s.Inputs != t.Inputs || s.Classes != t.Classes || len(s.Hidden) != len(t.Hidden) {
		return false
	}
	for i := range s.Hidden {
		if s.Hidden[i] != t.Hidden[i] {
			return false
		}
	}
	return true
}

// clone returns a copy of s that shares no memory with it.
func (s Spec) clone() Spec {
	if s.Hidden != nil {
		s.Hidden = append([]int(nil), s.Hidden...)
	}
	return s
}

// sizes returns the layer widths from input to output.
func (s Spec) sizes() []int {
	out := make([]int, 0, len(s.Hidden)+2)
	out = append(out, s.Inputs)
	out = append(out, s.Hidden...)
	return append(out, s.Classes)
}

func (s Spec) numParams() (int, error) {
	switch s.Kind {
	case Softmax:
		if len(s.Hidden) != 0 {
			return 0, fmt.Errorf("%w: softmax has no hidden layers, got hidden sizes %v", ErrSpec, s.Hidden)
		}
	case MLP:
		if len(s.Hidden) == 0 {
			return 0, fmt.Errorf("%w: mlp needs at least one hidden layer (use kind %q for none)", ErrSpec, Softmax)
		}
	case "":
		return 0, fmt.Errorf("%w: no kind (want %q or %q)", ErrSpec, Softmax, MLP)
	default:
		return 0, fmt.Errorf("%w: unknown kind %q (want %q or %q)", ErrSpec, s.Kind, Softmax, MLP)
	}
	if s.Inputs < 1 {
		return 0, fmt.Errorf("%w: %d inputs, want at least 1", ErrSpec, s.Inputs)
	}
	if s.Classes < 2 {
		return 0, fmt.Errorf("%w: %d classes, want at least 2", ErrSpec, s.Classes)
	}
	for i, h := range s.Hidden {
		if h < 1 {
			return 0, fmt.Errorf("%w: hidden layer %d has %d units, want at least 1", ErrSpec, i+1, h)
		}
	}
	sizes := s.sizes()
	total := 0
	for l := 0; l+1 < len(sizes); l++ {
		in, out := sizes[l], sizes[l+1]
		// Every size is at least 1; check before multiplying so that
		// huge values cannot overflow.
		if in > MaxParams || out > MaxParams || in > MaxParams/out {
			return 0, fmt.Errorf("%w: %s has more than %d parameters", ErrSpec, s, MaxParams)
		}
		total += (in + 1) * out
		if total > MaxParams {
			return 0, fmt.Errorf("%w: %s has more than %d parameters", ErrSpec, s, MaxParams)
		}
	}
	return total, nil
}
