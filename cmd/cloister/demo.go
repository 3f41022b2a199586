package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/plot"
	"github.com/cloisterfl/cloister/store"
)

// localFed runs a federation of real processes of this binary on
// 127.0.0.1: the coordinator and one process per node, each with its own
// state directory and log file. `cloister demo` and the fault tests use it.
//
//	DIR/fed/                 the federation (cloister init)
//	DIR/state/coordinator/   the coordinator's state (coordinator.db, audit.log)
//	DIR/state/node-i/        each node's state (node.db, audit.log)
//	DIR/logs/*.txt           each process's stdout and stderr (JSON records)
type localFed struct {
	dir       string
	exe       string
	addr      string // the coordinator's
	metrics   string // the coordinator's /metrics, /rounds, /status
	nodeArgs  []string
	coordArgs []string
	env       []string

	setup       float64             // seconds from the processes' start to round 1
	dumpUpdates bool                // nodes write their plaintext updates under DIR/updates/NAME (tests)
	exeOf       map[string]string   // tests: another binary for a process (a tampered copy)
	argsOf      map[string][]string // tests: more arguments for a node

	mu    sync.Mutex
	procs map[string]*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}
	err  error
	log  *os.File
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// newLocalFed provisions a federation in dir (which must not hold one).
func newLocalFed(dir string, opts pki.InitOptions) (*localFed, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	f := &localFed{dir: dir, exe: exe, procs: map[string]*proc{}}
	if f.addr, err = freeAddr(); err != nil {
		return nil, err
	}
	if f.metrics, err = freeAddr(); err != nil {
		return nil, err
	}
	opts.Address = f.addr
	for _, d := range []string{"state", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			return nil, err
		}
	}
	if err := pki.InitFederation(filepath.Join(dir, "fed"), opts, time.Now(), nil); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *localFed) kit(name string) string { return filepath.Join(f.dir, "fed", name) }
func (f *localFed) state(name string) string {
	return filepath.Join(f.dir, "state", name)
}
func (f *localFed) logPath(name string) string { return filepath.Join(f.dir, "logs", name+".txt") }

// start runs `cloister args...` as process name, appending to its log.
func (f *localFed) start(name string, args ...string) error {
	lf, err := os.OpenFile(f.logPath(name), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	exe := f.exe
	if e, ok := f.exeOf[name]; ok {
		exe = e
	}
	cmd := &exec.Cmd{Path: exe, Args: append([]string{"cloister"}, args...), Stdout: lf, Stderr: lf, Env: append(os.Environ(), f.env...)}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{}), log: lf}
	go func() {
		p.err = cmd.Wait()
		lf.Close()
		close(p.done)
	}()
	f.mu.Lock()
	f.procs[name] = p
	f.mu.Unlock()
	return nil
}

func (f *localFed) proc(name string) *proc {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.procs[name]
}

func (f *localFed) startCoordinator() error {
	args := append([]string{"coordinator", "--kit", f.kit(pki.CoordinatorDir), "--listen", f.addr, "--metrics", f.metrics,
		"--state", f.state("coordinator"), "--log-format", "json"}, f.coordArgs...)
	if err := f.start("coordinator", args...); err != nil {
		return err
	}
	// Wait for /status.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := f.status(); err == nil {
			return nil
		}
		select {
		case <-f.proc("coordinator").done:
			return fmt.Errorf("the coordinator exited: %v\n%s", f.proc("coordinator").err, tail(f.logPath("coordinator"), 20))
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the coordinator did not come up in 30s\n%s", tail(f.logPath("coordinator"), 20))
		}
	}
}

func (f *localFed) startNode(name string) error {
	args := append([]string{"node", "--kit", f.kit(name), "--coordinator", f.addr, "--state", f.state(name), "--log-format", "json"}, f.nodeArgs...)
	args = append(args, f.argsOf[name]...)
	if f.dumpUpdates {
		args = append(args, "--insecure-dump-updates", filepath.Join(f.dir, "updates", name))
	}
	return f.start(name, args...)
}

// signal sends sig to process name.
func (f *localFed) signal(name string, sig syscall.Signal) error {
	p := f.proc(name)
	if p == nil {
		return fmt.Errorf("no process %s", name)
	}
	return p.cmd.Process.Signal(sig)
}

// kill SIGKILLs process name and waits for it.
func (f *localFed) kill(name string) error {
	if err := f.signal(name, syscall.SIGKILL); err != nil {
		return err
	}
	<-f.proc(name).done
	return nil
}

// stopAll ends every process still running: SIGTERM, then SIGKILL.
func (f *localFed) stopAll() {
	f.mu.Lock()
	ps := make([]*proc, 0, len(f.procs))
	for _, p := range f.procs {
		ps = append(ps, p)
	}
	f.mu.Unlock()
	for _, p := range ps {
		select {
		case <-p.done:
			continue
		default:
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(15 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	}
}

func (f *localFed) get(path string, v any) error {
	c := http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + f.metrics + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("GET %s: %s: %s", path, resp.Status, b)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// fedStatus is the coordinator's /status.
type fedStatus struct {
	Phase         string       `json:"phase"`
	Round         fl.Round     `json:"round"`
	Commits       int          `json:"commits"`
	LastCommitted fl.Round     `json:"last_committed"`
	Live          []fl.NodeID  `json:"live"`
	Leader        fl.NodeID    `json:"leader"`
	Connected     []fl.NodeID  `json:"connected"`
	Messages      messageSizes `json:"messages"`
}

// messageSizes are the coordinator's message limit (computed from the
// manifest) and the largest messages it received and sent.
type messageSizes struct {
	MaxMessage uint64 `json:"max_message"`
	LargestIn  uint64 `json:"largest_in"`
	LargestOut uint64 `json:"largest_out"`
}

func (f *localFed) status() (fedStatus, error) {
	var s fedStatus
	err := f.get("/status", &s)
	return s, err
}

func (f *localFed) history() (*coordinator.History, error) {
	var h coordinator.History
	if err := f.get("/rounds", &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// waitStatus polls /status until ok(s) holds, a process fails, or timeout.
func (f *localFed) waitStatus(timeout time.Duration, poll time.Duration, ok func(fedStatus) bool) (fedStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := f.status()
		if err == nil && ok(s) {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("timed out after %v (last status %+v, %v)", timeout, s, err)
		}
		time.Sleep(poll)
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return path + ":\n  " + strings.Join(lines, "\n  ")
}

// nodeTimes are the mean seconds per task the nodes logged, and how many
// scheduled re-attestations (new session keys and TEE evidence) they made.
type nodeTimes struct {
	Train, Protect, Reveal, Decrypt, Evaluate, Reattest float64
	counts                                              [6]int
}

// parseNodeLogs reads the nodes' JSON logs for their task timings.
func (f *localFed) parseNodeLogs(names []string) nodeTimes {
	var t nodeTimes
	keys := []string{"train_s", "protect_s", "reveal_s", "decrypt_s", "eval_s", "rotate_s"}
	sums := make([]float64, len(keys))
	for _, name := range names {
		fh, err := os.Open(f.logPath(name))
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec map[string]any
			if json.Unmarshal(sc.Bytes(), &rec) != nil {
				continue
			}
			for i, k := range keys {
				if v, ok := rec[k].(float64); ok {
					sums[i] += v
					t.counts[i]++
				}
			}
		}
		fh.Close()
	}
	mean := func(i int) float64 {
		if t.counts[i] == 0 {
			return 0
		}
		return sums[i] / float64(t.counts[i])
	}
	t.Train, t.Protect, t.Reveal, t.Decrypt, t.Evaluate, t.Reattest = mean(0), mean(1), mean(2), mean(3), mean(4), mean(5)
	return t
}

// demoResult is what `cloister demo --json` writes.
type demoResult struct {
	FinalAccuracy      float64   `json:"final_accuracy"`
	FinalLoss          float64   `json:"final_loss"`
	Rounds             int       `json:"rounds"`
	Mode               string    `json:"mode"`
	Preset             string    `json:"preset,omitempty"`
	Nodes              int       `json:"nodes"`
	Threshold          int       `json:"threshold"`
	Seed               uint64    `json:"seed"`
	Model              string    `json:"model"`
	Partition          string    `json:"partition"`
	Strategy           string    `json:"strategy"`
	SecondsPerRound    []float64 `json:"seconds_per_round"`
	MedianRoundSeconds float64   `json:"median_round_seconds"`
	BytesUpPerRound    []uint64  `json:"bytes_up_per_round"`
	BytesDownPerRound  []uint64  `json:"bytes_down_per_round"`
	AccuracyPerRound   []float64 `json:"accuracy_per_round"`
	LossPerRound       []float64 `json:"loss_per_round"`
	// With DP: the federation's cumulative ε after each committed round and
	// at the end, at the manifest's δ (the coordinator's /rounds), and the
	// DP settings with the round cap the budget sets.
	EpsilonPerRound []float64            `json:"epsilon_per_round,omitempty"`
	EpsilonTotal    float64              `json:"epsilon_total,omitempty"`
	DP              *coordinator.Privacy `json:"dp,omitempty"`
	// PhaseSeconds lists, per phase, the seconds of each round.
	PhaseSeconds map[string][]float64 `json:"phase_seconds_per_round"`
	// NodeSeconds are the nodes' mean seconds per task: local training,
	// protecting the update (encrypting, signing), making a reveal share,
	// leading (decrypt, apply, seal, sign), evaluating.
	NodeSeconds map[string]float64 `json:"node_seconds_per_task"`
	// Reattestations counts the nodes' scheduled re-attestations (--tee
	// with --attest-every); their mean cost is NodeSeconds["reattest"].
	Reattestations int     `json:"reattestations,omitempty"`
	SetupSeconds   float64 `json:"setup_seconds"`
	TotalSeconds   float64 `json:"total_seconds"`
	// Messages are the message limit and the largest messages.
	Messages messageSizes `json:"messages"`
	Dir      string       `json:"dir,omitempty"`
}

func runDemo(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	nodes := fs.Int("nodes", 5, "member sites (node processes)")
	threshold := fs.Int("threshold", 3, "t: members needed to reveal an aggregate")
	minCohort := fs.Int("min-cohort", 0, "fewest updates a round may aggregate, and the k of each node's DP noise share σC/√k (0: the threshold)")
	rounds := fs.Int("rounds", 20, "rounds")
	mode := fs.String("mode", federation.ModeMHE, "aggregation mode: mhe or plain")
	preset := fs.String("preset", pki.DefaultPreset, "HE preset for mode mhe: Agg128 or InsecureTest")
	seed := fs.Uint64("seed", 1, "seed of the partition, the initial model and local shuffling")
	jsonPath := fs.String("json", "", "write the results as JSON to this file")
	plotPath := fs.String("plot", "", "write accuracy and loss per round as SVG to this file")
	keep := fs.String("keep", "", "keep the federation, states and logs in this new directory (default: a temporary directory, removed)")
	data := fs.String("data", "fashion-mnist", "dataset every node takes its share of")
	partition := fs.String("partition", "dirichlet:0.5", "how the training set is split over the nodes")
	kind := fs.String("model", "mlp", "model: softmax or mlp")
	hidden := fs.String("hidden", "128", "hidden layer sizes of the mlp")
	lr := fs.Float64("lr", 0.05, "local learning rate")
	momentum := fs.Float64("momentum", defaultMomentum, "local SGD momentum (in the manifest)")
	strategy := fs.String("strategy", "fedavg", "server optimizer: fedavg, fedadam, fedyogi, fedadagrad or scaffold (in the manifest)")
	serverLR := fs.Float64("server-lr", 0, "server learning rate of --strategy (0: the strategy's default)")
	batch := fs.Int("batch", 64, "local minibatch size")
	localEpochs := fs.Int("local-epochs", 3, "local epochs per round (3 reaches 0.85 on Dirichlet 0.5 in 20 rounds; 1 does not quite)")
	timeout := fs.Duration("timeout", 30*time.Minute, "give up after this long")
	logLevel := fs.String("log-level", "info", "log level of the processes (logs in DIR/logs)")
	dump := fs.Bool("insecure-dump-updates", false, "TESTING ONLY: nodes write their plaintext updates under DIR/updates (blindness tests; needs --keep)")
	dpNoise := fs.Float64("dp-noise", 0, "distributed DP: noise multiplier σ of the summed noise (0: no DP)")
	clip := fs.Float64("clip", 1, "with --dp-noise: L2 clipping norm C of each update")
	epsilon := fs.Float64("epsilon", 8, "with --dp-noise: the federation's ε budget; the coordinator stops at the last round within it")
	delta := fs.Float64("delta", 1e-5, "with --dp-noise: δ")
	tee := fs.String("tee", "", "run the nodes on a TEE and require its evidence: sim (INSECURE simulated TEE, measuring this binary); empty: attestation off")
	attestEvery := fs.Duration("attest-every", node.DefaultAttestEvery, "with --tee: nodes rotate their session keys and re-attest this often")
	dpSeed := fs.Uint64("insecure-dp-seed", 0, "TESTING ONLY: nodes draw the DP noise from streams seeded by this (reproducible mhe-against-plain comparisons; no privacy); 0: crypto/rand")
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := checkDemoDP(*dpNoise, *clip, *epsilon, *delta); err != nil {
		return err
	}
	if *tee != "" && *tee != attest.FormatSim {
		return withHint(fmt.Errorf("demo --tee %s: the demo runs on this machine", *tee), "use --tee sim")
	}
	ff := federationFlags{nodes: *nodes, threshold: *threshold, minCohort: *minCohort, mode: *mode, preset: *preset, rounds: *rounds,
		localEpochs: *localEpochs, batch: *batch, lr: *lr, momentum: *momentum, strategy: *strategy, serverLR: *serverLR,
		kind: *kind, hidden: *hidden, data: *data, address: pki.DefaultAddress,
		dpNoise: *dpNoise, dpClip: *clip, eps: *epsilon, delta: *delta,
		tee: *tee, attestMaxAge: max(2*time.Hour, 2**attestEvery)}
	opts, err := ff.options() // DP off unless --dp-noise
	if err != nil {
		return err
	}
	opts.Federation = "demo"
	dir := *keep
	if dir == "" {
		if dir, err = os.MkdirTemp("", "cloister-demo-"); err != nil {
			return err
		}
		defer os.RemoveAll(dir)
	} else if err := os.Mkdir(dir, 0o700); err != nil {
		return withHint(err, "--keep takes a new directory")
	}
	start := time.Now()
	f, err := newLocalFed(dir, opts)
	if err != nil {
		return err
	}
	defer f.stopAll()
	f.nodeArgs = []string{"--data", *data, "--partition", *partition, "--seed", strconv.FormatUint(*seed, 10)}
	f.coordArgs = []string{"--tick", "200ms", "--log-level", *logLevel}
	f.nodeArgs = append(f.nodeArgs, "--log-level", *logLevel)
	if *tee != "" {
		f.nodeArgs = append(f.nodeArgs, "--tee", *tee, "--attest-every", attestEvery.String())
	}
	if *dpSeed != 0 {
		f.nodeArgs = append(f.nodeArgs, "--insecure-dp-seed", strconv.FormatUint(*dpSeed, 10))
		fmt.Fprintf(stdout, "WARNING: --insecure-dp-seed: the DP noise is reproducible, not private. Comparisons only.\n")
	}
	if *dump {
		if *keep == "" {
			return withHint(errors.New("--insecure-dump-updates needs --keep"), "cloister demo --keep DIR --insecure-dump-updates")
		}
		f.dumpUpdates = true
	}
	what := *mode
	if *mode == federation.ModeMHE {
		what += " (" + *preset + ")"
	}
	fmt.Fprintf(stdout, "cloister demo: %d node processes, t=%d, %d rounds, mode %s, %s on %s (%s), %s, seed %d\n",
		*nodes, *threshold, *rounds, what, opts.Model.Spec(), *data, *partition, opts.Training.Strategy, *seed)
	if *mode == federation.ModePlain {
		fmt.Fprintf(stdout, "WARNING: mode plain protects nothing: the coordinator sees every update. Baseline only.\n")
	}
	if *tee == attest.FormatSim {
		fmt.Fprintf(stdout, "WARNING: --tee sim is a SIMULATED TEE: its evidence proves nothing. Development only.\n")
	}
	fmt.Fprintf(stdout, "federation, states and logs in %s\n", dir)
	if *dpNoise > 0 {
		if err := printDemoDP(stdout, f, *rounds); err != nil {
			return err
		}
	}
	if err := f.startCoordinator(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "dashboard: http://%s/ (while the demo runs; JSON at /status and /rounds)\n", f.metrics)
	var names []string
	for i := 1; i <= *nodes; i++ {
		name := fmt.Sprintf("node-%d", i)
		names = append(names, name)
		if err := f.startNode(name); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	h, err := f.follow(ctx, names, *rounds, stdout)
	if err != nil {
		return err
	}
	total := time.Since(start).Seconds()
	st, _ := f.status()
	// Every node has exited: stop the coordinator.
	f.signal("coordinator", syscall.SIGTERM)
	select {
	case <-f.proc("coordinator").done:
	case <-time.After(20 * time.Second):
	}
	res := summarize(h, f.parseNodeLogs(names), opts, *seed, *partition, total)
	res.SetupSeconds = f.setup
	res.Messages = st.Messages
	if *keep != "" {
		res.Dir = dir
	}
	printSummary(stdout, res)
	if *jsonPath != "" {
		b, err := marshalIndent(res)
		if err != nil {
			return err
		}
		if err := store.WriteFile(*jsonPath, b, 0o644); err != nil {
			return err
		}
	}
	if *plotPath != "" {
		if err := demoPlot(*plotPath, res); err != nil {
			return err
		}
	}
	if res.Rounds < *rounds {
		if res.DP != nil && res.DP.Exhausted {
			fmt.Fprintf(stdout, "stopped by the privacy budget: %d of %d rounds committed (round %d would pass ε = %g)\n",
				res.Rounds, *rounds, res.DP.MaxRound+1, res.DP.Budget)
			return nil
		}
		return fmt.Errorf("only %d of %d rounds committed", res.Rounds, *rounds)
	}
	return nil
}

// follow prints each round as it ends and returns the history once every
// node process has exited (the session is over).
func (f *localFed) follow(ctx context.Context, names []string, rounds int, w io.Writer) (*coordinator.History, error) {
	printed := map[fl.Round]bool{}
	setupShown := false
	start := time.Now()
	var last *coordinator.History
	for {
		h, err := f.history()
		if err == nil {
			last = h
			if !setupShown && h.Round > 0 {
				f.setup = time.Since(start).Seconds()
				fmt.Fprintf(w, "admission and key setup (collective key, threshold shares, group key) done after %.1fs\n", f.setup)
				setupShown = true
			}
			for _, r := range h.History {
				if printed[r.Round] || r.Ended.IsZero() {
					continue
				}
				printed[r.Round] = true
				printRound(w, r, rounds)
			}
		}
		exited := 0
		for _, n := range names {
			p := f.proc(n)
			select {
			case <-p.done:
				if p.err != nil {
					return nil, fmt.Errorf("%s failed: %v\n%s", n, p.err, tail(f.logPath(n), 15))
				}
				exited++
			default:
			}
		}
		select {
		case <-f.proc("coordinator").done:
			return nil, fmt.Errorf("the coordinator exited: %v\n%s", f.proc("coordinator").err, tail(f.logPath("coordinator"), 15))
		default:
		}
		if exited == len(names) {
			h, err := f.history()
			if err != nil {
				if last == nil {
					return nil, err
				}
				h = last
			}
			for _, r := range h.History {
				if !printed[r.Round] && !r.Ended.IsZero() {
					printed[r.Round] = true
					printRound(w, r, rounds)
				}
			}
			return h, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("the demo did not finish: %w", ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func printRound(w io.Writer, r coordinator.RoundInfo, total int) {
	if r.Outcome != "committed" {
		fmt.Fprintf(w, "round %2d/%d  %s: %s\n", r.Round, total, r.Outcome, r.Reason)
		return
	}
	acc, loss := math.NaN(), math.NaN()
	if r.Accuracy != nil {
		acc, loss = *r.Accuracy, *r.Loss
	}
	eps := ""
	if r.EpsilonTotal > 0 {
		eps = fmt.Sprintf("  ε %.4g", r.EpsilonTotal)
	}
	fmt.Fprintf(w, "round %2d/%d  accuracy %.4f  loss %.4f%s  %5.1fs (collect %.1fs reveal %.2fs commit %.2fs evaluate %.2fs)  up %s down %s\n",
		r.Round, total, acc, loss, eps, r.Seconds, r.Phases[coordinator.PhaseCollect], r.Phases[coordinator.PhaseReveal],
		r.Phases[coordinator.PhaseCommit], r.Phases[coordinator.PhaseEvaluate], mb(r.BytesUp), mb(r.BytesDown))
}

func mb(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(h *coordinator.History, nt nodeTimes, opts pki.InitOptions, seed uint64, partition string, total float64) demoResult {
	res := demoResult{Mode: opts.Mode, Preset: opts.Preset, Nodes: opts.Nodes, Threshold: opts.Threshold, Seed: seed,
		Model: opts.Model.Kind, Partition: partition, Strategy: opts.Training.Strategy, PhaseSeconds: map[string][]float64{}, TotalSeconds: total,
		FinalAccuracy: math.NaN(), FinalLoss: math.NaN(),
		NodeSeconds:    map[string]float64{"train": nt.Train, "protect": nt.Protect, "reveal": nt.Reveal, "lead": nt.Decrypt, "evaluate": nt.Evaluate},
		Reattestations: nt.counts[5]}
	if nt.counts[5] > 0 {
		res.NodeSeconds["reattest"] = nt.Reattest
	}
	if len(opts.Model.Hidden) > 0 {
		res.Model += fmt.Sprint(opts.Model.Hidden)
	}
	for _, r := range h.History {
		if r.Outcome != "committed" {
			continue
		}
		res.Rounds++
		res.SecondsPerRound = append(res.SecondsPerRound, r.Seconds)
		res.BytesUpPerRound = append(res.BytesUpPerRound, r.BytesUp)
		res.BytesDownPerRound = append(res.BytesDownPerRound, r.BytesDown)
		acc, loss := math.NaN(), math.NaN()
		if r.Accuracy != nil {
			acc, loss = *r.Accuracy, *r.Loss
			res.FinalAccuracy, res.FinalLoss = acc, loss
		}
		res.AccuracyPerRound = append(res.AccuracyPerRound, acc)
		res.LossPerRound = append(res.LossPerRound, loss)
		if h.Privacy != nil {
			res.EpsilonPerRound = append(res.EpsilonPerRound, r.EpsilonTotal)
			res.EpsilonTotal = r.EpsilonTotal
		}
		for _, p := range []string{coordinator.PhaseCollect, coordinator.PhaseReveal, coordinator.PhaseCommit, coordinator.PhaseEvaluate} {
			res.PhaseSeconds[p] = append(res.PhaseSeconds[p], r.Phases[p])
		}
	}
	res.MedianRoundSeconds = median(res.SecondsPerRound)
	res.DP = h.Privacy
	return res
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}

func printSummary(w io.Writer, r demoResult) {
	fmt.Fprintf(w, "\nsummary: %d rounds committed, mode %s", r.Rounds, r.Mode)
	if r.Preset != "" {
		fmt.Fprintf(w, " (%s)", r.Preset)
	}
	fmt.Fprintf(w, ", %d nodes, t=%d\n", r.Nodes, r.Threshold)
	fmt.Fprintf(w, "  final accuracy %.4f, loss %.4f\n", r.FinalAccuracy, r.FinalLoss)
	if p := r.DP; p != nil {
		fmt.Fprintf(w, "  privacy: ε = %.4g at δ = %g after %d rounds (budget %g, σ = %g, C = %g)\n",
			r.EpsilonTotal, p.Delta, r.Rounds, p.Budget, p.NoiseMultiplier, p.Clip)
	} else {
		fmt.Fprintf(w, "  privacy: differential privacy off, so no ε is spent or bounded: the model may memorize a site's examples (--dp-noise σ --clip C --epsilon E turns it on; docs/PRIVACY.md)\n")
	}
	fmt.Fprintf(w, "  round time: median %.2fs, total of rounds %.1fs; setup %.1fs; wall clock %.1fs\n",
		r.MedianRoundSeconds, sum(r.SecondsPerRound), r.SetupSeconds, r.TotalSeconds)
	fmt.Fprintf(w, "  time per phase (coordinator's view), median per round and total:\n")
	for _, p := range []struct{ name, what string }{
		{coordinator.PhaseCollect, "local training + protect + upload + sum"},
		{coordinator.PhaseReveal, "t reveal shares"},
		{coordinator.PhaseCommit, "leader: decrypt, apply, seal, sign"},
		{coordinator.PhaseEvaluate, "model broadcast + local evaluation"},
	} {
		xs := r.PhaseSeconds[p.name]
		fmt.Fprintf(w, "    %-9s %7.3fs  %7.1fs  %s\n", p.name, median(xs), sum(xs), p.what)
	}
	fmt.Fprintf(w, "  node tasks, mean seconds: train %.3f  protect %.3f  reveal %.3f  lead %.3f  evaluate %.3f\n",
		r.NodeSeconds["train"], r.NodeSeconds["protect"], r.NodeSeconds["reveal"], r.NodeSeconds["lead"], r.NodeSeconds["evaluate"])
	if r.Reattestations > 0 {
		fmt.Fprintf(w, "  re-attestation: %d in all (%.1f per node), mean %.2f ms each (new session keys, TEE report, signed evidence)\n",
			r.Reattestations, float64(r.Reattestations)/float64(r.Nodes), 1000*r.NodeSeconds["reattest"])
	}
	var up, down uint64
	for i := range r.BytesUpPerRound {
		up += r.BytesUpPerRound[i]
		down += r.BytesDownPerRound[i]
	}
	if n := uint64(len(r.BytesUpPerRound)); n > 0 {
		fmt.Fprintf(w, "  bytes per round: up %s, down %s\n", mb(up/n), mb(down/n))
	}
	if m := r.Messages; m.MaxMessage > 0 {
		fmt.Fprintf(w, "  largest message: up %s, down %s; limit %s (computed from the manifest)\n",
			mb(m.LargestIn), mb(m.LargestOut), mb(m.MaxMessage))
	}
}

func demoPlot(path string, r demoResult) error {
	var x []float64
	for i := range r.AccuracyPerRound {
		x = append(x, float64(i+1))
	}
	title := fmt.Sprintf("Cloister demo: %d nodes, t=%d, mode %s", r.Nodes, r.Threshold, r.Mode)
	fig := plot.Figure{Title: title, XLabel: "round", Panels: []plot.Panel{
		{YLabel: "test accuracy", Series: []plot.Series{{Name: r.Mode, X: x, Y: r.AccuracyPerRound}}},
		{YLabel: "test loss", Series: []plot.Series{{Name: r.Mode, X: x, Y: r.LossPerRound}}},
	}}
	if r.DP != nil && len(r.EpsilonPerRound) == len(x) {
		fig.Panels = append(fig.Panels, plot.Panel{YLabel: "ε spent", Series: []plot.Series{{Name: "ε", X: x, Y: r.EpsilonPerRound}}})
	}
	var buf bytes.Buffer
	if err := fig.WriteSVG(&buf); err != nil {
		return err
	}
	return store.WriteFile(path, buf.Bytes(), 0o644)
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
