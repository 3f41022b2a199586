package store

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

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
)

// DB is an open store: one SQLite file that a coordinator or a node keeps
// its durable state in. It is safe for concurrent use. Use
// [DB.Coordinator] or [DB.Node] to read and write a session's data.
type DB struct {
	sql  *sql.DB
	path string
	// wsem serializes this process's write transactions, so that they queue
	// in Go instead of polling SQLite's lock. Other processes are kept out
	// by SQLite's own locking (busyTimeout).
	wsem chan struct{}
}

// busyTimeout is how long a write waits for another process's write
// transaction before it fails with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// Open opens the store at path, creating the file if it does not exist,
// and migrates its schema to the newest version. It refuses a file that
// is another application's database, or whose schema is newer than this
// program.
//
// Every connection runs in WAL mode with synchronous=FULL: a method that
// returns nil has fsynced its transaction to the write-ahead log, so it
// survives a crash or a power cut. (NORMAL would be faster, but in WAL mode
// it may lose the last transactions on power loss, which the reveal-once
// ledger cannot allow.) Write transactions begin IMMEDIATE, so they never
// fail half-way for want of the write lock.
func Open(path string) (*DB, error) {
	if path == "" {
		return nil, errors.New("store: empty path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", path, err)
	}
	// A file: URI, so that any byte of the path (?, #, %) is escaped
	// rather than read as a parameter.
	p := filepath.ToSlash(abs)
	if !strings.HasPrefix(p, "/") {
		p = "/" + p // file:///C:/… on Windows
	}
	dsn := url.URL{Scheme: "file", Path: p, RawQuery: url.Values{
		"_pragma": {
			fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()),
			"foreign_keys(1)",
			// journal_mode(WAL) is persistent: init sets it once it knows
			// the file is ours.
			"synchronous(FULL)",
			"fullfsync(1)", // F_FULLFSYNC on macOS; ignored elsewhere
		},
		"_txlock": {"immediate"},
	}.Encode()}
	sdb, err := sql.Open("sqlite", dsn.String())
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	db := &DB{sql: sdb, path: path, wsem: make(chan struct{}, 1)}
	if err := db.init(context.Background()); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	return db, nil
}

// Close closes the store. Everything written before is already durable.
func (db *DB) Close() error {
	if err := db.sql.Close(); err != nil {
		return fmt.Errorf("store: closing %s: %w", db.path, err)
	}
	return nil
}

// init checks that the file is ours, puts it in WAL mode, checks the
// connection settings and migrates the schema.
func (db *DB) init(ctx context.Context) error {
	if _, err := checkFile(ctx, db.sql); err != nil {
		return err
	}
	var mode string
	var syncLevel, fk int
	if err := db.sql.QueryRowContext(ctx, qSetWAL).Scan(&mode); err != nil {
		return err
	}
	if err := db.sql.QueryRowContext(ctx, qSynchronous).Scan(&syncLevel); err != nil {
		return err
	}
	if err := db.sql.QueryRowContext(ctx, qForeignKeys).Scan(&fk); err != nil {
		return err
	}
	if mode != "wal" || syncLevel != 2 || fk != 1 {
		return fmt.Errorf("journal_mode=%s synchronous=%d foreign_keys=%d, want wal, 2 (FULL), 1 (is the file on a file system without shared memory?)",
			mode, syncLevel, fk)
	}
	return db.migrate(ctx)
}

// SchemaVersion is the schema version Open migrates a store to.
const SchemaVersion = 2

// queryRower is a *sql.DB or a *sql.Tx.
type queryRower interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// checkFile returns the file's schema version, or an error if it is
// another application's database or newer than this program.
func checkFile(ctx context.Context, q queryRower) (int, error) {
	var version, app int
	if err := q.QueryRowContext(ctx, qUserVersion).Scan(&version); err != nil {
		return 0, err
	}
	if err := q.QueryRowContext(ctx, qApplicationID).Scan(&app); err != nil {
		return 0, err
	}
	switch {
	case app != 0 && app != applicationID:
		return 0, fmt.Errorf("not a Cloister store (application_id %#x)", app)
	case version > len(migrations):
		return 0, fmt.Errorf("schema version %d is newer than this program's %d: upgrade cloister", version, len(migrations))
	case version == 0:
		var objects int
		if err := q.QueryRowContext(ctx, qTableCount).Scan(&objects); err != nil {
			return 0, err
		}
		if objects != 0 {
			return 0, fmt.Errorf("not a Cloister store (%d schema objects and no version)", objects)
		}
	case app != applicationID:
		return 0, fmt.Errorf("not a Cloister store (user_version %d, no application_id)", version)
	}
	return version, nil
}

// migrate brings the schema to SchemaVersion, in one transaction.
func (db *DB) migrate(ctx context.Context) error {
	return db.write(ctx, func(tx *sql.Tx) error {
		version, err := checkFile(ctx, tx) // again, under the write lock
		if err != nil {
			return err
		}
		for v := version; v < len(migrations); v++ {
			for _, stmt := range migrations[v] {
				if _, err := tx.ExecContext(ctx, stmt); err != nil {
					return fmt.Errorf("migrating schema to version %d: %w", v+1, err)
				}
			}
			if _, err := tx.ExecContext(ctx, fmt.Sprintf(qSetUserVersion, v+1)); err != nil {
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
	tx, err := db.sql.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	return tx.Commit()
}

// read runs fn in a read-only transaction: a consistent snapshot that
// does not wait for writers.
func (db *DB) read(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.sql.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
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
