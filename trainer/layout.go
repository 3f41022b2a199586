package trainer

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unicode/utf8"

	"github.com/cloisterfl/cloister/model"
)

// Layout bounds: what a trainer may describe, so that a layout read from a
// file or a socket cannot make the node allocate without limit.
const (
	// LayoutVersion is the version of the layout format.
	LayoutVersion = 1
	// MaxTensors bounds the tensors of a layout.
	MaxTensors = 10000
	// MaxName bounds a tensor's name, in bytes.
	MaxName = 256
	// MaxRank bounds a tensor's dimensions.
	MaxRank = 8
	// MaxParams bounds a layout's values: package model's bound, the one a
	// manifest's parameter count has.
	MaxParams = model.MaxParams
)

// Element types a tensor may have: little-endian IEEE 754 binary32 and
// binary64. Keep lower-precision tensors in float32 on the trainer side;
// the node aggregates in float64 either way.
const (
	Float32 DType = "float32"
	Float64 DType = "float64"
)

// DType is a tensor's element type.
type DType string

// Size returns the bytes per element (0 for an unknown type).
func (d DType) Size() int {
	switch d {
	case Float32:
		return 4
	case Float64:
		return 8
	}
	return 0
}

// ErrLayout reports a layout that is malformed or breaks a bound.
var ErrLayout = errors.New("trainer: invalid layout")

// Tensor is one named tensor of a layout.
type Tensor struct {
	Name  string `json:"name"`
	Shape []int  `json:"shape"`
	DType DType  `json:"dtype"`
}

// Len returns the number of elements: the product of the shape (1 for a
// scalar, whose shape is empty).
func (t Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Bytes returns the size of the tensor's data.
func (t Tensor) Bytes() int { return t.Len() * t.DType.Size() }

// String returns the tensor as "name [16 1 5 5] float32".
func (t Tensor) String() string {
	return fmt.Sprintf("%s %v %s", t.Name, t.Shape, t.DType)
}

func (t Tensor) equal(u Tensor) bool {
	if t.Name != u.Name || t.DType != u.DType || len(t.Shape) != len(u.Shape) {
		return false
	}
	for i := range t.Shape {
		if t.Shape[i] != u.Shape[i] {
			return false
		}
	}
	return true
}

// Layout is a model's parameters as the trainer API carries them: an
// ordered list of named tensors. Flattened in order, each tensor in
// row-major order, they are the node's parameter vector (fl.Vector), the
// vector a federation protects and aggregates. A manifest pins a layout
// by its [Layout.Digest].
//
// The file form, which `cloister trainer describe` writes and `cloister
// init --model external --layout FILE` reads, is its JSON encoding:
//
//	{"version":1,"tensors":[{"name":"conv1.weight","shape":[8,1,5,5],"dtype":"float32"}, …]}
type Layout struct {
	Version int      `json:"version"`
	Tensors []Tensor `json:"tensors"`
}

// Validate checks the layout against the format and the bounds; errors
// wrap ErrLayout and name the tensor.
func (l Layout) Validate() error {
	if l.Version != LayoutVersion {
		return fmt.Errorf("%w: version %d, this build reads version %d", ErrLayout, l.Version, LayoutVersion)
	}
	if len(l.Tensors) == 0 {
		return fmt.Errorf("%w: no tensors", ErrLayout)
	}
	if len(l.Tensors) > MaxTensors {
		return fmt.Errorf("%w: %d tensors, at most %d", ErrLayout, len(l.Tensors), MaxTensors)
	}
	seen := make(map[string]int, len(l.Tensors))
	total := 0
	for i, t := range l.Tensors {
		what := fmt.Sprintf("tensor %d (%q)", i+1, truncate(t.Name))
		if err := checkName(t.Name); err != nil {
			return fmt.Errorf("%w: %s: %v", ErrLayout, what, err)
		}
		if j, dup := seen[t.Name]; dup {
			return fmt.Errorf("%w: %s: the name is also tensor %d's", ErrLayout, what, j+1)
		}
		seen[t.Name] = i
		if t.DType.Size() == 0 {
			return fmt.Errorf("%w: %s: dtype %q, want %s or %s (keep lower-precision tensors in float32 on the trainer's side)",
				ErrLayout, what, truncate(string(t.DType)), Float32, Float64)
		}
		if len(t.Shape) > MaxRank {
			return fmt.Errorf("%w: %s: %d dimensions, at most %d", ErrLayout, what, len(t.Shape), MaxRank)
		}
		n := 1
		for k, d := range t.Shape {
			if d < 1 {
				return fmt.Errorf("%w: %s: dimension %d is %d, want at least 1 (empty tensors carry nothing)", ErrLayout, what, k, d)
			}
			if d > MaxParams || n > MaxParams/d {
				return fmt.Errorf("%w: %s: shape %v has more than %d values", ErrLayout, what, t.Shape, MaxParams)
			}
			n *= d
		}
		if total += n; total > MaxParams {
			return fmt.Errorf("%w: more than %d values in all (at %s)", ErrLayout, MaxParams, what)
		}
	}
	return nil
}

func checkName(s string) error {
	switch {
	case s == "":
		return errors.New("empty name")
	case len(s) > MaxName:
		return fmt.Errorf("name of %d bytes, at most %d", len(s), MaxName)
	case !utf8.ValidString(s):
		return errors.New("name is not UTF-8")
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return fmt.Errorf("name has control character %q", r)
		}
	}
	return nil
}

func truncate(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// Len returns the number of values of the layout: the length of the
// parameter vector.
func (l Layout) Len() int {
	n := 0
	for _, t := range l.Tensors {
		n += t.Len()
	}
	return n
}

// Bytes returns the size of the layout's data on the wire.
func (l Layout) Bytes() int {
	n := 0
	for _, t := range l.Tensors {
		n += t.Bytes()
	}
	return n
}

// Canonical returns the layout's canonical encoding: its JSON with no
// insignificant whitespace, fields in declaration order. The digest is
// taken over it, so that a re-indented file keeps its digest.
func (l Layout) Canonical() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(l.normal())
}

// normal returns l with every scalar's shape as [] (never null), so that
// a layout built in Go and one read from JSON encode alike.
func (l Layout) normal() Layout {
	ts := make([]Tensor, len(l.Tensors))
	for i, t := range l.Tensors {
		if t.Shape == nil {
			t.Shape = []int{}
		}
		ts[i] = t
	}
	return Layout{Version: l.Version, Tensors: ts}
}

// Digest returns the SHA-256 of the canonical encoding in lowercase hex:
// what a manifest's model.layout holds.
func (l Layout) Digest() (string, error) {
	b, err := l.Canonical()
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// Equal reports whether two layouts have the same tensors in the same
// order.
func (l Layout) Equal(m Layout) bool {
	return l.Diff(m) == ""
}

// Diff names the first difference between l and want ("" if none), as
// "tensor 2 (conv1.bias): shape [8], want [16]".
func (l Layout) Diff(want Layout) string {
	for i := range min(len(l.Tensors), len(want.Tensors)) {
		t, w := l.Tensors[i], want.Tensors[i]
		if t.equal(w) {
			continue
		}
		what := fmt.Sprintf("tensor %d (%s)", i+1, truncate(t.Name))
		switch {
		case t.Name != w.Name:
			return fmt.Sprintf("%s: name %q, want %q", what, truncate(t.Name), truncate(w.Name))
		case t.DType != w.DType:
			return fmt.Sprintf("%s: dtype %s, want %s", what, t.DType, w.DType)
		default:
			return fmt.Sprintf("%s: shape %v, want %v", what, t.Shape, w.Shape)
		}
	}
	switch {
	case len(l.Tensors) > len(want.Tensors):
		return fmt.Sprintf("tensor %d (%s) is one too many: want %d tensors", len(want.Tensors)+1, truncate(l.Tensors[len(want.Tensors)].Name), len(want.Tensors))
	case len(l.Tensors) < len(want.Tensors):
		return fmt.Sprintf("tensor %d (%s) is missing: %d tensors, want %d", len(l.Tensors)+1, truncate(want.Tensors[len(l.Tensors)].Name), len(l.Tensors), len(want.Tensors))
	}
	return ""
}

// ParseLayout reads a layout from its JSON form: one JSON value, no
// unknown fields, valid.
func ParseLayout(b []byte) (Layout, error) {
	var l Layout
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&l); err != nil {
		return Layout{}, fmt.Errorf("%w: %v", ErrLayout, err)
	}
	if dec.More() {
		return Layout{}, fmt.Errorf("%w: more than one JSON value", ErrLayout)
	}
	if err := l.Validate(); err != nil {
		return Layout{}, err
	}
	return l, nil
}

// maxLayoutFile bounds a layout file: MaxTensors tensors with the longest
// names and shapes, indented.
const maxLayoutFile = 16 << 20

// ReadLayout reads a layout file.
func ReadLayout(path string) (Layout, error) {
	f, err := os.Open(path)
	if err != nil {
		return Layout{}, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxLayoutFile+1))
	if err != nil {
		return Layout{}, fmt.Errorf("reading %s: %w", path, err)
	}
	if len(b) > maxLayoutFile {
		return Layout{}, fmt.Errorf("%s: %w: larger than %d bytes", path, ErrLayout, maxLayoutFile)
	}
	l, err := ParseLayout(b)
	if err != nil {
		return Layout{}, fmt.Errorf("%s: %w", path, err)
	}
	return l, nil
}

// File returns the layout's file form: JSON with one tensor a line and a
// final newline. Its digest is the layout's (see Canonical).
func (l Layout) File() ([]byte, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	l = l.normal()
	var b bytes.Buffer
	fmt.Fprintf(&b, "{\n  \"version\": %d,\n  \"tensors\": [\n", l.Version)
	for i, t := range l.Tensors {
		line, err := json.Marshal(t)
		if err != nil {
			return nil, err
		}
		b.WriteString("    ")
		b.Write(line)
		if i < len(l.Tensors)-1 {
			b.WriteByte(',')
		}
		b.WriteByte('\n')
	}
	b.WriteString("  ]\n}\n")
	return b.Bytes(), nil
}
