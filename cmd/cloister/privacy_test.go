package main

import (
	"bytes"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// cli runs the binary's run function in-process and returns stdout, stderr
// (with the error reported as main would) and the error.
func cli(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(args, strings.NewReader(""), &out, &errb)
	if err != nil {
		report(&errb, err)
	}
	return out.String(), errb.String(), err
}

func TestPrivacyEpsilon(t *testing.T) {
	// The TF-Privacy MNIST tutorial: q = 256/60000, σ = 1.1, 60 epochs,
	// δ = 1e-5: ε ≈ 3.01 by the classic conversion (dp's tests hold the
	// accountant to the published figures; this checks the command).
	out, _, err := cli(t, "privacy", "epsilon", "--sample-rate", "0.004266666666666667", "--noise-multiplier", "1.1", "--steps", "14062", "--delta", "1e-5")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"q = 0.004266666666666667, σ = 1.1, 14062 steps, δ = 1e-05",
		"ε = 2.59656   (improved conversion, Balle et al. 2020; optimal order α = 8.1)",
		"ε = 3.00827   (classic conversion, Mironov 2017; optimal order α = 8.8)",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	// No noise: no privacy.
	out, _, err = cli(t, "privacy", "epsilon", "--sample-rate", "1", "--noise-multiplier", "0", "--steps", "1")
	if err != nil || strings.Count(out, "ε = ∞") != 2 {
		t.Errorf("σ = 0: %v\n%s", err, out)
	}
}

var sigmaRE = regexp.MustCompile(`σ = ([0-9.]+) for ε = 3`)
var epsRE = regexp.MustCompile(`ε = ([0-9.]+) +\(improved`)

// privacy noise calibrates σ; feeding it back to privacy epsilon gives the
// target ε (to the calibration's precision), and a 1% smaller σ exceeds it.
func TestPrivacyNoise(t *testing.T) {
	out, _, err := cli(t, "privacy", "noise", "--epsilon", "3", "--sample-rate", "1", "--steps", "20", "--delta", "1e-5")
	if err != nil {
		t.Fatal(err)
	}
	m := sigmaRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no σ in:\n%s", out)
	}
	sigma, _ := strconv.ParseFloat(m[1], 64)
	if sigma < 6 || sigma > 7.5 {
		t.Errorf("σ = %v for ε = 3 over 20 full rounds", sigma)
	}
	epsAt := func(s float64) float64 {
		out, _, err := cli(t, "privacy", "epsilon", "--sample-rate", "1", "--noise-multiplier", strconv.FormatFloat(s, 'g', -1, 64), "--steps", "20")
		if err != nil {
			t.Fatal(err)
		}
		e, _ := strconv.ParseFloat(epsRE.FindStringSubmatch(out)[1], 64)
		return e
	}
	if e := epsAt(sigma); e > 3.0001 || e < 2.99 {
		t.Errorf("σ = %v gives ε = %v, want 3", sigma, e)
	}
	if e := epsAt(sigma * 0.99); e <= 3 {
		t.Errorf("1%% less noise still gives ε = %v", e)
	}
	out, _, err = cli(t, "privacy", "steps", "--epsilon", "8", "--sample-rate", "1", "--noise-multiplier", "1")
	if err != nil || !strings.Contains(out, "2 steps stay within ε = 8") {
		t.Errorf("steps: %v\n%s", err, out)
	}
}

func TestPrivacyBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"privacy"}, "no subcommand"},
		{[]string{"privacy", "budget"}, `unknown subcommand "budget"`},
		{[]string{"privacy", "epsilon", "--noise-multiplier", "1", "--steps", "3"}, "--sample-rate is required"},
		{[]string{"privacy", "epsilon", "--sample-rate", "1", "--steps", "3"}, "--noise-multiplier is required"},
		{[]string{"privacy", "epsilon", "--sample-rate", "1", "--noise-multiplier", "1"}, "--steps is required"},
		{[]string{"privacy", "epsilon", "--sample-rate", "1.5", "--noise-multiplier", "1", "--steps", "3"}, "--sample-rate 1.5: want a value in [0, 1]"},
		{[]string{"privacy", "epsilon", "--sample-rate", "0.1", "--noise-multiplier", "-1", "--steps", "3"}, "--noise-multiplier -1"},
		{[]string{"privacy", "epsilon", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "-3"}, "--steps -3"},
		{[]string{"privacy", "epsilon", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "3", "--delta", "0"}, "--delta 0: want a value in (0, 1)"},
		{[]string{"privacy", "epsilon", "--sample-rate", "0.1", "--noise-multiplier", "1", "--steps", "3", "--epsilon", "2"}, "--epsilon does not apply"},
		{[]string{"privacy", "epsilon", "--sample-rate", "x"}, `invalid value "x" for flag -sample-rate`},
		{[]string{"privacy", "epsilon", "stray"}, `unexpected argument "stray"`},
		{[]string{"privacy", "noise", "--epsilon", "0", "--sample-rate", "1", "--steps", "3"}, "--epsilon 0: want a finite value > 0"},
		{[]string{"privacy", "noise", "--epsilon", "1", "--sample-rate", "1", "--steps", "3", "--noise-multiplier", "2"}, "--noise-multiplier does not apply"},
		{[]string{"privacy", "noise", "--epsilon", "1e-9", "--sample-rate", "1", "--steps", "1000000000"}, "unreachable"},
		{[]string{"privacy", "steps", "--epsilon", "1", "--sample-rate", "1"}, "--noise-multiplier is required"},
	} {
		_, stderr, err := cli(t, c.args...)
		if err == nil {
			t.Errorf("%v: no error", c.args)
			continue
		}
		if !strings.Contains(stderr, c.want) {
			t.Errorf("%v: stderr %q lacks %q", c.args, stderr, c.want)
		}
		if !strings.Contains(stderr, "cloister: error: ") {
			t.Errorf("%v: stderr %q lacks the prefix", c.args, stderr)
		}
	}
	out, _, err := cli(t, "privacy", "-h")
	if err != nil || !strings.Contains(out, "cloister privacy noise") {
		t.Errorf("privacy -h: %v\n%s", err, out)
	}
}
