package main

import (
	"encoding/json"
	"fmt"
	"io"
	"runtime"

	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/mhe/mhebench"
	"github.com/cloisterfl/cloister/store"
)

func runBench(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "mhe" {
		fmt.Fprint(stdout, "Usage:\n  cloister bench mhe [--params D] [--nodes N] [--threshold T] [--preset P] [--workers W] [--json FILE]\n      measure threshold HE aggregation against raw Lattigo primitives in the same run\n")
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
	fmt.Fprintf(stdout, "aggregate per added party      %8.3f ms per 1M params (raw Lattigo add: %.3f ms)\n",
		rep.AggregateMsPerPartyPerMillion, rep.RawLattigoAddMsPerMillion)
	fmt.Fprintf(stdout, "reveal share per party         %8.3f s per 1M params (raw Lattigo key-switch share: %.3f s)\n",
		rep.RevealSPerPartyPerMillion, rep.RawLattigoRevealSPerMillion)
	fmt.Fprintf(stdout, "open (combine t shares)        %8.3f s per 1M params\n", rep.OpenSPerMillion)
	fmt.Fprintf(stdout, "decrypt (group key)            %8.3f s per 1M params\n", rep.DecryptSPerMillion)
	fmt.Fprintf(stdout, "upload                         %8.2f bytes per parameter\n", rep.BytesPerParam)
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
