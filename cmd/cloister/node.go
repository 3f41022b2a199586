package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/node"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/store"
	"github.com/cloisterfl/cloister/transport"
)

func runNode(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	var nf nodeFlags
	fs := newFlags("node", stderr)
	nf.register(fs)
	if err := parse(fs, args); err != nil {
		return err
	}
	log, err := nf.log.logger(stderr)
	if err != nil {
		return err
	}
	kit, err := loadKit(nf.kitDir, pki.RoleNode)
	if err != nil {
		return err
	}
	if nf.addr == "" {
		nf.addr = kit.Config.CoordinatorAddress
	}
	addrs, err := coordinatorAddrs(nf.addr)
	if err != nil {
		return err
	}
	if nf.state == "" {
		nf.state = filepath.Join(nf.kitDir, "state")
	}
	if err := sameAsManifest(fs, map[string]struct{ flag, manifest float64 }{
		"momentum": {nf.momentum, kit.Manifest.Training.Momentum},
		"prox-mu":  {nf.proxMu, kit.Manifest.Training.ProxMu},
	}); err != nil {
		return err
	}
	self := fl.NodeID(kit.Config.Name)
	n, ext, greeting, err := nf.newNode(kit, self, log)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	if ext != nil {
		defer ext.start(ctx, cancel)()
	}
	fmt.Fprintln(stdout, greeting)
	err = n.Run(ctx, addrs...)
	if c := context.Cause(ctx); err != nil && c != nil && !errors.Is(c, context.Canceled) {
		err = c // the trainer could not be started
	}
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err == nil {
		fmt.Fprintf(stdout, "%s: the session is over\n", self)
	}
	return err
}

// coordinatorAddrs splits --coordinator's comma-separated host:port list.
func coordinatorAddrs(list string) ([]string, error) {
	var addrs []string
	for _, a := range strings.Split(list, ",") {
		a = strings.TrimSpace(a)
		if _, _, err := net.SplitHostPort(a); err != nil {
			return nil, withHint(fmt.Errorf("--coordinator %q: %q is not host:port: %w", list, a, err), "--coordinator coord-a.example:7000,coord-b.example:7000")
		}
		if slices.Contains(addrs, a) {
			return nil, fmt.Errorf("--coordinator %q names %s twice", list, a)
		}
		addrs = append(addrs, a)
	}
	return addrs, nil
}

// nodeFlags are the flags of `cloister node`.
type nodeFlags struct {
	kitDir, addr, data, partition, state, crl string
	testFraction, momentum, proxMu            float64
	seed, dpSeed                              uint64
	tick, attestEvery                         time.Duration
	maxMsg                                    int64
	maxEps                                    float64
	minThreshold                              int
	dump, tee, simState                       string
	attack                                    string
	attackers                                 int
	log                                       logFlags
	tr                                        trainerFlags
}

func (nf *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&nf.kitDir, "kit", "", "this node's kit directory (required)")
	fs.StringVar(&nf.addr, "coordinator", "", "the coordinator's host:port, or a comma-separated list of them (coordinators with --failover: the node tries each in turn) (default: the kit's coordinator address)")
	fs.StringVar(&nf.data, "data", "fashion-mnist", "local data: fashion-mnist, fashion-mnist:DIR or csv:PATH:label=COLUMN")
	fs.StringVar(&nf.partition, "partition", "", "demo only: train on this node's share of --data, split by iid, dirichlet:ALPHA or shards:K (node i of n takes part i)")
	fs.Float64Var(&nf.testFraction, "test-fraction", 0.2, "fraction of a CSV held out for evaluation")
	fs.Uint64Var(&nf.seed, "seed", 1, "seed of the partition, of local shuffling and (on the key dealer) of the initial model")
	fs.StringVar(&nf.state, "state", "", "state directory (default: KIT/state)")
	fs.Float64Var(&nf.momentum, "momentum", 0, "no longer a node setting: local momentum is the manifest's (cloister init --momentum); if given, it must equal it")
	fs.Float64Var(&nf.proxMu, "prox-mu", 0, "no longer a node setting: FedProx μ is the manifest's (cloister init --prox-mu); if given, it must equal it")
	fs.DurationVar(&nf.tick, "tick", node.DefaultTick, "engine clock period")
	fs.Int64Var(&nf.maxMsg, "max-message", 0, "largest message in bytes (0: computed from the manifest, as the coordinator does; a value below the federation's largest message is refused)")
	fs.Float64Var(&nf.maxEps, "max-epsilon", 0, "this site's own privacy limit: refuse to train for a round after which the federation's ε would pass it (0: none; needs DP in the manifest)")
	fs.IntVar(&nf.minThreshold, "min-threshold", 0, "this site's floor under the threshold t: refuse (and leave the federation on) a manifest amendment that sets t below it (0: none)")
	fs.Uint64Var(&nf.dpSeed, "insecure-dp-seed", 0, "TESTING ONLY: draw the DP noise from a stream seeded by this and the node's name instead of crypto/rand (reproducible comparisons; no privacy); 0: off")
	fs.StringVar(&nf.dump, "insecure-dump-updates", "", "TESTING ONLY: write every plaintext update to this directory (blindness tests); never with real data")
	fs.StringVar(&nf.attack, "insecure-attack", "", "TESTS AND RESEARCH ONLY: run as a Byzantine attacker: sign-flip, scale, gaussian, label-flip, alie, ipm or backdoor, with optional parameters (sign-flip:scale=4); refused unless the manifest allows attacks (cloister init --insecure-allow-attacks)")
	fs.IntVar(&nf.attackers, "insecure-attackers", 0, "with --insecure-attack: how many members collude (sets ALIE's default z; 0: 1)")
	fs.StringVar(&nf.tee, "tee", "", "the TEE this node runs in: sim (INSECURE, development), sev-snp, tdx or nitro; needed when the manifest requires attestation")
	fs.StringVar(&nf.simState, "tee-sim-state", "", "with --tee sim: a JSON file {\"tcb\": N, \"debug\": false} read at every attestation (simulated platform firmware)")
	fs.StringVar(&nf.crl, "crl", "", "the federation CA's revocation list (cloister ca revoke writes it): distrust the revoked; re-read every 2s (default: none)")
	fs.DurationVar(&nf.attestEvery, "attest-every", node.DefaultAttestEvery, "rotate the process keys and re-attest this often")
	nf.log.register(fs)
	nf.tr.register(fs)
}

// newNode opens the TEE, the local data (or the external trainer's API)
// and the at-rest key, and makes the node daemon; greeting says what it is
// about to do.
func (nf *nodeFlags) newNode(kit *pki.Kit, self fl.NodeID, log *slog.Logger) (n *node.Node, ext *externalTrainer, greeting string, err error) {
	rv, err := openCRL(nf.crl, kit)
	if err != nil {
		return nil, nil, "", err
	}
	att, err := nf.attester(log)
	if err != nil {
		return nil, nil, "", err
	}
	if ext, err = nf.externalTrainer(kit, self, log); err != nil {
		return nil, nil, "", err
	}
	n, greeting, err = nf.newDaemon(kit, self, log, rv, att, ext)
	if err != nil && ext != nil {
		ext.lis.Close()
	}
	return n, ext, greeting, err
}

func (nf *nodeFlags) newDaemon(kit *pki.Kit, self fl.NodeID, log *slog.Logger, rv *pki.Revocations, att attest.Attester, ext *externalTrainer) (n *node.Node, greeting string, err error) {
	var train, test *dataset.Set
	var tr node.Trainer
	if ext != nil {
		tr = ext.host
	} else if train, test, err = localData(nf.data, nf.partition, nf.testFraction, nf.seed, kit.Manifest, self); err != nil {
		return nil, "", err
	}
	key, err := store.LoadOrCreateKey(nf.kitDir)
	if errors.Is(err, syscall.EROFS) {
		return nil, "", withHint(fmt.Errorf("%s is read-only and has no %s, the node's at-rest key: %w", nf.kitDir, store.KeyFile, err),
			fmt.Sprintf("create it once where the kit is kept, before mounting it read-only: (umask 077; head -c %d /dev/urandom > KIT/%s)", store.KeySize, store.KeyFile))
	}
	if err != nil {
		return nil, "", err
	}
	onUpdate, err := nf.updateDump(log)
	if err != nil {
		return nil, "", err
	}
	var noise io.Reader
	if nf.dpSeed != 0 {
		noise = rand.NewChaCha8(sha256.Sum256(fmt.Appendf(nil, "cloister/insecure-dp-seed/%d/%s", nf.dpSeed, self)))
	}
	n, err = node.New(node.Config{
		CRL: rv, KitDir: nf.kitDir, MinThreshold: nf.minThreshold,
		Kit: kit, StateDir: nf.state, AtRest: key, Train: train, Test: test, Logger: log, Tick: nf.tick,
		Seed: nf.seed, Limits: transport.Limits{MaxMessage: nf.maxMsg}, MaxEpsilon: nf.maxEps,
		OnUpdate: onUpdate, TEE: att, AttestEvery: nf.attestEvery, InsecureNoise: noise,
		InsecureAttack: nf.attack, InsecureAttackers: nf.attackers,
		Trainer: tr, TrainerTimeout: nf.tr.timeout,
	})
	switch {
	case errors.Is(err, federation.ErrLimitTooSmall):
		return nil, "", withHint(err, "omit --max-message: the limit computed from the manifest fits every message")
	case errors.Is(err, node.ErrAttackNotAllowed):
		return nil, "", withHint(err, "attacks are for tests and research: make a federation with cloister init --insecure-allow-attacks")
	case errors.Is(err, node.ErrDataMismatch):
		return nil, "", withHint(err, "pass --data with the features and classes the manifest's model was made for (cloister init --inputs/--classes or --data)")
	case err != nil:
		return nil, "", err
	}
	if ext != nil {
		what := "started by this node: " + nf.tr.command
		if ext.proc == nil {
			what = "waiting for one to attach"
		}
		return n, fmt.Sprintf("%s of federation %s: external trainer (%s) on %s, %s; dialing %s", self, kit.Manifest.Federation,
			kit.Manifest.Model, ext.socket, what, nf.addr), nil
	}
	log.Info("local data", "node", self, "train", train.Len(), "test", test.Len(), "features", train.Features, "classes", train.Classes)
	return n, fmt.Sprintf("%s of federation %s: %d training and %d test examples; dialing %s", self, kit.Manifest.Federation, train.Len(), test.Len(), nf.addr), nil
}

// attester opens the TEE of --tee (nil without it) and checks
// --tee-sim-state and --attest-every.
func (nf *nodeFlags) attester(log *slog.Logger) (attest.Attester, error) {
	var att attest.Attester
	if nf.tee != "" {
		var err error
		if att, err = attest.Open(nf.tee, nf.simState); err != nil {
			if errors.Is(err, attest.ErrUnsupported) {
				return nil, withHint(fmt.Errorf("--tee %s: %w", nf.tee, err), "run the node inside that TEE, or use --tee sim for development")
			}
			return nil, fmt.Errorf("--tee %s: %w", nf.tee, err)
		}
		if nf.tee == attest.FormatSim {
			log.Warn("running on a SIMULATED TEE (--tee sim): its evidence proves nothing; development only")
		}
	} else if nf.simState != "" {
		return nil, errors.New("--tee-sim-state needs --tee sim")
	}
	if nf.attestEvery < 100*time.Millisecond {
		return nil, fmt.Errorf("--attest-every %s: at least 100ms", nf.attestEvery)
	}
	return att, nil
}

// updateDump returns the hook of --insecure-dump-updates, which writes
// every plaintext update under its directory (tests only), or nil.
func (nf *nodeFlags) updateDump(log *slog.Logger) (func(fl.Update), error) {
	if nf.dump == "" {
		return nil, nil
	}
	if err := os.MkdirAll(nf.dump, 0o700); err != nil {
		return nil, fmt.Errorf("--insecure-dump-updates: %w", err)
	}
	log.Warn("writing plaintext updates for a test", "dir", nf.dump)
	return func(u fl.Update) {
		b := make([]byte, 0, 8*len(u.Delta))
		for _, x := range u.Delta {
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
		}
		os.WriteFile(filepath.Join(nf.dump, fmt.Sprintf("round-%d.f64", u.Round)), b, 0o600)
	}, nil
}

// sameAsManifest refuses a flag that was given with another value than
// the manifest's: settings every site must share live in the signed
// manifest, not on one site's command line.
func sameAsManifest(fs *flag.FlagSet, flags map[string]struct{ flag, manifest float64 }) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		v, ok := flags[f.Name]
		if ok && err == nil && v.flag != v.manifest {
			err = withHint(fmt.Errorf("--%s %g: the federation manifest sets training.%s = %g, the same for every site",
				f.Name, v.flag, strings.ReplaceAll(f.Name, "-", "_"), v.manifest),
				fmt.Sprintf("omit --%s; the federation admin chooses it with cloister init --%s", f.Name, f.Name))
		}
	})
	return err
}

// localData loads the node's training and test sets. With a partition spec,
// node i of the manifest's n members takes part i of the seeded partition of
// the training set, and part i of an IID split of the test set (so that the
// members' example-weighted test accuracy is the accuracy on the whole test
// set).
func localData(selector, spec string, testFraction float64, seed uint64, man *federation.Manifest, self fl.NodeID) (train, test *dataset.Set, err error) {
	split, err := dataset.Open(selector, dataset.Options{TestFraction: testFraction, Seed: seed})
	if errors.Is(err, dataset.ErrNotFound) && strings.HasPrefix(selector, "fashion-mnist") {
		return nil, nil, withHint(err, "install it with: apt-get install -y dataset-fashion-mnist")
	}
	if err != nil {
		return nil, nil, err
	}
	if spec == "" {
		return split.Train, split.Test, nil
	}
	part, i, n, sites, tests, err := deal(split, spec, seed, man, self)
	if err != nil {
		return nil, nil, err
	}
	train, test = split.Train.Subset(sites), split.Test.Subset(tests)
	train.Name = fmt.Sprintf("%s part %d/%d (%s)", split.Train.Name, i+1, n, part)
	test.Name = fmt.Sprintf("%s part %d/%d (iid)", split.Test.Name, i+1, n)
	return train, test, nil
}

// deal returns this node's share of split under the partition spec: node
// i of the manifest's n members takes part i of the seeded partition of
// the training set and part i of an IID split of the test set, as indices
// into them.
func deal(split dataset.Split, spec string, seed uint64, man *federation.Manifest, self fl.NodeID) (part dataset.Partition, i, n int, train, test []int, err error) {
	if part, err = dataset.ParsePartition(spec); err != nil {
		return nil, 0, 0, nil, nil, withHint(err, "use iid, dirichlet:0.5 or shards:2")
	}
	members := man.Nodes()
	i, n = slices.Index(members, self), len(members)
	sites, err := part.Split(split.Train.Y, split.Train.Classes, n, rand.New(rand.NewPCG(seed, 0)))
	if err != nil {
		return nil, 0, 0, nil, nil, err
	}
	tests, err := dataset.IID{}.Split(split.Test.Y, split.Test.Classes, n, rand.New(rand.NewPCG(seed, 1)))
	if err != nil {
		return nil, 0, 0, nil, nil, err
	}
	return part, i, n, sites[i], tests[i], nil
}
