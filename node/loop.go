package node

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/cloisterfl/cloister/fl"
	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// loop is the engine's goroutine: the only one that touches n.rn.
func (n *Node) loop(ctx context.Context, inputs <-chan input, tasks chan<- round.Task, results <-chan round.Message) error {
	ticker := time.NewTicker(n.cfg.Tick)
	defer ticker.Stop()
	reattest := time.NewTicker(n.cfg.AttestEvery)
	defer reattest.Stop()
	nonces := make(chan challenged, 1)
	var conn *transport.Conn
	var asking bool // a Challenge is in flight
	var plan reattestPlan
	lastExpiry := n.now()
	for {
		done, err := n.drain(ctx, conn, tasks)
		if err != nil {
			return err
		}
		if done {
			n.log.Info("the session is over", "attestations", n.stats.Attestations.Load(), "rotations", n.stats.Rotations.Load(),
				"attest_s", time.Duration(n.stats.AttestNanos.Load()).Seconds(), "peer_checks", n.stats.PeerChecks.Load(),
				"peer_check_s", time.Duration(n.stats.PeerCheckNanos.Load()).Seconds(), "peer_failures", n.stats.PeerFailures.Load())
			if conn != nil {
				conn.Close()
			}
			return nil
		}
		select {
		case <-ctx.Done():
			if c := context.Cause(ctx); c != nil && !errors.Is(c, context.Canceled) {
				return c
			}
			return ctx.Err()
		case in := <-inputs:
			switch {
			case in.msg != nil:
				n.step(in.conn.Coordinator(), *in.msg)
			case in.down != nil:
				if conn == in.conn {
					conn = nil
				}
			default:
				// A new connection: evidence bound to it, then Hello.
				conn = in.conn
				n.hello(conn, n.keys.Own(), n.keysIssued, conn.Nonce(), false)
			}
		case res := <-results:
			n.step(n.self, res)
		case <-reattest.C:
			// Peers are sealing setup payloads to the current keys: rotate
			// once the setup is over (or at the next period at the latest).
			if plan.due(n.inSetup()) {
				n.reattest(ctx, conn, &asking, nonces)
			}
		case ch := <-nonces:
			asking = false
			switch {
			case ch.err != nil:
				plan.failed()
				n.log.Warn("cannot re-attest: no fresh nonce from the coordinator; retrying at the next schedule or reconnect", "err", ch.err)
			case ch.conn != conn:
			case plan.nonce(n.inSetup()):
				n.rotate(conn, ch.nonce)
			default:
				n.log.Debug("re-attestation deferred: a key setup started while the nonce was on its way")
			}
		case now := <-ticker.C:
			n.rn.Tick()
			if plan.tick(n.inSetup()) {
				n.reattest(ctx, conn, &asking, nonces)
			}
			if now.Sub(lastExpiry) >= time.Second {
				lastExpiry = now
				n.checkExpiry(now)
				n.checkRevocations(n.now(), conn)
			}
		}
	}
}

// step feeds one message to the engine. What follows from it (state to
// persist, records, messages, tasks) comes out of the engine's next Ready.
func (n *Node) step(from fl.NodeID, m round.Message) {
	start := n.now()
	err := n.rn.Step(from, m)
	n.stepSecs = n.now().Sub(start).Seconds()
	if errors.Is(err, round.ErrRefused) {
		// This node declined, as it meant to (its training failed, or
		// its privacy limit): the engine answered with a refusal.
		n.log.Info("declined", "kind", m.Kind.String(), "round", m.Round, "reason", err)
		return
	}
	if err != nil {
		n.stats.Rejected.Add(1)
		lvl := slog.LevelWarn
		if errors.Is(err, round.ErrStale) {
			lvl = slog.LevelDebug
		}
		n.log.Log(context.Background(), lvl, "rejected a message", "from", from, "kind", m.Kind.String(), "round", m.Round, "err", err)
	}
}

// drain handles every pending Ready, in its field order: persist (state,
// keys and the sealed model in one transaction), record (audit events, then
// commits), send, start tasks.
func (n *Node) drain(ctx context.Context, conn *transport.Conn, tasks chan<- round.Task) (done bool, err error) {
	for n.rn.HasReady() {
		rd := n.rn.Ready()
		t0 := n.now()
		b, err := n.persist(rd)
		if err != nil {
			return false, err
		}
		if rd.Terms != nil {
			if err := n.adopt(rd.Terms); err != nil {
				return false, err
			}
		}
		t1 := n.now()
		entries := slices.Concat(n.auditEntries(rd.Audit), n.commitEntries(rd.Commits))
		for _, e := range entries {
			if err := n.appendAudit(e); err != nil {
				return false, err
			}
		}
		t2 := n.now()
		n.sendAll(ctx, conn, rd.Messages)
		n.log.Debug("ready", "state_bytes", len(b.State), "persist_s", t1.Sub(t0).Seconds(), "audit", len(entries),
			"audit_s", t2.Sub(t1).Seconds(), "messages", len(rd.Messages), "send_s", n.now().Sub(t2).Seconds())
		for _, t := range rd.Tasks {
			select {
			case tasks <- t:
			default:
				n.log.Error("task queue full: dropping a task", "kind", t.Kind.String(), "round", t.Round)
			}
		}
		done = done || rd.Done
		n.rn.Advance()
	}
	return done || n.rn.Status().Done, nil
}

// sendAll sends a Ready's messages to the coordinator, in order.
func (n *Node) sendAll(ctx context.Context, conn *transport.Conn, msgs []round.Message) {
	for _, m := range msgs {
		if conn == nil {
			n.log.Debug("not connected: dropping a message", "kind", m.Kind.String(), "round", m.Round)
			continue
		}
		// The engine addresses messages to the coordinator by name; the
		// transport sends them there anyway and validates To as a
		// NodeID, which the coordinator's name is not.
		m.To = ""
		if err := conn.Send(ctx, m); err != nil {
			n.log.Warn("sending failed", "kind", m.Kind.String(), "round", m.Round, "err", err)
		}
	}
}
