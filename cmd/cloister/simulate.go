package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"github.com/cloisterfl/cloister/attack"
	"github.com/cloisterfl/cloister/compress"
	"github.com/cloisterfl/cloister/dataset"
	"github.com/cloisterfl/cloister/plot"
	"github.com/cloisterfl/cloister/robust"
	"github.com/cloisterfl/cloister/simulation"
	"github.com/cloisterfl/cloister/store"
	"github.com/cloisterfl/cloister/strategy"
)

func runSimulate(args []string, _ io.Reader, stdout, stderr io.Writer) error {
	var s simFlags
	if err := s.parse(args, stderr); err != nil {
		return err
	}
	cfg, err := s.config()
	if err != nil {
		return err
	}
	s.announce(stderr, cfg)
	res, err := simulation.Run(cfg, simProgress(stderr, cfg.Rounds, cfg.Compress != (compress.Scheme{})))
	if err != nil {
		return simHint(err, cfg, s.rule)
	}
	if res.Stopped != "" {
		fmt.Fprintf(stderr, "cloister: stopped: %s\n", res.Stopped)
	}
	line := fmt.Sprintf("final test accuracy %.4f, loss %.4f after %d rounds", res.Final.Accuracy, res.Final.Loss, len(res.Rounds))
	if cfg.Privacy != nil {
		line += fmt.Sprintf(", ε = %.4g (δ = %g)", res.Final.Epsilon, s.delta)
	}
	if b := res.Final.BackdoorAccuracy; b != nil {
		line += fmt.Sprintf(", backdoor accuracy %.4f", *b)
	}
	fmt.Fprintln(stdout, line)
	title := fmt.Sprintf("%s: %d nodes, %s, %s on %s", cfg.Strategy.Name(), cfg.Nodes, cfg.Partition, cfg.Model.Kind, cfg.Data.Train.Name)
	if cfg.Byzantine > 0 {
		title += fmt.Sprintf("; %d × %s vs %s", cfg.Byzantine, cfg.Attack.Name(), cfg.Rule.Name())
	}
	return s.l.output(res, title, "round", cfg.Privacy != nil)
}

// simFlags are the flags of `cloister simulate`.
type simFlags struct {
	l                                    learning
	nodes, rounds, localEpochs, cohort   int
	byzantine, minCohort                 int
	partition, server, attack, rule, cmp string
	proxMu, clip, noise, delta, budget   float64
	set                                  map[string]bool // the flags given
}

func (s *simFlags) parse(args []string, stderr io.Writer) error {
	fs := newFlags("simulate", stderr)
	s.l.register(fs)
	fs.IntVar(&s.nodes, "nodes", 10, "number of simulated sites")
	fs.StringVar(&s.partition, "partition", "iid", "how data is split over sites: iid, dirichlet:ALPHA or shards:K")
	fs.IntVar(&s.rounds, "rounds", 30, "federated rounds")
	fs.IntVar(&s.localEpochs, "local-epochs", 1, "local epochs per round on each site")
	fs.IntVar(&s.cohort, "cohort", 0, "sites drawn at random to train in each round (0: all)")
	fs.StringVar(&s.server, "strategy", "fedavg", "server optimizer: fedavg, fedadam, fedyogi, fedadagrad or scaffold, with options as in fedadam:lr=0.01")
	fs.Float64Var(&s.proxMu, "prox-mu", 0, "FedProx proximal term μ (0 is plain FedAvg)")
	fs.StringVar(&s.attack, "attack", "none", "what the Byzantine sites do: none, label-flip, sign-flip, gaussian, scale, alie, ipm or backdoor")
	fs.IntVar(&s.byzantine, "byzantine", 0, "number of Byzantine sites: the first F sites attack")
	fs.StringVar(&s.rule, "rule", "mean", "aggregation rule: mean, median, trimmed:0.2, krum, multikrum:M, bulyan or cclip")
	fs.Float64Var(&s.clip, "clip", 0, "L2 bound C every update is clipped to, on the sites (0: none)")
	fs.Float64Var(&s.noise, "dp-noise", 0, "noise multiplier σ of distributed DP: the sum of updates gets noise σ·C (needs --clip)")
	fs.IntVar(&s.minCohort, "min-cohort", 0, "DP: k, the honest sites whose noise shares σC/√k make up the noise (0: the whole cohort)")
	fs.Float64Var(&s.delta, "delta", simulation.DefaultDelta, "DP: δ at which ε is reported")
	fs.Float64Var(&s.budget, "epsilon-budget", 0, "DP: stop before a round that would spend more than this ε (0: no budget)")
	fs.StringVar(&s.cmp, "compress", "none", "update compression: none, topk:FRACTION or q8")
	if err := parse(fs, args); err != nil {
		return err
	}
	s.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { s.set[f.Name] = true })
	return nil
}

// config checks the flags and loads the data; the simulation checks the
// numbers (simHint names the flag at fault).
func (s *simFlags) config() (simulation.Config, error) {
	cfg := simulation.Config{Nodes: s.nodes, Rounds: s.rounds, LocalEpochs: s.localEpochs, Seed: s.l.seed,
		Cohort: s.cohort, Byzantine: s.byzantine, Clip: s.clip}
	m := s.cohortSize()
	var err error
	if cfg.Partition, err = dataset.ParsePartition(s.partition); err != nil {
		return cfg, withHint(err, "use iid, dirichlet:0.5 or shards:2")
	}
	if cfg.Strategy, err = strategy.New(s.server); err != nil {
		return cfg, withHint(err, "use fedavg, fedadam, fedyogi, fedadagrad or scaffold")
	}
	if _, ok := cfg.Strategy.(*strategy.Scaffold); ok && m < s.nodes && !strings.Contains(s.server, "frac") {
		return cfg, withHint(fmt.Errorf("--strategy %s with a cohort of %d out of %d sites: SCAFFOLD needs the cohort fraction", s.server, m, s.nodes),
			fmt.Sprintf("use --strategy scaffold:frac=%g", float64(m)/float64(s.nodes)))
	}
	if cfg.Attack, err = s.parseAttack(m); err != nil {
		return cfg, err
	}
	if cfg.Rule, err = robust.Parse(s.rule, m); err != nil {
		return cfg, withHint(err, "use mean, median, trimmed:0.2, krum, multikrum:M, bulyan or cclip; robust rules need enough sites for their f")
	}
	if cfg.Privacy, err = s.privacy(); err != nil {
		return cfg, err
	}
	if cfg.Compress, err = compress.Parse(s.cmp); err != nil {
		return cfg, withHint(err, "use none, topk:0.01 or q8")
	}
	cfg.Optimizer = s.l.optimizer()
	cfg.Optimizer.ProxMu = s.proxMu
	if cfg.Model, err = s.l.spec(); err != nil {
		return cfg, err
	}
	cfg.Data, err = s.l.load()
	return cfg, err
}

// cohortSize is the number of sites that train in a round.
func (s *simFlags) cohortSize() int {
	if s.cohort == 0 {
		return s.nodes
	}
	return s.cohort
}

// parseAttack returns the attack of --attack, nil for none, and refuses
// attackers without an attack and an attack without attackers.
func (s *simFlags) parseAttack(m int) (attack.Attack, error) {
	atk, err := attack.Parse(s.attack, m, min(s.byzantine, m))
	if err != nil {
		return nil, withHint(err, "use none, label-flip, sign-flip, gaussian, scale, alie, ipm or backdoor, with options as in sign-flip:scale=4")
	}
	_, isBackdoor := atk.(attack.Backdoor)
	switch {
	case s.byzantine > 0 && atk.Name() == "none":
		return nil, withHint(fmt.Errorf("--byzantine %d without --attack: Byzantine sites need an attack", s.byzantine), "add --attack sign-flip, for instance")
	case s.byzantine == 0 && atk.Name() != "none" && !isBackdoor:
		return nil, withHint(fmt.Errorf("--attack %s without attackers", s.attack), "add --byzantine F: the first F sites attack")
	case atk.Name() == "none":
		return nil, nil
	}
	return atk, nil
}

// privacy returns the DP settings of --dp-noise, or nil without it.
func (s *simFlags) privacy() (*simulation.Privacy, error) {
	if s.set["dp-noise"] {
		return &simulation.Privacy{Noise: s.noise, MinCohort: s.minCohort, Delta: s.delta, Budget: s.budget}, nil
	}
	for _, name := range []string{"min-cohort", "delta", "epsilon-budget"} {
		if s.set[name] {
			return nil, withHint(fmt.Errorf("--%s applies only to DP runs", name), "add --dp-noise Z --clip C")
		}
	}
	return nil, nil
}

// announce states on stderr what is simulated, and that nothing is protected.
func (s *simFlags) announce(w io.Writer, cfg simulation.Config) {
	fmt.Fprintf(w, "cloister: simulating %d nodes (%s) training %s on %s, %s, %d rounds (plaintext: nothing is protected)\n",
		cfg.Nodes, cfg.Partition, cfg.Model.Kind, cfg.Data.Train.Name, cfg.Strategy.Name(), cfg.Rounds)
	_, isBackdoor := cfg.Attack.(attack.Backdoor)
	if cfg.Byzantine > 0 {
		fmt.Fprintf(w, "cloister: nodes 1–%d attack with %s; aggregation rule %s\n", cfg.Byzantine, cfg.Attack, cfg.Rule)
	} else if isBackdoor {
		fmt.Fprintf(w, "cloister: no node attacks; measuring the backdoor accuracy of the clean model (%s); aggregation rule %s\n", cfg.Attack, cfg.Rule)
	} else if _, mean := cfg.Rule.(*robust.Mean); !mean {
		fmt.Fprintf(w, "cloister: aggregation rule %s\n", cfg.Rule)
	}
	if cfg.Clip > 0 {
		fmt.Fprintf(w, "cloister: every update is clipped to L2 norm %g\n", cfg.Clip)
	}
	if p := cfg.Privacy; p != nil {
		k := p.MinCohort
		if k == 0 {
			k = s.cohortSize()
		}
		fmt.Fprintf(w, "cloister: distributed DP: σ = %g, C = %g, k = %d: each node adds noise of std %.4g; q = %g, δ = %g (noise from a seeded stream: a simulation; nodes use crypto/rand)\n",
			p.Noise, cfg.Clip, k, p.Noise*cfg.Clip/math.Sqrt(float64(k)), float64(s.cohortSize())/float64(cfg.Nodes), p.Delta)
	}
	if cfg.Compress != (compress.Scheme{}) {
		fmt.Fprintf(w, "cloister: updates compressed with %s\n", cfg.Compress)
	}
}

// simProgress prints one line per round: accuracy, loss, and ε, backdoor
// accuracy and bytes on the wire when they apply.
func simProgress(w io.Writer, total int, compressed bool) func(simulation.RoundResult) {
	return func(r simulation.RoundResult) {
		var b strings.Builder
		fmt.Fprintf(&b, "round %*d/%d  accuracy %.4f  loss %.4f", len(strconv.Itoa(total)), r.Round, total, r.Accuracy, r.Loss)
		if r.Epsilon > 0 {
			fmt.Fprintf(&b, "  ε %.4g", r.Epsilon)
		}
		if r.BackdoorAccuracy != nil {
			fmt.Fprintf(&b, "  backdoor %.4f", *r.BackdoorAccuracy)
		}
		if compressed {
			fmt.Fprintf(&b, "  up %s (dense %s)", size(r.BytesUp), size(r.BytesUpDense))
		}
		fmt.Fprintf(&b, "  %.1fs\n", r.Seconds)
		io.WriteString(w, b.String())
	}
}

// size formats a byte count.
func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// output writes the JSON and SVG results that were asked for: accuracy
// (and backdoor accuracy when measured), loss, and ε spent when withEpsilon.
// xlabel names the unit of a row: "round", or "epoch" for train.
func (l *learning) output(res *simulation.Result, title, xlabel string, withEpsilon bool) error {
	if l.jsonPath != "" {
		data, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := store.WriteFile(l.jsonPath, append(data, '\n'), 0o644); err != nil {
			return err
		}
	}
	if l.plotPath == "" {
		return nil
	}
	var x, acc, loss, eps, bd []float64
	for _, r := range res.Rounds {
		x = append(x, float64(r.Round))
		acc = append(acc, r.Accuracy)
		loss = append(loss, r.Loss)
		eps = append(eps, r.Epsilon)
		if r.BackdoorAccuracy != nil {
			bd = append(bd, *r.BackdoorAccuracy)
		}
	}
	accPanel := plot.Panel{YLabel: "test accuracy", Series: []plot.Series{{Name: "accuracy", X: x, Y: acc}}}
	if len(bd) == len(x) {
		accPanel.Series = append(accPanel.Series, plot.Series{Name: "backdoor accuracy", X: x, Y: bd})
	}
	f := plot.Figure{Title: title, XLabel: xlabel, Panels: []plot.Panel{
		accPanel,
		{YLabel: "test loss", Series: []plot.Series{{Name: "loss", X: x, Y: loss}}},
	}}
	if withEpsilon {
		f.Panels = append(f.Panels, plot.Panel{YLabel: "ε spent", Series: []plot.Series{{Name: "ε", X: x, Y: eps}}})
	}
	var buf bytes.Buffer
	if err := f.WriteSVG(&buf); err != nil {
		return err
	}
	return store.WriteFile(l.plotPath, buf.Bytes(), 0o644)
}

// simHint decorates the simulation's configuration errors with the flag
// that sets the field at fault; the library does the checking.
func simHint(err error, cfg simulation.Config, rule string) error {
	var ce *simulation.ConfigError
	if !errors.As(err, &ce) {
		return err
	}
	hint := map[string]string{
		"Nodes":       fmt.Sprintf("--nodes %d: use at least 1 site", cfg.Nodes),
		"Rounds":      fmt.Sprintf("--rounds %d: use at least 1", cfg.Rounds),
		"LocalEpochs": fmt.Sprintf("--local-epochs %d: use at least 1", cfg.LocalEpochs),
		"Cohort":      fmt.Sprintf("--cohort %d: use between 1 and --nodes %d (0: all)", cfg.Cohort, cfg.Nodes),
		"Byzantine":   fmt.Sprintf("--byzantine %d: want between 0 and --nodes %d", cfg.Byzantine, cfg.Nodes),
		"Clip":        fmt.Sprintf("--clip %v: use a finite bound ≥ 0", cfg.Clip),
		"Optimizer":   "check --lr, --momentum, --weight-decay, --batch and --prox-mu",
	}
	if p := cfg.Privacy; p != nil {
		hint["Clip"] = "--dp-noise needs --clip: the noise is calibrated to the clipping bound; add --clip 1, for instance (the run's update_norm in --json output helps choose it)"
		if cfg.Clip != 0 {
			hint["Clip"] = fmt.Sprintf("--clip %v: use a finite bound ≥ 0", cfg.Clip)
		}
		hint["Rule"] = fmt.Sprintf("--dp-noise with --rule %s: drop --rule, or drop --dp-noise and keep --clip as a norm bound", rule)
		hint["Privacy.Noise"] = fmt.Sprintf("--dp-noise %v: use a noise multiplier > 0", p.Noise)
		hint["Privacy.MinCohort"] = fmt.Sprintf("--min-cohort %d: use between 1 and the cohort of %d sites (0: all)", p.MinCohort, cfg.Cohort)
		hint["Privacy.Delta"] = fmt.Sprintf("--delta %v: use a value in (0, 1)", p.Delta)
		hint["Privacy.Budget"] = fmt.Sprintf("--epsilon-budget %v: use a finite ε ≥ 0", p.Budget)
	}
	if h, ok := hint[ce.Field]; ok {
		return withHint(err, h)
	}
	return err
}
