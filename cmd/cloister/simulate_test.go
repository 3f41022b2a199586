package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cloisterfl/cloister/simulation"
)

// toyCSV writes a CSV of 2×2 "images" in 3 classes (class k lights pixel k;
// pixel 3, where a backdoor trigger goes, is faint everywhere) and returns
// the --data selector for it.
func toyCSV(t *testing.T) string {
	t.Helper()
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString("p0,p1,p2,p3,y\n")
	for range 400 {
		k := rng.IntN(3)
		for j := range 4 {
			x := 0.2 * rng.Float64()
			if j == k {
				x += 0.6
			}
			fmt.Fprintf(&b, "%.3f,", x)
		}
		fmt.Fprintf(&b, "%d\n", k)
	}
	path := filepath.Join(t.TempDir(), "toy.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return "csv:" + path + ":label=y"
}

func TestSimulateBadFlags(t *testing.T) {
	data := toyCSV(t)
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--attack", "bogus", "--byzantine", "1"}, `attack: bad spec "bogus"`},
		{[]string{"--attack", "sign-flip:-2", "--byzantine", "1"}, "scale=-2"},
		{[]string{"--byzantine", "2"}, "--byzantine 2 without --attack"},
		{[]string{"--attack", "sign-flip"}, "--attack sign-flip without attackers"},
		{[]string{"--attack", "sign-flip", "--byzantine", "11"}, "--byzantine 11: want between 0 and --nodes 10"},
		{[]string{"--rule", "krum:f=5"}, "Krum"},
		{[]string{"--rule", "avg"}, `unknown rule "avg"`},
		{[]string{"--rule", "bulyan:f=3"}, "n ≥ 4f+3"},
		{[]string{"--dp-noise", "1"}, "--dp-noise needs --clip"},
		{[]string{"--dp-noise", "1", "--clip", "1", "--rule", "median"}, "--dp-noise with --rule median"},
		{[]string{"--dp-noise", "-1", "--clip", "1"}, "--dp-noise -1"},
		{[]string{"--dp-noise", "1", "--clip", "1", "--min-cohort", "11"}, "--min-cohort 11"},
		{[]string{"--dp-noise", "1", "--clip", "1", "--delta", "2"}, "--delta 2"},
		{[]string{"--dp-noise", "1", "--clip", "1", "--epsilon-budget", "-1"}, "--epsilon-budget -1"},
		{[]string{"--min-cohort", "5"}, "--min-cohort applies only to DP runs"},
		{[]string{"--epsilon-budget", "3"}, "--epsilon-budget applies only to DP runs"},
		{[]string{"--clip", "-1"}, "--clip -1"},
		{[]string{"--compress", "zip"}, `compress: bad spec "zip"`},
		{[]string{"--compress", "topk:2"}, "topk:2"},
		{[]string{"--cohort", "11"}, "--cohort 11"},
		{[]string{"--strategy", "fedsgd"}, "fedsgd"},
		{[]string{"--strategy", "scaffold", "--cohort", "5"}, "scaffold:frac=0.5"},
		{[]string{"--prox-mu", "-1"}, "proximal μ -1"},
		{[]string{"--attack", "backdoor:size=3", "--byzantine", "1"}, "trigger of 3 pixels on images of 2×2"},
	} {
		args := append([]string{"simulate", "--data", data, "--model", "softmax", "--rounds", "1"}, c.args...)
		_, stderr, err := cli(t, args...)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%v: stderr lacks %q:\n%s", c.args, c.want, stderr)
		}
	}
}

func readResult(t *testing.T, path string) simulation.Result {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var res simulation.Result
	if err := json.Unmarshal(data, &res); err != nil {
		t.Fatal(err)
	}
	return res
}

// An attacked, robust, clipped, compressed run reports what it did.
func TestSimulateAttack(t *testing.T) {
	dir := t.TempDir()
	out, stderr, err := cli(t, "simulate", "--data", toyCSV(t), "--model", "softmax", "--lr", "0.1", "--nodes", "10", "--rounds", "3",
		"--local-epochs", "5", "--attack", "sign-flip", "--byzantine", "2", "--rule", "trimmed:0.2", "--clip", "5", "--compress", "topk:0.2",
		"--json", filepath.Join(dir, "r.json"), "--plot", filepath.Join(dir, "r.svg"))
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"nodes 1–2 attack with sign-flip:scale=4; aggregation rule trimmed:beta=0.2,f=2", "clipped to L2 norm 5", "compressed with topk:0.2", "round 3/3", "up "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	if !strings.Contains(out, "after 3 rounds") {
		t.Errorf("stdout %q", out)
	}
	res := readResult(t, filepath.Join(dir, "r.json"))
	if s := res.Setup; s.Attack != "sign-flip:scale=4" || s.Byzantine != 2 || s.Rule != "trimmed:beta=0.2,f=2" || s.Clip != 5 || s.Compress != "topk:0.2" {
		t.Errorf("setup %+v", s)
	}
	if len(res.Rounds) != 3 || res.Rounds[0].BytesUp >= res.Rounds[0].BytesUpDense || res.Final.Accuracy < 0.8 {
		t.Errorf("rounds %+v, final %+v", res.Rounds, res.Final)
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "r.svg"))
	if !strings.Contains(string(svg), "<svg") || strings.Contains(string(svg), "ε spent") {
		t.Error("plot missing, or with an ε panel without DP")
	}
}

// A DP run prints ε per round, stops at its budget, and puts ε in the JSON
// and the plot.
func TestSimulatePrivacy(t *testing.T) {
	dir := t.TempDir()
	out, stderr, err := cli(t, "simulate", "--data", toyCSV(t), "--model", "softmax", "--lr", "0.1", "--nodes", "10", "--rounds", "10",
		"--clip", "1", "--dp-noise", "2", "--epsilon-budget", "4", "--json", filepath.Join(dir, "dp.json"), "--plot", filepath.Join(dir, "dp.svg"))
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	for _, want := range []string{"σ = 2, C = 1, k = 10", "std 0.6325", "crypto/rand", "  ε ", "cloister: stopped: privacy budget: round "} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	res := readResult(t, filepath.Join(dir, "dp.json"))
	if n := len(res.Rounds); n < 1 || n >= 10 || !strings.Contains(res.Stopped, fmt.Sprintf("round %d would take", n+1)) {
		t.Errorf("%d rounds, stopped %q", n, res.Stopped)
	}
	for i, r := range res.Rounds {
		if r.Epsilon <= 0 || r.Epsilon > 4 || (i > 0 && r.Epsilon <= res.Rounds[i-1].Epsilon) {
			t.Errorf("round %d: ε %v", r.Round, r.Epsilon)
		}
	}
	if res.Final.Epsilon == 0 || !strings.Contains(out, "ε = ") || res.Setup.Privacy == nil || res.Setup.Privacy.Noise != 2 {
		t.Errorf("final %+v, setup %+v, stdout %q", res.Final, res.Setup, out)
	}
	svg, _ := os.ReadFile(filepath.Join(dir, "dp.svg"))
	if !strings.Contains(string(svg), "ε spent") {
		t.Error("plot lacks the ε panel")
	}
}

// A backdoor run reports backdoor accuracy; with --byzantine 0 it measures
// the clean baseline.
func TestSimulateBackdoor(t *testing.T) {
	dir := t.TempDir()
	data := toyCSV(t)
	_, stderr, err := cli(t, "simulate", "--data", data, "--model", "softmax", "--lr", "0.1", "--nodes", "10", "--rounds", "2",
		"--attack", "backdoor:size=1", "--json", filepath.Join(dir, "b.json"))
	if err != nil {
		t.Fatalf("%v\n%s", err, stderr)
	}
	if !strings.Contains(stderr, "measuring the backdoor accuracy of the clean model") || !strings.Contains(stderr, "backdoor ") {
		t.Errorf("stderr:\n%s", stderr)
	}
	res := readResult(t, filepath.Join(dir, "b.json"))
	if res.Final.BackdoorAccuracy == nil || res.Rounds[1].BackdoorAccuracy == nil {
		t.Errorf("no backdoor accuracy in %+v", res.Final)
	}
}

// SCAFFOLD, FedAdam and FedProx run from the command line.
func TestSimulateStrategies(t *testing.T) {
	data := toyCSV(t)
	for _, args := range [][]string{
		{"--strategy", "scaffold", "--partition", "dirichlet:0.1"},
		{"--strategy", "scaffold:frac=0.5", "--cohort", "5"},
		{"--strategy", "fedadam:lr=0.05"},
		{"--prox-mu", "0.1"},
	} {
		a := append([]string{"simulate", "--data", data, "--model", "softmax", "--lr", "0.1", "--nodes", "10", "--rounds", "2"}, args...)
		out, stderr, err := cli(t, a...)
		if err != nil || !strings.Contains(out, "after 2 rounds") {
			t.Errorf("%v: %v\n%s", args, err, stderr)
		}
	}
}
