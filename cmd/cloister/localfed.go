package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
)

// localFed runs a federation of real processes of this binary on
// 127.0.0.1: the coordinator and one process per node, each with its own
// state directory and log file. `cloister demo` and the fault tests use it.
//
//	DIR/fed/                 the federation (cloister init)
//	DIR/state/coordinator/   the coordinator's state (coordinator.db, audit.log)
//	DIR/state/node-i/        each node's state (node.db, audit.log)
//	DIR/state/aggregator/    mode tee's aggregator's audit.log
//	DIR/logs/*.txt           each process's stdout and stderr (JSON records)
type localFed struct {
	dir       string
	exe       string
	addr      string // the coordinator's
	metrics   string // the coordinator's /metrics, /rounds, /status
	nodeArgs  []string
	coordArgs []string
	// aggregatorArgs, if not nil, are mode tee's aggregator's flags: the
	// demo runs it as process "aggregator".
	aggregatorArgs []string
	env            []string

	setup       float64             // seconds from the processes' start to round 1
	dumpUpdates bool                // nodes write their plaintext updates under DIR/updates/NAME (tests)
	exeOf       map[string]string   // tests: another binary for a process (a tampered copy)
	argsOf      map[string][]string // more arguments for a node (tests, the demo's attackers)
	// metricsClient, if set, fetches /status and /rounds over HTTPS (tests
	// of --metrics-tls: a client with an observer certificate).
	metricsClient *http.Client

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

// startAggregator starts mode tee's aggregator (cloister aggregator).
func (f *localFed) startAggregator() error {
	args := append([]string{"aggregator", "--kit", f.kit(pki.DefaultAggregator), "--coordinator", f.addr, "--state", f.state(pki.DefaultAggregator),
		"--log-format", "json"}, f.aggregatorArgs...)
	return f.start(pki.DefaultAggregator, args...)
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
	c, url := &http.Client{Timeout: 10 * time.Second}, "http://"+f.metrics+path
	if f.metricsClient != nil {
		c, url = f.metricsClient, "https://"+f.metrics+path
	}
	resp, err := c.Get(url)
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
