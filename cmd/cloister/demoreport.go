package main

import (
	"bytes"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"

	"github.com/cloisterfl/cloister/coordinator"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/plot"
	"github.com/cloisterfl/cloister/store"
)

// demoResult is what `cloister demo --json` writes.
type demoResult struct {
	FinalAccuracy float64 `json:"final_accuracy"`
	FinalLoss     float64 `json:"final_loss"`
	Rounds        int     `json:"rounds"`
	Mode          string  `json:"mode"`
	Preset        string  `json:"preset,omitempty"`
	Nodes         int     `json:"nodes"`
	Threshold     int     `json:"threshold"`
	Seed          uint64  `json:"seed"`
	Model         string  `json:"model"`
	Partition     string  `json:"partition"`
	Strategy      string  `json:"strategy"`
	Rule          string  `json:"rule,omitempty"`      // the manifest's rule ("": the mean)
	Compress      string  `json:"compress,omitempty"`  // the manifest's compression ("": none)
	Attack        string  `json:"attack,omitempty"`    // --insecure-attack
	Byzantine     int     `json:"byzantine,omitempty"` // attackers (--byzantine)
	// BackdoorSuccess is, with --insecure-attack backdoor, the fraction of
	// triggered test images outside the target class that the final model
	// classifies as the target.
	BackdoorSuccess    *float64  `json:"backdoor_success,omitempty"`
	SecondsPerRound    []float64 `json:"seconds_per_round"`
	MedianRoundSeconds float64   `json:"median_round_seconds"`
	BytesUpPerRound    []uint64  `json:"bytes_up_per_round"`
	BytesDownPerRound  []uint64  `json:"bytes_down_per_round"`
	AccuracyPerRound   []float64 `json:"accuracy_per_round"`
	LossPerRound       []float64 `json:"loss_per_round"`
	// With DP: the federation's cumulative ε after each committed round and
	// at the end, at the manifest's δ (the coordinator's /rounds), and the
	// DP settings with the round cap the budget sets.
	EpsilonPerRound []float64            `json:"epsilon_per_round,omitempty"`
	EpsilonTotal    float64              `json:"epsilon_total,omitempty"`
	DP              *coordinator.Privacy `json:"dp,omitempty"`
	// PhaseSeconds lists, per phase, the seconds of each round.
	PhaseSeconds map[string][]float64 `json:"phase_seconds_per_round"`
	// NodeSeconds are the nodes' mean seconds per task: local training,
	// protecting the update (encrypting, signing), making a reveal share,
	// leading (decrypt, apply, seal, sign), evaluating; with an external
	// trainer, "trainer" is its own share of "train" (the rest is the
	// trainer API's).
	NodeSeconds map[string]float64 `json:"node_seconds_per_task"`
	// Reattestations counts the nodes' scheduled re-attestations (--tee
	// with --attest-every); their mean cost is NodeSeconds["reattest"].
	Reattestations int     `json:"reattestations,omitempty"`
	SetupSeconds   float64 `json:"setup_seconds"`
	TotalSeconds   float64 `json:"total_seconds"`
	// Messages are the message limit and the largest messages.
	Messages messageSizes `json:"messages"`
	Dir      string       `json:"dir,omitempty"`
}

func printRound(w io.Writer, r coordinator.RoundInfo, total int) {
	if r.Outcome != "committed" {
		fmt.Fprintf(w, "round %2d/%d  %s: %s\n", r.Round, total, r.Outcome, r.Reason)
		return
	}
	acc, loss := math.NaN(), math.NaN()
	if r.Accuracy != nil {
		acc, loss = *r.Accuracy, *r.Loss
	}
	eps := ""
	if r.EpsilonTotal > 0 {
		eps = fmt.Sprintf("  ε %.4g", r.EpsilonTotal)
	}
	fmt.Fprintf(w, "round %2d/%d  accuracy %.4f  loss %.4f%s  %5.1fs (collect %.1fs reveal %.2fs commit %.2fs evaluate %.2fs)  up %s down %s\n",
		r.Round, total, acc, loss, eps, r.Seconds, r.Phases[coordinator.PhaseCollect], r.Phases[coordinator.PhaseReveal],
		r.Phases[coordinator.PhaseCommit], r.Phases[coordinator.PhaseEvaluate], mb(r.BytesUp), mb(r.BytesDown))
}

func mb(b uint64) string { return fmt.Sprintf("%.1f MB", float64(b)/1e6) }

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func summarize(h *coordinator.History, nt nodeTimes, opts pki.InitOptions, seed uint64, partition string, total float64) demoResult {
	res := demoResult{Mode: opts.Mode, Preset: opts.Preset, Nodes: opts.Nodes, Threshold: opts.Threshold, Seed: seed,
		Model: opts.Model.Kind, Partition: partition, Strategy: opts.Training.Strategy, PhaseSeconds: map[string][]float64{}, TotalSeconds: total,
		FinalAccuracy: math.NaN(), FinalLoss: math.NaN(),
		NodeSeconds:    map[string]float64{"train": nt.Train, "protect": nt.Protect, "reveal": nt.Reveal, "lead": nt.Decrypt, "evaluate": nt.Evaluate},
		Reattestations: nt.Reattestations}
	if nt.Reattestations > 0 {
		res.NodeSeconds["reattest"] = nt.Reattest
	}
	if nt.Trainer > 0 {
		res.NodeSeconds["trainer"] = nt.Trainer
	}
	if len(opts.Model.Hidden) > 0 {
		res.Model += fmt.Sprint(opts.Model.Hidden)
	}
	for _, r := range h.History {
		if r.Outcome != "committed" {
			continue
		}
		res.Rounds++
		res.SecondsPerRound = append(res.SecondsPerRound, r.Seconds)
		res.BytesUpPerRound = append(res.BytesUpPerRound, r.BytesUp)
		res.BytesDownPerRound = append(res.BytesDownPerRound, r.BytesDown)
		acc, loss := math.NaN(), math.NaN()
		if r.Accuracy != nil {
			acc, loss = *r.Accuracy, *r.Loss
			res.FinalAccuracy, res.FinalLoss = acc, loss
		}
		res.AccuracyPerRound = append(res.AccuracyPerRound, acc)
		res.LossPerRound = append(res.LossPerRound, loss)
		if h.Privacy != nil {
			res.EpsilonPerRound = append(res.EpsilonPerRound, r.EpsilonTotal)
			res.EpsilonTotal = r.EpsilonTotal
		}
		for _, p := range []string{coordinator.PhaseCollect, coordinator.PhaseReveal, coordinator.PhaseCommit, coordinator.PhaseEvaluate} {
			res.PhaseSeconds[p] = append(res.PhaseSeconds[p], r.Phases[p])
		}
	}
	res.MedianRoundSeconds = median(res.SecondsPerRound)
	res.DP = h.Privacy
	return res
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}

func printSummary(w io.Writer, r demoResult) {
	fmt.Fprintf(w, "\nsummary: %d rounds committed, mode %s", r.Rounds, r.Mode)
	if r.Preset != "" {
		fmt.Fprintf(w, " (%s)", r.Preset)
	}
	fmt.Fprintf(w, ", %d nodes, t=%d\n", r.Nodes, r.Threshold)
	fmt.Fprintf(w, "  final accuracy %.4f, loss %.4f\n", r.FinalAccuracy, r.FinalLoss)
	if r.BackdoorSuccess != nil {
		fmt.Fprintf(w, "  backdoor success %.4f: the final model answers the target on that fraction of the triggered test images outside the target class\n", *r.BackdoorSuccess)
	}
	if p := r.DP; p != nil {
		fmt.Fprintf(w, "  privacy: ε = %.4g at δ = %g after %d rounds (budget %g, σ = %g, C = %g)\n",
			r.EpsilonTotal, p.Delta, r.Rounds, p.Budget, p.NoiseMultiplier, p.Clip)
	} else {
		fmt.Fprintf(w, "  privacy: differential privacy off, so no ε is spent or bounded: the model may memorize a site's examples (--dp-noise σ --clip C --epsilon E turns it on; docs/PRIVACY.md)\n")
	}
	fmt.Fprintf(w, "  round time: median %.2fs, total of rounds %.1fs; setup %.1fs; wall clock %.1fs\n",
		r.MedianRoundSeconds, sum(r.SecondsPerRound), r.SetupSeconds, r.TotalSeconds)
	fmt.Fprintf(w, "  time per phase (coordinator's view), median per round and total:\n")
	for _, p := range []struct{ name, what string }{
		{coordinator.PhaseCollect, "local training + protect + upload + sum"},
		{coordinator.PhaseReveal, "t reveal shares"},
		{coordinator.PhaseCommit, "leader: decrypt, apply, seal, sign"},
		{coordinator.PhaseEvaluate, "model broadcast + local evaluation"},
	} {
		xs := r.PhaseSeconds[p.name]
		fmt.Fprintf(w, "    %-9s %7.3fs  %7.1fs  %s\n", p.name, median(xs), sum(xs), p.what)
	}
	fmt.Fprintf(w, "  node tasks, mean seconds: train %.3f  protect %.3f  reveal %.3f  lead %.3f  evaluate %.3f\n",
		r.NodeSeconds["train"], r.NodeSeconds["protect"], r.NodeSeconds["reveal"], r.NodeSeconds["lead"], r.NodeSeconds["evaluate"])
	if t := r.NodeSeconds["trainer"]; t > 0 {
		api := r.NodeSeconds["train"] - t
		fmt.Fprintf(w, "  external trainer: %.3fs of its own per training task; the node's side (transfer, encoding, validation, clip and weight) %.3fs more, %.1f%% of the train task\n",
			t, api, 100*api/r.NodeSeconds["train"])
	}
	if r.Reattestations > 0 {
		fmt.Fprintf(w, "  re-attestation: %d in all (%.1f per node), mean %.2f ms each (new process keys, TEE report, signed evidence)\n",
			r.Reattestations, float64(r.Reattestations)/float64(r.Nodes), 1000*r.NodeSeconds["reattest"])
	}
	var up, down uint64
	for i := range r.BytesUpPerRound {
		up += r.BytesUpPerRound[i]
		down += r.BytesDownPerRound[i]
	}
	if n := uint64(len(r.BytesUpPerRound)); n > 0 {
		fmt.Fprintf(w, "  bytes per round: up %s, down %s\n", mb(up/n), mb(down/n))
	}
	if m := r.Messages; m.MaxMessage > 0 {
		fmt.Fprintf(w, "  largest message: up %s, down %s; limit %s (computed from the manifest)\n",
			mb(m.LargestIn), mb(m.LargestOut), mb(m.MaxMessage))
	}
}

func demoPlot(path string, r demoResult) error {
	var x []float64
	for i := range r.AccuracyPerRound {
		x = append(x, float64(i+1))
	}
	title := fmt.Sprintf("Cloister demo: %d nodes, t=%d, mode %s", r.Nodes, r.Threshold, r.Mode)
	fig := plot.Figure{Title: title, XLabel: "round", Panels: []plot.Panel{
		{YLabel: "test accuracy", Series: []plot.Series{{Name: r.Mode, X: x, Y: r.AccuracyPerRound}}},
		{YLabel: "test loss", Series: []plot.Series{{Name: r.Mode, X: x, Y: r.LossPerRound}}},
	}}
	if r.DP != nil && len(r.EpsilonPerRound) == len(x) {
		fig.Panels = append(fig.Panels, plot.Panel{YLabel: "ε spent", Series: []plot.Series{{Name: "ε", X: x, Y: r.EpsilonPerRound}}})
	}
	var buf bytes.Buffer
	if err := fig.WriteSVG(&buf); err != nil {
		return err
	}
	return store.WriteFile(path, buf.Bytes(), 0o644)
}
