package coordinator

import (
	"context"
	"slices"
	"time"

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
type history struct {
	c          *Coordinator
	cur        *store.Round
	phase      string
	phaseStart time.Time
	in0, out0  uint64 // transport counters when the round (or this process) started
	up0, down0 uint64 // bytes recorded by an earlier process
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
				out = append(out, h.snapshot())
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
				out = append(out, h.snapshot())
				h.cur = nil
			}
		case round.EventDone:
			if h.cur != nil {
				h.end(now)
				out = append(out, h.snapshot())
				h.cur = nil
			}
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

func (h *history) snapshot() store.Round {
	r := *h.cur
	r.Cohort = slices.Clone(r.Cohort)
	r.Included = slices.Clone(r.Included)
	r.Timings = slices.Clone(r.Timings)
	return r
}
