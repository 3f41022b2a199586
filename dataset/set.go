package dataset

import "fmt"

// Set is a labelled dataset held in memory, with its features stored
// row-major in one slice.
type Set struct {
	Name     string    // where it came from, for messages
	X        []float64 // Len()×Features values, row-major
	Y        []int     // one label per row, in [0, Classes)
	Features int       // values per row
	Classes  int       // number of distinct labels the task has

	// ClassNames, when not nil, names each class: ClassNames[y] is the
	// name of label y, and len(ClassNames) == Classes.
	ClassNames []string
}

// Len returns the number of examples.
func (s *Set) Len() int { return len(s.Y) }

// Row returns the features of example i (a view, not a copy).
func (s *Set) Row(i int) []float64 { return s.X[i*s.Features : (i+1)*s.Features] }

// Subset returns a new Set holding copies of the examples at idx, in order.
func (s *Set) Subset(idx []int) *Set {
	out := &Set{
		Name:     s.Name,
		X:        make([]float64, 0, len(idx)*s.Features),
		Y:        make([]int, 0, len(idx)),
		Features: s.Features,
		Classes:  s.Classes,

		ClassNames: s.ClassNames,
	}
	for _, i := range idx {
		out.X = append(out.X, s.Row(i)...)
		out.Y = append(out.Y, s.Y[i])
	}
	return out
}

// Validate checks the Set's internal consistency.
func (s *Set) Validate() error {
	if s.Features <= 0 {
		return fmt.Errorf("dataset %s: %d features", s.Name, s.Features)
	}
	if len(s.X) != len(s.Y)*s.Features {
		return fmt.Errorf("dataset %s: %d values for %d rows of %d features", s.Name, len(s.X), len(s.Y), s.Features)
	}
	if s.ClassNames != nil && len(s.ClassNames) != s.Classes {
		return fmt.Errorf("dataset %s: %d class names for %d classes", s.Name, len(s.ClassNames), s.Classes)
	}
	for i, y := range s.Y {
		if y < 0 || y >= s.Classes {
			return fmt.Errorf("dataset %s: row %d: label %d outside [0, %d)", s.Name, i, y, s.Classes)
		}
	}
	return nil
}

// Split is a dataset divided into training and held-out test examples.
type Split struct {
	Train, Test *Set
}
