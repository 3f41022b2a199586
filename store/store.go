package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/cloisterfl/cloister/protect"
)

// Sentinel errors callers branch on. Returned errors wrap them with context
// that names the session and the key, e.g.
// "store: session 8f3a…: commit of round 7: round already committed".
var (
	// ErrNotFound: no such session, round, model, commit or reveal.
	ErrNotFound = errors.New("store: not found")
	// ErrExists: a session, sealed model or metric with that key is already
	// stored, and the store never overwrites it.
	ErrExists = errors.New("store: already stored")
	// ErrCommitted: the round already has a commit record (stored now or
	// by an earlier process), or a committed round was to be marked
	// otherwise.
	ErrCommitted = errors.New("store: round already committed")
	// ErrRevealed is protect.ErrRevealed: the node's ledger already holds a
	// reveal for that round, of the same aggregate or another.
	ErrRevealed = protect.ErrRevealed
	// ErrWrongKey: a secret was sealed under another key than the node's
	// AtRest (the message names both key IDs).
	ErrWrongKey = errors.New("store: secret sealed under another key")
	// ErrCorrupt: a sealed secret fails authentication under the key that
	// sealed it (tampered or damaged), or a row holds impossible values.
	ErrCorrupt = errors.New("store: corrupt data")
	// ErrUnreachable: Open could not connect to the PostgreSQL server (the
	// message names its host and port, not the password).
	ErrUnreachable = errors.New("store: cannot reach PostgreSQL")
	// ErrBusy: a write waited too long for another process's (SQLite's
	// busy timeout, PostgreSQL's lock_timeout: 10 s); nothing of it is
	// stored, and trying again later may succeed.
	ErrBusy = errors.New("store: busy: another process holds the lock")
	// ErrNewerSchema: the store's schema is newer than this program's
	// [SchemaVersion] (a newer cloister wrote it); Open refuses it.
	ErrNewerSchema = errors.New("store: schema of a newer cloister")
	// ErrLeaseHeld: another coordinator holds the lead of the session and
	// its lease has not expired. The error is a [*LeaseHeldError].
	ErrLeaseHeld = errors.New("store: the lead is held by another coordinator")
	// ErrFenced: a coordinator write was refused because the view's
	// fencing token is not the lead's (another coordinator, or a newer
	// process, took the lead since); nothing of it is stored.
	ErrFenced = errors.New("store: fenced out: another coordinator took the lead")
)

// DB is an open store: a SQLite file or a PostgreSQL database (schema)
// that a coordinator or a node keeps its durable state in. It is safe for
// concurrent use. Use [DB.Coordinator] or [DB.Node] to read and write a
// session's data.
type DB struct {
	sql *sql.DB
	// loc names the store in messages: the file's path, or the URL
	// without its password.
	loc string
	d   *dialect
	// wsem serializes this process's write transactions, so that they queue
	// in Go instead of waiting in the database. Other processes are kept
	// out by the database's own locking (dialect.go).
	wsem chan struct{}
}

// Open opens the store at loc and migrates its schema to the newest
// version. loc is one of:
//
//   - a file path, or a sqlite: URL (sqlite:rel/path.db,
//     sqlite:///abs/path.db): a SQLite file, created if it does not exist;
//   - a postgres:// or postgresql:// URL: a PostgreSQL database, whose
//     tables live in the first schema of the connection's search_path
//     (postgres://cloister@db.example/cloister?search_path=fed1&sslmode=verify-full).
//     Keep the password out of the URL (PGPASSWORD or a ~/.pgpass file:
//     pgx reads both); a password in it is never printed.
//
// Open refuses a store that is another application's database, or whose
// schema is newer than this program, and writes nothing to it then. A
// PostgreSQL server that cannot be reached is an error naming its host and
// port. See the package documentation for what each backend guarantees.
func Open(loc string) (*DB, error) {
	if loc == "" {
		return nil, errors.New("store: empty path")
	}
	if IsPostgres(loc) {
		return openPostgres(loc)
	}
	path, err := sqlitePath(loc)
	if err != nil {
		return nil, err
	}
	return openSQLite(path)
}

// IsPostgres reports whether loc names a PostgreSQL store (a postgres://
// or postgresql:// URL): one that several processes on several machines
// can share, as failover needs.
func IsPostgres(loc string) bool {
	return strings.HasPrefix(loc, "postgres://") || strings.HasPrefix(loc, "postgresql://")
}

// Close closes the store. Everything written before is already durable.
func (db *DB) Close() error {
	if err := db.sql.Close(); err != nil {
		return fmt.Errorf("store: closing %s: %w", db.loc, err)
	}
	return nil
}

// String names the store: the SQLite file's path, or the PostgreSQL URL
// without its password.
func (db *DB) String() string { return db.loc }

// SchemaVersion is the schema version Open migrates a store to.
const SchemaVersion = 3

// queryRower is a *sql.DB or a *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// migrate brings the schema to SchemaVersion, in one transaction.
func (db *DB) migrate(ctx context.Context) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		if db.d.migrateLock != "" {
			if _, err := tx.ExecContext(ctx, db.d.migrateLock); err != nil {
				return err
			}
		}
		version, err := db.d.version(ctx, tx) // again, under the write lock
		if err != nil {
			return err
		}
		for v := version; v < len(db.d.migrations); v++ {
			for _, stmt := range db.d.migrations[v] {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migrating schema to version %d: %w", v+1, err)
				}
			}
			if err := db.d.setVersion(ctx, tx, v+1); err != nil {
				return fmt.Errorf("migrating schema to version %d: %w", v+1, err)
			}
		}
		return nil
	})
}

// write runs fn in a write transaction and commits it: all of fn's
// changes become durable together, or none of them happen.
func (db *DB) write(ctx context.Context, fn func(*sql.Tx) error) error {
	select {
	case db.wsem <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-db.wsem }()
	tx, err := db.sql.BeginTx(ctx, db.d.writeTx)
	if err != nil {
		return db.busy(err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return db.busy(err)
	}
	return db.busy(tx.Commit())
}

// busy marks a lock wait that timed out with ErrBusy.
func (db *DB) busy(err error) error {
	if err != nil && !errors.Is(err, ErrBusy) && db.d.isBusy(err) {
		return fmt.Errorf("%w: %w", ErrBusy, err)
	}
	return err
}

// read runs fn in a read-only transaction: a consistent snapshot that
// does not wait for writers.
func (db *DB) read(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.sql.BeginTx(ctx, db.d.readTx)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	return fn(tx)
}

// Session is a federation session: one signed manifest, its members' key
// setups (epochs) and rounds.
type Session struct {
	// ID is the session identifier every payload is bound to
	// (protect.Group.ID): 1 to 64 bytes.
	ID []byte
	// Manifest is the SHA-256 of the signed federation manifest.
	Manifest [32]byte
	// Epoch is the current key epoch (0: no key setup yet). Save updates it.
	Epoch uint64
	// Created is when the session was created (millisecond precision).
	Created time.Time
}

// CreateSession records a new session. It returns an error wrapping
// [ErrExists] if a session with that ID is already stored.
func (db *DB) CreateSession(ctx context.Context, s Session) error {
	if err := checkSession(s.ID); err != nil {
		return err
	}
	epoch, err := toInt(s.Epoch, "epoch")
	if err != nil {
		return fmt.Errorf("store: session %s: %w", sid(s.ID), err)
	}
	err = db.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, qSessionInsert, s.ID, s.Manifest[:], epoch, fromTime(s.Created))
		if err != nil {
			return err
		}
		if n, err := res.RowsAffected(); err != nil {
			return err
		} else if n == 0 {
			return ErrExists
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: creating session %s: %w", sid(s.ID), err)
	}
	return nil
}

// Session returns the session with the given ID, or an error wrapping
// [ErrNotFound].
func (db *DB) Session(ctx context.Context, id []byte) (Session, error) {
	s, err := scanSession(db.sql.QueryRowContext(ctx, qSessionGet, id))
	if err != nil {
		return Session{}, fmt.Errorf("store: session %s: %w", sid(id), err)
	}
	return s, nil
}

// LatestSession returns the most recently created session: the one a
// restarted daemon resumes. It returns an error wrapping [ErrNotFound] if
// the store holds no session.
func (db *DB) LatestSession(ctx context.Context) (Session, error) {
	s, err := scanSession(db.sql.QueryRowContext(ctx, qSessionLatest))
	if err != nil {
		return Session{}, fmt.Errorf("store: latest session: %w", err)
	}
	return s, nil
}

func scanSession(row *sql.Row) (Session, error) {
	var s Session
	var manifest []byte
	var epoch int64
	var created sql.NullInt64
	if err := row.Scan(&s.ID, &manifest, &epoch, &created); err != nil {
		return Session{}, noRows(err)
	}
	if len(manifest) != 32 || epoch < 0 {
		return Session{}, fmt.Errorf("%w: session row", ErrCorrupt)
	}
	s.Manifest = [32]byte(manifest)
	s.Epoch = uint64(epoch)
	s.Created = toTime(created)
	return s, nil
}

// requireSession returns an error wrapping ErrNotFound unless the session
// is stored.
func requireSession(ctx context.Context, tx *sql.Tx, id []byte) error {
	var one int
	if err := tx.QueryRowContext(ctx, qSessionExists, id).Scan(&one); err != nil {
		return noRows(err)
	}
	return nil
}

// lockSession is requireSession at the start of a write transaction: it
// also locks the session's row until the transaction ends, so that the
// writes of one session are serialized in every dialect (dialect.go).
func (db *DB) lockSession(ctx context.Context, tx *sql.Tx, id []byte) error {
	var one int
	if err := tx.QueryRowContext(ctx, qSessionExists+db.d.forUpdate, id).Scan(&one); err != nil {
		return noRows(err)
	}
	return nil
}

// setEpoch sets the session's key epoch if epoch is not 0.
func setEpoch(ctx context.Context, tx *sql.Tx, id []byte, epoch uint64) error {
	if epoch == 0 {
		return nil
	}
	e, err := toInt(epoch, "epoch")
	if err != nil {
		return err
	}
	_, err = tx.ExecContext(ctx, qSessionEpoch, e, id)
	return err
}

func checkSession(id []byte) error {
	if len(id) == 0 || len(id) > 64 {
		return fmt.Errorf("store: session ID must have 1 to 64 bytes, has %d", len(id))
	}
	return nil
}

// sid formats a session ID for messages.
func sid(id []byte) string {
	if len(id) > 8 {
		return hex.EncodeToString(id[:8]) + "…"
	}
	return hex.EncodeToString(id)
}

// noRows turns sql.ErrNoRows into ErrNotFound.
func noRows(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

// toInt converts an unsigned count to SQLite's INTEGER.
func toInt(v uint64, what string) (int64, error) {
	if v > math.MaxInt64 {
		return 0, fmt.Errorf("%s %d exceeds %d", what, v, int64(math.MaxInt64))
	}
	return int64(v), nil
}

// fromTime stores t as Unix milliseconds; the zero time as NULL.
func fromTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixMilli(), Valid: true}
}

func toTime(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// digestBytes stores a digest; the zero digest as NULL.
func digestBytes(d [32]byte) []byte {
	if d == ([32]byte{}) {
		return nil
	}
	return d[:]
}

// toDigest reads a digest column (NULL or 32 bytes).
func toDigest(b []byte) ([32]byte, error) {
	switch len(b) {
	case 0:
		return [32]byte{}, nil
	case 32:
		return [32]byte(b), nil
	}
	return [32]byte{}, fmt.Errorf("%w: digest of %d bytes", ErrCorrupt, len(b))
}
