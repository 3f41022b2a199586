package main

import (
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/cloisterfl/cloister/attest"
)

const attestUsage = `Usage:
  cloister attest measure [--launch-config FILE] [BINARY]
      print the sim measurement of BINARY (default: this binary), the value
      for the manifest's allow-list of format "sim"
  cloister attest inspect FILE
      check the signature chain of an evidence file and print its claims
`

func runAttest(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || isHelp(args[0]) {
		fmt.Fprint(stdout, attestUsage)
		if len(args) == 0 {
			return withHint(fmt.Errorf("attest needs a subcommand"), "cloister attest measure [BINARY] or cloister attest inspect FILE")
		}
		return nil
	}
	switch args[0] {
	case "measure":
		return runAttestMeasure(args[1:], stdout, stderr)
	case "inspect":
		return runAttestInspect(args[1:], stdout, stderr)
	}
	return withHint(fmt.Errorf("unknown attest subcommand %q", args[0]), "cloister attest measure [BINARY] or cloister attest inspect FILE")
}

// runAttestMeasure prints the sim measurement of a binary: the value that goes
// into the manifest's allow-list for format "sim".
func runAttestMeasure(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("attest measure", stderr)
	launch := fs.String("launch-config", "", "file holding the canonical launch configuration measured with the binary (none by default)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	path := fs.Arg(0)
	if fs.NArg() > 1 {
		return fmt.Errorf("attest measure takes one binary, got %d arguments", fs.NArg())
	}
	if path == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding this binary: %w", err)
		}
		path = exe
	}
	var config []byte
	if *launch != "" {
		var err error
		if config, err = os.ReadFile(*launch); err != nil {
			return fmt.Errorf("reading launch configuration: %w", err)
		}
	}
	m, err := attest.MeasureFile(path, config)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s  %s\n", hex.EncodeToString(m[:]), path)
	return nil
}

// runAttestInspect prints the claims of an evidence file after checking its
// signature chain to the vendor roots. It applies no policy.
func runAttestInspect(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("attest inspect", stderr)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return withHint(fmt.Errorf("attest inspect takes one evidence file"), "cloister attest inspect FILE")
	}
	path := fs.Arg(0)
	data, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	ev, claims, err := attest.Inspect(data, attest.Roots{}, time.Now())
	if err != nil {
		return fmt.Errorf("evidence %s: %w", path, err)
	}
	fmt.Fprintf(stdout, "format       %s\n", claims.Format)
	fmt.Fprintf(stdout, "platform     %s\n", claims.Platform)
	fmt.Fprintf(stdout, "measurement  %s\n", claims.Measurement)
	fmt.Fprintf(stdout, "tcb          %v\n", claims.TCB)
	fmt.Fprintf(stdout, "debug        %v\n", claims.Debug)
	if !claims.Time.IsZero() {
		fmt.Fprintf(stdout, "time         %s\n", claims.Time.UTC().Format(time.RFC3339))
	}
	fmt.Fprintf(stdout, "report data  %x\n", claims.ReportData)
	fmt.Fprintf(stdout, "nonce        %x\n", ev.Binding.Nonce)
	fmt.Fprintf(stdout, "hpke key     %x\n", ev.Binding.HPKEPub)
	fmt.Fprintf(stdout, "signing key  %x\n", ev.Binding.SignPub)
	fmt.Fprintln(stdout, "note: the signature chain is valid; no policy was applied. Admission needs the manifest's policy.")
	return nil
}
