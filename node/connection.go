package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"time"

	"github.com/cloisterfl/cloister/round"
	"github.com/cloisterfl/cloister/transport"
)

// input is what the connection goroutine hands to the engine loop.
type input struct {
	conn *transport.Conn // on connect (and with each message)
	msg  *round.Message
	down error // on disconnect: why
}

// errDone stops the goroutines when the session is over.
var errDone = errors.New("node: session done")

// connect keeps a connection to the coordinator open, with backoff, and
// feeds what arrives to the loop. With several addresses (a leader and its
// standbys, which listen only once they lead) it tries them in turn,
// starting with the one it last reached, and backs off when none answers.
func (n *Node) connect(ctx context.Context, cancel context.CancelCauseFunc, addrs []string, tc *tls.Config, inputs chan<- input) {
	rng := mrand.New(mrand.NewPCG(uint64(n.now().UnixNano()), 7))
	metrics := new(transport.Metrics)
	for attempt, i := 0, 0; ctx.Err() == nil; {
		addr := addrs[i%len(addrs)]
		conn, err := transport.Dial(ctx, addr, transport.ClientConfig{TLS: tc, Limits: n.cfg.Limits, Logger: n.log, Metrics: metrics, Dial: n.cfg.Dial})
		if err != nil {
			if errors.Is(err, transport.ErrConfig) {
				cancel(err)
				return
			}
			if ctx.Err() == nil {
				lvl := slog.LevelInfo
				if attempt > 3 {
					lvl = slog.LevelWarn
				}
				n.log.Log(ctx, lvl, "cannot reach the coordinator", "addr", addr, "attempt", attempt+1, "err", err)
			}
			if i++; i%len(addrs) == 0 { // every address failed
				sleep(ctx, n.cfg.Backoff.Delay(attempt, rng))
				attempt++
			}
			i %= len(addrs)
			continue
		}
		attempt = 0
		n.stats.Connects.Add(1)
		n.log.Info("connected to the coordinator", "addr", addr, "coordinator", conn.Coordinator())
		select {
		case inputs <- input{conn: conn}:
		case <-ctx.Done():
			conn.Close()
			return
		}
		var why error
		for {
			m, err := conn.Recv(ctx)
			if err != nil {
				why = err
				break
			}
			select {
			case inputs <- input{conn: conn, msg: &m}:
				continue
			case <-ctx.Done():
				why = ctx.Err()
			}
			break
		}
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		select {
		case inputs <- input{conn: conn, down: why}:
		case <-ctx.Done():
			return
		}
		if errors.Is(why, transport.ErrReplaced) {
			cancel(fmt.Errorf("node: another process connected as %s: %w", n.self, why))
			return
		}
		n.log.Warn("lost the coordinator; reconnecting", "err", why)
		sleep(ctx, n.cfg.Backoff.Delay(0, rng))
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
