package main

import (
	"fmt"
	"os"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestMain lets the test binary run as `cloister` inside scripts.
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"cloister": func() {
			if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
				report(os.Stderr, err)
				os.Exit(1)
			}
		},
	})
}

// TestScripts runs the CLI transcripts in testdata/script.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir: "testdata/script",
		Setup: func(env *testscript.Env) error {
			env.Setenv("FMNIST", "/usr/share/datasets/fashion-mnist")
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "fmnist":
				_, err := os.Stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}
