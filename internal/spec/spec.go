// Package spec parses the short strings that select an algorithm and its
// arguments on the command line and in manifests: a name, optionally
// followed by ':' and an argument. The argument is either one number, which
// sets the algorithm's main parameter ("trimmed:0.1", "dirichlet:0.5",
// "topk:0.01"), or a comma-separated list of key=number ("fedadam:lr=0.01,
// b1=0.9", "krum:f=2"). Some specs take a free-form argument instead (a
// path, as in "csv:data.csv:label=y"); [Spec.Arg] holds it as given.
//
// Every error names the whole spec, so that a user sees which of several
// flags or manifest fields is wrong: `"fedadam:lr=x": key "lr": "x" is not
// a number`. Packages wrap it with their own sentinel, as in
//
//	fmt.Errorf("%w %w", ErrSpec, err) // strategy: bad spec "fedadam:lr=x": …
package spec

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// Spec is a parsed spec.
type Spec struct {
	Text   string // the spec as given, for errors
	Name   string // before the first ':', trimmed and lower-cased
	Arg    string // after the first ':', trimmed ("" without one)
	HasArg bool   // whether there was a ':'
}

// Error is a malformed spec and the reason.
type Error struct {
	Spec   string // the spec as given
	Reason string
}

func (e *Error) Error() string { return fmt.Sprintf("%q: %s", e.Spec, e.Reason) }

// Parse splits text into a name and an argument. It refuses a ':' with no
// name before it or nothing after it. The empty text parses as the empty
// name, which callers may take as their default.
func Parse(text string) (Spec, error) {
	name, arg, hasArg := strings.Cut(strings.TrimSpace(text), ":")
	s := Spec{Text: text, Name: strings.ToLower(strings.TrimSpace(name)), Arg: strings.TrimSpace(arg), HasArg: hasArg}
	switch {
	case hasArg && s.Name == "":
		return Spec{}, s.Errorf("no name before ':'")
	case hasArg && s.Arg == "":
		return Spec{}, s.Errorf("empty argument after ':'")
	}
	return s, nil
}

// ParseExact is [Parse] for specs that are compared as strings, such as a
// partition recorded with an experiment's results: it also refuses spaces
// around the name or the argument, and a name that is not lower case.
func ParseExact(text string) (Spec, error) {
	s, err := Parse(text)
	if err != nil {
		return s, err
	}
	canon := s.Name
	if s.HasArg {
		canon += ":" + s.Arg
	}
	if canon != text {
		return Spec{}, s.Errorf("write it as %q", canon)
	}
	return s, nil
}

// Errorf returns an [Error] naming s.
func (s Spec) Errorf(format string, a ...any) error {
	return &Error{Spec: s.Text, Reason: fmt.Sprintf(format, a...)}
}

// NoArg returns an error if s has an argument.
func (s Spec) NoArg() error {
	if s.HasArg {
		return s.Errorf("%s takes no argument", s.Name)
	}
	return nil
}

// Float returns the argument as one finite number.
func (s Spec) Float() (float64, error) {
	if !s.HasArg {
		return 0, s.Errorf("%s needs an argument", s.Name)
	}
	x, err := number(s.Arg)
	if err != nil {
		return 0, s.Errorf("%v", err)
	}
	return x, nil
}

// Int returns the argument as one integer.
func (s Spec) Int() (int, error) {
	if !s.HasArg {
		return 0, s.Errorf("%s needs an argument", s.Name)
	}
	n, err := strconv.Atoi(s.Arg)
	if err != nil {
		return 0, s.Errorf("%q is not an integer", s.Arg)
	}
	return n, nil
}

// Args reads the argument as one number, the value of key main, or as
// key=number pairs with keys among keys. It returns the values given (an
// empty map without an argument), and refuses unknown or repeated keys,
// and numbers that are not finite. With no keys, s must have no argument.
func (s Spec) Args(main string, keys ...string) (map[string]float64, error) {
	vals := map[string]float64{}
	if !s.HasArg {
		return vals, nil
	}
	if len(keys) == 0 {
		return nil, s.NoArg()
	}
	if !strings.Contains(s.Arg, "=") {
		if main == "" {
			return nil, s.Errorf("argument %q is not key=value", s.Arg)
		}
		x, err := number(s.Arg)
		if err != nil {
			return nil, s.Errorf("%s: %v", main, err)
		}
		vals[main] = x
		return vals, nil
	}
	for _, kv := range strings.Split(s.Arg, ",") {
		k, v, ok := strings.Cut(kv, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return nil, s.Errorf("argument %q is not key=value", strings.TrimSpace(kv))
		}
		if !slices.Contains(keys, k) {
			return nil, s.Errorf("unknown key %q (want one of %s)", k, strings.Join(slices.Sorted(slices.Values(keys)), ", "))
		}
		if _, dup := vals[k]; dup {
			return nil, s.Errorf("key %q given twice", k)
		}
		x, err := number(v)
		if err != nil {
			return nil, s.Errorf("%s: %v", k, err)
		}
		vals[k] = x
	}
	return vals, nil
}

func number(s string) (float64, error) {
	s = strings.TrimSpace(s)
	x, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a number", s)
	}
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return 0, fmt.Errorf("%q is not finite", s)
	}
	return x, nil
}
