package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/audit"
	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/pki"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

func (c *Coordinator) run() {
	defer close(c.loopDone)
	renewing := make(chan struct{})
	go func() { defer close(renewing); c.keepLead(c.ctx) }()
	err := c.loop(c.ctx)
	c.stop() // the loop has ended: so do the renewals
	<-renewing
	if lost := c.lead.lostErr(); lost != nil {
		err = lost
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		c.loopErr = err
		c.log.Error("the coordinator stopped", "err", err)
		go c.srv.Shutdown(context.Background())
	}
}

func (c *Coordinator) loop(ctx context.Context) error {
	events := make(chan transport.Event, 16)
	go func() {
		for {
			ev, err := c.srv.Recv(ctx)
			if err != nil {
				close(events)
				return
			}
			select {
			case events <- ev:
			case <-ctx.Done():
				close(events)
				return
			}
		}
	}()
	ticker := time.NewTicker(c.cfg.Tick)
	defer ticker.Stop()
	var lastExpiry time.Time
	for {
		if err := c.drain(ctx); err != nil {
			return err
		}
		c.setStatus()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				return ctx.Err()
			}
			c.expireAggregator(c.cfg.Now()) // before the engine acts on it
			c.handle(ev)
		case <-ticker.C:
			c.expireAggregator(c.cfg.Now())
			c.rc.Tick()
			if now := c.cfg.Now(); now.Sub(lastExpiry) >= time.Second {
				lastExpiry = now
				c.checkExpiry(now)
				if err := c.recordLimits(now); err != nil {
					return err
				}
				c.checkRevocations(now)
				c.checkAmendment(now)
			} else if c.rev.soon {
				// A round aborted: its members may have refused it for a
				// revocation they read first. Rounds that abort can follow
				// each other faster than a second.
				c.checkRevocations(now)
			}
		}
	}
}

func (c *Coordinator) handle(ev transport.Event) {
	switch ev.Kind {
	case transport.EventConnect:
		c.log.Info("node connected", "member", ev.Node)
		c.connected(ev)
	case transport.EventChallenge:
		c.log.Debug("issued a nonce for re-attestation", "member", ev.Node)
		c.challenged(ev)
	case transport.EventDisconnect:
		c.log.Info("node disconnected", "member", ev.Node, "err", ev.Err)
		for _, s := range []error{transport.ErrImpersonation, transport.ErrTooLarge, transport.ErrFrame, transport.ErrMalformed} {
			if errors.Is(ev.Err, s) {
				c.met.rejected.WithLabelValues("transport").Inc()
				c.rc.Refuse(ev.Node, ev.Err.Error(), nil)
				break
			}
		}
		c.rc.Unreachable(ev.Node)
	case transport.EventMessage:
		if c.revoked(ev.Node) {
			c.met.rejected.WithLabelValues("revoked").Inc()
			c.srv.Drop(ev.Node, pki.ErrRevoked)
			return
		}
		if !c.allow(ev.Node, ev.Msg) {
			return
		}
		if ev.Msg.Kind == round.KindHello && !c.admit(ev.Node, ev.Msg) {
			return
		}
		if ev.Msg.Kind != round.KindHello && !c.attested(ev.Node) {
			c.met.rejected.WithLabelValues("unattested").Inc()
			if c.recordRefusal(ev.Node) { // not audited, but logged: bounded as refusals are
				c.log.Warn("rejected a message: no attested Hello on this stream", "member", ev.Node, "kind", ev.Msg.Kind.String(), "round", ev.Msg.Round)
			}
			return
		}
		start := time.Now()
		err := c.rc.Step(ev.Node, ev.Msg)
		c.log.Debug("step", "member", ev.Node, "kind", ev.Msg.Kind.String(), "round", ev.Msg.Round, "step_s", time.Since(start).Seconds(), "err", err)
		if err != nil {
			c.met.rejected.WithLabelValues(sentinel(err)).Inc()
			c.log.Warn("rejected a message", "member", ev.Node, "kind", ev.Msg.Kind.String(), "round", ev.Msg.Round, "err", err)
			return
		}
		c.met.stepSeconds.WithLabelValues(ev.Msg.Kind.String()).Observe(time.Since(start).Seconds())
	}
}

// sentinel names the round sentinel err wraps, for the rejection metric.
func sentinel(err error) string {
	for _, s := range []struct {
		err  error
		name string
	}{
		{round.ErrNotMember, "not-member"}, {round.ErrForged, "forged"}, {round.ErrWrongSession, "wrong-session"},
		{round.ErrReplay, "replay"}, {round.ErrFuture, "future"}, {round.ErrWrongPhase, "wrong-phase"},
		{round.ErrNotSelected, "not-selected"}, {round.ErrDuplicate, "duplicate"}, {round.ErrStale, "stale"},
		{round.ErrMalformed, "malformed"}, {round.ErrRefused, "refused"}, {round.ErrUnknownKind, "unknown-kind"},
	} {
		if errors.Is(err, s.err) {
			return s.name
		}
	}
	return "other"
}

// drain handles every pending Ready, in its field order: persist (state,
// current model, group key, commits, round history and metrics in one
// transaction), record the audit events, send.
func (c *Coordinator) drain(ctx context.Context) error {
	for c.rc.HasReady() {
		rd := c.rc.Ready()
		now := c.cfg.Now()
		b, err := c.batch(rd, now)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := c.sc.Save(c.lead.ctx, b); err != nil {
			return fmt.Errorf("coordinator: persisting state: %w", err)
		}
		if rd.Terms != nil {
			if err := c.adopt(rd.Terms); err != nil {
				return err
			}
		}
		for _, e := range rd.Audit {
			if e.Kind == round.EventAborted {
				c.rev.soon = true // its members may have refused it for a revocation they read first
			}
		}
		entries := c.auditEntries(rd.Audit, rd.Commits)
		for _, e := range entries {
			if err := audit.ValidateData(e.kind, e.data); err != nil {
				// A mapping bug, not a storage failure: say so, keep going.
				c.log.Error("cannot record an audit event", "kind", e.kind, "err", err)
				continue
			}
			if err := c.appendAudit(e); err != nil {
				return fmt.Errorf("coordinator: audit log: %w", err)
			}
		}
		c.observe(rd.Audit)
		c.setStatus() // before the messages: whoever hears of a step sees it in the status
		t1 := time.Now()
		failed := c.send(ctx, rd.Messages)
		c.dropRemoved()
		c.log.Debug("ready", "state_bytes", len(b.State), "persist_audit_s", t1.Sub(t0).Seconds(), "audit", len(entries),
			"messages", len(rd.Messages), "send_s", time.Since(t1).Seconds())
		c.hist.report(c.lead.ctx) // the rounds that ended, now stored and audited (its reads end with the lead: a store cut off mid-read must not hold the loop)
		c.rc.Advance()
		for _, id := range failed {
			c.rc.Unreachable(id)
		}
	}
	return nil
}

// sendTimeout bounds one message's send: a node that stops reading loses
// its stream (and reconnects) rather than stall the loop.
const sendTimeout = 60 * time.Second

func (c *Coordinator) send(ctx context.Context, msgs []round.Message) []fl.NodeID {
	if len(msgs) == 0 {
		return nil
	}
	byNode := make(map[fl.NodeID][]round.Message)
	var order []fl.NodeID
	for _, m := range msgs {
		if _, ok := byNode[m.To]; !ok {
			order = append(order, m.To)
		}
		byNode[m.To] = append(byNode[m.To], m)
	}
	var mu sync.Mutex
	var failed []fl.NodeID
	var wg sync.WaitGroup
	for _, to := range order {
		wg.Go(func() {
			for _, m := range byNode[to] {
				sctx, cancel := context.WithTimeout(ctx, sendTimeout)
				start := time.Now()
				err := c.srv.Send(sctx, to, m)
				cancel()
				c.log.Debug("sent", "member", to, "kind", m.Kind.String(), "round", m.Round, "send_s", time.Since(start).Seconds(), "err", err)
				if err != nil {
					c.log.Info("cannot send", "member", to, "kind", m.Kind.String(), "round", m.Round, "err", err)
					mu.Lock()
					failed = append(failed, to)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	slices.Sort(failed)
	return failed
}
