package node

import (
	"context"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
)

// work runs tasks one at a time and returns their results. A task for a
// round older than a queued one is skipped.
func (n *Node) work(ctx context.Context, tasks <-chan round.Task, results chan<- round.Message) {
	for {
		var t round.Task
		select {
		case t = <-tasks:
		case <-ctx.Done():
			return
		}
		var res round.Message
		switch t.Kind {
		case round.TaskTrain:
			r, err := n.tr.trainTask(ctx, t.Round, t.Model)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				n.log.Error("training failed; this node sends no update this round", "round", t.Round, "err", err)
				// The engine declines the round: the coordinator goes on
				// without this node and keeps it for the next round. The
				// reason it sends says nothing of the error, which stays
				// in this log.
				res = round.Message{Kind: round.KindTrained, Round: t.Round, Update: fl.Update{Round: t.Round},
					Reason: "the local training failed (see the node's log)"}
				break
			}
			n.stats.Trained.Add(1)
			n.stats.TrainNanos.Add(uint64(r.Seconds * 1e9))
			if r.Attack != "" {
				n.log.Warn("INSECURE: this node sends a forged update (Byzantine attacker, tests and research only)", "round", t.Round, "attack", r.Attack)
			}
			attrs := []any{"round", t.Round, "loss", r.Loss, "examples", r.Examples, "weight", r.Update.Weight,
				"clip", r.Clip, "capped", r.Capped, "train_s", r.Seconds}
			if r.Compute > 0 {
				// An external trainer: its own time, and the API's share.
				attrs = append(attrs, "trainer_s", r.Compute, "api_s", r.Seconds-r.Compute)
				n.stats.TrainerNanos.Add(uint64(r.Compute * 1e9))
			}
			n.log.Info("trained", attrs...)
			if n.cfg.OnUpdate != nil {
				n.cfg.OnUpdate(fl.Update{Node: r.Update.Node, Round: r.Update.Round, Delta: r.Update.Delta.Clone(), Weight: r.Update.Weight})
			}
			res = round.Message{Kind: round.KindTrained, Round: t.Round, Update: r.Update}
		case round.TaskEvaluate:
			start := n.now()
			m, err := n.tr.evaluate(ctx, t.Round, t.Model)
			if err != nil {
				n.log.Error("evaluation failed", "round", t.Round, "err", err)
				continue
			}
			secs := n.now().Sub(start).Seconds()
			n.stats.Evaluated.Add(1)
			n.stats.EvalNanos.Add(uint64(secs * 1e9))
			n.log.Info("evaluated", "round", t.Round, "accuracy", m.Accuracy, "loss", m.Loss, "examples", m.Examples,
				"eval_s", secs)
			res = round.Message{Kind: round.KindEvaluated, Round: t.Round, Metrics: m}
		case round.TaskPrecompute:
			start := n.now()
			if err := t.Precompute(); err != nil {
				n.log.Warn("could not precompute the reveal's randomness; a reveal makes it itself", "round", t.Round, "err", err)
				continue
			}
			n.log.Info("precomputed the reveal's randomness", "round", t.Round, "precompute_s", n.now().Sub(start).Seconds())
			continue
		default:
			continue
		}
		select {
		case results <- res:
		case <-ctx.Done():
			return
		}
	}
}
