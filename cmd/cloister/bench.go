package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/mhe/mhebench"
	"github.com/cloisterfl/cloister/secagg"
	"github.com/cloisterfl/cloister/secagg/secaggbench"
	"github.com/cloisterfl/cloister/store"
)

const benchUsage = "Usage:\n  cloister bench mhe [--params D] [--nodes N] [--threshold T] [--preset P] [--workers W] [--json FILE]\n      measure threshold HE aggregation against raw Lattigo primitives in the same run\n" +
	"  cloister bench secagg [--params D] [--nodes N] [--threshold T] [--dropout F] [--neighbours K] [--preset P] [--json FILE]\n      measure SecAgg+ masking and unmasking against the same run's floor (AES-CTR masks, plaintext sum)\n"

func runBench(args []string, in io.Reader, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "secagg" {
		return runBenchSecAgg(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "mhe" {
		fmt.Fprint(stdout, benchUsage)
		if len(args) > 0 && isHelp(args[0]) {
			return nil
		}
		if len(args) > 0 {
			return withHint(fmt.Errorf("unknown bench subject %q", args[0]), "cloister bench mhe --params 1000000 --nodes 10")
		}
		return withHint(fmt.Errorf("bench needs a subject"), "cloister bench mhe --params 1000000 --nodes 10")
	}
	fs := newFlags("bench mhe", stderr)
	params := fs.Int("params", 1_000_000, "parameters per update (d)")
	nodes := fs.Int("nodes", 10, "members, all of whom protect an update (n)")
	threshold := fs.Int("threshold", 0, "revealers t (default n/2+1)")
	preset := fs.String("preset", mhe.Agg128.Name(), "HE parameter preset")
	workers := fs.Int("workers", 0, "goroutines per call (default: every core)")
	jsonPath := fs.String("json", "", "write the report as JSON to this file")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	p, err := mhe.PresetByName(*preset)
	if err != nil {
		return err
	}
	fmt.Fprintf(stderr, "cloister: measuring mhe (%s): d=%d, n=%d on %d cores; raw Lattigo baselines in the same run\n",
		p.Name(), *params, *nodes, runtime.GOMAXPROCS(0))
	rep, err := mhebench.Run(mhebench.Config{Params: *params, Nodes: *nodes, Threshold: *threshold, Preset: p, Workers: *workers})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "key setup (n=%d, t=%d)          %8.3f s\n", rep.Nodes, rep.Threshold, rep.SetupS)
	fmt.Fprintf(stdout, "encrypt per party              %8.3f s per 1M params (raw Lattigo, 1 thread: %.3f s; speedup %.2f× on %d cores)\n",
		rep.EncryptSPerMillion, rep.RawLattigoEncryptSPerMillion, rep.EncryptSpeedup, rep.Cores)
	fmt.Fprintf(stdout, "  public-key upload (wire v1)  %8.3f s per 1M params (one-polynomial upload / public-key: %.2f×)\n",
		rep.PublicKeyEncryptSPerMillion, rep.EncryptVsPublicKey)
	fmt.Fprintf(stdout, "aggregate per added party      %8.3f ms per 1M params (raw Lattigo add: %.3f ms)\n",
		rep.AggregateMsPerPartyPerMillion, rep.RawLattigoAddMsPerMillion)
	fmt.Fprintf(stdout, "reveal share per party         %8.3f s per 1M params on the critical path, randomness precomputed (%.3f s off it)\n",
		rep.RevealSPerPartyPerMillion, rep.PrecomputeSPerPartyPerMillion)
	fmt.Fprintf(stdout, "  without precomputation       %8.3f s per 1M params (precomputed / not: %.2f×; raw Lattigo key-switch share: %.3f s)\n",
		rep.RevealInlineSPerPartyPerMillion, rep.RevealVsInline, rep.RawLattigoRevealSPerMillion)
	fmt.Fprintf(stdout, "open (combine t shares)        %8.3f s per 1M params\n", rep.OpenSPerMillion)
	fmt.Fprintf(stdout, "decrypt (group key)            %8.3f s per 1M params\n", rep.DecryptSPerMillion)
	fmt.Fprintf(stdout, "upload                         %8.2f bytes per parameter (public-key upload: %.2f)\n", rep.BytesPerParam, rep.PublicKeyBytesPerParam)
	fmt.Fprintf(stdout, "precision                      %8.1f bits (max abs error %.3g, bound %.3g)\n", rep.PrecisionBits, rep.MaxAbsError, rep.MaxErrorBound)
	if *jsonPath != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return store.WriteFile(*jsonPath, append(data, '\n'), 0o644)
	}
	return nil
}

func runBenchSecAgg(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench secagg", stderr)
	params := fs.Int("params", 100_000, "parameters per update (d)")
	nodes := fs.Int("nodes", 100, "members (n)")
	threshold := fs.Int("threshold", 0, "t: shares needed to unmask (default n/2+1)")
	dropout := fs.Float64("dropout", 0.1, "fraction of members that drop before their upload")
	neighbours := fs.Int("neighbours", 0, "ring of K neighbours, as Flower's num_shares (0: every member)")
	preset := fs.String("preset", secagg.Q32.Name(), "masking preset: secagg32 (the default here: Flower's modulus of 2^32, which the anchor figures use) or secagg64 (federations' default)")
	seed := fs.Uint64("seed", 1, "seed of the inputs and of who drops")
	jsonPath := fs.String("json", "", "write the report as JSON to this file")
	if err := parse(fs, args); err != nil {
		return err
	}
	p, err := secagg.PresetByName(*preset)
	if err != nil {
		return withHint(err, "use --preset secagg32 or secagg64, and --neighbours for a ring")
	}
	fmt.Fprintf(stderr, "cloister: measuring secagg (%s): d=%d, n=%d, %.0f%% dropped, neighbours %d, one core; the floor in the same run\n",
		p.Name(), *params, *nodes, 100**dropout, *neighbours)
	rep, err := secaggbench.Run(secaggbench.Config{Params: *params, Nodes: *nodes, Threshold: *threshold, Dropout: *dropout,
		Neighbours: *neighbours, Preset: p, Seed: *seed})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "members n=%d, t=%d, included %d (%s)\n", rep.Nodes, rep.Threshold, rep.Included, rep.Preset)
	fmt.Fprintf(stdout, "client setup                   %8.4f s (Announce, Deal, Accept)\n", rep.ClientSetupS)
	fmt.Fprintf(stdout, "client masking                 %8.4f s (Protect, median)\n", rep.ClientMaskS)
	fmt.Fprintf(stdout, "revealer share                 %8.4f s (Reveal, median)\n", rep.RevealS)
	fmt.Fprintf(stdout, "server aggregate               %8.4f s (parse, hash and sum the uploads)\n", rep.AggregateS)
	fmt.Fprintf(stdout, "server open                    %8.4f s (%d self and %d pair masks removed)\n", rep.OpenS, rep.SelfMasks, rep.PairMasks)
	fmt.Fprintf(stdout, "server unmask (aggregate+open) %8.4f s\n", rep.UnmaskS)
	fmt.Fprintf(stdout, "floor, same run                %8.4f s (AES-CTR of those masks + plaintext sum); unmask/floor %.2f×\n", rep.FloorS, rep.UnmaskOverFloor)
	fmt.Fprintf(stdout, "member decrypt (group mask)    %8.4f s\n", rep.DecryptS)
	fmt.Fprintf(stdout, "upload                         %8.2f bytes per parameter (%d bytes; plain %.2f, mhe Agg128 %.2f)\n",
		rep.UploadBytesPerParam, rep.UploadBytes, rep.PlainBytesPerParam, rep.MHEBytesPerParam)
	fmt.Fprintf(stdout, "max abs error                  %8.3g\n", rep.MaxAbsError)
	if *jsonPath != "" {
		data, err := json.MarshalIndent(rep, "", "  ")
		if err != nil {
			return err
		}
		return store.WriteFile(*jsonPath, append(data, '\n'), 0o644)
	}
	return nil
}
