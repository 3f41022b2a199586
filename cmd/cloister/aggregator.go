package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/cloisterfl/cloister/aggregator"
	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/pki"
)

// runAggregator runs mode tee's aggregator: `cloister aggregator --kit
// fed/aggregator --tee sim [--attest-every D]`.
func runAggregator(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("aggregator", stderr)
	kitDir := fs.String("kit", "", "the aggregator's kit directory (cloister init --mode tee writes fed/aggregator)")
	addr := fs.String("coordinator", "", "the coordinator's host:port (default: the kit's)")
	teeFormat := fs.String("tee", "", "the TEE the aggregator runs in: sim (INSECURE, development), sev-snp, tdx or nitro (required: members seal only to an attested aggregator)")
	simState := fs.String("tee-sim-state", "", "with --tee sim: a JSON file {\"tcb\": N, \"debug\": false} read at every attestation (simulated platform firmware)")
	state := fs.String("state", "", "state directory for the aggregator's signed audit log (audit.log: the key setups it took, the rounds it opened, what it refused; cloister audit verify reads it); empty: those events go to the process log only")
	maxMsg := fs.Int64("max-message", 0, "transport message limit in bytes (0: the limit the manifest implies)")
	attestEvery := fs.Duration("attest-every", aggregator.DefaultAttestEvery, "rotate the process keys and re-attest this often, "+
		"at the next round boundary (at most half this late): keep 1.5 times it below the manifest's aggregator max_age")
	var lf logFlags
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	kit, err := loadKit(*kitDir, pki.RoleNode)
	if err != nil {
		return err
	}
	if kit.Manifest.Aggregator == nil || kit.Manifest.Aggregator.Name != kit.Config.Name {
		return withHint(fmt.Errorf("the kit in %s is %s's, not the aggregator's", *kitDir, kit.Identity()), "pass the aggregator's kit, e.g. --kit fed/aggregator (cloister init --mode tee)")
	}
	if *addr == "" {
		*addr = kit.Config.CoordinatorAddress
	}
	if *attestEvery < 100*time.Millisecond {
		return fmt.Errorf("--attest-every %s: at least 100ms", *attestEvery)
	}
	if *teeFormat == "" {
		if *simState != "" {
			return errors.New("--tee-sim-state needs --tee sim")
		}
		return withHint(errors.New("no --tee: the aggregator must attest (the manifest's aggregator policy)"), "run it in its TEE with --tee sev-snp|tdx|nitro, or --tee sim for development")
	}
	att, err := attest.Open(*teeFormat, *simState)
	if err != nil {
		if errors.Is(err, attest.ErrUnsupported) {
			return withHint(fmt.Errorf("--tee %s: %w", *teeFormat, err), "run the aggregator inside that TEE, or use --tee sim for development")
		}
		return fmt.Errorf("--tee %s: %w", *teeFormat, err)
	}
	if *teeFormat == attest.FormatSim {
		log.Warn("running on a SIMULATED TEE (--tee sim): its evidence proves nothing; development only")
	}
	if *state != "" {
		if err := os.MkdirAll(*state, 0o700); err != nil {
			return fmt.Errorf("--state: %w", err)
		}
	}
	cfg := aggregator.Config{Kit: kit, TEE: att, Logger: log, AttestEvery: *attestEvery, StateDir: *state}
	cfg.Limits.MaxMessage = *maxMsg
	a, err := aggregator.New(cfg)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "aggregator %s of federation %s: rule %s, coordinator %s\n", kit.Config.Name, kit.Manifest.Federation, ruleOrMean(kit.Manifest.Rule), *addr)
	err = a.Run(ctx, *addr)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err == nil {
		fmt.Fprintf(stdout, "%s: the session is over\n", kit.Config.Name)
	}
	return err
}

func ruleOrMean(r string) string {
	if r == "" {
		return "mean"
	}
	return r
}
