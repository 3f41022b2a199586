package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// The lead of a session: which coordinator may write its state.
//
// Two coordinators of one federation can share a store (a PostgreSQL
// database) so that one takes over when the other fails. Only one may act:
// the one whose lease is in force. A lease has a holder, an expiry and a
// fencing token that grows by one at every [Coordinator.Acquire]. The
// coordinator that acquired it writes through [Coordinator.Fenced] with its
// token, and every [Coordinator.Save] checks the token against the stored
// one in the same transaction (under the session's lock, dialect.go): once
// another coordinator has acquired the lead, the old leader's writes fail
// with ErrFenced and store nothing, whatever its clock says. The clocks only
// decide when a lease has expired and may be taken; they cannot make two
// coordinators both commit.

// Lease is the lead of a session as stored.
type Lease struct {
	// Holder names the coordinator that holds (or last held) the lead.
	Holder string
	// Token is the fencing token: it grows by one at every Acquire.
	Token uint64
	// Acquired is when the holder took the lead; Expires when the lease
	// ends unless renewed (the zero time once released). Millisecond
	// precision, on the clocks of the coordinators that wrote them.
	Acquired, Expires time.Time
}

// Free reports whether the lease may be taken at now by another holder:
// it expired at or before now, or was released.
func (l Lease) Free(now time.Time) bool { return !now.Before(l.Expires) }

// LeaseHeldError is the error of an Acquire refused because another holder's
// lease is in force. It wraps [ErrLeaseHeld].
type LeaseHeldError struct {
	Session []byte
	Lease   Lease // the lease in force
}

func (e *LeaseHeldError) Error() string {
	return fmt.Sprintf("store: session %s: the lead is held by %s (token %d, since %s) until %s",
		sid(e.Session), e.Lease.Holder, e.Lease.Token, stamp(e.Lease.Acquired), stamp(e.Lease.Expires))
}

func (e *LeaseHeldError) Unwrap() error { return ErrLeaseHeld }

func stamp(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// maxHolder bounds a holder's name.
const maxHolder = 512

// Fenced returns the view of the same session whose writes are fenced by
// token: each Save fails with an error wrapping [ErrFenced], and stores
// nothing, unless token is the session's stored lease token. Renew and
// Release act on the lease of that token.
//
// A view without a token (from [DB.Coordinator]) may write only while the
// session has never had a lease.
func (c *Coordinator) Fenced(token uint64) *Coordinator {
	return &Coordinator{db: c.db, session: c.session, token: token}
}

// Token returns the view's fencing token (0: unfenced).
func (c *Coordinator) Token() uint64 { return c.token }

// Acquire makes holder the lead of the session until now+ttl, with a new
// fencing token (the stored one plus one), if the session has no lease,
// its lease expired at or before now, or holder holds it. Taking its own
// lease again fences holder's earlier writers: the caller must know that no
// other process writes as holder (the coordinator names itself by its host
// and its state directory, which one process at a time can hold). Otherwise
// Acquire returns a [*LeaseHeldError].
//
// Write through Fenced(lease.Token) afterwards.
func (c *Coordinator) Acquire(ctx context.Context, holder string, now time.Time, ttl time.Duration) (Lease, error) {
	var out Lease
	err := c.db.write(ctx, func(tx *sql.Tx) error {
		if holder == "" || len(holder) > maxHolder {
			return fmt.Errorf("holder name of %d bytes, want 1 to %d", len(holder), maxHolder)
		}
		if ttl <= 0 {
			return fmt.Errorf("lease duration %v is not positive", ttl)
		}
		if err := c.db.lockSession(ctx, tx, c.session); err != nil {
			return err
		}
		cur, err := c.lease(ctx, tx)
		switch {
		case errors.Is(err, ErrNotFound):
			out = Lease{Holder: holder, Token: 1, Acquired: now, Expires: now.Add(ttl)}
			_, err = tx.ExecContext(ctx, qLeaseInsert, c.session, holder, 1, now.UnixMilli(), now.Add(ttl).UnixMilli())
			return err
		case err != nil:
			return err
		case cur.Holder != holder && !cur.Free(now):
			return &LeaseHeldError{Session: c.session, Lease: cur}
		}
		token, err := toInt(cur.Token+1, "token")
		if err != nil {
			return err
		}
		out = Lease{Holder: holder, Token: cur.Token + 1, Acquired: now, Expires: now.Add(ttl)}
		_, err = tx.ExecContext(ctx, qLeaseTake, holder, token, now.UnixMilli(), now.Add(ttl).UnixMilli(), c.session)
		return err
	})
	if err != nil {
		var held *LeaseHeldError
		if errors.As(err, &held) {
			return Lease{}, held
		}
		return Lease{}, fmt.Errorf("store: session %s: acquiring the lead for %s: %w", sid(c.session), holder, err)
	}
	out.Acquired, out.Expires = toTime(fromTime(out.Acquired)), toTime(fromTime(out.Expires))
	return out, nil
}

// Renew extends the view's lease to now+ttl. It fails with an error
// wrapping [ErrFenced] if another Acquire took the lead since the view's
// token was issued; a lease that expired but was not taken is renewed.
func (c *Coordinator) Renew(ctx context.Context, now time.Time, ttl time.Duration) (Lease, error) {
	var out Lease
	err := c.db.write(ctx, func(tx *sql.Tx) error {
		if ttl <= 0 {
			return fmt.Errorf("lease duration %v is not positive", ttl)
		}
		if err := c.db.lockSession(ctx, tx, c.session); err != nil {
			return err
		}
		cur, err := c.fence(ctx, tx)
		if err != nil {
			return err
		}
		out = cur
		out.Expires = toTime(fromTime(now.Add(ttl)))
		_, err = tx.ExecContext(ctx, qLeaseRenew, now.Add(ttl).UnixMilli(), c.session)
		return err
	})
	if err != nil {
		return Lease{}, fmt.Errorf("store: session %s: renewing the lead (token %d): %w", sid(c.session), c.token, err)
	}
	return out, nil
}

// Release ends the view's lease at once, so that another coordinator may
// acquire the lead without waiting for it to expire. It fails with an
// error wrapping [ErrFenced] if the lead was taken since.
func (c *Coordinator) Release(ctx context.Context) error {
	err := c.db.write(ctx, func(tx *sql.Tx) error {
		if err := c.db.lockSession(ctx, tx, c.session); err != nil {
			return err
		}
		if _, err := c.fence(ctx, tx); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, qLeaseRenew, 0, c.session)
		return err
	})
	if err != nil {
		return fmt.Errorf("store: session %s: releasing the lead (token %d): %w", sid(c.session), c.token, err)
	}
	return nil
}

// Lease returns the session's lease as stored, or an error wrapping
// [ErrNotFound] if it never had one (or does not exist).
func (c *Coordinator) Lease(ctx context.Context) (Lease, error) {
	var out Lease
	err := c.db.read(ctx, func(tx *sql.Tx) error {
		var err error
		out, err = c.lease(ctx, tx)
		return err
	})
	if err != nil {
		return Lease{}, fmt.Errorf("store: session %s: lead: %w", sid(c.session), err)
	}
	return out, nil
}

func (c *Coordinator) lease(ctx context.Context, tx *sql.Tx) (Lease, error) {
	var l Lease
	var token, acquired, expires int64
	if err := tx.QueryRowContext(ctx, qLeaseGet, c.session).Scan(&l.Holder, &token, &acquired, &expires); err != nil {
		return Lease{}, noRows(err)
	}
	if token < 1 {
		return Lease{}, fmt.Errorf("%w: lease token %d", ErrCorrupt, token)
	}
	l.Token = uint64(token)
	l.Acquired = time.UnixMilli(acquired).UTC()
	if expires != 0 {
		l.Expires = time.UnixMilli(expires).UTC()
	}
	return l, nil
}

// fence returns the session's lease, or an error wrapping ErrFenced unless
// the view may write: its token is the lease's, or it has none and the
// session never had a lease. Call it with the session locked.
func (c *Coordinator) fence(ctx context.Context, tx *sql.Tx) (Lease, error) {
	cur, err := c.lease(ctx, tx)
	switch {
	case errors.Is(err, ErrNotFound) && c.token == 0:
		return Lease{}, nil
	case errors.Is(err, ErrNotFound):
		return Lease{}, fmt.Errorf("writing under token %d, but the session has no lease: %w", c.token, ErrFenced)
	case err != nil:
		return Lease{}, err
	case c.token == 0:
		return Lease{}, fmt.Errorf("writing without a token, but %s holds the lead (token %d): %w", cur.Holder, cur.Token, ErrFenced)
	case cur.Token != c.token:
		return Lease{}, fmt.Errorf("writing under token %d, but %s took the lead with token %d at %s: %w",
			c.token, cur.Holder, cur.Token, stamp(cur.Acquired), ErrFenced)
	}
	return cur, nil
}
