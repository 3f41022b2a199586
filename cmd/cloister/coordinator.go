package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/transport"
)

// logFlags choose the format and level of a daemon's slog records.
type logFlags struct {
	format, level string
}

func (l *logFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&l.format, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.level, "log-level", "info", "log level: debug, info, warn or error")
}

func (l *logFlags) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.level)); err != nil {
		return nil, withHint(fmt.Errorf("--log-level %q: %w", l.level, err), "use debug, info, warn or error")
	}
	o := &slog.HandlerOptions{Level: lvl}
	switch l.format {
	case "text":
		return slog.New(slog.NewTextHandler(w, o)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, o)), nil
	}
	return nil, withHint(fmt.Errorf("--log-format %q", l.format), "use text or json")
}

// loadKit loads a kit and explains the usual mistakes.
func loadKit(dir string, want pki.Role) (*pki.Kit, error) {
	if dir == "" {
		return nil, withHint(errors.New("no --kit"), "pass the kit directory 'cloister init' wrote, e.g. --kit fed/node-1")
	}
	k, err := pki.LoadKit(dir)
	if err != nil {
		if errors.Is(err, pki.ErrInsecureKey) {
			return nil, withHint(err, "chmod 600 the key files of "+dir)
		}
		return nil, err
	}
	if k.Identity().Role != want {
		return nil, withHint(fmt.Errorf("%s holds the kit of %s, not of a %s", dir, k.Identity(), want),
			fmt.Sprintf("pass the %s's kit", want))
	}
	return k, nil
}

func runCoordinator(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("coordinator", stderr)
	kitDir := fs.String("kit", "", "the coordinator's kit directory (required)")
	listen := fs.String("listen", "", "address to accept nodes on (default: the kit's coordinator address)")
	metricsAddr := fs.String("metrics", "", "address for the dashboard (/), /metrics, /rounds and /status over HTTP, unauthenticated (default: off)")
	state := fs.String("state", "", "state directory (default: KIT/state)")
	tick := fs.Duration("tick", coordinator.DefaultTick, "engine clock period")
	collect := fs.Duration("collect-timeout", 5*time.Minute, "how long a round waits for uploads from connected nodes")
	setup := fs.Duration("setup-timeout", 2*time.Minute, "how long each key-setup step waits")
	step := fs.Duration("step-timeout", time.Minute, "how long the reveal and each leader's commit wait")
	eval := fs.Duration("eval-timeout", 2*time.Minute, "how long a round waits for the nodes' metrics")
	gather := fs.Duration("gather", 3*time.Second, "after a restart or dropouts: how long to wait for the rest once enough members are back")
	join := fs.Duration("join-timeout", 30*time.Second, "how long a key setup waits for members that have not said Hello, once max(t, min cohort) have")
	crl := fs.String("crl", "", "the federation CA's revocation list (cloister ca revoke writes it): refuse and exclude the revoked; re-read every 2s (default: none)")
	maxMsg := fs.Int64("max-message", 0, "largest message in bytes (0: computed from the manifest, as every node does; a value below the federation's largest message is refused)")
	var lf logFlags
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	kit, err := loadKit(*kitDir, pki.RoleCoordinator)
	if err != nil {
		return err
	}
	if *listen == "" {
		*listen = kit.Config.CoordinatorAddress
	}
	if *state == "" {
		*state = filepath.Join(*kitDir, "state")
	}
	rv, err := openCRL(*crl, kit)
	if err != nil {
		return err
	}
	c, err := coordinator.New(coordinator.Config{
		Kit: kit, StateDir: *state, Logger: log, Tick: *tick, Limits: transport.Limits{MaxMessage: *maxMsg}, CRL: rv,
		Deadlines: coordinator.Deadlines{Setup: *setup, Collect: *collect, Reveal: *step, Commit: *step, Eval: *eval, Gather: *gather, Join: *join},
	})
	if errors.Is(err, federation.ErrLimitTooSmall) {
		return withHint(err, "omit --max-message: the limit computed from the manifest fits every message")
	}
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		c.Shutdown(context.Background())
		return withHint(err, "is another coordinator running? pick another --listen")
	}
	hs, err := serveMetrics(c, *metricsAddr, log)
	if err != nil {
		l.Close()
		c.Shutdown(context.Background())
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	serveErr := make(chan error, 1)
	go func() { serveErr <- c.Serve(l) }()
	fmt.Fprintf(stdout, "coordinator %s of federation %s listening on %s (state %s)\n", kit.Config.Name, kit.Manifest.Federation, l.Addr(), *state)
	return runUntilDone(ctx, c, hs, serveErr, log)
}

// serveMetrics serves the coordinator's dashboard, /metrics, /rounds and
// /status on addr; nil without an address.
func serveMetrics(c *coordinator.Coordinator, addr string, log *slog.Logger) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	ml, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	hs := &http.Server{Handler: c.Handler(), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ml)
	log.Info("metrics", "addr", ml.Addr().String(), "paths", "/ (dashboard) /metrics /rounds /status")
	return hs, nil
}

// runUntilDone waits for a signal, the server's end or the session's, then
// shuts the metrics server (hs, if any) and the coordinator down.
func runUntilDone(ctx context.Context, c *coordinator.Coordinator, hs *http.Server, serveErr <-chan error, log *slog.Logger) error {
	var err error
	select {
	case <-ctx.Done():
		log.Info("shutting down")
	case err = <-serveErr:
	case <-c.Done():
		err = c.Err()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if hs != nil {
		hs.Shutdown(sctx)
	}
	if serr := c.Shutdown(sctx); err == nil {
		err = serr
	}
	if errors.Is(err, transport.ErrServerClosed) {
		err = nil
	}
	return err
}

// openCRL opens the --crl file (nil without one): it must hold a CRL
// signed by the kit's federation CA.
func openCRL(path string, kit *pki.Kit) (*pki.Revocations, error) {
	if path == "" {
		return nil, nil
	}
	rv, err := pki.OpenRevocations(path, kit.CA)
	if err != nil {
		return nil, withHint(fmt.Errorf("--crl: %w", err), "pass the crl.der that cloister ca revoke wrote in the federation's CA directory")
	}
	return rv, nil
}
