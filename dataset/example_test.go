package dataset_test

import (
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/cloisterfl/cloister/dataset"
)

// Load a CSV file, hold out a test set, and deal the training rows out to
// three simulated sites.
func Example() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "patients.csv")
	csv := "age,dose,outcome\n"
	for i := range 20 {
		csv += fmt.Sprintf("%d,%d.5,%s\n", 30+i, i%4, []string{"better", "same", "worse"}[i%3])
	}
	if err := os.WriteFile(path, []byte(csv), 0o644); err != nil {
		log.Fatal(err)
	}

	sp, err := dataset.Open("csv:"+path+":label=outcome", dataset.Options{TestFraction: 0.25, Seed: 1})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("train:", sp.Train.Len(), "test:", sp.Test.Len(), "features:", sp.Train.Features)
	fmt.Println("classes:", sp.Train.ClassNames)

	p, err := dataset.ParsePartition("iid")
	if err != nil {
		log.Fatal(err)
	}
	sites, err := p.Split(sp.Train.Y, sp.Train.Classes, 3, rand.New(rand.NewPCG(1, 0)))
	if err != nil {
		log.Fatal(err)
	}
	for i, idx := range sites {
		fmt.Printf("site %d: %d examples\n", i, sp.Train.Subset(idx).Len())
	}
	// Output:
	// train: 15 test: 5 features: 2
	// classes: [better same worse]
	// site 0: 5 examples
	// site 1: 5 examples
	// site 2: 5 examples
}

// A bad value in a CSV file is reported with its line and column.
func ExampleParseError() {
	dir, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "data.csv")
	if err := os.WriteFile(path, []byte("age,y\n41,a\nabc,b\n"), 0o644); err != nil {
		log.Fatal(err)
	}
	_, err = dataset.LoadCSV(path, "y", 0, 1)
	var pe *dataset.ParseError
	if errors.As(err, &pe) {
		fmt.Printf("line %d, column %q: %v\n", pe.Line, pe.Column, pe.Err)
	}
	// Output:
	// line 3, column "age": "abc" is not a number
}
