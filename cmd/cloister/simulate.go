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
	fs := newFlags("simulate", stderr)
	var l learning
	l.register(fs)
	nodes := fs.Int("nodes", 10, "number of simulated sites")
	partition := fs.String("partition", "iid", "how data is split over sites: iid, dirichlet:ALPHA or shards:K")
	rounds := fs.Int("rounds", 30, "federated rounds")
	localEpochs := fs.Int("local-epochs", 1, "local epochs per round on each site")
	cohort := fs.Int("cohort", 0, "sites drawn at random to train in each round (0: all)")
	server := fs.String("strategy", "fedavg", "server optimizer: fedavg, fedadam, fedyogi, fedadagrad or scaffold, with options as in fedadam:lr=0.01")
	proxMu := fs.Float64("prox-mu", 0, "FedProx proximal term μ (0 is plain FedAvg)")
	atkSpec := fs.String("attack", "none", "what the Byzantine sites do: none, label-flip, sign-flip, gaussian, scale, alie, ipm or backdoor")
	byzantine := fs.Int("byzantine", 0, "number of Byzantine sites: the first F sites attack")
	ruleSpec := fs.String("rule", "mean", "aggregation rule: mean, median, trimmed:0.2, krum, multikrum:M, bulyan or cclip")
	clip := fs.Float64("clip", 0, "L2 bound C every update is clipped to, on the sites (0: none)")
	noise := fs.Float64("dp-noise", 0, "noise multiplier σ of distributed DP: the sum of updates gets noise σ·C (needs --clip)")
	minCohort := fs.Int("min-cohort", 0, "DP: k, the honest sites whose noise shares σC/√k make up the noise (0: the whole cohort)")
	delta := fs.Float64("delta", simulation.DefaultDelta, "DP: δ at which ε is reported")
	budget := fs.Float64("epsilon-budget", 0, "DP: stop before a round that would spend more than this ε (0: no budget)")
	compSpec := fs.String("compress", "none", "update compression: none, topk:FRACTION or q8")
	if err := parse(fs, args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	m := *cohort
	if m == 0 {
		m = *nodes
	}
	part, err := dataset.ParsePartition(*partition)
	if err != nil {
		return withHint(err, "use iid, dirichlet:0.5 or shards:2")
	}
	strat, err := strategy.New(*server)
	if err != nil {
		return withHint(err, "use fedavg, fedadam, fedyogi, fedadagrad or scaffold")
	}
	if _, ok := strat.(*strategy.Scaffold); ok && m < *nodes && !strings.Contains(*server, "frac") {
		return withHint(fmt.Errorf("--strategy %s with a cohort of %d out of %d sites: SCAFFOLD needs the cohort fraction", *server, m, *nodes),
			fmt.Sprintf("use --strategy scaffold:frac=%g", float64(m)/float64(*nodes)))
	}
	atk, err := attack.Parse(*atkSpec, m, min(*byzantine, m))
	if err != nil {
		return withHint(err, "use none, label-flip, sign-flip, gaussian, scale, alie, ipm or backdoor, with options as in sign-flip:scale=4")
	}
	_, isBackdoor := atk.(attack.Backdoor)
	switch {
	case *byzantine > 0 && atk.Name() == "none":
		return withHint(fmt.Errorf("--byzantine %d without --attack: Byzantine sites need an attack", *byzantine), "add --attack sign-flip, for instance")
	case *byzantine == 0 && atk.Name() != "none" && !isBackdoor:
		return withHint(fmt.Errorf("--attack %s without attackers", *atkSpec), "add --byzantine F: the first F sites attack")
	}
	rule, err := robust.Parse(*ruleSpec, m)
	if err != nil {
		return withHint(err, "use mean, median, trimmed:0.2, krum, multikrum:M, bulyan or cclip; robust rules need enough sites for their f")
	}
	var priv *simulation.Privacy
	if set["dp-noise"] {
		priv = &simulation.Privacy{Noise: *noise, MinCohort: *minCohort, Delta: *delta, Budget: *budget}
	} else {
		for _, name := range []string{"min-cohort", "delta", "epsilon-budget"} {
			if set[name] {
				return withHint(fmt.Errorf("--%s applies only to DP runs", name), "add --dp-noise Z --clip C")
			}
		}
	}
	comp, err := compress.Parse(*compSpec)
	if err != nil {
		return withHint(err, "use none, topk:0.01 or q8")
	}
	opt := l.optimizer()
	opt.ProxMu = *proxMu
	spec, err := l.spec()
	if err != nil {
		return err
	}
	split, err := l.load()
	if err != nil {
		return err
	}

	fmt.Fprintf(stderr, "cloister: simulating %d nodes (%s) training %s on %s, %s, %d rounds (plaintext: nothing is protected)\n",
		*nodes, part, spec.Kind, split.Train.Name, strat.Name(), *rounds)
	if *byzantine > 0 {
		fmt.Fprintf(stderr, "cloister: nodes 1–%d attack with %s; aggregation rule %s\n", *byzantine, atk, rule)
	} else if isBackdoor {
		fmt.Fprintf(stderr, "cloister: no node attacks; measuring the backdoor accuracy of the clean model (%s); aggregation rule %s\n", atk, rule)
	} else if _, mean := rule.(*robust.Mean); !mean {
		fmt.Fprintf(stderr, "cloister: aggregation rule %s\n", rule)
	}
	if *clip > 0 {
		fmt.Fprintf(stderr, "cloister: every update is clipped to L2 norm %g\n", *clip)
	}
	if priv != nil {
		k := *minCohort
		if k == 0 {
			k = m
		}
		fmt.Fprintf(stderr, "cloister: distributed DP: σ = %g, C = %g, k = %d: each node adds noise of std %.4g; q = %g, δ = %g (noise from a seeded stream: a simulation; nodes use crypto/rand)\n",
			*noise, *clip, k, *noise**clip/math.Sqrt(float64(k)), float64(m)/float64(*nodes), *delta)
	}
	if comp != (compress.Scheme{}) {
		fmt.Fprintf(stderr, "cloister: updates compressed with %s\n", comp)
	}
	cfg := simulation.Config{
		Data: split, Model: spec, Optimizer: opt, Strategy: strat,
		Nodes: *nodes, Partition: part, Rounds: *rounds, LocalEpochs: *localEpochs, Seed: l.seed,
		Cohort: *cohort, Rule: rule, Byzantine: *byzantine, Clip: *clip, Privacy: priv, Compress: comp,
	}
	if atk.Name() != "none" {
		cfg.Attack = atk
	}
	res, err := simulation.Run(cfg, simProgress(stderr, *rounds, comp != (compress.Scheme{})))
	if err != nil {
		return simHint(err, cfg, *ruleSpec)
	}
	if res.Stopped != "" {
		fmt.Fprintf(stderr, "cloister: stopped: %s\n", res.Stopped)
	}
	line := fmt.Sprintf("final test accuracy %.4f, loss %.4f after %d rounds", res.Final.Accuracy, res.Final.Loss, len(res.Rounds))
	if priv != nil {
		line += fmt.Sprintf(", ε = %.4g (δ = %g)", res.Final.Epsilon, *delta)
	}
	if b := res.Final.BackdoorAccuracy; b != nil {
		line += fmt.Sprintf(", backdoor accuracy %.4f", *b)
	}
	fmt.Fprintln(stdout, line)
	title := fmt.Sprintf("%s: %d nodes, %s, %s on %s", strat.Name(), *nodes, part, spec.Kind, split.Train.Name)
	if *byzantine > 0 {
		title += fmt.Sprintf("; %d × %s vs %s", *byzantine, atk.Name(), rule.Name())
	}
	return l.output(res, title, "round", priv != nil)
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
