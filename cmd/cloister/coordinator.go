package main

import (
	"bytes"
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
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
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
	metricsAddr := fs.String("metrics", "", "address for the dashboard (/), /metrics, /rounds and /status (default: off); without --metrics-tls or --metrics-token only a loopback address, unauthenticated")
	metricsTLS := fs.Bool("metrics-tls", false, "serve --metrics over HTTPS with the coordinator's certificate to clients with an observer or admin certificate of the federation CA (cloister ca issue --role observer)")
	metricsToken := fs.String("metrics-token", "", "a 0600 file holding a bearer token that may read /metrics (Prometheus); implies --metrics-tls")
	healthAddr := fs.String("health", "", "address for GET /healthz over plain HTTP, for anyone (Kubernetes probes): 200 while the coordinator serves, 503 once it stops, and nothing else (default: off)")
	state := fs.String("state", "", "state directory: the audit log, and the SQLite store unless --store (default: KIT/state)")
	storeLoc := fs.String("store", "", "where the coordinator keeps its state: a PostgreSQL URL postgres://USER@HOST:PORT/DB?sslmode=verify-full (password from PGPASSWORD or ~/.pgpass, not the URL), or a SQLite file (a path or sqlite:PATH) (default: STATE/coordinator.db)")
	failover := fs.Bool("failover", false, "one of several coordinators sharing a PostgreSQL --store: lead while no other does, else wait as a standby (not listening) and take over from the stored state when the leader's lease expires")
	lease := fs.Duration("lease", coordinator.DefaultLease, "how long the lead lasts without renewal (renewed every quarter of it): a standby takes over this long after the leader stops; the same for every coordinator of the store")
	tick := fs.Duration("tick", coordinator.DefaultTick, "engine clock period")
	collect := fs.Duration("collect-timeout", 5*time.Minute, "how long a round waits for uploads from connected nodes")
	setup := fs.Duration("setup-timeout", 2*time.Minute, "how long each key-setup step waits")
	step := fs.Duration("step-timeout", time.Minute, "how long the reveal and each leader's commit wait")
	eval := fs.Duration("eval-timeout", 2*time.Minute, "how long a round waits for the nodes' metrics")
	gather := fs.Duration("gather", 3*time.Second, "after a restart or dropouts: how long to wait for the rest once enough members are back")
	join := fs.Duration("join-timeout", 30*time.Second, "how long a key setup waits for members that have not said Hello, once max(t, min cohort) have")
	keepalive := fs.Duration("keepalive", transport.DefaultKeepalive, "how long a node's connection may be idle before the coordinator pings it, and how long it then waits for the answer before dropping the connection (the node is down until it reconnects)")
	crl := fs.String("crl", "", "the federation CA's revocation list (cloister ca revoke writes it): refuse and exclude the revoked; re-read every 2s (default: none)")
	maxMsg := fs.Int64("max-message", 0, "largest message in bytes (0: computed from the manifest, as every node does; a value below the federation's largest message is refused)")
	var rates coordinator.Rates
	fs.IntVar(&rates.Hellos, "max-hellos", coordinator.DefaultHellosPerMinute, "Hellos per minute per member taken to attestation and relay; more are dropped (negative: no limit)")
	fs.IntVar(&rates.Refused, "max-refused", coordinator.DefaultRefusedPerMinute, "refused messages per minute per member recorded one by one; past it the member's messages are dropped and summed up in one record a minute (negative: no limit)")
	var lf logFlags
	lf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := lf.logger(stderr)
	if err != nil {
		return err
	}
	if *keepalive < time.Second {
		return withHint(fmt.Errorf("--keepalive %s: at least 1s", *keepalive), "omit --keepalive for the default, "+transport.DefaultKeepalive.String())
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
	if *failover && !store.IsPostgres(*storeLoc) {
		return withHint(errors.New("--failover needs a store the coordinators share: a PostgreSQL --store"),
			"pass every coordinator the same --store postgres://…; coordinators with SQLite files of their own would each run the federation")
	}
	if *lease < time.Second {
		return withHint(fmt.Errorf("--lease %v is shorter than a second", *lease), "leave the default, "+coordinator.DefaultLease.String())
	}
	rv, err := openCRL(*crl, kit)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg := coordinator.Config{
		Kit: kit, StateDir: *state, Store: *storeLoc, Lease: *lease, Logger: log, Tick: *tick, Limits: transport.Limits{MaxMessage: *maxMsg}, Rates: rates, CRL: rv, Keepalive: *keepalive,
		ManifestFile: filepath.Join(*kitDir, pki.ManifestFile),
		Deadlines:    coordinator.Deadlines{Setup: *setup, Collect: *collect, Reveal: *step, Commit: *step, Eval: *eval, Gather: *gather, Join: *join},
	}
	var c *coordinator.Coordinator
	if *failover {
		fmt.Fprintf(stdout, "coordinator %s of federation %s: taking the lead in %s, or waiting for it as a standby\n", kit.Config.Name, kit.Manifest.Federation, *state)
		c, err = coordinator.Standby(ctx, cfg)
		if errors.Is(err, context.Canceled) {
			return nil // stopped while a standby
		}
	} else {
		c, err = coordinator.New(cfg)
	}
	if errors.Is(err, federation.ErrLimitTooSmall) {
		return withHint(err, "omit --max-message: the limit computed from the manifest fits every message")
	}
	if err != nil {
		return storeHint(err)
	}
	l, err := net.Listen("tcp", *listen)
	if err != nil {
		c.Shutdown(context.Background())
		return withHint(err, "is another coordinator running? pick another --listen")
	}
	hs, err := serveMetrics(c, kit, metricsFlags{addr: *metricsAddr, tls: *metricsTLS, tokenFile: *metricsToken}, log)
	if err != nil {
		l.Close()
		c.Shutdown(context.Background())
		return err
	}
	var serving atomic.Bool
	hh, err := serveHealth(*healthAddr, func() error {
		select {
		case <-c.Done():
			return errors.New("stopped")
		default:
		}
		if !serving.Load() {
			return errors.New("not serving")
		}
		return nil
	})
	if err != nil {
		l.Close()
		if hs != nil {
			hs.Close()
		}
		c.Shutdown(context.Background())
		return err
	}
	serveErr := make(chan error, 1)
	serving.Store(true)
	go func() {
		err := c.Serve(l)
		serving.Store(false)
		serveErr <- err
	}()
	fmt.Fprintf(stdout, "coordinator %s of federation %s listening on %s (state %s, store %s)\n", kit.Config.Name, kit.Manifest.Federation, l.Addr(), *state, c.Store())
	return storeHint(runUntilDone(ctx, c, serveErr, log, hs, hh))
}

// storeHint explains the store errors an operator can fix.
func storeHint(err error) error {
	switch {
	case errors.Is(err, store.ErrUnreachable):
		return withHint(err, "check --store's host and port, that the server runs and accepts this machine (pg_hba.conf), and the password in PGPASSWORD or ~/.pgpass")
	case errors.Is(err, store.ErrNewerSchema):
		return withHint(err, "a newer cloister wrote this store: run that version (or newer), never an older one, on it")
	case errors.Is(err, store.ErrLeaseHeld):
		return withHint(err, "another coordinator leads this session in this store: stop it first, or run both with --failover to keep this one as its standby")
	case errors.Is(err, store.ErrFenced):
		return withHint(err, "another coordinator took the lead; this one stopped acting (restarted with --failover, it waits as a standby)")
	}
	return err
}

// serveHealth serves GET /healthz on addr (nil without an address), in
// plain HTTP to anyone: 200 "ok" while up returns nil, 503 with its error
// otherwise. It tells a prober whether the daemon is up and nothing else:
// what it is doing is on the metrics listener, for observers. Probing the
// mutual-TLS port instead would log every probe as a refused handshake.
func serveHealth(addr string, up func() error) (*http.Server, error) {
	if addr == "" {
		return nil, nil
	}
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--health: %w", err)
	}
	hs := &http.Server{Handler: healthHandler(up), ReadHeaderTimeout: 5 * time.Second}
	go hs.Serve(l)
	return hs, nil
}

func healthHandler(up func() error) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if err := up(); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok\n")
	})
	return mux
}

// metricsFlags say where and to whom the coordinator serves its dashboard,
// /metrics, /rounds and /status.
type metricsFlags struct {
	addr      string
	tls       bool   // HTTPS, observer and admin certificates
	tokenFile string // a bearer token for /metrics (implies tls)
}

// serveMetrics serves the coordinator's dashboard, /metrics, /rounds and
// /status on m.addr behind [coordinator.Access]; nil without an address.
// With --metrics-tls or --metrics-token it serves HTTPS with the
// coordinator's certificate, to observer and admin certificates of the
// federation CA (and the token for /metrics); with neither, it serves plain
// HTTP to anyone, so it refuses any address but a loopback one.
func serveMetrics(c *coordinator.Coordinator, kit *pki.Kit, m metricsFlags, log *slog.Logger) (*http.Server, error) {
	if m.addr == "" {
		if m.tls || m.tokenFile != "" {
			return nil, withHint(errors.New("--metrics-tls and --metrics-token need --metrics ADDR"), "cloister coordinator --metrics :9464 --metrics-tls")
		}
		return nil, nil
	}
	access := coordinator.Access{CA: kit.CA}
	if m.tokenFile != "" {
		tok, err := readToken(m.tokenFile)
		if err != nil {
			return nil, err
		}
		access.Token = tok
		m.tls = true
	}
	if !m.tls {
		if !loopbackAddr(m.addr) {
			return nil, withHint(fmt.Errorf("--metrics %s: without --metrics-tls or --metrics-token the dashboard, /status, /rounds and /metrics are open to anyone who reaches the port, so only a loopback address is allowed", m.addr),
				"add --metrics-tls (observers: cloister ca issue --role observer NAME) and/or --metrics-token FILE (Prometheus), or bind --metrics 127.0.0.1:PORT")
		}
		access.Open = true
	}
	ml, err := net.Listen("tcp", m.addr)
	if err != nil {
		return nil, fmt.Errorf("--metrics: %w", err)
	}
	hs := &http.Server{Handler: access.Wrap(c.Handler()), ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelInfo)} // refused handshakes
	paths := "/ (dashboard) /metrics /rounds /status"
	if !m.tls {
		go hs.Serve(ml)
		log.Warn("metrics: unauthenticated, local only (plain HTTP on a loopback address); use --metrics-tls or --metrics-token to serve others",
			"addr", ml.Addr().String(), "paths", paths)
		return hs, nil
	}
	cfg, err := pki.ObserverServerConfig(kit.CA, kit.Credential, pki.Options{})
	if err != nil {
		ml.Close()
		return nil, err
	}
	hs.TLSConfig = cfg
	go hs.ServeTLS(ml, "", "")
	who := "observer and admin certificates of the federation CA"
	if access.Token != nil {
		who += "; the bearer token for /metrics"
	}
	log.Info("metrics", "addr", "https://"+ml.Addr().String(), "paths", paths, "access", who)
	return hs, nil
}

// loopbackAddr reports whether host:port names only this machine: a
// loopback IP or "localhost" (":9464" and "0.0.0.0:9464" do not).
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// readToken reads a bearer token file: private to its owner (0600 or
// stricter), one line of at least 16 characters.
func readToken(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--metrics-token: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("--metrics-token: %s is not a regular file", path)
	}
	if p := st.Mode().Perm(); p&0o077 != 0 {
		return nil, withHint(fmt.Errorf("--metrics-token: %s has mode %04o: others can read the token", path, p), "chmod 600 "+path)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--metrics-token: %w", err)
	}
	tok := bytes.TrimSpace(b)
	if len(tok) < 16 || bytes.ContainsAny(tok, " \t\r\n") {
		return nil, withHint(fmt.Errorf("--metrics-token: %s must hold one token of at least 16 characters and no spaces", path), "(umask 077; openssl rand -hex 32 > "+path+")")
	}
	return tok, nil
}

// runUntilDone waits for a signal, the server's end or the session's, then
// shuts the HTTP servers (the metrics and health listeners, nil if off) and
// the coordinator down.
func runUntilDone(ctx context.Context, c *coordinator.Coordinator, serveErr <-chan error, log *slog.Logger, servers ...*http.Server) error {
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
	for _, hs := range servers {
		if hs != nil {
			hs.Shutdown(sctx)
		}
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
