package fl_test

import (
	"errors"
	"fmt"
	"math"
	"testing"

	"github.com/cloisterfl/cloister/fl"
)

func TestVector(t *testing.T) {
	v := fl.Vector{3, 4}
	if got := v.Norm(); got != 5 {
		t.Fatalf("Norm = %v, want 5", got)
	}
	w := v.Clone()
	w[0] = 0
	if v[0] != 3 {
		t.Fatal("Clone shares storage")
	}
	if err := v.Add(2, fl.Vector{1, 1}); err != nil || v[0] != 5 || v[1] != 6 {
		t.Fatalf("Add: %v %v", v, err)
	}
	if err := v.Add(1, fl.Vector{1}); !errors.Is(err, fl.ErrDimension) {
		t.Fatalf("Add with wrong length: %v", err)
	}
	v.Scale(0.5)
	if v[0] != 2.5 || v[1] != 3 {
		t.Fatalf("Scale: %v", v)
	}
	if !v.Finite() || (fl.Vector{math.NaN()}).Finite() || (fl.Vector{math.Inf(1)}).Finite() {
		t.Fatal("Finite")
	}
}

func ExampleVector_Add() {
	global := fl.Vector{1, 1}
	delta := fl.Vector{0.5, -0.5}
	_ = global.Add(1, delta)
	fmt.Println(global, delta.Norm())
	// Output: [1.5 0.5] 0.7071067811865476
}
