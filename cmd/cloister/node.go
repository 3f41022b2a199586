package main

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
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
	fs := newFlags("node", stderr)
	kitDir := fs.String("kit", "", "this node's kit directory (required)")
	addr := fs.String("coordinator", "", "the coordinator's host:port (default: the kit's coordinator address)")
	data := fs.String("data", "fashion-mnist", "local data: fashion-mnist, fashion-mnist:DIR or csv:PATH:label=COLUMN")
	partition := fs.String("partition", "", "demo only: train on this node's share of --data, split by iid, dirichlet:ALPHA or shards:K (node i of n takes part i)")
	testFraction := fs.Float64("test-fraction", 0.2, "fraction of a CSV held out for evaluation")
	seed := fs.Uint64("seed", 1, "seed of the partition, of local shuffling and (on the key dealer) of the initial model")
	state := fs.String("state", "", "state directory (default: KIT/state)")
	momentum := fs.Float64("momentum", 0, "no longer a node setting: local momentum is the manifest's (cloister init --momentum); if given, it must equal it")
	proxMu := fs.Float64("prox-mu", 0, "no longer a node setting: FedProx μ is the manifest's (cloister init --prox-mu); if given, it must equal it")
	tick := fs.Duration("tick", node.DefaultTick, "engine clock period")
	maxMsg := fs.Int64("max-message", 0, "largest message in bytes (0: computed from the manifest, as the coordinator does; a value below the federation's largest message is refused)")
	maxEps := fs.Float64("max-epsilon", 0, "this site's own privacy limit: refuse to train for a round after which the federation's ε would pass it (0: none; needs DP in the manifest)")
	dpSeed := fs.Uint64("insecure-dp-seed", 0, "TESTING ONLY: draw the DP noise from a stream seeded by this and the node's name instead of crypto/rand (reproducible comparisons; no privacy); 0: off")
	dump := fs.String("insecure-dump-updates", "", "TESTING ONLY: write every plaintext update to this directory (blindness tests); never with real data")
	tee := fs.String("tee", "", "the TEE this node runs in: sim (INSECURE, development), sev-snp, tdx or nitro; needed when the manifest requires attestation")
	simState := fs.String("tee-sim-state", "", "with --tee sim: a JSON file {\"tcb\": N, \"debug\": false} read at every attestation (simulated platform firmware)")
	attestEvery := fs.Duration("attest-every", node.DefaultAttestEvery, "rotate the session keys and re-attest this often")
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
	if *addr == "" {
		*addr = kit.Config.CoordinatorAddress
	}
	if *state == "" {
		*state = filepath.Join(*kitDir, "state")
	}
	if err := sameAsManifest(fs, map[string]struct{ flag, manifest float64 }{
		"momentum": {*momentum, kit.Manifest.Training.Momentum},
		"prox-mu":  {*proxMu, kit.Manifest.Training.ProxMu},
	}); err != nil {
		return err
	}
	self := fl.NodeID(kit.Config.Name)
	var att attest.Attester
	if *tee != "" {
		if att, err = attest.Open(*tee, *simState); err != nil {
			if errors.Is(err, attest.ErrUnsupported) {
				return withHint(fmt.Errorf("--tee %s: %w", *tee, err), "run the node inside that TEE, or use --tee sim for development")
			}
			return fmt.Errorf("--tee %s: %w", *tee, err)
		}
		if *tee == attest.FormatSim {
			log.Warn("running on a SIMULATED TEE (--tee sim): its evidence proves nothing; development only")
		}
	} else if *simState != "" {
		return errors.New("--tee-sim-state needs --tee sim")
	}
	if *attestEvery < 100*time.Millisecond {
		return fmt.Errorf("--attest-every %s: at least 100ms", *attestEvery)
	}
	train, test, err := localData(*data, *partition, *testFraction, *seed, kit.Manifest, self)
	if err != nil {
		return err
	}
	key, err := store.LoadOrCreateKey(*kitDir)
	if err != nil {
		return err
	}
	var onUpdate func(fl.Update)
	if *dump != "" {
		if err := os.MkdirAll(*dump, 0o700); err != nil {
			return err
		}
		log.Warn("writing plaintext updates for a test", "dir", *dump)
		onUpdate = func(u fl.Update) {
			b := make([]byte, 0, 8*len(u.Delta))
			for _, x := range u.Delta {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x))
			}
			os.WriteFile(filepath.Join(*dump, fmt.Sprintf("round-%d.f64", u.Round)), b, 0o600)
		}
	}
	var noise io.Reader
	if *dpSeed != 0 {
		noise = rand.NewChaCha8(sha256.Sum256(fmt.Appendf(nil, "cloister/insecure-dp-seed/%d/%s", *dpSeed, self)))
	}
	n, err := node.New(node.Config{
		Kit: kit, StateDir: *state, AtRest: key, Train: train, Test: test, Logger: log, Tick: *tick,
		Seed: *seed, Limits: transport.Limits{MaxMessage: *maxMsg}, MaxEpsilon: *maxEps,
		OnUpdate: onUpdate, TEE: att, AttestEvery: *attestEvery, InsecureNoise: noise,
	})
	if errors.Is(err, federation.ErrLimitTooSmall) {
		return withHint(err, "omit --max-message: the limit computed from the manifest fits every message")
	}
	if errors.Is(err, node.ErrDataMismatch) {
		return withHint(err, "pass --data with the features and classes the manifest's model was made for (cloister init --inputs/--classes or --data)")
	}
	if err != nil {
		return err
	}
	log.Info("local data", "node", self, "train", train.Len(), "test", test.Len(), "features", train.Features, "classes", train.Classes)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Fprintf(stdout, "%s of federation %s: %d training and %d test examples; dialing %s\n", self, kit.Manifest.Federation, train.Len(), test.Len(), *addr)
	err = n.Run(ctx, *addr)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	if err == nil {
		fmt.Fprintf(stdout, "%s: the session is over\n", self)
	}
	return err
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
	part, err := dataset.ParsePartition(spec)
	if err != nil {
		return nil, nil, withHint(err, "use iid, dirichlet:0.5 or shards:2")
	}
	members := man.Nodes()
	i := slices.Index(members, self)
	n := len(members)
	sites, err := part.Split(split.Train.Y, split.Train.Classes, n, rand.New(rand.NewPCG(seed, 0)))
	if err != nil {
		return nil, nil, err
	}
	tests, err := dataset.IID{}.Split(split.Test.Y, split.Test.Classes, n, rand.New(rand.NewPCG(seed, 1)))
	if err != nil {
		return nil, nil, err
	}
	train, test = split.Train.Subset(sites[i]), split.Test.Subset(tests[i])
	train.Name = fmt.Sprintf("%s part %d/%d (%s)", split.Train.Name, i+1, n, part)
	test.Name = fmt.Sprintf("%s part %d/%d (iid)", split.Test.Name, i+1, n)
	return train, test, nil
}
