package dataset

import (
	"math"
	"slices"
	"strings"
	"testing"
)

func TestStandardize(t *testing.T) {
	// Feature 0 varies, feature 1 is constant in training (0.1 is inexact in
	// binary, so a naive std would be tiny but not 0).
	train := &Set{Name: "train", Features: 2, Classes: 2, X: []float64{1, 0.1, 3, 0.1, 5, 0.1, 7, 0.1}, Y: []int{0, 1, 0, 1}}
	test := &Set{Name: "test", Features: 2, Classes: 2, X: []float64{4, 0.1, 9, 2.1}, Y: []int{0, 1}}
	z, err := Split{Train: train, Test: test}.Standardize()
	if err != nil {
		t.Fatal(err)
	}
	std := math.Sqrt(5)
	if !slices.Equal(z.Mean, []float64{4, 0.1}) || z.Std[0] != std || z.Std[1] != 1 {
		t.Fatalf("fitted %+v", z)
	}
	want := []float64{-3 / std, 0, -1 / std, 0, 1 / std, 0, 3 / std, 0}
	for i, x := range train.X {
		if math.Abs(x-want[i]) > 1e-12 {
			t.Fatalf("train %v, want %v", train.X, want)
		}
	}
	// The test set uses the training statistics.
	if wantTest := []float64{0, 0, 5 / std, 2}; math.Abs(test.X[2]-wantTest[2]) > 1e-12 || math.Abs(test.X[3]-wantTest[3]) > 1e-12 || test.X[0] != 0 || test.X[1] != 0 {
		t.Fatalf("test %v, want %v", test.X, wantTest)
	}
}

func TestZScoreErrors(t *testing.T) {
	if _, err := FitZScore(&Set{Name: "empty", Features: 3}); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty set: %v", err)
	}
	z := ZScore{Mean: []float64{0}, Std: []float64{1}}
	if err := z.Apply(&Set{Name: "wide", Features: 2}); err == nil || !strings.Contains(err.Error(), "wide, which has 2") {
		t.Errorf("feature mismatch: %v", err)
	}
	if _, err := (Split{}).Standardize(); err == nil {
		t.Error("empty split: no error")
	}
}
