package dataset

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestOpenCSV(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a:b") // a colon in the path
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.csv")
	writeFile(t, path, []byte("f:1,kind\n10,a\n20,b\n30,a\n40,b\n50,a\n"))
	spec := "csv:" + path + ":label=kind"

	raw, err := Open(spec, Options{TestFraction: 0.4, Seed: 5, Scaling: ScaleNone})
	if err != nil {
		t.Fatal(err)
	}
	if raw.Train.Len() != 3 || raw.Test.Len() != 2 || raw.Train.X[0] < 10 {
		t.Fatalf("raw: train %v, test %v", raw.Train.X, raw.Test.X)
	}
	std, err := Open(spec, Options{TestFraction: 0.4, Seed: 5})
	if err != nil {
		t.Fatal(err)
	}
	var sum float64
	for _, x := range std.Train.X {
		sum += x
	}
	if sum > 1e-12 || sum < -1e-12 {
		t.Errorf("default scaling of CSV is not z-score: train %v", std.Train.X)
	}
	// The label is taken after the last ":label=", so it may hold colons too.
	path2 := filepath.Join(dir, "y.csv")
	writeFile(t, path2, []byte("x,class:name\n1,a\n2,b\n"))
	if sp, err := Open("csv:"+path2+":label=class:name", Options{}); err != nil || sp.Train.Features != 1 {
		t.Errorf("label with a colon: %v", err)
	}
}

func TestOpenFashionMNIST(t *testing.T) {
	dir := fakeMNIST(t, 20, 10)
	sp, err := Open("fashion-mnist:"+dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Train.X[7] != 7.0/255 {
		t.Errorf("default scaling changed pixels: %v", sp.Train.X[:8])
	}
	sp, err = Open("fashion-mnist:"+dir, Options{Scaling: ScaleZScore})
	if err != nil {
		t.Fatal(err)
	}
	if sp.Train.X[0] >= 0 {
		t.Errorf("z-score: first pixel %v, want below the mean", sp.Train.X[0])
	}
	_, err = Open("fashion-mnist:"+filepath.Join(dir, "missing"), Options{})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("missing dir: %v", err)
	}
}

func TestOpenErrors(t *testing.T) {
	for spec, want := range map[string]string{
		"mnist":                    "unknown data selector \"mnist\"; the forms are fashion-mnist, fashion-mnist:DIR, csv:PATH:label=COLUMN",
		"":                         "unknown data selector",
		"csv:data.csv":             `data selector "csv:data.csv": want csv:PATH:label=COLUMN`,
		"csv::label=y":             "want csv:PATH:label=COLUMN",
		"csv:data.csv:label=":      "want csv:PATH:label=COLUMN",
		"csv:/no/such.csv:label=y": "no such file",
	} {
		if _, err := Open(spec, Options{}); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q): got %v, want an error containing %q", spec, err, want)
		}
	}
	if _, err := Open("fashion-mnist", Options{Scaling: 7}); err == nil || !strings.Contains(err.Error(), "unknown scaling 7") {
		t.Errorf("bad scaling: %v", err)
	}
}
