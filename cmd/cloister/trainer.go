package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	iofs "io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/internal/atomicfile"
	"github.com/cloisterfl/cloister/internal/spec"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/trainer"
)

const trainerUsage = `Usage:
  cloister trainer describe [--out FILE] [--check FILE] [--timeout 2m] -- COMMAND [ARG...]
      run a trainer (python3 train.py) once, ask for its parameter layout and
      write it: the file 'cloister init --model external --layout FILE' pins
      in the manifest. --check compares with a layout file instead and names
      the first difference. Also prints the SHA-256 of the trainer's script
      (for cloister node --trainer-digest).
`

func runTrainer(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "describe" {
		fmt.Fprint(stdout, trainerUsage)
		if len(args) == 0 {
			return errors.New("no trainer subcommand")
		}
		if isHelp(args[0]) {
			return nil
		}
		return withHint(fmt.Errorf("unknown trainer subcommand %q", args[0]), "cloister trainer describe -- python3 train.py")
	}
	fs := newFlags("trainer describe", stderr)
	out := fs.String("out", "", "write the layout to this new file (default: standard output)")
	check := fs.String("check", "", "compare the trainer's layout with this layout file and name the first difference")
	timeout := fs.Duration("timeout", 2*time.Minute, "how long the trainer may take to start and describe its layout")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	command := fs.Args()
	if len(command) == 0 {
		return withHint(errors.New("no trainer command"), "cloister trainer describe --out layout.json -- python3 train.py")
	}
	if *out != "" {
		if _, err := os.Lstat(*out); err == nil {
			return withHint(fmt.Errorf("refusing to overwrite %s", *out), "describe writes a new file: pick another --out, or remove the old layout first")
		}
	}
	l, err := describeTrainer(context.Background(), command, *timeout, stderr)
	if err != nil {
		return err
	}
	digest, err := l.Digest()
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "layout: %d tensors, %d parameters (%d bytes of weights), digest %s\n", len(l.Tensors), l.Len(), l.Bytes(), digest)
	if script, err := trainer.Script(command); err == nil {
		if d, err := trainer.FileDigest(script); err == nil {
			fmt.Fprintf(stderr, "script: %s, SHA-256 %s (cloister node --trainer-digest pins it)\n", script, d)
		}
	}
	if *check != "" {
		want, err := trainer.ReadLayout(*check)
		if err != nil {
			return err
		}
		if diff := l.Diff(want); diff != "" {
			return withHint(fmt.Errorf("the trainer's layout differs from %s: %s", *check, diff),
				"a node refuses a trainer whose layout is not the manifest's: fix the model, or make a federation with the new layout")
		}
		fmt.Fprintf(stdout, "the trainer's layout is %s's\n", *check)
		return nil
	}
	b, err := l.File()
	if err != nil {
		return err
	}
	if *out == "" {
		_, err := stdout.Write(b)
		return err
	}
	if err := atomicfile.Create(*out, b, 0o644); err != nil {
		if errors.Is(err, iofs.ErrExist) {
			return withHint(err, "describe writes a new file: pick another --out, or remove the old layout first")
		}
		return err
	}
	fmt.Fprintf(stdout, "wrote %s: %d tensors, %d parameters, layout %s\n", *out, len(l.Tensors), l.Len(), digest)
	return nil
}

// describeTrainer runs command once as a trainer on a temporary socket and
// returns the layout it describes. Its output goes to output.
func describeTrainer(ctx context.Context, command []string, timeout time.Duration, output io.Writer) (trainer.Layout, error) {
	dir, err := os.MkdirTemp("", "cloister-describe-")
	if err != nil {
		return trainer.Layout{}, err
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "trainer.sock")
	lis, err := trainer.Listen(socket)
	if err != nil {
		return trainer.Layout{}, err
	}
	proc, err := trainer.NewProcess(trainer.ProcessConfig{Args: command, Env: []string{"CLOISTER_TRAINER_SOCKET=" + socket},
		Output: output, Once: true})
	if err != nil {
		lis.Close()
		return trainer.Layout{}, withHint(err, "the command after -- is the trainer's: cloister trainer describe -- python3 train.py")
	}
	host := trainer.NewHost(trainer.HostConfig{Handshake: timeout})
	served := make(chan error, 1)
	go func() { served <- host.Serve(lis) }()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- proc.Run(ctx) }()
	type result struct {
		l   trainer.Layout
		err error
	}
	got := make(chan result, 1)
	go func() {
		l, err := host.Layout(ctx)
		got <- result{l, err}
	}()
	var res result
	select {
	case res = <-got:
	case err := <-ran: // it exited before describing its layout
		cancel()
		<-got
		host.Close()
		<-served
		if err == nil {
			err = ctx.Err()
		}
		return trainer.Layout{}, fmt.Errorf("the trainer did not describe its layout: %w", err)
	}
	host.Close() // the trainer's loop ends: the node closed the API
	select {
	case <-ran:
	case <-time.After(10 * time.Second):
		cancel() // then it is stopped
		<-ran
	}
	cancel()
	<-served
	if res.err != nil {
		if t := proc.Tail(); t != "" {
			return trainer.Layout{}, fmt.Errorf("the trainer did not describe its layout: %w; its last output: %s", res.err, t)
		}
		return trainer.Layout{}, fmt.Errorf("the trainer did not describe its layout: %w", res.err)
	}
	return res.l, nil
}

// trainerFlags are `cloister node`'s flags for an external trainer.
type trainerFlags struct {
	command, socket, digest string
	timeout                 time.Duration
}

func (tf *trainerFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&tf.command, "trainer", "", "the external trainer to start and supervise, as \"python3 train.py --threads 1\" (split at spaces, no shell); for a manifest of model kind external")
	fs.StringVar(&tf.socket, "trainer-socket", "", "the trainer API's Unix socket (default: STATE/trainer.sock); without --trainer, the node waits for a trainer to attach to it")
	fs.StringVar(&tf.digest, "trainer-digest", "", "with --trainer: the SHA-256 the trainer's script must have ('cloister trainer describe' prints it); a script that changed is not started")
	fs.DurationVar(&tf.timeout, "trainer-timeout", node.DefaultTrainerTimeout, "how long each trainer task may take; a trainer past it is restarted and the node sends no update that round")
}

// externalTrainer is a node's trainer API: its socket, the Host, and the
// trainer process the node runs (nil when a trainer attaches).
type externalTrainer struct {
	host   *trainer.Host
	proc   *trainer.Process
	lis    net.Listener
	socket string
}

// externalTrainer sets up the trainer API for a manifest of model kind
// external (nil, nil for a built-in model): the socket, the CLOISTER_*
// environment and, with --partition, this node's share of the data,
// written for the trainer to read.
func (nf *nodeFlags) externalTrainer(kit *pki.Kit, self fl.NodeID, log *slog.Logger) (*externalTrainer, error) {
	tf, man := nf.tr, kit.Manifest
	if !man.Model.External() {
		if tf.command != "" || tf.socket != "" || tf.digest != "" {
			return nil, withHint(fmt.Errorf("--trainer, --trainer-socket and --trainer-digest are for a manifest of model kind external; this one's is %s", man.Model),
				"make the federation with cloister init --model external --layout FILE")
		}
		return nil, nil
	}
	if tf.command == "" && tf.socket == "" {
		return nil, withHint(fmt.Errorf("the manifest's model is an external trainer's (%s): this node needs one", man.Model),
			`give --trainer "python3 train.py" (the node starts it), or --trainer-socket PATH (a trainer attaches to PATH)`)
	}
	if tf.digest != "" && tf.command == "" {
		return nil, withHint(errors.New("--trainer-digest pins the script the node starts, and an attached trainer is not started by it"), "give --trainer with --trainer-digest")
	}
	if tf.timeout <= 0 {
		return nil, fmt.Errorf("--trainer-timeout %s: want a positive duration", tf.timeout)
	}
	if err := os.MkdirAll(nf.state, 0o700); err != nil {
		return nil, fmt.Errorf("node: state directory: %w", err)
	}
	socket := tf.socket
	if socket == "" {
		socket = filepath.Join(nf.state, "trainer.sock")
	}
	members := man.Nodes()
	env := []string{"CLOISTER_TRAINER_SOCKET=" + socket, "CLOISTER_NODE=" + string(self),
		"CLOISTER_NODE_INDEX=" + strconv.Itoa(slices.Index(members, self)), "CLOISTER_NODES=" + strconv.Itoa(len(members)),
		"CLOISTER_SEED=" + strconv.FormatUint(nf.seed, 10)}
	var hcfg trainer.HostConfig
	if nf.partition != "" {
		share, dir, err := nf.dealShare(man, self)
		if err != nil {
			return nil, err
		}
		hcfg.TrainExamples, hcfg.TestExamples = len(share.Train), len(share.Test)
		path := filepath.Join(nf.state, "trainer-share.json")
		b, err := json.Marshal(share)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.WriteSecret(path, b); err != nil {
			return nil, err
		}
		env = append(env, "CLOISTER_PARTITION="+share.Partition, "CLOISTER_SHARE="+path, "CLOISTER_DATA="+dir)
	}
	e := &externalTrainer{socket: socket}
	var err error
	if e.lis, err = trainer.Listen(socket); err != nil {
		return nil, err
	}
	if tf.command != "" {
		if e.proc, err = trainer.NewProcess(trainer.ProcessConfig{Args: strings.Fields(tf.command), Env: env, Digest: tf.digest,
			Logger: log.With("trainer", tf.command)}); err != nil {
			e.lis.Close()
			if errors.Is(err, trainer.ErrDigest) {
				return nil, withHint(err, "cloister trainer describe -- COMMAND prints the script's SHA-256; pin the one the site reviewed")
			}
			return nil, err
		}
	} else {
		log.Info("waiting for a trainer to attach", "socket", socket, "env", strings.Join(env, " "))
	}
	hcfg.Layout, hcfg.Params, hcfg.Process, hcfg.Logger = man.Model.Layout, man.Model.Params, e.proc, log.With("trainer_api", socket)
	e.host = trainer.NewHost(hcfg)
	return e, nil
}

// start serves the API and runs the trainer process until ctx ends; a
// trainer that cannot be started (its script's digest changed) cancels
// the node with that cause. stop waits for both.
func (e *externalTrainer) start(ctx context.Context, cancel context.CancelCauseFunc) (stop func()) {
	ctx, end := context.WithCancel(ctx)
	served, ran := make(chan error, 1), make(chan error, 1)
	go func() { served <- e.host.Serve(e.lis) }()
	if e.proc != nil {
		go func() {
			err := e.proc.Run(ctx)
			if err != nil {
				cancel(err)
			}
			ran <- err
		}()
	} else {
		ran <- nil
	}
	return func() {
		e.host.Close() // the trainer's loop ends: the node closed the API
		end()          // then the process is stopped (SIGTERM, SIGKILL after 5s)
		<-served
		<-ran
	}
}

// trainerShare is the share of the data a node deals its trainer (the
// CLOISTER_SHARE file): indices into the IDX files' examples, with the Go
// partitioning the built-in models use.
type trainerShare struct {
	Partition string `json:"partition"`
	Seed      uint64 `json:"seed"`
	NodeIndex int    `json:"node_index"`
	Nodes     int    `json:"nodes"`
	Train     []int  `json:"train"`
	Test      []int  `json:"test"`
}

// dealShare computes this node's share of --data (Fashion-MNIST's IDX
// files) under --partition, and returns it with the data's directory.
func (nf *nodeFlags) dealShare(man *federation.Manifest, self fl.NodeID) (trainerShare, string, error) {
	sel, err := spec.Parse(nf.data)
	if err != nil || sel.Name != "fashion-mnist" {
		return trainerShare{}, "", withHint(fmt.Errorf("--partition with an external trainer deals Fashion-MNIST's examples; --data %q is not fashion-mnist[:DIR]", nf.data),
			"drop --partition and let the trainer read its own data, or use --data fashion-mnist")
	}
	dir := dataset.DefaultFashionMNISTDir
	if sel.Arg != "" {
		dir = sel.Arg
	}
	split, err := dataset.Open(nf.data, dataset.Options{Seed: nf.seed})
	if errors.Is(err, dataset.ErrNotFound) {
		return trainerShare{}, "", withHint(err, "install it with: apt-get install -y dataset-fashion-mnist")
	}
	if err != nil {
		return trainerShare{}, "", err
	}
	part, i, n, train, test, err := deal(split, nf.partition, nf.seed, man, self)
	if err != nil {
		return trainerShare{}, "", err
	}
	return trainerShare{Partition: part.String(), Seed: nf.seed, NodeIndex: i, Nodes: n, Train: train, Test: test}, dir, nil
}
