package coordinator

import (
	"context"
	"math"
	"slices"
	"time"

	"github.com/cloisterfl/cloister/dp"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/store"
)

// Phase names of a round record's timings.
const (
	PhaseCollect  = "collect"  // Train sent → uploads in: local training, protection and upload
	PhaseReveal   = "reveal"   // reveal requests sent → every share in
	PhaseCommit   = "commit"   // Open result sent to the leader → its commit: decrypt, apply, seal, sign
	PhaseEvaluate = "evaluate" // the model broadcast → every node's metrics
)

// history keeps the record of the current round (store.Round): its phases'
// durations and the bytes moved, from the engine's events. The loop
// goroutine owns it.
//
// It also tells the operator how each round ended: apply queues the
// outcomes of the Ready in hand (a round that ended, a key setup that was
// abandoned, the session's end) and report logs them at INFO once the
// Ready's batch is saved and audited, so that a committed round's line
// carries the metrics its batch stored. A committed round ends when its
// evaluation does (the next round starts, or the session ends), so its one
// line has its accuracy and loss. A round ends once per process (resume
// skips the rounds that ended before a restart), so each is logged once.
type history struct {
	c          *Coordinator
	cur        *store.Round
	phase      string
	phaseStart time.Time
	in0, out0  uint64 // transport counters when the round (or this process) started
	up0, down0 uint64 // bytes recorded by an earlier process

	outcomes []outcome // to log after the batch is saved
}

// outcome is a round that ended (its final record); or, with no record,
// the session's end, or an abort of a round the history had no record for
// or of a key setup (round 0).
type outcome struct {
	rec    *store.Round
	round  fl.Round // without rec
	reason string   // without rec
	done   bool     // the session is over
}

func newHistory(c *Coordinator) *history { return &history{c: c} }

// resume picks up the record of the round a restarted coordinator was in.
func (h *history) resume(ctx context.Context, st round.CoordinatorState) {
	if st.Round == 0 {
		return
	}
	r, err := h.c.sc.Round(ctx, st.Round)
	if err != nil || r.Outcome == store.Aborted || !r.Ended.IsZero() {
		return
	}
	h.cur = &r
	h.phase = phaseName(st.Phase)
	h.phaseStart = h.c.cfg.Now()
	h.up0, h.down0 = r.BytesUp, r.BytesDown
	h.in0, h.out0 = h.c.tm.BytesIn.Load(), h.c.tm.BytesOut.Load()
}

func phaseName(p round.Phase) string {
	switch p {
	case round.PhaseCollect:
		return PhaseCollect
	case round.PhaseReveal:
		return PhaseReveal
	case round.PhaseCommit:
		return PhaseCommit
	case round.PhaseEvaluate:
		return PhaseEvaluate
	}
	return ""
}

// apply folds a Ready's events into the current record and returns the
// records to save (the current one if it changed, and one that ended).
func (h *history) apply(rd round.CoordinatorReady, now time.Time) []store.Round {
	var out []store.Round
	touched := false
	for _, e := range rd.Audit {
		switch e.Kind {
		case round.EventRoundStarted:
			if h.cur != nil {
				h.end(now)
				out = append(out, h.ended())
			}
			h.cur = &store.Round{Round: e.Round, Epoch: e.Epoch, Phase: PhaseCollect, Leader: e.Node,
				Cohort: slices.Clone(e.Nodes), Started: now}
			h.phase, h.phaseStart = PhaseCollect, now
			h.in0, h.out0 = h.c.tm.BytesIn.Load(), h.c.tm.BytesOut.Load()
			h.up0, h.down0 = 0, 0
			h.c.met.rounds.WithLabelValues("started").Inc()
			touched = true
		case round.EventAggregated:
			if h.cur != nil && h.cur.Round == e.Round {
				h.cur.Aggregate = e.Digest
				if rd.State != nil {
					h.cur.Included = h.cur.Included[:0]
					for _, ct := range rd.State.Included {
						h.cur.Included = append(h.cur.Included, store.Contribution{Node: ct.Node, Digest: ct.Digest, Signature: ct.Signature})
					}
				}
				touched = true
			}
		case round.EventRevealRequested:
			touched = h.switchPhase(e, PhaseReveal, now) || touched
		case round.EventOpened:
			touched = h.switchPhase(e, PhaseCommit, now) || touched
		case round.EventLeaderFailed:
			if h.cur != nil && h.cur.Round == e.Round {
				h.cur.Leader = e.Node
				touched = true
			}
		case round.EventCommitted:
			if h.switchPhase(e, PhaseEvaluate, now) {
				h.cur.Outcome, h.cur.Leader = store.Committed, e.Node
				h.cur.MicroEpsilon = e.MicroEpsilon // priced by budget.charge
				h.c.met.rounds.WithLabelValues("committed").Inc()
				touched = true
			}
		case round.EventAborted:
			if h.cur != nil && h.cur.Round == e.Round {
				h.closePhase(now)
				h.cur.Outcome, h.cur.Reason, h.cur.Ended, h.cur.Phase = store.Aborted, e.Detail, now, "aborted"
				h.c.met.rounds.WithLabelValues("aborted").Inc()
				h.bytes()
				out = append(out, h.ended())
				h.cur = nil
			} else {
				// A key setup abandoned (round 0), or a round this process
				// has no record of.
				h.outcomes = append(h.outcomes, outcome{round: e.Round, reason: e.Detail})
			}
		case round.EventDone:
			if h.cur != nil {
				h.end(now)
				out = append(out, h.ended())
				h.cur = nil
			}
			h.outcomes = append(h.outcomes, outcome{round: e.Round, reason: e.Detail, done: true})
		}
	}
	if h.cur != nil && (touched || h.bytes()) {
		out = append(out, h.snapshot())
	}
	return out
}

// bytes updates the current record's byte counts and reports a change.
func (h *history) bytes() bool {
	if h.cur == nil {
		return false
	}
	up := h.up0 + h.c.tm.BytesIn.Load() - h.in0
	down := h.down0 + h.c.tm.BytesOut.Load() - h.out0
	changed := up != h.cur.BytesUp || down != h.cur.BytesDown
	h.cur.BytesUp, h.cur.BytesDown = up, down
	return changed
}

func (h *history) switchPhase(e round.Event, phase string, now time.Time) bool {
	if h.cur == nil || h.cur.Round != e.Round {
		return false
	}
	h.closePhase(now)
	h.phase, h.phaseStart, h.cur.Phase = phase, now, phase
	return true
}

func (h *history) closePhase(now time.Time) {
	if h.phase == "" {
		return
	}
	d := now.Sub(h.phaseStart)
	h.cur.Timings = append(h.cur.Timings, store.Timing{Phase: h.phase, Duration: d})
	h.c.met.phase.WithLabelValues(h.phase).Observe(d.Seconds())
	h.phase = ""
}

// end closes the current round (after its evaluation).
func (h *history) end(now time.Time) {
	h.closePhase(now)
	h.cur.Ended = now
	if h.cur.Outcome == store.Committed {
		h.cur.Phase = "done"
	}
	h.bytes()
}

// ended returns the snapshot of the current record, which has just ended,
// and queues it for report.
func (h *history) ended() store.Round {
	r := h.snapshot()
	h.outcomes = append(h.outcomes, outcome{rec: &r})
	return r
}

func (h *history) snapshot() store.Round {
	r := *h.cur
	r.Cohort = slices.Clone(r.Cohort)
	r.Included = slices.Clone(r.Included)
	r.Timings = slices.Clone(r.Timings)
	return r
}

// report logs the queued outcomes at INFO, after their batch is saved: a
// committed round with its leader, included set, seconds (start to the end
// of its evaluation), bytes, ε (with DP) and the nodes' example-weighted
// accuracy and loss (store.Summary, as /rounds has them); an aborted round
// with its reason, seconds and bytes; an abandoned key setup with its
// reason; the session's end with its reason.
func (h *history) report(ctx context.Context) {
	for _, o := range h.outcomes {
		r := o.rec
		switch {
		case o.done:
			st := h.c.rc.Status()
			h.c.log.Info("session over", "reason", o.reason, "round", o.round, "commits", st.Commits, "rounds_planned", h.c.rcfg.Rounds)
		case r == nil && o.round == 0:
			h.c.log.Info("key setup aborted", "reason", o.reason)
		case r == nil:
			h.c.log.Info("round aborted", "round", o.round, "reason", o.reason)
		case r.Outcome == store.Aborted:
			h.c.log.Info("round aborted", "round", r.Round, "reason", r.Reason, "seconds", seconds(r), "bytes_up", r.BytesUp,
				"bytes_down", r.BytesDown)
		case r.Outcome == store.Committed:
			attrs := []any{"round", r.Round, "leader", r.Leader, "included", len(r.Included), "cohort", len(r.Cohort),
				"seconds", seconds(r), "bytes_up", r.BytesUp, "bytes_down", r.BytesDown}
			attrs = append(attrs, h.evaluation(ctx, r.Round)...)
			if b := h.c.budget; b != nil {
				attrs = append(attrs, "epsilon_round", dp.EpsilonFromMicro(int64(r.MicroEpsilon)))
				if _, total, err := b.Cost(r.Round); err == nil {
					attrs = append(attrs, "epsilon_total", dp.EpsilonFromMicro(total))
				}
			}
			h.c.log.Info("round committed", attrs...)
		default: // ended without a commit or an abort: the session ended in its middle
			h.c.log.Info("round ended", "round", r.Round, "phase", r.Phase, "seconds", seconds(r), "bytes_up", r.BytesUp,
				"bytes_down", r.BytesDown)
		}
	}
	h.outcomes = h.outcomes[:0]
}

// evaluation returns the log attributes of the nodes' evaluation of round
// r's model: how many reported, and the example-weighted accuracy and loss.
func (h *history) evaluation(ctx context.Context, r fl.Round) []any {
	sums, err := h.c.sc.Summaries(ctx, r, 1)
	if err != nil {
		return []any{"metrics_err", err}
	}
	if len(sums) == 0 || sums[0].Round != r {
		return []any{"nodes_reporting", 0}
	}
	s := sums[0]
	attrs := []any{"nodes_reporting", s.Nodes, "examples", s.Examples}
	if !math.IsNaN(s.Accuracy) {
		attrs = append(attrs, "accuracy", round6(s.Accuracy), "loss", round6(s.Loss))
	}
	return attrs
}

// round6 rounds v to 6 decimals, for the log.
func round6(v float64) float64 { return math.Round(v*1e6) / 1e6 }

// seconds is a finished round's duration in seconds, to the millisecond.
func seconds(r *store.Round) float64 {
	return math.Round(r.Ended.Sub(r.Started).Seconds()*1000) / 1000
}
