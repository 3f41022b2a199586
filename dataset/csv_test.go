package dataset

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func writeCSV(t testing.TB, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "data.csv")
	writeFile(t, path, []byte(text))
	return path
}

// irisLike returns a CSV of n rows with two features and string labels.
func irisLike(n int) string {
	var b strings.Builder
	b.WriteString("width,species,height\n")
	names := []string{"setosa", "versicolor", "virginica"}
	for i := range n {
		b.WriteString(strings.Join([]string{strconv.Itoa(i), names[i%3], strconv.Itoa(2 * i)}, ",") + "\n")
	}
	return b.String()
}

func TestLoadCSV(t *testing.T) {
	path := writeCSV(t, irisLike(20))
	sp, err := LoadCSV(path, "species", 0.25, 7)
	if err != nil {
		t.Fatal(err)
	}
	if sp.Train.Len() != 15 || sp.Test.Len() != 5 {
		t.Fatalf("split %d/%d, want 15/5", sp.Train.Len(), sp.Test.Len())
	}
	for _, s := range []*Set{sp.Train, sp.Test} {
		if err := s.Validate(); err != nil {
			t.Fatal(err)
		}
		if s.Features != 2 || s.Classes != 3 || !slices.Equal(s.ClassNames, []string{"setosa", "versicolor", "virginica"}) {
			t.Fatalf("%d features, classes %v", s.Features, s.ClassNames)
		}
	}
	// Standardized on the training rows: mean 0, variance 1 there.
	for j := range 2 {
		var sum, sq float64
		for i := range sp.Train.Len() {
			x := sp.Train.Row(i)[j]
			sum, sq = sum+x, sq+x*x
		}
		n := float64(sp.Train.Len())
		if math.Abs(sum/n) > 1e-12 || math.Abs(sq/n-1) > 1e-12 {
			t.Errorf("feature %d: train mean %v, variance %v", j, sum/n, sq/n)
		}
	}

	again, err := LoadCSV(path, "species", 0.25, 7)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(again.Test.X, sp.Test.X) || !slices.Equal(again.Train.Y, sp.Train.Y) {
		t.Error("same seed gave a different split")
	}
	other, err := LoadCSV(path, "species", 0.25, 8)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Equal(other.Test.X, sp.Test.X) {
		t.Error("seeds 7 and 8 gave the same test set")
	}
}

func TestLoadCSVLabels(t *testing.T) {
	tests := []struct {
		name, text string
		names      []string
		y          []int
	}{
		{"integers sort numerically", "x,y\n1,10\n2,2\n3,-1\n4,02\n", []string{"-1", "2", "10"}, []int{2, 1, 0, 1}},
		{"mixed sort as strings", "x,y\n1,10\n2,2\n3,b\n4,a\n", []string{"10", "2", "a", "b"}, []int{0, 1, 3, 2}},
		{"spaces, quotes and BOM", "\ufeff x , \"y\"\n 1.5 , cat \n-2e1,\"dog\"\n", []string{"cat", "dog"}, []int{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := readCSV(strings.NewReader(tt.text), "t.csv", "y")
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(s.ClassNames, tt.names) || !slices.Equal(s.Y, tt.y) {
				t.Errorf("got names %q labels %v, want %q %v", s.ClassNames, s.Y, tt.names, tt.y)
			}
			if err := s.Validate(); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestLoadCSVErrors(t *testing.T) {
	tests := []struct {
		name, text, label string
		want              string // the whole message, after the path
		line              int
		column            string
	}{
		{"not a number", "age,y\n1,a\n2,b\nabc,a\n", "y", `:4: column "age": "abc" is not a number`, 4, "age"},
		{"not finite", "age,y\n1,a\nNaN,b\n", "y", `:3: column "age": "NaN" is not a finite number`, 3, "age"},
		{"out of range", "age,y\n1e999,a\n", "y", `:2: column "age": "1e999" is out of range`, 2, "age"},
		{"missing value", "age,w,y\n1,,a\n", "y", `:2: column "w": missing value`, 2, "w"},
		{"empty label", "age,y\n1,a\n2, \n", "y", `:3: column "y": missing label`, 3, "y"},
		{"short row", "age,w,y\n1,2,a\n3,4\n", "y", `:3: column "y": missing label: the row has 2 fields, the header 3`, 3, "y"},
		{"short row, label present", "y,age,w\na,1,2\nb,3\n", "y", `:3: the row has 2 fields, the header 3`, 3, ""},
		{"long row", "age,y\n1,a\n2,b,3\n", "y", `:3: the row has 3 fields, the header 2`, 3, ""},
		{"unknown label", "age,weight,kind\n1,2,a\n", "species", `:1: column "species": no such label column; the columns are "age", "weight", "kind"`, 1, "species"},
		{"duplicate column", "a,b,a\n1,2,3\n", "b", `:1: column "a": duplicate column name`, 1, "a"},
		{"no features", "y\na\nb\n", "y", `:1: no feature columns besides the label "y"`, 1, ""},
		{"no rows", "age,y\n", "y", `: no data rows after the header`, 0, ""},
		{"empty file", "", "y", `: empty file; want a header row`, 0, ""},
		{"one class", "age,y\n1,a\n2,a\n", "y", `: column "y": every row has label "a"; need at least two classes`, 0, "y"},
		{"multi-line field", "age,y\n1,\"a\nb\"\nx,c\n", "y", `:4: column "age": "x" is not a number`, 4, "age"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeCSV(t, tt.text)
			_, err := LoadCSV(path, tt.label, 0, 1)
			if err == nil || err.Error() != path+tt.want {
				t.Fatalf("got error\n\t%v\nwant\n\t%s", err, path+tt.want)
			}
			var pe *ParseError
			if !errors.As(err, &pe) || pe.File != path || pe.Line != tt.line || pe.Column != tt.column {
				t.Errorf("got %#v, want a *ParseError at line %d, column %q", pe, tt.line, tt.column)
			}
		})
	}
}

func TestLoadCSVOtherErrors(t *testing.T) {
	good := writeCSV(t, strings.Replace(irisLike(10), "species", "y", 1))
	tests := []struct {
		name, path string
		frac       float64
		want       string
	}{
		{"bad quote", writeCSV(t, "a,y\n1,\"x\n"), 0, `data.csv:2: extraneous or missing " in quoted-field`},
		{"fraction 1", good, 1, "test fraction 1 outside (0, 1)"},
		{"fraction negative", good, -0.1, "test fraction -0.1 outside (0, 1)"},
		{"fraction NaN", good, math.NaN(), "test fraction NaN outside (0, 1)"},
		{"one row", writeCSV(t, "a,y\n1,p\n"), 0.5, "need at least two classes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadCSV(tt.path, "y", tt.frac, 1)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if !strings.HasPrefix(tt.want, "test fraction") && !strings.HasPrefix(err.Error(), tt.path) {
				t.Errorf("error %q does not name %s", err, tt.path)
			}
		})
	}
	_, err := LoadCSV(filepath.Join(t.TempDir(), "none.csv"), "y", 0, 1)
	if !errors.Is(err, ErrNotFound) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: got %v, want ErrNotFound", err)
	}
}

func TestHoldOut(t *testing.T) {
	s := &Set{Name: "s", Features: 1, Classes: 2, X: []float64{0, 1}, Y: []int{0, 1}}
	for _, f := range []float64{0.01, 0.5, 0.99} { // rounding never empties a side
		sp, err := holdOut(s, f, 3)
		if err != nil || sp.Train.Len() != 1 || sp.Test.Len() != 1 {
			t.Errorf("fraction %v: %v, %v", f, sp, err)
		}
	}
	one := &Set{Name: "s", Features: 1, Classes: 2, X: []float64{0}, Y: []int{0}}
	if _, err := holdOut(one, 0.5, 3); err == nil || !strings.Contains(err.Error(), "cannot split 1 example") {
		t.Errorf("one example: got %v", err)
	}
}

func FuzzReadCSV(f *testing.F) {
	f.Add("x,y\n1,a\n2,b\n")
	f.Add("x,y,z\n1,2,3\n4,5\n")
	f.Add("y,x\n\"a\nb\",1e3\nc,-0x1p2\n")
	f.Add("\ufeffy\n")
	f.Fuzz(func(t *testing.T, text string) {
		s, err := readCSV(strings.NewReader(text), "f.csv", "y")
		if err != nil {
			return
		}
		if err := s.Validate(); err != nil || len(s.ClassNames) < 2 {
			t.Fatalf("accepted an invalid set: %v, classes %q", err, s.ClassNames)
		}
		for _, x := range s.X {
			if math.IsNaN(x) || math.IsInf(x, 0) {
				t.Fatalf("accepted non-finite feature %v", x)
			}
		}
	})
}
