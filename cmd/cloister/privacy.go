package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"github.com/cloisterfl/cloister/dp"
)

const privacyUsage = `Usage:
  cloister privacy epsilon --sample-rate Q --noise-multiplier Z --steps T [--delta D]
  cloister privacy noise   --epsilon E --sample-rate Q --steps T [--delta D]
  cloister privacy steps   --epsilon E --sample-rate Q --noise-multiplier Z [--delta D]

epsilon: the (ε, δ) of T steps of the sampled Gaussian mechanism, by the RDP
         accountant, with both the classic conversion (Mironov 2017) and the
         improved one (Balle et al. 2020).
noise:   the smallest noise multiplier σ that keeps T steps within ε.
steps:   how many steps a noise multiplier affords within ε.

In a federation, a step is a round, Q is cohort/population (1 unless the cohort
is sampled at random and the draw is secret), and σ is the noise multiplier of
the distributed noise (the sum's noise standard deviation over the clipping
bound).
`

// runPrivacy is `cloister privacy`: the accountant and the calibration of
// package dp, from the command line.
func runPrivacy(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, privacyUsage)
		if len(args) == 0 {
			return withHint(errors.New("privacy: no subcommand given"), "use epsilon, noise or steps")
		}
		return nil
	}
	sub, args := args[0], args[1:]
	fs := newFlags("privacy "+sub, stderr)
	q := fs.Float64("sample-rate", math.NaN(), "sampling rate q in [0, 1]: the chance that a record (a site) is in a step (round)")
	z := fs.Float64("noise-multiplier", math.NaN(), "noise multiplier σ: noise standard deviation over the L2 sensitivity")
	steps := fs.Int("steps", -1, "number of steps (rounds) composed")
	delta := fs.Float64("delta", 1e-5, "δ of the (ε, δ) guarantee, in (0, 1)")
	eps := fs.Float64("epsilon", math.NaN(), "target ε")
	if err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var need, refuse []string
	switch sub {
	case "epsilon":
		need, refuse = []string{"sample-rate", "noise-multiplier", "steps"}, []string{"epsilon"}
	case "noise":
		need, refuse = []string{"epsilon", "sample-rate", "steps"}, []string{"noise-multiplier"}
	case "steps":
		need, refuse = []string{"epsilon", "sample-rate", "noise-multiplier"}, []string{"steps"}
	default:
		return withHint(fmt.Errorf("privacy: unknown subcommand %q", sub), "use epsilon, noise or steps: cloister privacy -h")
	}
	for _, name := range need {
		if !set[name] {
			return withHint(fmt.Errorf("privacy %s: --%s is required", sub, name), "cloister privacy -h")
		}
	}
	for _, name := range refuse {
		if set[name] {
			return withHint(fmt.Errorf("privacy %s: --%s does not apply", sub, name), "cloister privacy -h")
		}
	}
	if set["sample-rate"] && !(*q >= 0 && *q <= 1) {
		return fmt.Errorf("--sample-rate %v: want a value in [0, 1]", *q)
	}
	if set["noise-multiplier"] && (!(*z >= 0) || math.IsInf(*z, 0)) {
		return fmt.Errorf("--noise-multiplier %v: want a finite value ≥ 0", *z)
	}
	if set["steps"] && (*steps < 0 || *steps > dp.MaxSteps) {
		return fmt.Errorf("--steps %d: want a count in [0, %d]", *steps, int64(dp.MaxSteps))
	}
	if !(*delta > 0 && *delta < 1) {
		return fmt.Errorf("--delta %v: want a value in (0, 1)", *delta)
	}
	if set["epsilon"] && (!(*eps > 0) || math.IsInf(*eps, 0)) {
		return fmt.Errorf("--epsilon %v: want a finite value > 0", *eps)
	}

	switch sub {
	case "epsilon":
		fmt.Fprintf(stdout, "sampled Gaussian mechanism: q = %g, σ = %g, %d steps, δ = %g\n", *q, *z, *steps, *delta)
		return printEpsilon(stdout, *q, *z, *steps, *delta)
	case "noise":
		sigma, err := dp.NoiseFor(*eps, *delta, *q, *steps)
		if err != nil {
			return withHint(fmt.Errorf("calibrating σ for ε = %g: %w", *eps, err), "allow fewer steps, a smaller sample rate or a larger ε")
		}
		fmt.Fprintf(stdout, "noise multiplier σ = %.6g for ε = %g at δ = %g, q = %g, %d steps (improved conversion)\n", sigma, *eps, *delta, *q, *steps)
		return printEpsilon(stdout, *q, sigma, *steps, *delta)
	default:
		n, err := dp.StepsFor(*eps, *delta, *q, *z)
		if err != nil {
			return fmt.Errorf("counting steps for ε = %g: %w", *eps, err)
		}
		fmt.Fprintf(stdout, "%d steps stay within ε = %g at δ = %g, q = %g, σ = %g (improved conversion)\n", n, *eps, *delta, *q, *z)
		if n == 0 {
			fmt.Fprintln(stderr, "cloister: hint: a single step already exceeds ε; add noise or lower the sample rate")
		}
		return nil
	}
}

// printEpsilon prints ε by both conversions, with their optimal orders.
func printEpsilon(w io.Writer, q, sigma float64, steps int, delta float64) error {
	var acc dp.Accountant
	if err := acc.Compose(q, sigma, steps); err != nil {
		return err
	}
	orders := acc.Orders()
	lo, hi := orders[0], orders[len(orders)-1]
	var edge []string
	for _, c := range []struct {
		name string
		conv func(float64) (float64, float64, error)
	}{
		{"improved conversion, Balle et al. 2020", acc.Epsilon},
		{"classic conversion, Mironov 2017", acc.EpsilonClassic},
	} {
		e, order, err := c.conv(delta)
		if err != nil {
			return err
		}
		if math.IsInf(e, 1) {
			fmt.Fprintf(w, "ε = ∞  (%s: no privacy)\n", c.name)
			continue
		}
		fmt.Fprintf(w, "ε = %-9.6g (%s; optimal order α = %g)\n", e, c.name, order)
		if order == lo || order == hi {
			edge = append(edge, fmt.Sprint(order))
		}
	}
	if len(edge) > 0 {
		slices.Sort(edge)
		fmt.Fprintf(w, "note: the optimal order %s is at the edge of the orders tracked [%g, %g]; ε may be loose\n", strings.Join(slices.Compact(edge), " and "), lo, hi)
	}
	return nil
}
