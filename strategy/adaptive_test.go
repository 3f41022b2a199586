package strategy

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

var deltas = []fl.Vector{{1, -2, 0.5}, {0.5, -1, -0.25}, {2, 0, 0.1}}

func TestAdaptiveFirstStep(t *testing.T) {
	// Worked by hand: m = (1−β₁)Δ, v = (1−β₂)Δ², x = η·m/(√v+τ).
	s, _ := NewFedAdam(0.1, 0.9, 0.99, 1e-3)
	next, err := s.Apply(fl.Vector{0, 0}, fl.Vector{1, -2})
	if err != nil {
		t.Fatal(err)
	}
	if want := (fl.Vector{0.1 * 0.1 / 0.101, -0.1 * 0.2 / 0.201}); !equal(next, want) {
		t.Errorf("FedAdam step = %v, want %v", next, want)
	}
	// FedAdagrad with β₁ = 0: x = η·Δ/(|Δ|+τ).
	a, _ := NewFedAdagrad(0.1, 0, 1e-3)
	next, _ = a.Apply(fl.Vector{0, 0}, fl.Vector{1, -2})
	if want := (fl.Vector{0.1 / 1.001, -0.2 / 2.001}); !equal(next, want) {
		t.Errorf("FedAdagrad step = %v, want %v", next, want)
	}
}

// Reference values from an independent line-by-line transcription of Reddi
// et al.'s Algorithm 2 (Python floats).
func TestAdaptiveKnownAnswer(t *testing.T) {
	for _, tc := range []struct {
		spec string
		want fl.Vector
	}{
		{"fedadam", fl.Vector{0.3655762971299097, 0.6621253088570758, -0.8178026559341296}},
		{"fedyogi", fl.Vector{0.03647794468439448, 0.9663639142464434, -0.9818360391612696}},
		{"fedadagrad", fl.Vector{0.2318305726703856, 0.8553486065222242, -0.9272630383210047}},
	} {
		s, err := New(tc.spec)
		if err != nil {
			t.Fatal(err)
		}
		x := fl.Vector{0, 1, -1}
		for _, d := range deltas {
			if x, err = s.Apply(x, d); err != nil {
				t.Fatal(err)
			}
		}
		if !equal(x, tc.want) {
			t.Errorf("%s: after 3 rounds x = %v, want %v", tc.spec, x, tc.want)
		}
	}
}

// Stopping after any round, sealing the state and resuming in a fresh
// strategy gives bit-identical models to an uninterrupted run.
func TestStateRoundTrip(t *testing.T) {
	for _, spec := range []string{"fedavg:0.7", "fedadam", "fedyogi:tau=1e-2", "fedadagrad:b1=0.5", "scaffold:frac=0.5"} {
		run := func(cut int) fl.Vector {
			s, _ := New(spec)
			x := fl.Vector{0, 1, -1, 2, 0.5, 3}
			for r := 0; r < 4; r++ {
				if r == cut {
					b, err := s.MarshalBinary()
					if err != nil {
						t.Fatal(err)
					}
					s, _ = New(spec)
					if err := s.UnmarshalBinary(b); err != nil {
						t.Fatalf("%s: UnmarshalBinary: %v", spec, err)
					}
				}
				d := append(deltas[r%3].Clone(), deltas[(r+1)%3]...)
				var err error
				if x, err = s.Apply(x, d); err != nil {
					t.Fatal(err)
				}
			}
			return x
		}
		want := run(-1)
		for cut := 0; cut < 4; cut++ {
			if got := run(cut); !bitEqual(got, want) {
				t.Errorf("%s: resuming after round %d: %v, want %v", spec, cut, got, want)
			}
		}
	}
}

func TestStateRejects(t *testing.T) {
	adam, _ := New("fedadam")
	adam.Apply(fl.Vector{0, 0}, fl.Vector{1, 2})
	good, _ := adam.MarshalBinary()

	negative, _ := New("fedadam")
	negative.(*Adaptive).v = fl.Vector{-1, 1}
	negative.(*Adaptive).m = fl.Vector{0, 0}
	neg, _ := negative.MarshalBinary()

	nan := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(nan[len(nan)-8:], math.Float64bits(math.NaN()))

	huge := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(huge[len(huge)-16-8-16-8:], 1<<62) // length of m

	for _, tc := range []struct {
		name, spec string
		data       []byte
	}{
		{"other lr", "fedadam:lr=0.2", good},
		{"other strategy", "fedyogi", good},
		{"fedavg reading adam", "fedavg", good},
		{"empty", "fedadam", nil},
		{"garbage", "fedadam", []byte("hello, world")},
		{"truncated", "fedadam", good[:len(good)-1]},
		{"trailing", "fedadam", append(append([]byte(nil), good...), 0)},
		{"nan", "fedadam", nan},
		{"huge length", "fedadam", huge},
		{"negative v", "fedadam", neg},
	} {
		s, _ := New(tc.spec)
		before, _ := s.MarshalBinary()
		if err := s.UnmarshalBinary(tc.data); !errors.Is(err, ErrState) {
			t.Errorf("%s: UnmarshalBinary = %v, want ErrState", tc.name, err)
		}
		if after, _ := s.MarshalBinary(); string(after) != string(before) {
			t.Errorf("%s: failed UnmarshalBinary changed the state", tc.name)
		}
	}
	fresh, _ := New("fedadam")
	if err := fresh.UnmarshalBinary(good); err != nil {
		t.Errorf("UnmarshalBinary(good) = %v", err)
	}
}

func TestAdaptiveDimensionFixed(t *testing.T) {
	s, _ := New("fedyogi")
	if _, err := s.Apply(fl.Vector{0, 0}, fl.Vector{1, 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(fl.Vector{0, 0, 0}, fl.Vector{1, 1, 1}); !errors.Is(err, fl.ErrDimension) {
		t.Errorf("Apply with a new length = %v, want fl.ErrDimension", err)
	}
}

func TestScaffoldApply(t *testing.T) {
	s, _ := New("scaffold:lr=0.5,frac=0.25")
	// x = (1, 2), c = (0, 4); Δ̄y = (2, 2), Δ̄c = (4, -4).
	next, err := s.Apply(fl.Vector{1, 2, 0, 4}, fl.Vector{2, 2, 4, -4})
	if err != nil {
		t.Fatal(err)
	}
	if want := (fl.Vector{2, 3, 1, 3}); !equal(next, want) {
		t.Errorf("Apply = %v, want %v", next, want)
	}
	if _, err := s.Apply(fl.Vector{1, 2, 3}, fl.Vector{1, 2, 3}); !errors.Is(err, fl.ErrDimension) {
		t.Errorf("Apply on odd length = %v, want fl.ErrDimension", err)
	}
}

func FuzzUnmarshalBinary(f *testing.F) {
	s, _ := New("fedadam")
	s.Apply(fl.Vector{0, 0}, fl.Vector{1, 2})
	b, _ := s.MarshalBinary()
	f.Add(b)
	f.Add([]byte("CLST\x01"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, _ := New("fedadam")
		if s.UnmarshalBinary(data) != nil {
			return
		}
		// Whatever was accepted re-encodes identically and can be applied.
		again, _ := s.MarshalBinary()
		if string(again) != string(data) {
			t.Fatalf("re-encoding differs")
		}
		m, _ := s.(*Adaptive).Moments()
		if _, err := s.Apply(make(fl.Vector, len(m)), make(fl.Vector, len(m))); err != nil {
			t.Fatalf("Apply after accepted state: %v", err)
		}
	})
}

func bitEqual(a, b fl.Vector) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float64bits(a[i]) != math.Float64bits(b[i]) {
			return false
		}
	}
	return true
}
