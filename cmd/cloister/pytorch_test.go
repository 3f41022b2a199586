package main

import (
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestDemoPyTorch runs the PyTorch example as every node's trainer in a
// small real federation: 2 node processes, 2 rounds, mhe, Dirichlet(0.5)
// over the first 2,000 training and 500 test images of Debian's
// Fashion-MNIST. It needs python3-torch and dataset-fashion-mnist (CI
// installs them; without them it is skipped, unless
// CLOISTER_REQUIRE_PYTHON=1).
func TestDemoPyTorch(t *testing.T) {
	py, err := pythonClient("torch")
	if err == nil {
		_, err = os.Stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz")
	}
	if err != nil {
		if os.Getenv("CLOISTER_REQUIRE_PYTHON") == "1" {
			t.Fatal(err)
		}
		t.Skip(err)
	}
	tmp := t.TempDir()
	data := filepath.Join(tmp, "fmnist")
	if err := os.Mkdir(data, 0o700); err != nil {
		t.Fatal(err)
	}
	for name, n := range map[string]uint32{"train-images-idx3-ubyte": 2000, "train-labels-idx1-ubyte": 2000,
		"t10k-images-idx3-ubyte": 500, "t10k-labels-idx1-ubyte": 500} {
		idxPrefix(t, "/usr/share/datasets/fashion-mnist/"+name+".gz", filepath.Join(data, name), n)
	}
	script, err := filepath.Abs("../../examples/pytorch-fmnist/train.py")
	if err != nil {
		t.Fatal(err)
	}
	client, err := filepath.Abs("../../python")
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir, jsonPath := filepath.Join(tmp, "demo"), filepath.Join(tmp, "demo.json")
	start := time.Now()
	cmd := exec.Cmd{Path: exe, Args: []string{"cloister", "demo", "--trainer", py + " " + script, "--nodes", "2", "--threshold", "2",
		"--rounds", "2", "--mode", "mhe", "--preset", "InsecureTest", "--data", "fashion-mnist:" + data, "--partition", "dirichlet:0.5",
		"--local-epochs", "1", "--lr", "0.05", "--batch", "32", "--json", jsonPath, "--keep", dir},
		Env: append(os.Environ(), "PYTHONPATH="+client)}
	out, err := cmd.CombinedOutput()
	t.Logf("%s", out)
	if err != nil {
		t.Fatalf("cloister demo --trainer: %v", err)
	}
	t.Logf("the PyTorch federation took %.1fs", time.Since(start).Seconds())
	res := readDemoJSON(t, jsonPath)
	if res.Rounds != 2 || res.Model != "external" || !(res.FinalAccuracy > 0.4) {
		t.Errorf("%d rounds of %s, final accuracy %v: want 2 rounds of the external model, well above chance (0.1)", res.Rounds, res.Model, res.FinalAccuracy)
	}
	if tr := res.NodeSeconds["trainer"]; !(tr > 0 && tr <= res.NodeSeconds["train"]) {
		t.Errorf("trainer %.3fs of train %.3fs", tr, res.NodeSeconds["train"])
	}
	for _, want := range []string{"describing the trainer's layout", "external (215370 parameters", "external trainer: "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the demo's output lacks %q", want)
		}
	}
	// Each node dealt its trainer its share and checked the counts.
	for _, node := range []string{"node-1", "node-2"} {
		log, err := os.ReadFile(filepath.Join(dir, "logs", node+".txt"))
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"trainer attached", "trainer ready", `"trainer_s"`, " training and "} {
			if !strings.Contains(string(log), want) {
				t.Errorf("%s's log lacks %q", node, want)
			}
		}
	}
	verify := exec.Cmd{Path: exe, Args: []string{"cloister", "audit", "verify", dir}}
	if out, err := verify.CombinedOutput(); err != nil {
		t.Errorf("cloister audit verify: %v\n%s", err, out)
	}
}

// idxPrefix writes the first n examples of a gzipped IDX file to dst,
// uncompressed.
func idxPrefix(t *testing.T, src, dst string, n uint32) {
	t.Helper()
	f, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4)
	if _, err := io.ReadFull(z, head); err != nil {
		t.Fatal(err)
	}
	dims := make([]uint32, head[3])
	if err := binary.Read(z, binary.BigEndian, dims); err != nil {
		t.Fatal(err)
	}
	per := int64(1)
	for _, d := range dims[1:] {
		per *= int64(d)
	}
	dims[0] = n
	out, err := os.Create(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	out.Write(head)
	binary.Write(out, binary.BigEndian, dims)
	if _, err := io.CopyN(out, z, per*int64(n)); err != nil {
		t.Fatal(err)
	}
}

func readDemoJSON(t *testing.T, path string) demoResult {
	t.Helper()
	var res demoResult
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &res); err != nil {
		t.Fatal(err)
	}
	return res
}
