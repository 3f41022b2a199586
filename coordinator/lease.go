package coordinator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/cloisterfl/cloister/store"
)

// The lead: which coordinator of a federation acts.
//
// Every coordinator takes the lead of its session in its store
// (store.Coordinator.Acquire) before it reads the engine's state, writes
// through a view fenced with the lease's token, renews the lease a quarter
// of Config.Lease after each renewal from a goroutine of its own, and
// releases it when it shuts down. With a store of its own this changes nothing: the lease is
// its own. Two coordinators that share a store (a PostgreSQL database) are a
// leader and a standby: the standby ([Standby]) waits for the lease to
// expire or be released, then takes the lead with a new token, resumes
// from the stored state (round.RestartCoordinator, as after a crash) and
// only then listens. From that moment every write of the old leader fails
// (store.ErrFenced) and stores nothing, so the two never both commit.
//
// A leader stops acting (its loop ends, its streams close, a write in
// flight is abandoned) when a write or a renewal finds its token fenced,
// or when it has not renewed its lease a quarter of it before it expires:
// then a standby may take over, and it must no longer be talking to the
// nodes (TestFailoverStoreCut).
// Safety does not depend on the clocks, only the timing of a takeover does:
// a standby whose clock runs ahead takes over early and the leader is
// fenced out at its next write (TestFailoverClockSkew).

// DefaultLease is how long a coordinator's lead lasts without renewal when
// Config.Lease is 0: a standby takes over at most this long after the
// leader stops renewing.
const DefaultLease = 10 * time.Second

// lead is the lease a coordinator holds.
type lead struct {
	holder string
	ttl    time.Duration

	// ctx ends when the lead is lost: the writes of a coordinator cut off
	// from its store give up then (a Shutdown does not end it: the Ready
	// in hand is written).
	ctx    context.Context
	cancel context.CancelFunc

	mu    sync.Mutex
	lease store.Lease
	lost  error // why the lead was lost; nil while held
}

func (l *lead) expires() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lease.Expires
}

func (l *lead) lostErr() error {
	if l == nil {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost
}

// holderName names this coordinator in the lease: its host and its state
// directory. One process at a time holds a state directory (its audit
// log's lock), so a coordinator restarted on the same host and directory
// may take its own unexpired lease back at once.
func holderName(stateDir string) (string, error) {
	host, err := os.Hostname()
	if err != nil {
		return "", fmt.Errorf("coordinator: naming the lead's holder: %w", err)
	}
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return "", fmt.Errorf("coordinator: naming the lead's holder: %w", err)
	}
	return host + ":" + abs, nil
}

// takeLead acquires the lead of the session and fences c.sc with it. It
// fails with an error wrapping store.ErrLeaseHeld if another coordinator's
// lease is in force.
func (c *Coordinator) takeLead(ctx context.Context) error {
	holder, err := holderName(c.cfg.StateDir)
	if err != nil {
		return err
	}
	view := c.db.Coordinator(c.session)
	prev, perr := view.Lease(ctx)
	l, err := view.Acquire(ctx, holder, c.cfg.Now(), c.cfg.Lease)
	if err != nil {
		return fmt.Errorf("coordinator: the lead of session %s: %w", c.sessionName(), err)
	}
	c.lead = &lead{holder: holder, ttl: c.cfg.Lease, lease: l}
	c.lead.ctx, c.lead.cancel = context.WithCancel(context.Background())
	c.sc = c.db.Coordinator(c.session).Fenced(l.Token)
	attrs := []any{"holder", holder, "token", l.Token, "lease_s", c.cfg.Lease.Seconds()}
	if perr == nil && prev.Holder != holder {
		attrs = append(attrs, "previous", prev.Holder, "previous_expiry", prev.Expires)
	}
	c.log.Info("took the lead", attrs...)
	return nil
}

// keepLead renews the lease a quarter of its duration after each renewal,
// until ctx ends or the lead is lost (then it records why and stops the
// coordinator). A renewal that fails is tried again until a quarter of
// the lease before it expires (each try may take until then: a loaded
// database is slow, not gone); past that the coordinator stops acting, so
// that a leader cut off from its store has stopped before a standby may
// take over (on equal clocks).
func (c *Coordinator) keepLead(ctx context.Context) {
	quarter := max(c.lead.ttl/4, time.Millisecond)
	for {
		if sleepCtx(ctx, quarter) != nil {
			return
		}
		for {
			exp := c.lead.expires()
			left := exp.Sub(c.cfg.Now()) - quarter // until the coordinator must stop
			if left <= 0 {
				c.loseLead(fmt.Errorf("coordinator: lost the lead: the lease expires at %s and could not be renewed; stopping before a standby may take over",
					exp.UTC().Format(time.RFC3339Nano)))
				return
			}
			rctx, cancel := context.WithTimeout(ctx, left)
			l, err := c.sc.Renew(rctx, c.cfg.Now(), c.lead.ttl)
			cancel()
			switch {
			case err == nil:
				c.lead.mu.Lock()
				c.lead.lease = l
				c.lead.mu.Unlock()
			case ctx.Err() != nil:
				return
			case errors.Is(err, store.ErrFenced):
				c.loseLead(fmt.Errorf("coordinator: lost the lead: %w", err))
				return
			default:
				c.log.Warn("cannot renew the lead; retrying", "err", err, "expires", exp)
				if sleepCtx(ctx, min(quarter/4, max(left, time.Millisecond))) != nil {
					return
				}
				continue
			}
			break
		}
	}
}

// loseLead records why the lead was lost and stops the loop, whose error
// it becomes.
func (c *Coordinator) loseLead(err error) {
	c.lead.mu.Lock()
	if c.lead.lost == nil {
		c.lead.lost = err
	}
	c.lead.mu.Unlock()
	c.log.Error("the coordinator stops acting", "err", err)
	c.lead.cancel()
	c.stop()
}

// releaseLead ends the lease, so that a standby takes over at once; not
// after the lead was lost.
func (c *Coordinator) releaseLead() {
	if c.lead == nil {
		return
	}
	defer c.lead.cancel()
	if c.lead.lostErr() != nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.sc.Release(ctx); err != nil {
		c.log.Warn("cannot release the lead; a standby takes over when it expires", "err", err, "expires", c.lead.expires())
		return
	}
	c.log.Info("released the lead", "token", c.sc.Token())
}

// Standby returns a coordinator for cfg once it holds the lead of the
// session in cfg's store: at once if no other coordinator holds it (as
// New), else when the other's lease expires or is released. Meanwhile it
// checks the lease every quarter of Config.Lease (on cfg.Now's clock), and
// says at INFO whom it waits for. It reads the engine's state only once it
// leads, so it resumes from what the last leader stored. It returns ctx's
// error if ctx ends first, and any error of New but store.ErrLeaseHeld
// (and, once it has waited, store.ErrUnreachable and store.ErrBusy: it
// retries those).
//
// Serve the coordinator only once Standby returns: nodes given several
// coordinator addresses (node.Node.Run) reach a standby only when it
// listens, that is, when it leads.
func Standby(ctx context.Context, cfg Config) (*Coordinator, error) {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Lease <= 0 {
		cfg.Lease = DefaultLease
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	poll := max(cfg.Lease/4, time.Millisecond)
	var db *store.DB // opened at the first wait, to watch the lease
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	var waitingFor store.Lease
	for waited := false; ; waited = true {
		c, err := New(cfg)
		var held *store.LeaseHeldError
		switch {
		case waited && (errors.Is(err, store.ErrUnreachable) || errors.Is(err, store.ErrBusy)):
			// Once it has waited, a standby outlives a database that is
			// down for a while (the leader cannot write either), or a lock
			// a leader cut off mid-write holds until the server ends it.
			log.Warn("standby: cannot reach the store; retrying", "err", err)
			if err := sleepCtx(ctx, poll); err != nil {
				return nil, err
			}
			continue
		case !errors.As(err, &held):
			return c, err
		}
		if db == nil {
			if db, err = store.Open(storeLocation(cfg)); err != nil {
				return nil, err
			}
		}
		view := db.Coordinator(held.Session)
		l := held.Lease
		for !l.Free(cfg.Now()) {
			if l.Holder != waitingFor.Holder || l.Token != waitingFor.Token {
				waitingFor = l
				log.Info("standby: another coordinator leads; waiting for its lease to expire",
					"holder", l.Holder, "token", l.Token, "expires", l.Expires, "store", db.String())
			}
			if err := sleepCtx(ctx, min(poll, max(l.Expires.Sub(cfg.Now()), time.Millisecond))); err != nil {
				return nil, err
			}
			if l, err = view.Lease(ctx); err != nil {
				log.Warn("standby: cannot read the lead; retrying", "err", err)
				l = waitingFor
			}
		}
		log.Info("standby: the lead is free; taking it", "holder", l.Holder, "token", l.Token, "expires", l.Expires)
	}
}

// storeLocation is what store.Open takes for cfg.
func storeLocation(cfg Config) string {
	if cfg.Store != "" {
		return cfg.Store
	}
	return filepath.Join(cfg.StateDir, DBFile)
}

// sleepCtx waits for d, or returns ctx's error if it ends first.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
