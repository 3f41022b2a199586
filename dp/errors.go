package dp

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one of them (or
// an error from the injected io.Reader), so callers can branch with
// [errors.Is].
var (
	// ErrInvalid reports a parameter outside its domain: a non-positive
	// clipping norm, a sampling rate outside [0, 1], a negative noise
	// multiplier, a δ outside (0, 1), and so on. The wrapping error names the
	// parameter and quotes its value.
	ErrInvalid = errors.New("dp: invalid parameter")

	// ErrNonFinite reports a vector element that is NaN or ±Inf.
	ErrNonFinite = errors.New("dp: non-finite value")

	// ErrRange reports a value too large for the fixed-point grid on which
	// noise is added (see [Noise]).
	ErrRange = errors.New("dp: value out of range for the noise grid")

	// ErrRandomness reports a random source that produced output so
	// improbable that it cannot be a working random source (for example a
	// reader that returns only zero bytes). A real source triggers it with
	// probability below 2^-1000.
	ErrRandomness = errors.New("dp: random source is degenerate")

	// ErrUnreachable reports a calibration target that no noise multiplier
	// or step count in the searched range attains.
	ErrUnreachable = errors.New("dp: privacy target is unreachable")

	// ErrBudgetExceeded is matched (with errors.Is) by every
	// *BudgetExceededError.
	ErrBudgetExceeded = errors.New("dp: privacy budget exceeded")

	// ErrCorrupt reports serialized accountant or budget state that does not
	// decode.
	ErrCorrupt = errors.New("dp: corrupt state")
)

// BudgetExceededError reports that a round would take (for [Budget.Check]) or
// has taken (for [Budget.Spend]) the privacy loss past the budget.
type BudgetExceededError struct {
	Spent float64 // ε spent before the round
	Next  float64 // ε after the round (may be +Inf)
	Limit float64 // the budget's ε
	Delta float64 // the budget's δ, at which every ε above is stated
}

func (e *BudgetExceededError) Error() string {
	return fmt.Sprintf("dp: privacy budget exceeded: spent ε=%.6g, after the round ε=%.6g, limit ε=%.6g (δ=%g)",
		e.Spent, e.Next, e.Limit, e.Delta)
}

// Is reports whether target is ErrBudgetExceeded.
func (e *BudgetExceededError) Is(target error) bool { return target == ErrBudgetExceeded }

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
}
