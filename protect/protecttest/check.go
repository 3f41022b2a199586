package protecttest

import (
	"errors"
	"fmt"
	"math"
	"runtime/debug"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/protect"
)

// maxReports bounds the failures reported per entry point or check; the
// rest are counted.
const maxReports = 8

// panicError is a panic recovered from the scheme under test.
type panicError struct {
	value any
	stack []byte
}

func (p *panicError) Error() string { return fmt.Sprintf("panic: %v\n%s", p.value, p.stack) }

// try calls f and turns a panic into a *panicError.
func try(f func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return f()
}

var sentinelNames = map[error]string{
	protect.ErrMalformed:       "protect.ErrMalformed",
	protect.ErrForeign:         "protect.ErrForeign",
	protect.ErrRevealed:        "protect.ErrRevealed",
	protect.ErrNotEnoughShares: "protect.ErrNotEnoughShares",
	protect.ErrNotMember:       "protect.ErrNotMember",
	protect.ErrNotReady:        "protect.ErrNotReady",
	protect.ErrRange:           "protect.ErrRange",
}

// rejected is what hostile bytes must give.
var rejected = []error{protect.ErrMalformed, protect.ErrForeign}

func describe(wants []error) string {
	if len(wants) == 0 {
		return "an error"
	}
	names := make([]string, len(wants))
	for i, w := range wants {
		if names[i] = sentinelNames[w]; names[i] == "" {
			names[i] = fmt.Sprintf("%q", w)
		}
	}
	return "an error wrapping " + strings.Join(names, " or ")
}

// wraps reports whether err wraps one of wants (any error if wants is empty).
func wraps(err error, wants []error) bool {
	if err == nil {
		return false
	}
	if len(wants) == 0 {
		return true
	}
	for _, w := range wants {
		if errors.Is(err, w) {
			return true
		}
	}
	return false
}

// expect fails t unless err wraps one of wants (any error if wants is
// empty), and reports whether it did.
func expect(t *testing.T, what string, err error, wants ...error) bool {
	t.Helper()
	var pe *panicError
	switch {
	case errors.As(err, &pe):
		t.Errorf("%s: %v", what, pe)
	case err == nil:
		t.Errorf("%s: got no error, want %s", what, describe(wants))
	case !wraps(err, wants):
		t.Errorf("%s: got %q, want %s", what, err, describe(wants))
	default:
		return true
	}
	return false
}

// must stops t if err is not nil: the step is needed by what follows.
func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// succeed fails t if err is not nil, and reports whether it was nil.
func succeed(t *testing.T, what string, err error) bool {
	t.Helper()
	if err != nil {
		t.Errorf("%s: %v", what, err)
		return false
	}
	return true
}

// ledgerCall is one call of Ledger.Record.
type ledgerCall struct {
	round  fl.Round
	digest [32]byte
}

// recLedger is a Ledger that records its calls, then fails with fail or
// passes them on to inner (or accepts them, if inner is nil).
type recLedger struct {
	inner protect.Ledger
	fail  error
	calls []ledgerCall
}

func (l *recLedger) Record(r fl.Round, digest [32]byte) error {
	l.calls = append(l.calls, ledgerCall{r, digest})
	if l.fail != nil {
		return l.fail
	}
	if l.inner != nil {
		return l.inner.Record(r, digest)
	}
	return nil
}

// input is one party's update.
type input struct {
	v fl.Vector
	w float64
}

// checkSum compares got with the sum of in. Every coordinate may be off by
// tol, plus the rounding of a float64 sum: (n+1)·2⁻⁵²·Σ|x|.
func checkSum(t *testing.T, what string, got protect.Sum, in map[fl.NodeID]input, dim int, tol float64) {
	t.Helper()
	if len(got.Vector) != dim {
		t.Errorf("%s: decrypted %d values, want %d", what, len(got.Vector), dim)
		return
	}
	n := float64(len(in) + 1)
	var bad []string
	check := func(name string, got float64, xs []float64) {
		want, abs := sum(xs)
		allowed := tol + n*0x1p-52*abs
		if d := math.Abs(got - want); !(d <= allowed) {
			bad = append(bad, fmt.Sprintf("%s = %v, want %v (off by %.3g, allowed %.3g)", name, got, want, d, allowed))
		}
	}
	xs := make([]float64, 0, len(in))
	for _, x := range in {
		xs = append(xs, x.w)
	}
	check("weight", got.Weight, xs)
	for i := range dim {
		xs = xs[:0]
		for _, x := range in {
			xs = append(xs, x.v[i])
		}
		check(fmt.Sprintf("value %d", i), got.Vector[i], xs)
	}
	if len(bad) > 0 {
		more := ""
		if len(bad) > 5 {
			more = fmt.Sprintf("\n\t… and %d more", len(bad)-5)
			bad = bad[:5]
		}
		t.Errorf("%s: the decrypted sum of %d inputs is wrong:\n\t%s%s", what, len(in), strings.Join(bad, "\n\t"), more)
	}
}

// sum returns the compensated (Neumaier) sum of xs and the sum of their
// absolute values.
func sum(xs []float64) (s, abs float64) {
	var c float64
	for _, x := range xs {
		t := s + x
		if math.Abs(s) >= math.Abs(x) {
			c += (s - t) + x
		} else {
			c += (x - t) + s
		}
		s = t
		abs += math.Abs(x)
	}
	return s + c, abs
}
