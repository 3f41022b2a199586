package trainer

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ErrDigest reports a trainer script whose SHA-256 is not the one pinned.
var ErrDigest = errors.New("trainer: the trainer script's digest is not the one pinned")

// Backoff bounds the delays between restarts of a trainer process:
// doubling from Min up to Max with every restart in a row. A process that
// ran for Reset or longer restarts after Min again. The zero value means
// 500ms to 30s, reset after a minute.
type Backoff struct {
	Min, Max, Reset time.Duration
}

func (b Backoff) orDefault() Backoff {
	if b.Min <= 0 {
		b.Min = 500 * time.Millisecond
	}
	if b.Max < b.Min {
		b.Max = max(b.Min, 30*time.Second)
	}
	if b.Reset <= 0 {
		b.Reset = time.Minute
	}
	return b
}

// Delay returns the delay before restart n (0 for the first restart in a
// row).
func (b Backoff) Delay(n int) time.Duration {
	b = b.orDefault()
	d := b.Min
	for range n {
		if d >= b.Max/2 {
			return b.Max
		}
		d *= 2
	}
	return d
}

// ProcessConfig configures a Process.
type ProcessConfig struct {
	// Args is the trainer's command: the program and its arguments, as in
	// {"python3", "train.py"}. The program is looked up in PATH.
	Args []string
	// Env is added to the node's environment: the CLOISTER_* variables.
	Env []string
	// Digest, if set, is the SHA-256 (lowercase hex) that the trainer's
	// script ([Script]) must have. It is checked before every start; a
	// script that changed is not started ([ErrDigest]) and Run returns.
	Digest string
	// Backoff bounds the delays between restarts.
	Backoff Backoff
	// Logger receives the process's starts and exits, and its output, a
	// record per line.
	Logger *slog.Logger
	// Output, if set, also receives the trainer's output as it comes.
	Output io.Writer
	// Once runs the command once, with no restart: Run returns when it
	// exits (an error saying how, with its last output) or when ctx ends
	// (nil). `cloister trainer describe` runs a trainer so.
	Once bool
}

// Process runs a trainer's command and restarts it when it exits or when
// the Host finds it at fault (Restart), with backoff. The trainer runs in
// its own process group, which is killed as a whole, and it is killed if
// the node dies.
type Process struct {
	cfg    ProcessConfig
	log    *slog.Logger
	path   string // the program, resolved
	script string // the file Digest covers

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{} // closed when the current run exits
	exit     string        // how the last run ended
	restarts int
	tail     tailBuffer
}

// Script returns the file that a trainer command runs, the one a digest
// pins: the first argument after the program that names a regular file
// ("python3 -u train.py": train.py), or else the program itself.
func Script(args []string) (string, error) {
	if len(args) == 0 {
		return "", errors.New("trainer: no command")
	}
	for _, a := range args[1:] {
		if fi, err := os.Stat(a); err == nil && fi.Mode().IsRegular() {
			return a, nil
		}
	}
	return exec.LookPath(args[0])
}

// FileDigest returns the SHA-256 of a file, in lowercase hex.
func FileDigest(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:]), nil
}

// NewProcess checks the command (the program exists; the script has the
// pinned digest) and returns a Process to Run.
func NewProcess(cfg ProcessConfig) (*Process, error) {
	if len(cfg.Args) == 0 || cfg.Args[0] == "" {
		return nil, errors.New("trainer: no trainer command")
	}
	path, err := exec.LookPath(cfg.Args[0])
	if err != nil {
		return nil, fmt.Errorf("trainer: the trainer command's program: %w", err)
	}
	script, err := Script(cfg.Args)
	if err != nil {
		return nil, err
	}
	if cfg.Digest != "" {
		if len(cfg.Digest) != 64 || strings.ToLower(cfg.Digest) != cfg.Digest {
			return nil, fmt.Errorf("trainer: digest %q is not 64 lowercase hex digits (a SHA-256)", truncate(cfg.Digest))
		}
		if _, err := hex.DecodeString(cfg.Digest); err != nil {
			return nil, fmt.Errorf("trainer: digest %q is not 64 lowercase hex digits (a SHA-256)", truncate(cfg.Digest))
		}
	}
	cfg.Backoff = cfg.Backoff.orDefault()
	p := &Process{cfg: cfg, log: cfg.Logger, path: path, script: script}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if err := p.checkDigest(); err != nil {
		return nil, err
	}
	return p, nil
}

// ScriptPath returns the file the digest covers.
func (p *Process) ScriptPath() string { return p.script }

func (p *Process) checkDigest() error {
	if p.cfg.Digest == "" {
		return nil
	}
	got, err := FileDigest(p.script)
	if err != nil {
		return fmt.Errorf("trainer: reading the trainer script: %w", err)
	}
	if got != p.cfg.Digest {
		return fmt.Errorf("%w: %s has SHA-256 %s, the node pins %s: refusing to start it", ErrDigest, p.script, got, p.cfg.Digest)
	}
	return nil
}

// Restarts returns how many times the trainer was started again.
func (p *Process) Restarts() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.restarts
}

// Run starts the trainer and starts it again whenever it exits, until ctx
// ends: then it asks the trainer to stop (SIGTERM), kills it after 5s, and
// returns nil. It returns an error if the trainer cannot be started (or
// its script no longer has the pinned digest).
func (p *Process) Run(ctx context.Context) error {
	fails := 0
	for {
		if err := p.checkDigest(); err != nil {
			p.log.Error("not starting the trainer", "err", err)
			return err
		}
		cmd := exec.Command(p.path, p.cfg.Args[1:]...)
		cmd.Args[0] = p.cfg.Args[0]
		cmd.Env = append(os.Environ(), p.cfg.Env...)
		out := &lineWriter{p: p}
		var w io.Writer = out
		if p.cfg.Output != nil {
			w = io.MultiWriter(out, p.cfg.Output)
		}
		cmd.Stdout, cmd.Stderr = w, w
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		exited := make(chan struct{})
		p.mu.Lock()
		if err := cmd.Start(); err != nil {
			p.mu.Unlock()
			return fmt.Errorf("trainer: starting %s: %w", strings.Join(p.cfg.Args, " "), err)
		}
		p.cmd, p.exited = cmd, exited
		p.mu.Unlock()
		started := time.Now()
		p.log.Info("trainer started", "pid", cmd.Process.Pid, "command", strings.Join(p.cfg.Args, " "))
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		var err error
		select {
		case err = <-waited:
		case <-ctx.Done():
			p.signal(syscall.SIGTERM)
			select {
			case err = <-waited:
			case <-time.After(5 * time.Second):
				p.signal(syscall.SIGKILL)
				err = <-waited
			}
			out.flush()
			p.ended(exited, err)
			return nil
		}
		out.flush()
		p.ended(exited, err)
		if p.cfg.Once {
			if t := p.tail.String(); t != "" {
				return fmt.Errorf("trainer: the trainer exited (%s); its last output: %s", describeExit(err), t)
			}
			return fmt.Errorf("trainer: the trainer exited (%s)", describeExit(err))
		}
		if time.Since(started) >= p.cfg.Backoff.Reset {
			fails = 0
		}
		d := p.cfg.Backoff.Delay(fails)
		fails++
		p.log.Warn("trainer exited; restarting it", "status", describeExit(err), "after", d, "last_output", p.tail.String())
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return nil
		}
		p.mu.Lock()
		p.restarts++
		p.mu.Unlock()
	}
}

func (p *Process) ended(exited chan struct{}, err error) {
	p.mu.Lock()
	p.cmd = nil
	p.exit = describeExit(err)
	close(exited)
	p.mu.Unlock()
}

func describeExit(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// signal sends sig to the trainer's process group.
func (p *Process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cmd != nil && p.cmd.Process != nil {
		syscall.Kill(-p.cmd.Process.Pid, sig)
	}
}

// Restart kills the running trainer (its process group); Run starts it
// again after the backoff.
func (p *Process) Restart(reason error) {
	p.log.Warn("killing the trainer to restart it", "reason", reason)
	p.signal(syscall.SIGKILL)
}

// exitDetail waits up to d for the running trainer to exit and describes
// how it ended, with its last output; "" if it is still running.
func (p *Process) exitDetail(d time.Duration) string {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return ""
	}
	select {
	case <-exited:
	case <-time.After(d):
		return ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if t := p.tail.String(); t != "" {
		return fmt.Sprintf("the trainer process ended (%s); its last output: %s", p.exit, t)
	}
	return fmt.Sprintf("the trainer process ended (%s)", p.exit)
}

// Tail returns the trainer's last lines of output.
func (p *Process) Tail() string { return p.tail.String() }

// tailLines is how many lines of output a Process keeps for errors.
const tailLines = 12

type tailBuffer struct {
	mu    sync.Mutex
	lines []string
}

func (t *tailBuffer) add(line string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == tailLines {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.Join(t.lines, " | ")
}

// lineWriter logs the trainer's output a line at a time.
type lineWriter struct {
	p   *Process
	mu  sync.Mutex
	buf bytes.Buffer
}

// maxLine bounds a line of output kept whole.
const maxLine = 4096

func (w *lineWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(b)
	for {
		i := bytes.IndexByte(w.buf.Bytes(), '\n')
		if i < 0 {
			if w.buf.Len() > maxLine {
				w.emit(w.buf.Next(maxLine))
				continue
			}
			return len(b), nil
		}
		line := w.buf.Next(i + 1)
		w.emit(line[:i])
	}
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 0 {
		w.emit(w.buf.Bytes())
		w.buf.Reset()
	}
}

func (w *lineWriter) emit(line []byte) {
	s := strings.TrimRight(string(line), "\r")
	if s == "" {
		return
	}
	if len(s) > 300 {
		w.p.tail.add(s[:300] + "…")
	} else {
		w.p.tail.add(s)
	}
	w.p.log.Info("trainer output", "line", s)
}
