package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"modernc.org/sqlite" // and registers the "sqlite" driver
)

var sqliteDialect = &dialect{
	name:       "sqlite",
	migrations: migrations,
	writeTx:    nil, // BEGIN IMMEDIATE (_txlock in the DSN)
	readTx:     &sql.TxOptions{ReadOnly: true},
	version:    checkFile,
	setVersion: func(ctx context.Context, tx *sql.Tx, v int) error {
		_, err := tx.ExecContext(ctx, fmt.Sprintf(qSetUserVersion, v))
		return err
	},
	isBusy: func(err error) bool {
		var e *sqlite.Error
		return errors.As(err, &e) && (e.Code()&0xff == sqliteBusy || e.Code()&0xff == sqliteLocked)
	},
}

// SQLite's result codes for a lock it could not take.
const (
	sqliteBusy   = 5
	sqliteLocked = 6
)

// busyTimeout is how long a write waits for another process's write
// transaction before it fails with SQLITE_BUSY.
const busyTimeout = 10 * time.Second

// sqlitePath returns the file a SQLite location names: a path, or a
// sqlite: URL (sqlite:relative/path, sqlite:///absolute/path).
func sqlitePath(loc string) (string, error) {
	if !strings.HasPrefix(loc, "sqlite:") {
		return loc, nil
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "", fmt.Errorf("store: %q: %w", loc, err)
	}
	path := u.Opaque
	if path == "" {
		path = u.Path
	}
	switch {
	case u.Host != "":
		return "", fmt.Errorf("store: %q names a host (%s): a SQLite store is a local file; write sqlite:///abs/path.db or sqlite:rel/path.db", loc, u.Host)
	case u.RawQuery != "" || u.Fragment != "":
		return "", fmt.Errorf("store: %q has parameters: the store sets SQLite's own (WAL, synchronous=FULL)", loc)
	case path == "":
		return "", fmt.Errorf("store: %q names no file", loc)
	}
	return path, nil
}

// openSQLite opens the SQLite file at path, creating it if it does not
// exist.
//
// Every connection runs in WAL mode with synchronous=FULL: a method that
// returns nil has fsynced its transaction to the write-ahead log, so it
// survives a crash or a power cut. (NORMAL would be faster, but in WAL mode
// it may lose the last transactions on power loss, which the reveal-once
// ledger cannot allow.) Write transactions begin IMMEDIATE, so they never
// fail half-way for want of the write lock.
func openSQLite(path string) (*DB, error) {
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
	db := &DB{sql: sdb, loc: path, d: sqliteDialect, wsem: make(chan struct{}, 1)}
	if err := db.initSQLite(context.Background()); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	return db, nil
}

// initSQLite checks that the file is ours, puts it in WAL mode, checks the
// connection settings and migrates the schema.
func (db *DB) initSQLite(ctx context.Context) error {
	// One read transaction: a file another process is migrating is seen
	// before or after, never half-way.
	err := db.read(ctx, func(tx *sql.Tx) error {
		_, err := checkFile(ctx, tx)
		return err
	})
	if err != nil {
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
		return 0, newerSchema(version)
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

func newerSchema(v int) error {
	return fmt.Errorf("schema version %d is newer than this program's %d: upgrade cloister: %w", v, SchemaVersion, ErrNewerSchema)
}
