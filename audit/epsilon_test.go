package audit

import (
	"errors"
	"path/filepath"
	"testing"
)

// The ε a log records adds up: each epsilon-spent record's total must be the
// sum of the log's micro_epsilon so far.
func TestEpsilonTotals(t *testing.T) {
	path := filepath.Join(t.TempDir(), "eps.log")
	l := open(t, path, coord)
	mustAppend(t, l, SessionStarted, Data{Session: "fed-1", Manifest: d("m")})
	mustAppend(t, l, EpsilonSpent, Data{Round: 1, MicroEpsilon: 4_728_000, TotalMicroEpsilon: 4_728_000, Delta: 1e-5})
	mustAppend(t, l, EpsilonSpent, Data{Round: 3, MicroEpsilon: 2_350_000, TotalMicroEpsilon: 7_078_000, Delta: 1e-5})
	for _, bad := range []Data{
		{Round: 4, MicroEpsilon: 1_000_000, TotalMicroEpsilon: 7_078_000}, // the total did not grow
		{Round: 4, MicroEpsilon: 1_000_000, TotalMicroEpsilon: 9_000_000}, // nor by this much
	} {
		if _, err := l.Append(EpsilonSpent, bad); !errors.Is(err, ErrInvariant) {
			t.Errorf("Append(%+v) = %v, want ErrInvariant", bad, err)
		}
	}
	for _, bad := range []struct {
		kind Kind
		data Data
	}{
		{EpsilonSpent, Data{Round: 4, MicroEpsilon: 1, Delta: 1}},
		{EpsilonSpent, Data{Round: 4, MicroEpsilon: 1, Delta: -1e-5}},
		{EpsilonSpent, Data{Round: 4, MicroEpsilon: 1, TotalMicroEpsilon: -1}},
		{BudgetExhausted, Data{Reason: "no round"}},
		{BudgetExhausted, Data{Round: 3, Reason: "x", Node: "node-1"}},
	} {
		if _, err := l.Append(bad.kind, bad.data); !errors.Is(err, ErrMalformed) {
			t.Errorf("Append(%s, %+v) = %v, want ErrMalformed", bad.kind, bad.data, err)
		}
	}
	mustAppend(t, l, BudgetExhausted, Data{Round: 3, TotalMicroEpsilon: 7_078_000, Delta: 1e-5,
		Reason: "round 4 would take ε from 7.078 to 9.011, past the budget of 8"})
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Verify(path, keys)
	if err != nil {
		t.Fatal(err)
	}
	if s.State.MicroEpsilon != 7_078_000 || s.Kinds[EpsilonSpent] != 2 || s.Kinds[BudgetExhausted] != 1 {
		t.Errorf("summary %+v", s)
	}
}
