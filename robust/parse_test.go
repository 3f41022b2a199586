package robust

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		spec string
		n    int
		want string
		name string
	}{
		{"mean", 5, "mean", "Mean"},
		{"MEAN", 5, "mean", "Mean"},
		{"median", 10, "median:f=4", "FedMedian"},
		{"median:2", 10, "median:f=2", "FedMedian"},
		{"median:f=0", 1, "median:f=0", "FedMedian"},
		{"trimmed", 10, "trimmed:beta=0.2,f=2", "FedTrimmedAvg"},
		{"trimmed:0.1", 10, "trimmed:beta=0.1,f=1", "FedTrimmedAvg"},
		{"trimmed:0.15", 20, "trimmed:beta=0.15,f=3", "FedTrimmedAvg"},
		{"trimmed:beta=0.3,f=2", 10, "trimmed:beta=0.3,f=2", "FedTrimmedAvg"},
		{"krum", 10, "krum:f=3", "Krum"},
		{"krum", 3, "krum:f=0", "Krum"},
		{"krum:f=1", 10, "krum:f=1", "Krum"},
		{"multikrum", 10, "multikrum:m=7,f=3", "MultiKrum"},
		{"multikrum:5", 10, "multikrum:m=5,f=3", "MultiKrum"},
		{"multikrum:m=5,f=2", 10, "multikrum:m=5,f=2", "MultiKrum"},
		{"bulyan", 15, "bulyan:f=3", "Bulyan"},
		{"bulyan", 3, "bulyan:f=0", "Bulyan"},
		{"cclip", 10, "cclip:tau=0,iters=3,f=4", "CenteredClip"},
		{"cclip:1.5", 10, "cclip:tau=1.5,iters=3,f=4", "CenteredClip"},
		{"cclip:tau=1,iters=1,f=2", 10, "cclip:tau=1,iters=1,f=2", "CenteredClip"},
	} {
		r, err := Parse(tc.spec, tc.n)
		if err != nil {
			t.Errorf("Parse(%q, %d): %v", tc.spec, tc.n, err)
			continue
		}
		if r.String() != tc.want || r.Name() != tc.name {
			t.Errorf("Parse(%q, %d) = %s %q, want %s %q", tc.spec, tc.n, r.Name(), r, tc.name, tc.want)
		}
		if again, err := Parse(r.String(), tc.n); err != nil || again.String() != r.String() {
			t.Errorf("Parse(%q, %d) = %v, %v", r.String(), tc.n, again, err)
		}
	}
}

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		spec string
		n    int
		want error
	}{
		{"", 5, ErrSpec},
		{"average", 5, ErrSpec},
		{"mean:1", 5, ErrSpec},
		{"median:", 5, ErrSpec},
		{"median:x", 5, ErrSpec},
		{"median:1.5", 5, ErrSpec},
		{"median:-1", 5, ErrSpec},
		{"median:f=1,f=1", 5, ErrSpec},
		{"median:g=1", 5, ErrSpec},
		{"median:NaN", 5, ErrSpec},
		{"trimmed:0.5", 5, ErrSpec},
		{"trimmed:beta=-0.1", 5, ErrSpec},
		{"cclip:tau=-1", 5, ErrSpec},
		{"krum", 0, ErrSpec},
		{"median:f=3", 5, ErrInfeasible},
		{"trimmed:beta=0.1,f=2", 10, ErrInfeasible},
		{"krum", 2, ErrInfeasible},
		{"krum:f=2", 6, ErrInfeasible},
		{"multikrum:m=9", 10, ErrInfeasible},
		{"bulyan:f=1", 6, ErrInfeasible},
		{"bulyan", 2, ErrInfeasible},
		{"cclip:iters=0", 5, ErrInfeasible},
	} {
		r, err := Parse(tc.spec, tc.n)
		if !errors.Is(err, tc.want) || r != nil {
			t.Errorf("Parse(%q, %d) = %v, %v; want %v", tc.spec, tc.n, r, err, tc.want)
		} else if !strings.Contains(err.Error(), `"`+tc.spec+`"`) {
			t.Errorf("Parse(%q, %d) error %q does not quote the spec", tc.spec, tc.n, err)
		}
	}
}

func benchUpdates(n, dim int) []fl.Vector {
	return honest(rand.New(rand.NewPCG(1, 1)), n, dim, 1)
}

func benchRule(b *testing.B, spec string) {
	updates := benchUpdates(25, 100_000)
	r, err := Parse(spec, len(updates))
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(25 * 100_000 * 8))
	b.ResetTimer()
	for b.Loop() {
		if _, err := r.Aggregate(updates); err != nil {
			b.Fatal(err)
		}
	}
}

// Baseline: the plain mean, measured in the same run.
func BenchmarkMean25x100k(b *testing.B)        { benchRule(b, "mean") }
func BenchmarkMedian25x100k(b *testing.B)      { benchRule(b, "median") }
func BenchmarkTrimmedMean25x100k(b *testing.B) { benchRule(b, "trimmed:0.2") }
func BenchmarkKrum25x100k(b *testing.B)        { benchRule(b, "krum") }
func BenchmarkMultiKrum25x100k(b *testing.B)   { benchRule(b, "multikrum") }
func BenchmarkBulyan25x100k(b *testing.B)      { benchRule(b, "bulyan") }
func BenchmarkCenteredClip25x100k(b *testing.B) {
	benchRule(b, "cclip:tau=1,iters=3")
}

func FuzzParse(f *testing.F) {
	for _, s := range []string{"mean", "median:f=2", "trimmed:beta=0.3,f=2", "multikrum:m=5", "bulyan", "cclip:tau=1,iters=2"} {
		f.Add(s, 11)
	}
	f.Fuzz(func(t *testing.T, spec string, n int) {
		n = n % 64
		r, err := Parse(spec, n)
		if err != nil {
			if r != nil {
				t.Fatal("rule and error")
			}
			return
		}
		if _, err := Parse(r.String(), n); err != nil {
			t.Fatalf("canonical spec %q: %v", r, err)
		}
		updates := make([]fl.Vector, n)
		for i := range updates {
			updates[i] = fl.Vector{float64(i), -float64(i)}
		}
		if got, err := r.Aggregate(updates); err != nil || !got.Finite() {
			t.Fatalf("%s on %d updates: %v, %v", r, n, got, err)
		}
	})
}
