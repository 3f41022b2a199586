package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
			py, _ := pythonClient()
			client, err := filepath.Abs("../../python")
			if err != nil {
				return err
			}
			env.Setenv("PYTHON", py)
			env.Setenv("PYTHONPATH", client)
			return nil
		},
		Condition: func(cond string) (bool, error) {
			switch cond {
			case "fmnist":
				_, err := os.Stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
				return err == nil, nil
			case "python":
				_, err := pythonClient()
				if err != nil && os.Getenv("CLOISTER_REQUIRE_PYTHON") == "1" {
					return false, err
				}
				return err == nil, nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// pythonClient returns the Python interpreter for the trainer tests
// ($CLOISTER_PYTHON, Debian's /usr/bin/python3, or python3), and an error
// if it lacks the client's dependencies (grpc, protobuf, numpy).
func pythonClient(modules ...string) (string, error) {
	py := os.Getenv("CLOISTER_PYTHON")
	if py == "" {
		py = "python3"
		if _, err := os.Stat("/usr/bin/python3"); err == nil {
			py = "/usr/bin/python3"
		}
	}
	imports := strings.Join(append([]string{"grpc", "google.protobuf", "numpy"}, modules...), ", ")
	if out, err := exec.Command(py, "-c", "import "+imports).CombinedOutput(); err != nil {
		return py, fmt.Errorf("%s cannot import %s (apt-get install python3-grpcio python3-protobuf python3-numpy python3-torch): %s", py, imports, strings.TrimSpace(string(out)))
	}
	return py, nil
}
