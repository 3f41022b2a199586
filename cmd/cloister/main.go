// Command cloister is the one binary of the Cloister federated learning
// system: simulations and baselines, the federation's daemons, provisioning,
// benchmarks and audit.
//
// Run `cloister help` for the list of commands.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

func main() {
	if err := run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr); err != nil {
		report(os.Stderr, err)
		os.Exit(1)
	}
}

// command is one subcommand of the binary.
type command struct {
	summary string
	run     func(args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

var commands map[string]command

func init() {
	commands = map[string]command{
		"train":       {"train one model centrally: the baseline for federated runs", runTrain},
		"simulate":    {"simulate a plaintext federation in one process", runSimulate},
		"bench":       {"bench mhe: measure threshold HE aggregation against raw Lattigo", runBench},
		"attest":      {"attest measure: the sim measurement of a binary; attest inspect: the claims of evidence", runAttest},
		"init":        {"provision a federation: CA, signed manifest, one kit per party", runInit},
		"ca":          {"federation CA by hand: ca init, ca issue (add a member)", runCA},
		"coordinator": {"run the coordinator daemon", runCoordinator},
		"aggregator":  {"run mode tee's attested aggregator daemon", runAggregator},
		"node":        {"run a member node daemon", runNode},
		"kit":         {"kit install: copy a kit from a read-only mount (a Kubernetes Secret) into a private directory", runKit},
		"model":       {"model export: write the current global model in plaintext (on a node)", runModel},
		"audit":       {"audit verify: check the audit logs under a directory", runAudit},
		"demo":        {"run a local federation of real processes on Fashion-MNIST", runDemo},
		"privacy":     {"differential privacy: the ε of a training run, or the noise for a target ε", runPrivacy},
		"vertical":    {"vertical FL: psi, train, predict (PSI, then hetero logistic regression under threshold Paillier)", runVertical},
		"trainer":     {"trainer describe: the parameter layout of an external trainer (bring your own model)", runTrainer},
	}
}

const usage = `cloister: privacy-preserving federated learning

Usage: cloister COMMAND [flags]

Commands:
%s
Run 'cloister COMMAND -h' for the flags of a command.
`

func run(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		names := make([]string, 0, len(commands))
		for name := range commands {
			names = append(names, name)
		}
		sort.Strings(names)
		var b strings.Builder
		for _, name := range names {
			fmt.Fprintf(&b, "  %-12s %s\n", name, commands[name].summary)
		}
		fmt.Fprintf(stdout, usage, b.String())
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		return withHint(fmt.Errorf("unknown command %q", args[0]), "run 'cloister help' for the list of commands")
	}
	err := c.run(args[1:], stdin, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// isHelp reports whether arg asks for help, as the first argument of a
// command that has subcommands.
func isHelp(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help" || arg == "help"
}

// hintError carries an error together with advice for the user.
type hintError struct {
	err  error
	hint string
}

func (e *hintError) Error() string { return e.err.Error() }
func (e *hintError) Unwrap() error { return e.err }

func withHint(err error, hint string) error { return &hintError{err, hint} }

// report prints err, and its hint if it has one, with the binary's prefix.
func report(w io.Writer, err error) {
	fmt.Fprintf(w, "cloister: error: %v\n", err)
	var h *hintError
	if errors.As(err, &h) {
		fmt.Fprintf(w, "cloister: hint: %s\n", h.hint)
	}
}

// newFlags returns a flag set that reports errors instead of exiting.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("cloister "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parse parses args and refuses positional arguments.
func parse(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return withHint(fmt.Errorf("unexpected argument %q", fs.Arg(0)), "flags come after the command: cloister "+strings.TrimPrefix(fs.Name(), "cloister ")+" -h")
	}
	return nil
}
