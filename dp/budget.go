package dp

import (
	"encoding/binary"
	"fmt"
	"math"
)

// Budget is a federation's (ε, δ) privacy budget and the privacy already
// spent against it. Before a round, the coordinator (and every node, which
// trusts no one's word) calls Check with the round's sampling rate, noise
// multiplier and step count; after the round, Spend records it. Both answer
// with a *BudgetExceededError (matching ErrBudgetExceeded) when the total
// would pass, or has passed, the limit.
//
// ε is computed by an [Accountant] over [DefaultOrders] with the conversion
// of [Accountant.Epsilon]. The state serializes with MarshalBinary, so the
// coordinator and the nodes can persist it and restore it after a restart.
// A Budget is not safe for concurrent use.
type Budget struct {
	limit  float64
	delta  float64
	rounds uint64
	acct   Accountant
}

// NewBudget returns an unspent budget of epsilon at delta. epsilon must be
// positive and finite, delta in (0, 1).
func NewBudget(epsilon, delta float64) (*Budget, error) {
	if !(epsilon > 0) || math.IsInf(epsilon, 1) {
		return nil, invalid("budget ε=%v must be positive and finite", epsilon)
	}
	if err := checkDelta(delta); err != nil {
		return nil, err
	}
	return &Budget{limit: epsilon, delta: delta}, nil
}

// Limit returns the budget: ε and δ.
func (b *Budget) Limit() (epsilon, delta float64) { return b.limit, b.delta }

// Rounds returns how many times Spend has recorded a round.
func (b *Budget) Rounds() uint64 { return b.rounds }

// Spent returns the ε spent so far, at the budget's δ.
func (b *Budget) Spent() float64 {
	e, _, _ := b.acct.Epsilon(b.delta) // δ was checked by NewBudget or UnmarshalBinary
	return e
}

// Remaining returns the ε left, Limit − Spent, or 0 if none is.
func (b *Budget) Remaining() float64 { return math.Max(b.limit-b.Spent(), 0) }

// Accountant returns a copy of the accountant that holds the spent privacy.
func (b *Budget) Accountant() *Accountant { return b.acct.Clone() }

// Check reports whether a round of steps steps of the sampled Gaussian
// mechanism with sampling rate q and noise multiplier sigma fits in the
// budget: nil if the total ε after it would be at most the limit, a
// *BudgetExceededError if it would not, and an error wrapping ErrInvalid for
// bad arguments. A round without noise (sigma = 0, q > 0) never fits.
func (b *Budget) Check(q, sigma float64, steps int) error {
	if err := b.valid(); err != nil {
		return err
	}
	next := b.acct.Clone()
	if err := next.Compose(q, sigma, steps); err != nil {
		return err
	}
	e, _, _ := next.Epsilon(b.delta)
	if e > b.limit {
		return &BudgetExceededError{Spent: b.Spent(), Next: e, Limit: b.limit, Delta: b.delta}
	}
	return nil
}

// Spend records a round that has taken place. The round's privacy loss is
// real whatever the budget says, so Spend records it even when the total
// passes the limit, and then returns a *BudgetExceededError. It records
// nothing, and returns an error wrapping ErrInvalid, for bad arguments.
func (b *Budget) Spend(q, sigma float64, steps int) error {
	if err := b.valid(); err != nil {
		return err
	}
	spent := b.Spent()
	if err := b.acct.Compose(q, sigma, steps); err != nil {
		return err
	}
	b.rounds++
	if e := b.Spent(); e > b.limit {
		return &BudgetExceededError{Spent: spent, Next: e, Limit: b.limit, Delta: b.delta}
	}
	return nil
}

// valid rejects a Budget not made by NewBudget or UnmarshalBinary (the zero
// value), which has no limit to check against.
func (b *Budget) valid() error {
	if !(b.limit > 0 && b.delta > 0 && b.delta < 1) {
		return invalid("budget ε=%v, δ=%v: make a Budget with NewBudget", b.limit, b.delta)
	}
	return nil
}

// MicroEpsilon expresses eps in integer millionths, rounded up, for the
// audit log: MicroEpsilon(3.01) is 3010000. It rejects a negative, NaN or
// infinite eps, or one above 9e12.
func MicroEpsilon(eps float64) (int64, error) {
	if !(eps >= 0 && eps <= 9e12) {
		return 0, invalid("ε=%v cannot be expressed in micro-ε", eps)
	}
	return int64(math.Ceil(eps * 1e6)), nil
}

// EpsilonFromMicro converts integer millionths of ε back to ε.
func EpsilonFromMicro(micro int64) float64 { return float64(micro) / 1e6 }

// Serialized form of a Budget, version 1, little-endian:
//
//	"cdpB" | version byte 1 | float64 ε | float64 δ | uint64 rounds | accountant
//
// where accountant is the form of Accountant.MarshalBinary.
const (
	budgetMagic   = "cdpB"
	budgetVersion = 1
)

// MarshalBinary encodes the budget and what has been spent.
func (b *Budget) MarshalBinary() ([]byte, error) {
	out := append([]byte(budgetMagic), budgetVersion)
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(b.limit))
	out = binary.LittleEndian.AppendUint64(out, math.Float64bits(b.delta))
	out = binary.LittleEndian.AppendUint64(out, b.rounds)
	return b.acct.appendBinary(out), nil
}

// UnmarshalBinary decodes state written by MarshalBinary. It rejects
// anything malformed with an error wrapping ErrCorrupt and leaves b
// unchanged.
func (b *Budget) UnmarshalBinary(data []byte) error {
	const head = len(budgetMagic) + 1 + 3*8
	if len(data) < head || string(data[:4]) != budgetMagic {
		return fmt.Errorf("%w: not a budget (bad magic)", ErrCorrupt)
	}
	if v := data[4]; v != budgetVersion {
		return fmt.Errorf("%w: budget version %d, want %d", ErrCorrupt, v, budgetVersion)
	}
	limit := math.Float64frombits(binary.LittleEndian.Uint64(data[5:]))
	delta := math.Float64frombits(binary.LittleEndian.Uint64(data[13:]))
	rounds := binary.LittleEndian.Uint64(data[21:])
	if !(limit > 0) || math.IsInf(limit, 1) || !(delta > 0 && delta < 1) {
		return fmt.Errorf("%w: budget ε=%v, δ=%v", ErrCorrupt, limit, delta)
	}
	acct, rest, err := decodeAccountant(data[head:])
	if err != nil {
		return err
	}
	if len(rest) != 0 {
		return fmt.Errorf("%w: %d trailing bytes after the budget", ErrCorrupt, len(rest))
	}
	*b = Budget{limit: limit, delta: delta, rounds: rounds, acct: *acct}
	return nil
}
