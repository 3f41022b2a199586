package dataset

import (
	"cmp"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
)

// DefaultTestFraction is the share of examples held out for testing when
// the caller passes 0.
const DefaultTestFraction = 0.2

// ParseError reports a problem at a place in a CSV file. Its message reads
// like a compiler's:
//
//	data.csv:17: column "age": "abc" is not a number
type ParseError struct {
	File   string // the path as the caller gave it
	Line   int    // 1-based line number; 0 when the problem concerns the whole file
	Column string // header name of the offending column; "" when it concerns the whole row
	Err    error  // what is wrong
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Column != "" {
		fmt.Fprintf(&b, "column %q: ", e.Column)
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// LoadCSV reads a CSV file with a header row, holds out a seeded random
// testFraction of its rows for testing (0 means [DefaultTestFraction]), and
// standardizes the features with a z-score fitted on the training rows.
//
// The column named label holds the class of each row; every other column
// is a numeric feature. Distinct labels become classes 0..K-1 in sorted
// order (numeric order if every label is an integer), and Set.ClassNames
// keeps their text. The same file, fraction and seed always give the same
// split. Problems in the file are reported as a [*ParseError]; a missing
// file wraps [ErrNotFound].
func LoadCSV(path, label string, testFraction float64, seed uint64) (Split, error) {
	sp, err := loadCSV(path, label, testFraction, seed)
	if err != nil {
		return Split{}, err
	}
	if _, err := sp.Standardize(); err != nil {
		return Split{}, fmt.Errorf("%s: %w", path, err)
	}
	return sp, nil
}

// loadCSV is LoadCSV without the standardization.
func loadCSV(path, label string, testFraction float64, seed uint64) (Split, error) {
	if testFraction == 0 {
		testFraction = DefaultTestFraction
	}
	if !(testFraction > 0 && testFraction < 1) {
		return Split{}, fmt.Errorf("test fraction %v outside (0, 1)", testFraction)
	}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Split{}, fmt.Errorf("%w: %w", ErrNotFound, err)
		}
		return Split{}, err
	}
	defer f.Close()
	s, err := readCSV(f, path, label)
	if err != nil {
		return Split{}, err
	}
	sp, err := holdOut(s, testFraction, seed)
	if err != nil {
		return Split{}, fmt.Errorf("%s: %w", path, err)
	}
	return sp, nil
}

// readCSV parses CSV text from r; name is the file name used in errors.
func readCSV(r io.Reader, name, label string) (*Set, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // field counts are checked below, with better messages
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, &ParseError{File: name, Err: errors.New("empty file; want a header row")}
	}
	if err != nil {
		return nil, csvError(name, err)
	}
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // a byte-order mark some editors add
	labelCol := -1
	for i, h := range header {
		h = strings.TrimSpace(h)
		header[i] = h
		if slices.Contains(header[:i], h) {
			return nil, &ParseError{File: name, Line: 1, Column: h, Err: errors.New("duplicate column name")}
		}
		if h == label {
			labelCol = i
		}
	}
	if labelCol < 0 {
		return nil, &ParseError{File: name, Line: 1, Column: label,
			Err: fmt.Errorf("no such label column; the columns are %s", quoteAll(header))}
	}
	if len(header) < 2 {
		return nil, &ParseError{File: name, Line: 1, Err: fmt.Errorf("no feature columns besides the label %q", label)}
	}

	s := &Set{Name: name, Features: len(header) - 1}
	var labels []string
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvError(name, err)
		}
		line, _ := cr.FieldPos(0)
		if labelCol >= len(rec) {
			return nil, &ParseError{File: name, Line: line, Column: label,
				Err: fmt.Errorf("missing label: the row has %d fields, the header %d", len(rec), len(header))}
		}
		if len(rec) != len(header) {
			return nil, &ParseError{File: name, Line: line,
				Err: fmt.Errorf("the row has %d fields, the header %d", len(rec), len(header))}
		}
		for i, v := range rec {
			v = strings.TrimSpace(v)
			line, _ := cr.FieldPos(i)
			if i == labelCol {
				if v == "" {
					return nil, &ParseError{File: name, Line: line, Column: label, Err: errors.New("missing label")}
				}
				labels = append(labels, v)
				continue
			}
			x, err := parseFeature(v)
			if err != nil {
				return nil, &ParseError{File: name, Line: line, Column: header[i], Err: err}
			}
			s.X = append(s.X, x)
		}
	}
	if len(labels) == 0 {
		return nil, &ParseError{File: name, Err: errors.New("no data rows after the header")}
	}
	s.Y, s.ClassNames = classify(labels)
	s.Classes = len(s.ClassNames)
	if s.Classes < 2 {
		return nil, &ParseError{File: name, Column: label,
			Err: fmt.Errorf("every row has label %q; need at least two classes", s.ClassNames[0])}
	}
	return s, nil
}

// csvError turns an encoding/csv syntax error into a *ParseError.
func csvError(name string, err error) error {
	var ce *csv.ParseError
	if errors.As(err, &ce) {
		return &ParseError{File: name, Line: ce.Line, Err: ce.Err}
	}
	return fmt.Errorf("%s: %w", name, err)
}

// parseFeature parses one feature value, which must be a finite number.
func parseFeature(v string) (float64, error) {
	x, err := strconv.ParseFloat(v, 64)
	switch {
	case v == "":
		return 0, errors.New("missing value")
	case errors.Is(err, strconv.ErrRange):
		return 0, fmt.Errorf("%q is out of range", v)
	case err != nil:
		return 0, fmt.Errorf("%q is not a number", v)
	case math.IsNaN(x) || math.IsInf(x, 0):
		return 0, fmt.Errorf("%q is not a finite number", v)
	}
	return x, nil
}

// classify maps label texts to class indices 0..K-1 in sorted order:
// numeric if every label is an integer (so "01" and "1" are one class),
// else by string. It returns the index of each label and the K class names.
func classify(labels []string) (y []int, names []string) {
	ints := make([]int64, len(labels))
	for i, l := range labels {
		v, err := strconv.ParseInt(l, 10, 64)
		if err != nil {
			return rank(labels)
		}
		ints[i] = v
	}
	y, distinct := rank(ints)
	names = make([]string, len(distinct))
	for i, v := range distinct {
		names[i] = strconv.FormatInt(v, 10)
	}
	return y, names
}

// rank returns the sorted distinct values of vals and the position of each
// value among them.
func rank[T cmp.Ordered](vals []T) (pos []int, distinct []T) {
	distinct = slices.Compact(slices.Sorted(slices.Values(vals)))
	pos = make([]int, len(vals))
	for i, v := range vals {
		pos[i], _ = slices.BinarySearch(distinct, v)
	}
	return pos, distinct
}

// holdOut splits s at random, reproducibly for a given seed, into training
// and test sets that are both non-empty. testFraction must lie in (0, 1).
func holdOut(s *Set, testFraction float64, seed uint64) (Split, error) {
	n := s.Len()
	if n < 2 {
		return Split{}, fmt.Errorf("cannot split %d example(s) into non-empty training and test sets", n)
	}
	nTest := min(max(int(math.Round(testFraction*float64(n))), 1), n-1)
	perm := rand.New(rand.NewPCG(seed, holdOutStream)).Perm(n)
	test, train := perm[:nTest], perm[nTest:]
	slices.Sort(test) // keep file order within each side
	slices.Sort(train)
	return Split{Train: s.Subset(train), Test: s.Subset(test)}, nil
}

// holdOutStream is the second PCG seed word for train/test splits, so that
// they do not share a stream with other uses of the same user seed.
const holdOutStream = 0x686f6c646f7574 // "holdout"

// quoteAll formats names as a comma-separated list of quoted strings.
func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}
