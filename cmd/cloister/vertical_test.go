package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeHospitals writes two CSV files of a vertical split: a hospital
// with the diagnosis and two measurements, a lab with two more; each
// lacks some of the other's patients.
func writeHospitals(t *testing.T, dir string) (string, string) {
	t.Helper()
	r := mrand.New(mrand.NewPCG(5, 5))
	var a, b strings.Builder
	a.WriteString("patient,age,bp,diagnosis\n")
	b.WriteString("patient,marker1,marker2\n")
	for i := range 240 {
		age, bp, m1, m2 := r.NormFloat64(), r.NormFloat64(), r.NormFloat64(), r.NormFloat64()
		d := "benign"
		if 1.2*age-0.8*bp+1.5*m1+m2+0.3*r.NormFloat64() > 0 {
			d = "malignant"
		}
		if i%10 != 3 {
			fmt.Fprintf(&a, "p%03d,%.3f,%.3f,%s\n", i, 50+10*age, 120+15*bp, d)
		}
		if i%10 != 7 {
			fmt.Fprintf(&b, "p%03d,%.3f,%.3f\n", i, m1, m2)
		}
	}
	pa, pb := filepath.Join(dir, "hospital.csv"), filepath.Join(dir, "lab.csv")
	os.WriteFile(pa, []byte(a.String()), 0o600)
	os.WriteFile(pb, []byte(b.String()), 0o600)
	return pa, pb
}

func TestVerticalCLI(t *testing.T) {
	dir := t.TempDir()
	pa, pb := writeHospitals(t, dir)
	da, db := "csv:"+pa+":id=patient:label=diagnosis", "csv:"+pb+":id=patient"
	var out, errb bytes.Buffer
	ids := filepath.Join(dir, "shared.txt")
	if err := run([]string{"vertical", "psi", "--data", da, "--data", db, "--out", ids}, nil, &out, &errb); err != nil {
		t.Fatalf("psi: %v\n%s", err, errb.String())
	}
	b, _ := os.ReadFile(ids)
	if n := strings.Count(string(b), "\n"); n != 192 { // 240 less the 24 + 24 each lacks
		t.Fatalf("psi wrote %d IDs, want 192\n%s", n, out.String())
	}
	model := filepath.Join(dir, "model.json")
	out.Reset()
	if err := run([]string{"vertical", "train", "--data", da, "--data", db, "--model", model, "--key-bits", "256", "--epochs", "5", "--batch", "32"}, nil, &out, &errb); err != nil {
		t.Fatalf("train: %v\n%s", err, errb.String())
	}
	var acc, central float64
	for _, l := range strings.Split(out.String(), "\n") {
		if s, ok := strings.CutPrefix(l, "vertical (encrypted): test accuracy "); ok {
			fmt.Sscan(s, &acc)
		}
		if s, ok := strings.CutPrefix(l, "central, same model and steps (Taylor loss): test accuracy "); ok {
			fmt.Sscan(s, &central)
		}
	}
	if acc < 0.8 || acc != central {
		t.Fatalf("vertical accuracy %v, central %v\n%s", acc, central, out.String())
	}
	scores := filepath.Join(dir, "scores.csv")
	out.Reset()
	if err := run([]string{"vertical", "predict", "--model", model, "--data", da, "--data", db, "--out", scores, "--key-bits", "256"}, nil, &out, &errb); err != nil {
		t.Fatalf("predict: %v\n%s", err, errb.String())
	}
	if b, _ := os.ReadFile(scores); !strings.HasPrefix(string(b), "id,score,probability\np000,") {
		t.Fatalf("scores file starts %q", string(b)[:min(40, len(b))])
	}
	// Bad input: clear errors, nothing written.
	for name, tc := range map[string]struct {
		args []string
		want string
	}{
		"no label":      {[]string{"vertical", "train", "--data", "csv:" + pa + ":id=patient", "--data", db}, "label party) has no label"},
		"missing id":    {[]string{"vertical", "psi", "--data", "csv:" + pa + ":id=nope", "--data", db}, `no ID column "nope"`},
		"one party":     {[]string{"vertical", "psi", "--data", da}, "need at least 2 parties"},
		"no overlap":    {[]string{"vertical", "psi", "--data", da, "--data", "csv:" + writeOther(t, dir) + ":id=patient"}, "share no ID"},
		"existing out":  {[]string{"vertical", "psi", "--data", da, "--data", db, "--out", ids}, "exists"},
		"bad selector":  {[]string{"vertical", "psi", "--data", "tsv:x", "--data", db}, "want csv:PATH"},
		"unknown":       {[]string{"vertical", "align"}, "unknown subcommand"},
		"label at host": {[]string{"vertical", "train", "--data", da, "--data", "csv:" + pa + ":id=patient:label=diagnosis"}, "only the first party"},
	} {
		err := run(tc.args, nil, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func writeOther(t *testing.T, dir string) string {
	p := filepath.Join(dir, "other.csv")
	os.WriteFile(p, []byte("patient,x\nq1,1\nq2,2\n"), 0o600)
	return p
}

// TestDemoPaillier runs a tiny federation of real processes in mode
// paillier (a 512-bit key: NOT SECURE, for speed) and in mode plain with
// the same seed: the encrypted run's accuracy equals the plain one's
// within 0.1 pp, and its audit logs verify.
func TestDemoPaillier(t *testing.T) {
	if testing.Short() {
		t.Skip("real processes")
	}
	_, pl := runTinyDemo(t, "--rounds", "2", "--mode", "plain", "--seed", "3", "--insecure-dp-seed", "1")
	out, pa := runTinyDemo(t, "--rounds", "2", "--mode", "paillier", "--seed", "3", "--insecure-dp-seed", "1")
	if !strings.Contains(string(out), "mode paillier (InsecureTest)") {
		t.Errorf("output does not name mode paillier:\n%s", out)
	}
	if pa.Rounds != 2 || math.Abs(pa.FinalAccuracy-pl.FinalAccuracy) > 0.001 {
		t.Errorf("paillier: %d rounds, accuracy %v; plain %v", pa.Rounds, pa.FinalAccuracy, pl.FinalAccuracy)
	}
}

// TestDemoVertical runs demo --vertical on a few hundred Fashion-MNIST
// images at a small key (NOT SECURE, for speed), each party a process
// talking through the relay: the encrypted model's test accuracy equals
// the central Taylor model's.
func TestDemoVertical(t *testing.T) {
	if testing.Short() {
		t.Skip("Fashion-MNIST")
	}
	if _, err := os.Stat("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz"); err != nil {
		t.Skip("dataset-fashion-mnist is not installed")
	}
	var out, errb bytes.Buffer
	jsonPath := filepath.Join(t.TempDir(), "v.json")
	err := run([]string{"demo", "--vertical", "--key-bits", "256", "--rows", "300", "--epochs", "2", "--json", jsonPath}, nil, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	t.Logf("%s", out.String())
	if !strings.Contains(out.String(), "vertical (encrypted, 2 processes): test accuracy") || !strings.Contains(out.String(), "relay  | relayed node-2 → node-1") {
		t.Errorf("the demo did not run the parties as processes through the relay")
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var r comparison
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	if r.Vertical < 0.6 || math.Abs(r.Vertical-r.CentralTay) > 0.01 || r.TestRows < 1000 {
		t.Errorf("%+v", r)
	}
}
