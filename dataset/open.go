package dataset

import (
	"fmt"
	"strings"

	"github.com/cloisterfl/cloister/internal/spec"
)

// Scaling chooses how [Open] normalizes features.
type Scaling int

const (
	// ScaleDefault is each source's usual choice: pixels in [0, 1] for
	// Fashion-MNIST, z-score for CSV.
	ScaleDefault Scaling = iota
	// ScaleNone leaves values as decoded: raw CSV numbers, and Fashion-MNIST
	// pixels in [0, 1].
	ScaleNone
	// ScaleZScore standardizes every feature with a [ZScore] fitted on the
	// training set.
	ScaleZScore
)

// Options tune [Open].
type Options struct {
	// TestFraction is the share of CSV rows held out for testing; 0 means
	// DefaultTestFraction. Fashion-MNIST has a fixed test set and ignores it.
	TestFraction float64
	// Seed makes the CSV train/test split reproducible.
	Seed uint64
	// Scaling normalizes the features; the zero value is ScaleDefault.
	Scaling Scaling
}

// selectorForms lists the selectors Open understands, for error messages.
const selectorForms = "fashion-mnist, fashion-mnist:DIR, csv:PATH:label=COLUMN"

// Open loads the dataset named by a selector:
//
//	fashion-mnist               Fashion-MNIST from DefaultFashionMNISTDir
//	fashion-mnist:DIR           Fashion-MNIST from DIR
//	csv:PATH:label=COLUMN       a CSV file whose class is in column COLUMN
//
// In the CSV form, PATH may itself contain colons: the label is taken after
// the last ":label=".
func Open(selector string, opts Options) (Split, error) {
	if opts.Scaling < ScaleDefault || opts.Scaling > ScaleZScore {
		return Split{}, fmt.Errorf("unknown scaling %d", opts.Scaling)
	}
	zscore := opts.Scaling == ScaleZScore
	var (
		sp  Split
		err error
	)
	sel, err := spec.Parse(selector)
	if err != nil {
		return Split{}, fmt.Errorf("data selector %w", err)
	}
	switch arg := sel.Arg; sel.Name {
	case "fashion-mnist":
		dir := DefaultFashionMNISTDir
		if arg != "" {
			dir = arg
		}
		sp, err = LoadFashionMNIST(dir)
	case "csv":
		i := strings.LastIndex(arg, ":label=")
		if i <= 0 || i+len(":label=") == len(arg) {
			return Split{}, fmt.Errorf("data selector %q: want csv:PATH:label=COLUMN", selector)
		}
		sp, err = loadCSV(arg[:i], arg[i+len(":label="):], opts.TestFraction, opts.Seed)
		zscore = zscore || opts.Scaling == ScaleDefault
	default:
		return Split{}, fmt.Errorf("unknown data selector %q; the forms are %s", selector, selectorForms)
	}
	if err != nil {
		return Split{}, err
	}
	if zscore {
		if _, err := sp.Standardize(); err != nil {
			return Split{}, fmt.Errorf("data selector %q: %w", selector, err)
		}
	}
	return sp, nil
}
