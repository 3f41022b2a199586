package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/atomicfile"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
)

// runDemo provisions a federation in a new directory, runs its coordinator
// and nodes as processes of this binary, prints each round as the
// coordinator records it (its /rounds and /status), and sums the run up.
func runDemo(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	for i, a := range args {
		if a == "--vertical" || a == "-vertical" {
			return runVerticalDemo(slices.Delete(slices.Clone(args), i, i+1), stdout, stderr)
		}
	}
	var d demoFlags
	opts, err := d.parse(args, stderr)
	if err != nil {
		return err
	}
	dir, remove, err := d.workDir()
	if err != nil {
		return err
	}
	defer remove()
	start := time.Now()
	if d.trainer != "" {
		if opts, err = d.external(dir, stdout); err != nil {
			return err
		}
	}
	f, err := d.provision(dir, opts, stdout)
	if err != nil {
		return err
	}
	defer f.stopAll()
	d.announce(stdout, opts, dir)
	if d.fed.dpNoise > 0 {
		if err := printDemoDP(stdout, f, d.fed.rounds); err != nil {
			return err
		}
	}
	names, err := f.startDaemons(stdout, d.fed.nodes)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d.timeout)
	defer cancel()
	h, err := f.follow(ctx, names, d.fed.rounds, stdout)
	if err != nil {
		return err
	}
	total := time.Since(start).Seconds()
	st := f.stopCoordinator()
	res := summarize(h, f.nodeReportTimes(names), opts, d.seed, d.partition, total)
	res.SetupSeconds = f.setup
	res.Rule, res.Compress = opts.Rule, opts.Compress
	if d.attack != "" {
		res.Attack, res.Byzantine = d.attack, d.byzantine
		f.stopAll() // the nodes' stores, closed, for the export
		// node-1 … node-F attack; the last node is honest.
		if res.BackdoorSuccess, err = d.backdoorSuccess(ctx, f, names[len(names)-1]); err != nil {
			return fmt.Errorf("measuring the backdoor's success: %w", err)
		}
	}
	res.Messages = st.Messages
	if d.keep != "" {
		res.Dir = dir
	}
	return d.report(stdout, res)
}

// demoFlags are the flags of `cloister demo`: the manifest's settings (as
// `cloister init` takes them, with the demo's defaults) and how to run.
type demoFlags struct {
	fed                 federationFlags
	seed, dpSeed        uint64
	partition, logLevel string
	jsonPath, plotPath  string
	keep, store         string
	timeout             time.Duration
	attestEvery         time.Duration
	dump                bool
	attack              string // --insecure-attack
	byzantine           int    // --byzantine
	trainer             string
	trainerTimeout      time.Duration
}

func (d *demoFlags) register(fs *flag.FlagSet) {
	ff := &d.fed
	fs.IntVar(&ff.nodes, "nodes", 5, "member sites (node processes)")
	fs.IntVar(&ff.threshold, "threshold", 3, "t: members needed to reveal an aggregate")
	fs.IntVar(&ff.minCohort, "min-cohort", 0, "fewest updates a round may aggregate, and the k of each node's DP noise share σC/√k (0: the threshold)")
	fs.IntVar(&ff.rounds, "rounds", 20, "rounds")
	fs.Bool("vertical", false, "run vertical learning instead (Fashion-MNIST split by image halves, PSI, hetero logistic regression under threshold Paillier; cloister demo --vertical -h for its flags)")
	fs.StringVar(&ff.mode, "mode", federation.ModeMHE, "aggregation mode: mhe, secagg, paillier, tee (an attested aggregator process, on the simulated TEE, applies --rule) or plain")
	fs.StringVar(&ff.preset, "preset", pki.DefaultPreset, "preset of the mode: for mhe Agg128 or InsecureTest; for secagg secagg64 (the default) or secagg32; for paillier paillier2048 (the default) or InsecureTest")
	fs.IntVar(&ff.neighbours, "neighbours", 0, "mode secagg: mask with a ring of K neighbours instead of every member (0: every member)")
	fs.Uint64Var(&d.seed, "seed", 1, "seed of the partition, the initial model and local shuffling")
	fs.StringVar(&d.jsonPath, "json", "", "write the results as JSON to this file")
	fs.StringVar(&d.plotPath, "plot", "", "write accuracy and loss per round as SVG to this file")
	fs.StringVar(&d.keep, "keep", "", "keep the federation, states and logs in this new directory (default: a temporary directory, removed)")
	fs.StringVar(&ff.data, "data", "fashion-mnist", "dataset every node takes its share of")
	fs.StringVar(&d.partition, "partition", "dirichlet:0.5", "how the training set is split over the nodes")
	fs.StringVar(&ff.kind, "model", "mlp", "model: softmax or mlp")
	fs.StringVar(&ff.hidden, "hidden", "128", "hidden layer sizes of the mlp")
	fs.Float64Var(&ff.lr, "lr", 0.05, "local learning rate")
	fs.Float64Var(&ff.momentum, "momentum", defaultMomentum, "local SGD momentum (in the manifest)")
	fs.StringVar(&ff.strategy, "strategy", "fedavg", "server optimizer: fedavg, fedadam, fedyogi, fedadagrad or scaffold (in the manifest)")
	fs.Float64Var(&ff.serverLR, "server-lr", 0, "server learning rate of --strategy (0: the strategy's default)")
	fs.IntVar(&ff.batch, "batch", 64, "local minibatch size")
	fs.IntVar(&ff.localEpochs, "local-epochs", 3, "local epochs per round (3 reaches 0.85 on Dirichlet 0.5 in 20 rounds; 1 does not quite)")
	fs.DurationVar(&d.timeout, "timeout", 30*time.Minute, "give up after this long")
	fs.StringVar(&d.logLevel, "log-level", "info", "log level of the processes (logs in DIR/logs)")
	fs.StringVar(&d.store, "store", "", "the coordinator's store: a PostgreSQL URL (postgres://…; each demo is a new session in it) or a SQLite path (default: a SQLite file in its state directory)")
	fs.BoolVar(&d.dump, "insecure-dump-updates", false, "TESTING ONLY: nodes write their plaintext updates under DIR/updates (blindness tests; needs --keep)")
	fs.Float64Var(&ff.dpNoise, "dp-noise", 0, "distributed DP: noise multiplier σ of the summed noise (0: no DP)")
	fs.Float64Var(&ff.dpClip, "clip", 1, "with --dp-noise: L2 clipping norm C of each update")
	fs.Float64Var(&ff.eps, "epsilon", 8, "with --dp-noise: the federation's ε budget; the coordinator stops at the last round within it")
	fs.Float64Var(&ff.delta, "delta", 1e-5, "with --dp-noise: δ")
	fs.StringVar(&ff.tee, "tee", "", "run the nodes on a TEE and require its evidence: sim (INSECURE simulated TEE, measuring this binary); empty: attestation off")
	fs.DurationVar(&d.attestEvery, "attest-every", node.DefaultAttestEvery, "with --tee: nodes rotate their process keys and re-attest this often; in mode tee, the aggregator too")
	fs.StringVar(&ff.compress, "compress", "none", compressUsage)
	fs.StringVar(&ff.rule, "rule", "mean", "aggregation rule: mean, or in modes tee and plain median, trimmed:β, krum, multikrum:m, bulyan or cclip (f: the most the rule tolerates with --min-cohort updates, unless given)")
	fs.StringVar(&d.attack, "insecure-attack", "", "INSECURE, research only: node-1 … node-F (--byzantine) run this attack (sign-flip, scale, gaussian, label-flip, alie, ipm, backdoor); the manifest then allows attacks")
	fs.IntVar(&d.byzantine, "byzantine", 1, "with --insecure-attack: how many nodes attack")
	fs.StringVar(&d.trainer, "trainer", "", "bring your own model: every node starts this external trainer, as \"python3 examples/pytorch-fmnist/train.py\" (the demo describes its layout, the manifest pins it, each node deals it its share of --data by --partition)")
	fs.DurationVar(&d.trainerTimeout, "trainer-timeout", node.DefaultTrainerTimeout, "with --trainer: how long each trainer task may take")
	fs.Uint64Var(&d.dpSeed, "insecure-dp-seed", 0, "TESTING ONLY: nodes draw the DP noise from streams seeded by this (reproducible mhe-against-plain comparisons; no privacy); 0: crypto/rand")
}

// parse parses and checks the flags before anything is provisioned, and
// returns the federation's options (DP off unless --dp-noise).
func (d *demoFlags) parse(args []string, stderr io.Writer) (pki.InitOptions, error) {
	fs := newFlags("demo", stderr)
	d.register(fs)
	if err := parse(fs, args); err != nil {
		return pki.InitOptions{}, err
	}
	if err := checkDemoDP(d.fed.dpNoise, d.fed.dpClip, d.fed.eps, d.fed.delta); err != nil {
		return pki.InitOptions{}, err
	}
	if d.fed.tee != "" && d.fed.tee != attest.FormatSim {
		return pki.InitOptions{}, withHint(fmt.Errorf("demo --tee %s: the demo runs on this machine", d.fed.tee), "use --tee sim")
	}
	if d.dump && d.keep == "" {
		return pki.InitOptions{}, withHint(errors.New("--insecure-dump-updates needs --keep"), "cloister demo --keep DIR --insecure-dump-updates")
	}
	d.fed.address = pki.DefaultAddress
	d.fed.attestMaxAge = max(2*time.Hour, 2*d.attestEvery)
	if d.fed.mode == federation.ModeTEE {
		d.fed.aggTEE = attest.FormatSim // the demo runs on this machine: a simulated TEE measuring this binary
	}
	opts, err := d.fed.options()
	if err != nil {
		return pki.InitOptions{}, err
	}
	opts.Federation = "demo"
	if d.attack != "" {
		if d.byzantine < 1 || d.byzantine > d.fed.nodes {
			return pki.InitOptions{}, fmt.Errorf("--byzantine %d outside 1..%d (--nodes)", d.byzantine, d.fed.nodes)
		}
		opts.InsecureAttacks = true
	}
	return opts, nil
}

// workDir makes the demo's directory: the new directory --keep names, or
// a temporary one that remove deletes.
func (d *demoFlags) workDir() (dir string, remove func(), err error) {
	if d.keep != "" {
		if err := os.Mkdir(d.keep, 0o700); err != nil {
			return "", nil, withHint(err, "--keep takes a new directory")
		}
		return d.keep, func() {}, nil
	}
	if dir, err = os.MkdirTemp("", "cloister-demo-"); err != nil {
		return "", nil, err
	}
	return dir, func() { os.RemoveAll(dir) }, nil
}

// provision writes the federation into dir and the daemons' arguments.
func (d *demoFlags) provision(dir string, opts pki.InitOptions, stdout io.Writer) (*localFed, error) {
	f, err := newLocalFed(dir, opts)
	if err != nil {
		return nil, err
	}
	f.nodeArgs = []string{"--data", d.fed.data, "--partition", d.partition, "--seed", strconv.FormatUint(d.seed, 10)}
	f.coordArgs = []string{"--tick", "200ms", "--log-level", d.logLevel}
	if d.store != "" {
		f.coordArgs = append(f.coordArgs, "--store", d.store)
	}
	f.nodeArgs = append(f.nodeArgs, "--log-level", d.logLevel)
	if d.fed.tee != "" {
		f.nodeArgs = append(f.nodeArgs, "--tee", d.fed.tee, "--attest-every", d.attestEvery.String())
	}
	if d.dpSeed != 0 {
		f.nodeArgs = append(f.nodeArgs, "--insecure-dp-seed", strconv.FormatUint(d.dpSeed, 10))
		fmt.Fprintf(stdout, "WARNING: --insecure-dp-seed: the DP noise is reproducible, not private. Comparisons only.\n")
	}
	if d.trainer != "" {
		f.nodeArgs = append(f.nodeArgs, "--trainer", d.trainer, "--trainer-timeout", d.trainerTimeout.String())
	}
	f.dumpUpdates = d.dump
	if opts.AggregatorAttestation != nil {
		f.aggregatorArgs = []string{"--tee", attest.FormatSim, "--log-level", d.logLevel, "--attest-every", d.attestEvery.String()}
		fmt.Fprintf(stdout, "WARNING: mode tee's aggregator runs on a SIMULATED TEE (--tee sim): its evidence proves nothing. Development only.\n")
	}
	if d.attack != "" {
		f.argsOf = map[string][]string{}
		for i := 1; i <= d.byzantine; i++ {
			name := fmt.Sprintf("node-%d", i)
			f.argsOf[name] = append(f.argsOf[name], "--insecure-attack", d.attack, "--insecure-attackers", strconv.Itoa(d.byzantine))
		}
	}
	return f, nil
}

// external describes --trainer's layout into DIR/layout.json (the
// trainer's output in DIR/describe.txt) and returns the federation's
// options with the external model that pins it.
func (d *demoFlags) external(dir string, stdout io.Writer) (pki.InitOptions, error) {
	fmt.Fprintf(stdout, "describing the trainer's layout: %s\n", d.trainer)
	out, err := os.OpenFile(filepath.Join(dir, "describe.txt"), os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		return pki.InitOptions{}, err
	}
	defer out.Close()
	l, err := describeTrainer(context.Background(), strings.Fields(d.trainer), 5*time.Minute, out)
	if err != nil {
		return pki.InitOptions{}, withHint(err, "run it alone to see why: cloister trainer describe -- "+d.trainer)
	}
	b, err := l.File()
	if err != nil {
		return pki.InitOptions{}, err
	}
	path := filepath.Join(dir, "layout.json")
	if err := atomicfile.Create(path, b, 0o644); err != nil {
		return pki.InitOptions{}, err
	}
	d.fed.kind, d.fed.layout = federation.ModelExternal, path
	opts, err := d.fed.options()
	if err != nil {
		return pki.InitOptions{}, err
	}
	opts.Federation = "demo"
	return opts, nil
}

// announce states what the demo runs, and warns about what protects nothing.
func (d *demoFlags) announce(w io.Writer, opts pki.InitOptions, dir string) {
	what := d.fed.mode
	if opts.Preset != "" {
		what += " (" + opts.Preset + ")"
	}
	fmt.Fprintf(w, "cloister demo: %d node processes, t=%d, %d rounds, mode %s, %s on %s (%s), %s, seed %d\n",
		d.fed.nodes, d.fed.threshold, d.fed.rounds, what, opts.Model, d.fed.data, d.partition, opts.Training.Strategy, d.seed)
	if d.fed.mode == federation.ModePlain {
		fmt.Fprintf(w, "WARNING: mode plain protects nothing: the coordinator sees every update. Baseline only.\n")
	}
	if opts.Compress != "" {
		fmt.Fprintf(w, "updates compressed with %s\n", opts.Compress)
	}
	if opts.Rule != "" {
		fmt.Fprintf(w, "rule %s\n", opts.Rule)
	}
	if d.attack != "" {
		fmt.Fprintf(w, "WARNING: --insecure-attack: node-1 … node-%d are Byzantine attackers (%s). Research only.\n", d.byzantine, d.attack)
	}
	if d.fed.tee == attest.FormatSim {
		fmt.Fprintf(w, "WARNING: --tee sim is a SIMULATED TEE: its evidence proves nothing. Development only.\n")
	}
	fmt.Fprintf(w, "federation, states and logs in %s\n", dir)
}

// report prints the summary, writes the JSON and the plot asked for, and
// fails if fewer rounds committed than asked for, unless the privacy
// budget stopped them.
func (d *demoFlags) report(w io.Writer, res demoResult) error {
	printSummary(w, res)
	if d.jsonPath != "" {
		b, err := marshalIndent(res)
		if err != nil {
			return err
		}
		if err := store.WriteFile(d.jsonPath, b, 0o644); err != nil {
			return fmt.Errorf("--json: %w", err)
		}
	}
	if d.plotPath != "" {
		if err := demoPlot(d.plotPath, res); err != nil {
			return fmt.Errorf("--plot: %w", err)
		}
	}
	if rounds := d.fed.rounds; res.Rounds < rounds {
		if res.DP != nil && res.DP.Exhausted {
			fmt.Fprintf(w, "stopped by the privacy budget: %d of %d rounds committed (round %d would pass ε = %g)\n",
				res.Rounds, rounds, res.DP.MaxRound+1, res.DP.Budget)
			return nil
		}
		err := fmt.Errorf("only %d of %d rounds committed", res.Rounds, rounds)
		if d.keep == "" {
			return withHint(err, "run with --keep DIR to keep the processes' logs (DIR/logs)")
		}
		return withHint(err, "the processes' logs are in "+filepath.Join(d.keep, "logs"))
	}
	return nil
}

// startDaemons starts the coordinator, then n nodes, and returns the
// nodes' names.
func (f *localFed) startDaemons(w io.Writer, n int) ([]string, error) {
	if err := f.startCoordinator(); err != nil {
		return nil, err
	}
	fmt.Fprintf(w, "dashboard: http://%s/ (while the demo runs; JSON at /status and /rounds)\n", f.metrics)
	if f.aggregatorArgs != nil {
		if err := f.startAggregator(); err != nil {
			return nil, err
		}
	}
	var names []string
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("node-%d", i)
		names = append(names, name)
		if err := f.startNode(name); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// follow polls the coordinator's /rounds, prints each round as it ends,
// and returns the history once every node process has exited (the session
// is over). It notes in f.setup when the first round began.
func (f *localFed) follow(ctx context.Context, names []string, rounds int, w io.Writer) (*coordinator.History, error) {
	printed := map[fl.Round]bool{}
	printEnded := func(h *coordinator.History) {
		for _, r := range h.History {
			if !printed[r.Round] && !r.Ended.IsZero() {
				printed[r.Round] = true
				printRound(w, r, rounds)
			}
		}
	}
	start, setupShown := time.Now(), false
	var last *coordinator.History
	for {
		if h, err := f.history(); err == nil {
			last = h
			if !setupShown && h.Round > 0 {
				f.setup = time.Since(start).Seconds()
				fmt.Fprintf(w, "admission and key setup (collective key, threshold shares, group key) done after %.1fs\n", f.setup)
				setupShown = true
			}
			printEnded(h)
		}
		done, err := f.exited(names)
		if err != nil {
			return nil, err
		}
		if done {
			h, err := f.history()
			if err != nil {
				if last == nil {
					return nil, err
				}
				h = last
			}
			printEnded(h)
			return h, nil
		}
		select {
		case <-ctx.Done():
			return nil, withHint(fmt.Errorf("the demo did not finish: %w", ctx.Err()), "give it longer with --timeout, or ask for fewer --rounds")
		case <-time.After(300 * time.Millisecond):
		}
	}
}

// exited reports whether every node process has exited. It fails if a
// node failed, or if the coordinator exited.
func (f *localFed) exited(names []string) (bool, error) {
	n := 0
	for _, name := range names {
		p := f.proc(name)
		select {
		case <-p.done:
			if p.err != nil {
				return false, fmt.Errorf("%s failed: %v\n%s", name, p.err, tail(f.logPath(name), 15))
			}
			n++
		default:
		}
	}
	select {
	case <-f.proc("coordinator").done:
		return false, fmt.Errorf("the coordinator exited: %v\n%s", f.proc("coordinator").err, tail(f.logPath("coordinator"), 15))
	default:
	}
	return n == len(names), nil
}

// stopCoordinator reads the coordinator's last /status, then stops it:
// every node has exited, so the session is over.
func (f *localFed) stopCoordinator() fedStatus {
	st, _ := f.status()
	f.signal("coordinator", syscall.SIGTERM)
	select {
	case <-f.proc("coordinator").done:
	case <-time.After(20 * time.Second):
	}
	return st
}

// checkDemoDP checks the demo's DP flags before anything is provisioned.
func checkDemoDP(noise, clip, epsilon, delta float64) error {
	bad := func(x float64) bool { return math.IsNaN(x) || math.IsInf(x, 0) }
	switch {
	case bad(noise) || noise < 0:
		return withHint(fmt.Errorf("--dp-noise %v: want a noise multiplier ≥ 0", noise), "0 turns DP off; docs/PRIVACY.md lists σ for ε ≈ 1, 3 and 8")
	case noise == 0:
		return nil
	case bad(clip) || clip <= 0:
		return fmt.Errorf("--clip %v: want a positive L2 clipping norm", clip)
	case bad(epsilon) || epsilon <= 0:
		return fmt.Errorf("--epsilon %v: want a positive ε budget", epsilon)
	case !(delta > 0 && delta < 1):
		return fmt.Errorf("--delta %v: want δ in (0, 1)", delta)
	}
	return nil
}

// printDemoDP states the federation's privacy accounting (federation.Privacy, the
// rule both daemons use) and how many rounds the budget covers.
func printDemoDP(w io.Writer, f *localFed, rounds int) error {
	kit, err := pki.LoadKit(f.kit(pki.CoordinatorDir))
	if err != nil {
		return err
	}
	man := kit.Manifest
	fed, err := federation.Resolve(man, federation.Overrides{})
	if err != nil {
		return err
	}
	if fed.Budget == nil {
		return errors.New("the demo's manifest has no differential privacy")
	}
	rule, n := fed.Budget.Rule, int(fed.Budget.MaxRound)
	d := man.DP
	fmt.Fprintf(w, "distributed DP: σ = %g, C = %g, k = %d: each node adds noise of std %.4g; q = %g, δ = %g, accountant multiplier %.6g\n",
		d.NoiseMultiplier, d.Clip, man.MinCohort, d.NoiseMultiplier*d.Clip/math.Sqrt(float64(man.MinCohort)), rule.SampleRate, d.Delta, rule.Multiplier)
	last, err := rule.After(min(n, rounds))
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "privacy budget ε = %g covers %d rounds; after %d: %v\n", d.Epsilon, n, last.Rounds, last)
	if n < rounds {
		fmt.Fprintf(w, "note: the coordinator stops after round %d, before the %d rounds asked for\n", n, rounds)
	}
	return nil
}
