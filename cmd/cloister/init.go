package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/cloisterfl/cloister/attest"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/federation"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/mhe"
	"github.com/cloisterfl/cloister/paillier"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/protect/plain"
	"github.com/cloisterfl/cloister/secagg"
	"github.com/cloisterfl/cloister/trainer"
)

// federationFlags are the manifest settings of `cloister init`.
type federationFlags struct {
	nodes, threshold, minCohort int
	mode, preset                string
	neighbours                  int
	rounds, localEpochs, batch  int
	lr, momentum, proxMu        float64
	strategy                    string
	serverLR                    float64
	kind, hidden, data, layout  string
	inputs, classes             int
	dpNoise, dpClip, eps, delta float64
	address, federation         string
	tee, teeMeasurements        string
	teeMinTCB                   string
	aggTEE, aggMeasurements     string // mode tee: the aggregator's policy
	aggMinTCB                   string
	attestMaxAge                time.Duration
	rule                        string
	compress                    string
	insecureAttacks             bool
	flags                       *flag.FlagSet // to tell flags given from defaults
}

func (f *federationFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.nodes, "nodes", 5, "number of member sites")
	fs.IntVar(&f.threshold, "threshold", 3, "t: members needed to reveal an aggregate")
	fs.IntVar(&f.minCohort, "min-cohort", 0, "fewest updates a round may aggregate (0: the threshold)")
	fs.StringVar(&f.mode, "mode", federation.ModeMHE, "aggregation mode: mhe, secagg, paillier, tee (an attested aggregator applies --rule; needs --aggregator-tee) or plain (plain protects nothing)")
	fs.StringVar(&f.preset, "preset", pki.DefaultPreset, "preset of the mode: for mhe Agg128, or InsecureTest for tests; for secagg secagg64 (the default: plain's models to 2^-41, 8 bytes a value) or secagg32 (4 bytes); for paillier paillier2048 (the default), or InsecureTest for tests")
	fs.IntVar(&f.neighbours, "neighbours", 0, "mode secagg: mask with a ring of K neighbours (Flower's num_shares, the member included) instead of every member (0: every member, the safe default)")
	fs.IntVar(&f.rounds, "rounds", pki.DefaultTraining.Rounds, "rounds to commit")
	fs.IntVar(&f.localEpochs, "local-epochs", pki.DefaultTraining.LocalEpochs, "local epochs per round")
	fs.IntVar(&f.batch, "batch", pki.DefaultTraining.Batch, "minibatch size")
	fs.Float64Var(&f.lr, "lr", pki.DefaultTraining.LearningRate, "local learning rate")
	fs.Float64Var(&f.momentum, "momentum", defaultMomentum, "local SGD momentum, the same at every site (0: none)")
	fs.Float64Var(&f.proxMu, "prox-mu", 0, "FedProx proximal coefficient μ, the same at every site (0: FedAvg's local step)")
	fs.StringVar(&f.strategy, "strategy", "fedavg", "server optimizer the round's leader applies: fedavg, fedadam, fedyogi, fedadagrad or scaffold, optionally with parameters (fedadam:lr=0.1,b1=0.9,b2=0.99,tau=0.001)")
	fs.Float64Var(&f.serverLR, "server-lr", 0, "server learning rate of --strategy (0: the strategy's default: fedavg 1, fedadam 0.1, fedyogi 0.01, fedadagrad 0.1)")
	fs.StringVar(&f.kind, "model", "mlp", "model: softmax, mlp, or external (a trainer process of the site's own, through the trainer API; needs --layout)")
	fs.StringVar(&f.layout, "layout", "", "with --model external: the layout file 'cloister trainer describe' wrote; its digest goes into the manifest")
	fs.StringVar(&f.hidden, "hidden", "128", "hidden layer sizes of the mlp, comma-separated")
	fs.StringVar(&f.data, "data", "fashion-mnist", "dataset the model is for: its features and classes become the manifest's inputs and classes (fashion-mnist: 784 and 10, not read; csv:PATH:label=COLUMN is read)")
	fs.IntVar(&f.inputs, "inputs", 0, "features per example (0: from --data)")
	fs.IntVar(&f.classes, "classes", 0, "number of classes (0: from --data)")
	fs.Float64Var(&f.dpNoise, "dp-noise", pki.DefaultDP.NoiseMultiplier, "DP noise multiplier σ of the summed noise (0: no DP)")
	fs.Float64Var(&f.dpClip, "dp-clip", pki.DefaultDP.Clip, "L2 clipping norm C of each update; with --dp-noise 0 it clips without DP when given (the only defence against a malicious site under mhe and secagg)")
	fs.StringVar(&f.rule, "rule", "mean", "aggregation rule: mean, or in modes tee and plain a robust rule: median, trimmed:β, krum, multikrum:m, bulyan or cclip, each with f=F Byzantine sites tolerated (default: the most the rule tolerates with --min-cohort updates)")
	fs.StringVar(&f.compress, "compress", "none", compressUsage)
	fs.BoolVar(&f.insecureAttacks, "insecure-allow-attacks", false, "INSECURE, tests and research only: let members run as Byzantine attackers (cloister node --insecure-attack)")
	f.flags = fs
	fs.Float64Var(&f.eps, "epsilon", pki.DefaultDP.Epsilon, "total privacy budget ε")
	fs.Float64Var(&f.delta, "delta", pki.DefaultDP.Delta, "δ")
	fs.StringVar(&f.address, "address", pki.DefaultAddress, "host:port the coordinator listens on and nodes dial")
	fs.StringVar(&f.federation, "federation", "", "federation name (default: fed- and 16 random hex digits)")
	fs.StringVar(&f.tee, "tee", "", "require TEE evidence of this format: sim (INSECURE, development: allows this binary's measurement), sev-snp, tdx or nitro; empty: attestation off")
	fs.StringVar(&f.teeMeasurements, "tee-measurement", "", "allowed measurements, comma-separated (default for sim: this binary's, as 'cloister attest measure' prints it)")
	fs.StringVar(&f.teeMinTCB, "tee-min-tcb", "", "minimum TCB version, comma-separated components (default for sim: 2)")
	fs.DurationVar(&f.attestMaxAge, "attest-max-age", 2*time.Hour, "oldest TEE evidence accepted: nodes must re-attest more often (cloister node --attest-every); the aggregator's too")
	fs.StringVar(&f.aggTEE, "aggregator-tee", "", "mode tee: the TEE format the aggregator must attest in (required): sim (INSECURE, development: allows this binary's measurement), sev-snp, tdx or nitro")
	fs.StringVar(&f.aggMeasurements, "aggregator-measurement", "", "mode tee: the aggregator image's allowed measurements, comma-separated (default for sim: this binary's)")
	fs.StringVar(&f.aggMinTCB, "aggregator-min-tcb", "", "mode tee: the aggregator's minimum TCB version (default for sim: 2)")
}

// policy returns the attestation policy of the --tee flags: nil (off)
// without --tee.
func (f *federationFlags) policy() (*attest.Policy, error) {
	return teePolicy("tee", f.tee, f.teeMeasurements, f.teeMinTCB, f.attestMaxAge)
}

// aggregatorPolicy returns the aggregator's policy of the --aggregator-tee
// flags: required in mode tee, refused in the others.
func (f *federationFlags) aggregatorPolicy() (*attest.Policy, error) {
	if f.mode != federation.ModeTEE {
		if f.aggTEE != "" || f.aggMeasurements != "" || f.aggMinTCB != "" {
			return nil, withHint(fmt.Errorf("--aggregator-tee and its flags are for mode tee, the mode is %s", f.mode), "drop them, or use --mode tee")
		}
		return nil, nil
	}
	if f.aggTEE == "" {
		return nil, withHint(errors.New("--mode tee needs --aggregator-tee: the members seal their updates only to an attested aggregator"),
			"cloister init --mode tee --aggregator-tee sim (development) or sev-snp|tdx|nitro with --aggregator-measurement")
	}
	return teePolicy("aggregator", f.aggTEE, f.aggMeasurements, f.aggMinTCB, f.attestMaxAge)
}

// teePolicy returns the policy of one set of TEE flags (--tee or
// --aggregator-tee, named by prefix): nil (off) without a format.
func teePolicy(prefix, format, measurements, minTCB string, maxAge time.Duration) (*attest.Policy, error) {
	fl := func(s string) string { return "--" + prefix + s }
	if format == "" {
		if measurements != "" || minTCB != "" {
			return nil, withHint(fmt.Errorf("%s and %s need %s", fl("-measurement"), fl("-min-tcb"), fl("")), "cloister init "+fl("")+" sim …")
		}
		return nil, nil
	}
	if !slices.Contains(attest.Formats, format) {
		return nil, withHint(fmt.Errorf("%s %q is not a known TEE", fl(""), format), "use sim, sev-snp, tdx or nitro")
	}
	p := &attest.Policy{Formats: []string{format}, MaxAge: attest.Duration(maxAge), AllowSim: format == attest.FormatSim,
		Measurements: map[string][]string{}}
	for _, m := range strings.Split(measurements, ",") {
		if m = strings.TrimSpace(m); m != "" {
			p.Measurements[format] = append(p.Measurements[format], m)
		}
	}
	if format == attest.FormatSim && len(p.Measurements[format]) == 0 {
		m, err := attest.MeasureSelf(nil)
		if err != nil {
			return nil, err
		}
		p.Measurements[format] = []string{hex.EncodeToString(m[:])}
	}
	if len(p.Measurements[format]) == 0 {
		return nil, withHint(fmt.Errorf("%s %s needs %s", fl(""), format, fl("-measurement")), "see 'go doc attest' (# Measurements) for how to compute them from the reproducible image")
	}
	tcb := minTCB
	if tcb == "" && format == attest.FormatSim {
		tcb = strconv.Itoa(attest.DefaultSimTCB)
	}
	if tcb != "" {
		var t attest.TCB
		for _, c := range strings.Split(tcb, ",") {
			v, err := strconv.ParseUint(strings.TrimSpace(c), 10, 32)
			if err != nil {
				return nil, fmt.Errorf("%s %q: %q is not a version number", fl("-min-tcb"), tcb, c)
			}
			t = append(t, uint32(v))
		}
		p.MinTCB = map[string]attest.TCB{format: t}
	}
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("%s flags: %w", fl(""), err)
	}
	return p, nil
}

func (f *federationFlags) options() (pki.InitOptions, error) {
	o := pki.InitOptions{
		Nodes: f.nodes, Threshold: f.threshold, MinCohort: f.minCohort, Federation: f.federation, Address: f.address,
		Mode: f.mode, Model: federation.ModelSpec{Kind: f.kind, Inputs: f.inputs, Classes: f.classes},
		Training: federation.Training{Rounds: f.rounds, LocalEpochs: f.localEpochs, Batch: f.batch, LearningRate: f.lr,
			Momentum: f.momentum, ProxMu: f.proxMu},
	}
	spec := f.strategy
	if f.serverLR != 0 {
		sep := ":"
		if strings.Contains(spec, ":") {
			sep = ","
		}
		spec += sep + "lr=" + strconv.FormatFloat(f.serverLR, 'g', -1, 64)
	}
	var err error
	if o.Training.Strategy, err = federation.CanonicalStrategy(spec); err != nil {
		return o, withHint(fmt.Errorf("--strategy %q: %w", spec, err), "use fedavg, fedadam, fedyogi, fedadagrad or scaffold, and --server-lr for the server learning rate")
	}
	if f.kind == federation.ModelExternal || f.layout != "" {
		if o.Model, err = f.externalModel(o.Training); err != nil {
			return o, err
		}
	} else if o.Model.Inputs == 0 || o.Model.Classes == 0 {
		in, cl, err := dataDims(f.data)
		if err != nil {
			return o, err
		}
		if o.Model.Inputs == 0 {
			o.Model.Inputs = in
		}
		if o.Model.Classes == 0 {
			o.Model.Classes = cl
		}
	}
	if f.mode == federation.ModeMHE {
		o.Preset = f.preset
	}
	switch f.mode {
	case federation.ModeMHE, federation.ModePlain, federation.ModeSecAgg, federation.ModePaillier, federation.ModeTEE:
	default:
		return o, withHint(fmt.Errorf("--mode %q is not implemented by this build", f.mode), "use --mode mhe (threshold HE), --mode secagg (SecAgg+ masking), --mode paillier (threshold Paillier), --mode tee (an attested aggregator, --aggregator-tee) or --mode plain (no protection)")
	}
	if f.neighbours != 0 && f.mode != federation.ModeSecAgg {
		return o, withHint(fmt.Errorf("--neighbours %d is for mode secagg, not %s", f.neighbours, f.mode), "drop --neighbours, or use --mode secagg")
	}
	if f.mode == federation.ModeSecAgg {
		name := f.preset
		if name == pki.DefaultPreset {
			name = secagg.Default.Name()
		}
		p, err := secagg.PresetByName(name)
		if err != nil {
			return o, withHint(fmt.Errorf("--preset %q is not a known secagg preset: %w", f.preset, err), "use secagg64 (8 bytes a value, the default) or secagg32 (4 bytes, coarser), and --neighbours for a ring")
		}
		if f.neighbours != 0 {
			if p, err = secagg.WithNeighbours(p, f.neighbours); err != nil {
				return o, withHint(fmt.Errorf("--neighbours %d: %w", f.neighbours, err), "use 3 or more (odd, as Flower's num_shares), or 0 for every member")
			}
		}
		o.Preset = p.Name()
	}
	if f.mode == federation.ModePaillier {
		name := f.preset
		if name == pki.DefaultPreset {
			name = paillier.P2048.Name()
		}
		p, err := paillier.PresetByName(name)
		if err != nil {
			return o, withHint(fmt.Errorf("--preset %q is not a known paillier preset: %w", f.preset, err), "use paillier2048 (the default), or InsecureTest (a 512-bit key, tests only)")
		}
		o.Preset = p.Name()
	}
	if f.mode == federation.ModeMHE {
		if _, err := mhe.PresetByName(f.preset); err != nil {
			return o, withHint(fmt.Errorf("--preset %q is not a known mhe preset: %w", f.preset, err), "use Agg128 (128-bit) or InsecureTest (tests only)")
		}
	}
	if f.kind == "mlp" {
		for _, s := range strings.Split(f.hidden, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 {
				return o, fmt.Errorf("--hidden %q: %q is not a positive layer size", f.hidden, s)
			}
			o.Model.Hidden = append(o.Model.Hidden, n)
		}
	} else if f.kind != "softmax" && f.kind != federation.ModelExternal {
		return o, withHint(fmt.Errorf("--model %q is not a known model", f.kind), "use softmax, mlp, or external with --layout FILE")
	}
	if o.Attestation, err = f.policy(); err != nil {
		return o, err
	}
	if o.AggregatorAttestation, err = f.aggregatorPolicy(); err != nil {
		return o, err
	}
	if f.dpNoise == 0 {
		o.DP = &federation.DP{}
		if f.explicit("dp-clip") {
			if !(f.dpClip >= 0) || math.IsInf(f.dpClip, 0) {
				return o, fmt.Errorf("--dp-clip %v: want a finite clip ≥ 0", f.dpClip)
			}
			o.DP.Clip = f.dpClip // clip-only: a norm bound without DP noise
		}
	} else {
		o.DP = &federation.DP{NoiseMultiplier: f.dpNoise, Clip: f.dpClip, Epsilon: f.eps, Delta: f.delta}
	}
	o.InsecureAttacks = f.insecureAttacks
	if o.Compress, err = federation.CanonicalCompress(f.compress); err != nil {
		return o, withHint(fmt.Errorf("--compress: %w", err), "use none, topk:F with F in (0, 1] (topk:0.01 sends 1% of the coordinates), or q8")
	}
	if o.Compress != "" && !slices.Contains(federation.CompressModes, f.mode) {
		hint := "drop --compress, or use --mode tee or --mode plain"
		if f.mode == federation.ModeSecAgg {
			hint = "secagg's quantization width is its preset: --preset secagg64 (8 bytes a value, the default) or secagg32 (4 bytes)"
		}
		return o, withHint(fmt.Errorf("--compress %s in mode %s: only modes %s carry compressed updates", o.Compress, f.mode, strings.Join(federation.CompressModes, ", ")), hint)
	}
	minCohort := f.minCohort
	if minCohort == 0 {
		minCohort = f.threshold
	}
	if o.Rule, err = federation.CanonicalRule(f.rule, minCohort); err != nil {
		return o, withHint(fmt.Errorf("--rule: %w", err), "use mean, median, trimmed:0.2, krum, multikrum:m=M, bulyan or cclip, with f=F at most what --min-cohort allows (e.g. bulyan needs min-cohort ≥ 4f+3)")
	}
	if o.Rule != "" && f.mode != federation.ModePlain && f.mode != federation.ModeTEE {
		return o, withHint(fmt.Errorf("--rule %s in mode %s: nobody sees an individual update under %s, so only the clip (--dp-clip) applies", o.Rule, f.mode, f.mode),
			"drop --rule (the mean) and bound each update with --dp-clip, or use --mode tee (an attested aggregator applies the rule) or --mode plain (no protection, research only)")
	}
	if o.Rule != "" && f.dpNoise > 0 {
		return o, withHint(fmt.Errorf("--rule %s with --dp-noise %g: the privacy accounting assumes the noise shares are summed, which a robust rule does not do", o.Rule, f.dpNoise),
			"use --dp-noise 0 (and --dp-clip C to clip without DP)")
	}
	return o, nil
}

// compressUsage documents --compress for init and demo.
const compressUsage = "how members compress their updates before they leave, in modes tee and plain: none, topk:F (the fraction F of coordinates of largest magnitude; the rest is sent in later rounds) or q8 (8-bit stochastic quantization); secagg's width is its --preset"

// explicit reports whether the flag name was given on the command line.
func (f *federationFlags) explicit(name string) bool {
	set := false
	if f.flags != nil {
		f.flags.Visit(func(fl *flag.Flag) { set = set || fl.Name == name })
	}
	return set
}

// externalModel is the manifest's model for --model external: the
// layout's parameter count and digest.
func (f *federationFlags) externalModel(tr federation.Training) (federation.ModelSpec, error) {
	switch {
	case f.kind != federation.ModelExternal:
		return federation.ModelSpec{}, withHint(fmt.Errorf("--layout is for --model external, not --model %s", f.kind), "cloister init --model external --layout layout.json")
	case f.layout == "":
		return federation.ModelSpec{}, withHint(errors.New("--model external needs --layout FILE"),
			"write it with: cloister trainer describe --out layout.json -- python3 train.py")
	case f.inputs != 0 || f.classes != 0:
		return federation.ModelSpec{}, errors.New("--inputs and --classes are for the built-in models: an external trainer reads its own data")
	case tr.Scaffold():
		return federation.ModelSpec{}, withHint(errors.New("--strategy scaffold does not run with an external trainer: its control variates need drift-corrected local steps the trainer API does not carry"),
			"use fedavg (with --prox-mu for FedProx), fedadam, fedyogi or fedadagrad")
	}
	l, err := trainer.ReadLayout(f.layout)
	if err != nil {
		return federation.ModelSpec{}, fmt.Errorf("--layout: %w", err)
	}
	d, err := l.Digest()
	if err != nil {
		return federation.ModelSpec{}, err
	}
	return federation.ModelSpec{Kind: federation.ModelExternal, Params: l.Len(), Layout: d}, nil
}

// defaultMomentum is the local momentum `cloister init` writes by default.
const defaultMomentum = 0.9

// dataDims returns the features and classes of the dataset a selector
// names. Fashion-MNIST's are known (784, 10) and it is not read; anything
// else is opened.
func dataDims(selector string) (inputs, classes int, err error) {
	if selector == "fashion-mnist" || strings.HasPrefix(selector, "fashion-mnist:") {
		return pki.DefaultInputs, pki.DefaultClasses, nil
	}
	split, err := dataset.Open(selector, dataset.Options{})
	if err != nil {
		return 0, 0, withHint(fmt.Errorf("--data %q: %w", selector, err), "or give the model's dimensions with --inputs and --classes")
	}
	return split.Train.Features, split.Train.Classes, nil
}

func runInit(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := newFlags("init", stderr)
	var ff federationFlags
	ff.register(fs)
	dir := fs.String("dir", "", "new federation directory to create (required)")
	caDir := fs.String("ca", "", "use this existing CA (from 'cloister ca init') instead of a new one; its key stays there")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		return withHint(errors.New("no --dir"), "cloister init --nodes 5 --threshold 3 --dir fed/")
	}
	opts, err := ff.options()
	if err != nil {
		return err
	}
	now := time.Now()
	if *caDir == "" {
		err = pki.InitFederation(*dir, opts, now, nil)
	} else {
		err = initWithCA(*dir, *caDir, opts, now)
	}
	if errors.Is(err, os.ErrExist) {
		return withHint(err, "pick a new --dir: init never overwrites a federation")
	}
	if err != nil {
		return err
	}
	k, err := pki.LoadKit(filepath.Join(*dir, pki.CoordinatorDir))
	if err != nil {
		return err
	}
	m := k.Manifest
	fmt.Fprintf(stdout, "federation %s: %d nodes, threshold %d, minimum cohort %d, mode %s", m.Federation, len(m.Members), m.Threshold, m.MinCohort, m.Mode)
	if m.Preset != "" {
		fmt.Fprintf(stdout, " (%s)", m.Preset)
	}
	fmt.Fprintf(stdout, ", model %s, %d rounds, strategy %s\n", m.Model, m.Training.Rounds, m.Training.Strategy)
	if *caDir == "" {
		fmt.Fprintf(stdout, "  %s  the federation CA: keep it offline\n", filepath.Join(*dir, pki.CADir))
	}
	fmt.Fprintf(stdout, "  %s  the coordinator's kit\n", filepath.Join(*dir, pki.CoordinatorDir))
	for _, p := range m.Members {
		fmt.Fprintf(stdout, "  %s  %s's kit\n", filepath.Join(*dir, p.Name), p.Name)
	}
	if a := m.Aggregator; a != nil {
		fmt.Fprintf(stdout, "  %s  the aggregator's kit (cloister aggregator): it sees every update, inside its TEE\n", filepath.Join(*dir, a.Name))
		fmt.Fprintf(stdout, "  aggregator attestation: %s, measurements %v, evidence at most %s old\n", strings.Join(m.AggregatorAttestation.Formats, ","),
			m.AggregatorAttestation.Measurements[m.AggregatorAttestation.Formats[0]], m.AggregatorAttestation.MaxAge)
		for _, w := range m.AggregatorAttestation.Warnings() {
			fmt.Fprintf(stderr, "cloister: warning: aggregator: %s\n", w)
		}
	}
	if m.Mode == federation.ModePlain {
		fmt.Fprintf(stderr, "cloister: warning: %s\n", plain.Warning)
	}
	ruleNote(stdout, m)
	if m.InsecureAttacks {
		fmt.Fprintf(stderr, "cloister: warning: %s\n", federation.WarnInsecureAttacks)
	}
	if m.AttestationRequired() {
		fmt.Fprintf(stdout, "  attestation: %s, measurements %v, evidence at most %s old\n", strings.Join(m.Attestation.Formats, ","),
			m.Attestation.Measurements[m.Attestation.Formats[0]], m.Attestation.MaxAge)
		for _, w := range m.Attestation.Warnings() {
			fmt.Fprintf(stderr, "cloister: warning: %s\n", w)
		}
	} else {
		fmt.Fprintln(stderr, "cloister: warning: attestation is off (no --tee): nodes join on their certificates alone, and nothing proves what code they run")
	}
	if m.DP.NoiseMultiplier > 0 {
		fmt.Fprintf(stderr, "cloister: note: DP is on (σ %g, C %g, ε %g): with few sites the noise costs accuracy; --dp-noise 0 turns it off\n",
			m.DP.NoiseMultiplier, m.DP.Clip, m.DP.Epsilon)
		if err := budgetNote(stderr, m); err != nil {
			return err
		}
	}
	return nil
}

// ruleNote says which aggregation rule the manifest m sets, what f is, and
// what bounds a malicious member when no robust rule can run.
func ruleNote(w io.Writer, m *federation.Manifest) {
	switch {
	case m.Robust():
		_, f, _ := strings.Cut(m.Rule[strings.LastIndex(m.Rule, "f="):], "f=")
		fmt.Fprintf(w, "  rule %s: withstands f=%s Byzantine members in every round (cohorts of %d to %d updates)\n", m.Rule, f, m.MinCohort, len(m.Members))
	case m.DP.Clip > 0:
		fmt.Fprintf(w, "  rule mean, each update clipped to norm %g: the clip is the only bound on a malicious member\n", m.DP.Clip)
	default:
		fmt.Fprintln(w, "  rule mean, no clip: one malicious member can move the model anywhere (--dp-clip C bounds it)")
	}
}

// initWithCA is InitFederation with an existing CA: the CA's key is used to
// issue the kits and sign the manifest, and is not copied into dir.
func initWithCA(dir, caDir string, o pki.InitOptions, now time.Time) error {
	if _, err := os.Lstat(dir); err == nil {
		return fmt.Errorf("refusing to overwrite %s: %w", dir, os.ErrExist)
	}
	ca, err := pki.LoadCA(caDir)
	if err != nil {
		return err
	}
	m := &federation.Manifest{Version: federation.ManifestVersion, Federation: o.Federation, Serial: 1, Threshold: o.Threshold,
		MinCohort: o.MinCohort, Mode: o.Mode, Preset: o.Preset, DP: *o.DP, Model: o.Model, Training: o.Training}
	if o.Attestation != nil {
		m.Attestation = *o.Attestation
	}
	if m.Federation == "" {
		var b [8]byte
		rand.Read(b[:])
		m.Federation = "fed-" + hex.EncodeToString(b[:])
	}
	if m.MinCohort == 0 {
		m.MinCohort = m.Threshold
	}
	host, _, err := net.SplitHostPort(o.Address)
	if err != nil {
		return fmt.Errorf("--address %q: %w", o.Address, err)
	}
	hosts := []string{"localhost", "127.0.0.1"}
	if host != "" && host != "localhost" && host != "127.0.0.1" {
		hosts = append(hosts, host)
	}
	newKit := func(role pki.Role, name string, hosts []string) (*pki.Kit, error) {
		cred, err := ca.Issue(pki.Request{Role: role, Name: name, Hosts: hosts}, now, nil)
		if err != nil {
			return nil, err
		}
		_, key, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		return &pki.Kit{Config: pki.KitConfig{Version: pki.KitConfigVersion, Role: role, Name: name,
			Federation: m.Federation, CoordinatorAddress: o.Address}, CA: ca.Certificate(), Credential: cred, AuditKey: key}, nil
	}
	coord, err := newKit(pki.RoleCoordinator, pki.DefaultCoordinator, hosts)
	if err != nil {
		return err
	}
	m.Coordinator = coord.Party()
	kits := []*pki.Kit{coord}
	for i := 1; i <= o.Nodes; i++ {
		k, err := newKit(pki.RoleNode, string(fl.NodeID(fmt.Sprintf("node-%d", i))), nil)
		if err != nil {
			return err
		}
		kits = append(kits, k)
		m.Members = append(m.Members, k.Party())
	}
	m.Rule, m.InsecureAttacks = o.Rule, o.InsecureAttacks
	if o.AggregatorAttestation != nil {
		m.AggregatorAttestation = *o.AggregatorAttestation
		k, err := newKit(pki.RoleNode, pki.DefaultAggregator, nil)
		if err != nil {
			return err
		}
		kits = append(kits, k)
		p := k.Party()
		m.Aggregator = &p
	}
	signed, err := federation.Sign(m, ca, nil)
	if err != nil {
		return err
	}
	if err := os.Mkdir(dir, 0o700); err != nil {
		return err
	}
	for _, k := range kits {
		k.SignedManifest = signed
		if k.Manifest, err = federation.Verify(signed, ca.Certificate()); err != nil {
			return err
		}
		sub := filepath.Join(dir, k.Config.Name)
		if k.Config.Role == pki.RoleCoordinator {
			sub = filepath.Join(dir, pki.CoordinatorDir)
		}
		if err := pki.WriteKit(sub, k); err != nil {
			return err
		}
	}
	return nil
}
