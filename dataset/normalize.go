package dataset

import (
	"errors"
	"fmt"
	"math"
)

// ZScore standardizes features: x ↦ (x − Mean) / Std, per feature. Fit it
// on training data only, then apply it to training and test data alike, so
// that nothing about the test set leaks into training.
type ZScore struct {
	Mean, Std []float64 // per feature; Std is never 0
}

// FitZScore computes the per-feature mean and (population) standard
// deviation of s. A constant feature gets Std 1, so it standardizes to 0
// rather than NaN.
func FitZScore(s *Set) (ZScore, error) {
	n := s.Len()
	if n == 0 || s.Features <= 0 || len(s.X) != n*s.Features {
		return ZScore{}, fmt.Errorf("fitting z-score on %s: %d examples of %d features in %d values", s.Name, n, s.Features, len(s.X))
	}
	z := ZScore{Mean: make([]float64, s.Features), Std: make([]float64, s.Features)}
	for i := range n {
		for j, x := range s.Row(i) {
			z.Mean[j] += x
		}
	}
	for j := range z.Mean {
		z.Mean[j] /= float64(n)
	}
	constant := make([]bool, s.Features)
	for j := range constant {
		constant[j] = true
	}
	first := s.Row(0)
	for i := range n {
		for j, x := range s.Row(i) {
			d := x - z.Mean[j]
			z.Std[j] += d * d
			constant[j] = constant[j] && x == first[j]
		}
	}
	for j := range z.Std {
		z.Std[j] = math.Sqrt(z.Std[j] / float64(n))
		if constant[j] || !(z.Std[j] > 0) {
			z.Std[j] = 1
		}
	}
	return z, nil
}

// Apply standardizes s in place.
func (z ZScore) Apply(s *Set) error {
	if s.Features != len(z.Mean) || len(z.Std) != len(z.Mean) {
		return fmt.Errorf("applying a z-score of %d features to %s, which has %d", len(z.Mean), s.Name, s.Features)
	}
	for i := range s.Len() {
		row := s.Row(i)
		for j := range row {
			row[j] = (row[j] - z.Mean[j]) / z.Std[j]
		}
	}
	return nil
}

// Standardize fits a [ZScore] on sp.Train and applies it to sp.Train and
// sp.Test, in place. It returns the fitted ZScore, which new data for the
// same model must also go through.
func (sp Split) Standardize() (ZScore, error) {
	if sp.Train == nil || sp.Test == nil {
		return ZScore{}, errors.New("standardizing a split without training or test set")
	}
	z, err := FitZScore(sp.Train)
	if err != nil {
		return ZScore{}, err
	}
	if err := z.Apply(sp.Train); err != nil {
		return ZScore{}, err
	}
	if err := z.Apply(sp.Test); err != nil {
		return ZScore{}, err
	}
	return z, nil
}
