package vertical

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/cloisterfl/cloister/dataset"
)

// Table is one party's columns: an ID per row, the feature columns it
// contributes and, at the label party only, a binary label per row.
type Table struct {
	Name    string    // the party's name
	IDs     []string  // distinct
	Columns []string  // feature names
	X       []float64 // row-major, len(IDs)·len(Columns)
	// Y holds the labels, 0 or 1, at the label party; nil elsewhere.
	Y []int
	// Classes names label 0 and label 1 (the label party).
	Classes []string
	// Raw marks features already in a fixed range (pixels in [0, 1]): they
	// are used as they are, not standardized, so zeros stay zeros (and
	// cost nothing in the encrypted gradient).
	Raw bool
}

// Rows returns the number of rows.
func (t *Table) Rows() int { return len(t.IDs) }

// Row returns row i's features.
func (t *Table) Row(i int) []float64 { return t.X[i*len(t.Columns) : (i+1)*len(t.Columns)] }

// Select returns the table of the given rows, in that order.
func (t *Table) Select(rows []int) *Table {
	s := &Table{Name: t.Name, Columns: t.Columns, Classes: t.Classes, Raw: t.Raw, IDs: make([]string, len(rows)), X: make([]float64, 0, len(rows)*len(t.Columns))}
	if t.Y != nil {
		s.Y = make([]int, len(rows))
	}
	for k, i := range rows {
		s.IDs[k] = t.IDs[i]
		s.X = append(s.X, t.Row(i)...)
		if t.Y != nil {
			s.Y[k] = t.Y[i]
		}
	}
	return s
}

// Spec is a parsed data selector:
//
//	csv:PATH:id=COL[:label=COL][:columns=A,B,C][:scale=none]
//
// id names the ID column; label (at the label party only) the binary
// label column; columns the feature columns (default: every other column);
// scale=none keeps features as they are, for columns already in a fixed
// range such as pixels in [0, 1] (default scale=standard: each column
// standardized to mean 0 and deviation 1).
type Spec struct {
	Path    string
	ID      string
	Label   string
	Columns []string
	Raw     bool
}

// ParseSpec reads a selector. PATH may contain colons: the options are
// the trailing ":key=value" parts.
func ParseSpec(s string) (Spec, error) {
	const form = "csv:PATH:id=COLUMN[:label=COLUMN][:columns=A,B,C][:scale=none]"
	rest, ok := strings.CutPrefix(s, "csv:")
	if !ok {
		return Spec{}, fmt.Errorf("data selector %q: want %s", s, form)
	}
	var sp Spec
	for {
		i := strings.LastIndex(rest, ":")
		if i < 0 {
			break
		}
		key, val, ok := strings.Cut(rest[i+1:], "=")
		if !ok || (key != "id" && key != "label" && key != "columns" && key != "scale") {
			break
		}
		if val == "" {
			return Spec{}, fmt.Errorf("data selector %q: %s= names no column", s, key)
		}
		switch key {
		case "scale":
			if val != "none" && val != "standard" {
				return Spec{}, fmt.Errorf("data selector %q: scale=%s, want none or standard", s, val)
			}
			sp.Raw = val == "none"
		case "id":
			if sp.ID != "" {
				return Spec{}, fmt.Errorf("data selector %q: id= given twice", s)
			}
			sp.ID = val
		case "label":
			if sp.Label != "" {
				return Spec{}, fmt.Errorf("data selector %q: label= given twice", s)
			}
			sp.Label = val
		case "columns":
			if sp.Columns != nil {
				return Spec{}, fmt.Errorf("data selector %q: columns= given twice", s)
			}
			sp.Columns = strings.Split(val, ",")
			if slices.Contains(sp.Columns, "") {
				return Spec{}, fmt.Errorf("data selector %q: columns= has an empty name", s)
			}
		}
		rest = rest[:i]
	}
	sp.Path = rest
	if sp.Path == "" {
		return Spec{}, fmt.Errorf("data selector %q: no PATH; want %s", s, form)
	}
	if sp.ID == "" {
		return Spec{}, fmt.Errorf("data selector %q: no id=COLUMN; want %s", s, form)
	}
	return sp, nil
}

// ErrLabels reports a label column that does not have exactly two values.
var ErrLabels = errors.New("vertical: the label column must hold exactly two distinct values")

// Load reads the party's table from the spec's CSV file (a header row,
// then one row per ID). Problems come back as a *dataset.ParseError that
// names the file, line and column.
func Load(name string, sp Spec) (*Table, error) {
	return load(name, sp, false)
}

// LoadIDs reads only the ID column of the spec's file (for PSI): a table
// without columns or labels.
func LoadIDs(name string, sp Spec) (*Table, error) {
	return load(name, Spec{Path: sp.Path, ID: sp.ID}, true)
}

func load(name string, sp Spec, idsOnly bool) (*Table, error) {
	f, err := os.Open(sp.Path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return read(name, sp, f, idsOnly)
}

func read(name string, sp Spec, r io.Reader, idsOnly bool) (*Table, error) {
	perr := func(line int, col string, format string, a ...any) error {
		return &dataset.ParseError{File: sp.Path, Line: line, Column: col, Err: fmt.Errorf(format, a...)}
	}
	cr := csv.NewReader(r)
	cr.ReuseRecord = false
	header, err := cr.Read()
	if err == io.EOF {
		return nil, perr(0, "", "empty file")
	}
	if err != nil {
		return nil, csvErr(sp.Path, err)
	}
	pos := map[string]int{}
	for i, h := range header {
		h = strings.TrimSpace(h)
		if _, dup := pos[h]; dup {
			return nil, perr(1, h, "column named twice in the header")
		}
		pos[h] = i
	}
	find := func(what, col string) (int, error) {
		i, ok := pos[col]
		if !ok {
			return 0, perr(1, "", "no %s column %q (the header has %q)", what, col, header)
		}
		return i, nil
	}
	idCol, err := find("ID", sp.ID)
	if err != nil {
		return nil, err
	}
	labelCol := -1
	if sp.Label != "" {
		if labelCol, err = find("label", sp.Label); err != nil {
			return nil, err
		}
		if labelCol == idCol {
			return nil, perr(1, sp.Label, "the label column is the ID column")
		}
	}
	cols := sp.Columns
	if cols == nil && !idsOnly {
		for _, h := range header {
			h = strings.TrimSpace(h)
			if h != sp.ID && h != sp.Label {
				cols = append(cols, h)
			}
		}
	}
	if len(cols) == 0 && !idsOnly {
		return nil, perr(1, "", "no feature columns")
	}
	idx := make([]int, len(cols))
	for k, c := range cols {
		if idx[k], err = find("feature", c); err != nil {
			return nil, err
		}
		if idx[k] == idCol || idx[k] == labelCol {
			return nil, perr(1, c, "a feature column cannot be the ID or label column")
		}
	}
	t := &Table{Name: name, Columns: cols, Raw: sp.Raw}
	var labels []string
	seen := map[string]int{}
	for line := 2; ; line++ {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, csvErr(sp.Path, err)
		}
		id := strings.TrimSpace(rec[idCol])
		if id == "" {
			return nil, perr(line, sp.ID, "empty ID")
		}
		if prev, dup := seen[id]; dup {
			return nil, perr(line, sp.ID, "ID %q already on line %d", id, prev)
		}
		seen[id] = line
		t.IDs = append(t.IDs, id)
		for k, i := range idx {
			v, err := strconv.ParseFloat(strings.TrimSpace(rec[i]), 64)
			if err != nil || v != v || v > 1e300 || v < -1e300 {
				return nil, perr(line, cols[k], "%q is not a finite number", rec[i])
			}
			t.X = append(t.X, v)
		}
		if labelCol >= 0 {
			labels = append(labels, strings.TrimSpace(rec[labelCol]))
		}
	}
	if len(t.IDs) == 0 {
		return nil, perr(0, "", "no rows")
	}
	if labelCol >= 0 {
		distinct := slices.Compact(slices.Sorted(slices.Values(labels)))
		if len(distinct) != 2 {
			return nil, &dataset.ParseError{File: sp.Path, Column: sp.Label, Err: fmt.Errorf("%w: it has %d (%q)", ErrLabels, len(distinct), distinct[:min(5, len(distinct))])}
		}
		t.Classes = distinct
		t.Y = make([]int, len(labels))
		for i, l := range labels {
			if l == distinct[1] {
				t.Y[i] = 1
			}
		}
	}
	return t, nil
}

func csvErr(path string, err error) error {
	var pe *csv.ParseError
	if errors.As(err, &pe) {
		return &dataset.ParseError{File: path, Line: pe.Line, Err: pe.Err}
	}
	return &dataset.ParseError{File: path, Err: err}
}
