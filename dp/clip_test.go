package dp

import (
	"errors"
	"math"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

func TestClip(t *testing.T) {
	tests := []struct {
		name  string
		v     fl.Vector
		c     float64
		scale float64
	}{
		{"inside", fl.Vector{0.3, 0.4}, 1, 1},
		{"on the ball", fl.Vector{3, 4}, 5, 1},
		{"outside", fl.Vector{3, 4}, 1, 0.2},
		{"zero", fl.Vector{0, 0, 0}, 1, 1},
		{"empty", fl.Vector{}, 1, 1},
		{"nil", nil, 1, 1},
		{"huge", fl.Vector{1e300, -1e300, 1e300}, 1, 1 / (math.Sqrt(3) * 1e300)},
		{"tiny", fl.Vector{1e-300, 1e-300}, 1e-310, 1e-310 / (math.Sqrt2 * 1e-300)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orig := tt.v.Clone()
			scale, err := Clip(tt.v, tt.c)
			if err != nil {
				t.Fatal(err)
			}
			if math.Abs(scale-tt.scale) > 1e-12*tt.scale {
				t.Errorf("scale = %v, want %v", scale, tt.scale)
			}
			if n := norm(tt.v); n > tt.c {
				t.Errorf("norm after clipping %v > %v", n, tt.c)
			}
			for i := range orig {
				if tt.v[i] != orig[i]*scale && math.Abs(tt.v[i]-orig[i]*scale) > 1e-15*math.Abs(orig[i]*scale) {
					t.Errorf("element %d = %v, want %v·%v (direction kept)", i, tt.v[i], orig[i], scale)
				}
			}
		})
	}
}

// TestClipNeverAbove checks the guarantee on many random vectors, where
// rounding could leave the norm a hair above c.
func TestClipNeverAbove(t *testing.T) {
	r := newSource(seeded(9), 4096)
	for trial := range 2000 {
		v := make(fl.Vector, 1+trial%300)
		for i := range v {
			u, _ := r.bits(53)
			v[i] = (float64(u)/(1<<53) - 0.5) * 10
		}
		c := 0.1 + float64(trial%7)/3
		if _, err := Clip(v, c); err != nil {
			t.Fatal(err)
		}
		if n := norm(v); n > c {
			t.Fatalf("trial %d: norm %v > c = %v", trial, n, c)
		}
	}
}

func TestClipErrors(t *testing.T) {
	for _, c := range []float64{0, -1, math.NaN(), math.Inf(1)} {
		if _, err := Clip(fl.Vector{1}, c); !errors.Is(err, ErrInvalid) {
			t.Errorf("Clip(c=%v) = %v, want ErrInvalid", c, err)
		}
	}
	for _, bad := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		v := fl.Vector{10, bad, 10}
		if _, err := Clip(v, 1); !errors.Is(err, ErrNonFinite) {
			t.Errorf("Clip with %v = %v, want ErrNonFinite", bad, err)
		}
		if v[0] != 10 || v[2] != 10 {
			t.Errorf("vector changed on error: %v", v)
		}
	}
}

func BenchmarkClip(b *testing.B) {
	v := make(fl.Vector, 1000000)
	for i := range v {
		v[i] = float64(i%7) - 3
	}
	for b.Loop() {
		if _, err := Clip(v, 1); err != nil {
			b.Fatal(err)
		}
		v[0] += 10 // outside the ball again
	}
}
