package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/stdlib"
)

var pgDialect = &dialect{
	name:        "postgres",
	migrations:  pgMigrations,
	forUpdate:   " FOR UPDATE",
	writeTx:     &sql.TxOptions{Isolation: sql.LevelReadCommitted},
	readTx:      &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true},
	migrateLock: qPgMigrateLock,
	version:     pgVersion,
	setVersion: func(ctx context.Context, tx *sql.Tx, v int) error {
		_, err := tx.ExecContext(ctx, qPgSetVersion, v)
		return err
	},
	isBusy: func(err error) bool {
		var e *pgconn.PgError
		return errors.As(err, &e) && e.Code == "55P03" // lock_not_available: lock_timeout
	},
}

// connectTimeout bounds a connection attempt when the URL sets none
// (connect_timeout).
const connectTimeout = 10 * time.Second

// pgSettings are the session settings of every connection. synchronous_commit
// is forced: a method that returns nil has its transaction on the server's
// disk (and on its synchronous standbys, if it has any). The timeouts are
// set unless the URL sets them: a write waits at most busyTimeout for
// another process's (as in SQLite), and a transaction left open by a
// client that went silent (a coordinator cut off mid-write) is ended by the
// server after half that, so that its session's lock is free before the
// writers waiting for it give up.
var pgSettings = map[string]string{
	"lock_timeout":                        strconv.FormatInt(busyTimeout.Milliseconds(), 10),
	"idle_in_transaction_session_timeout": strconv.FormatInt(busyTimeout.Milliseconds()/2, 10),
}

// openPostgres opens the PostgreSQL database the URL loc names, and
// migrates the store's tables in the connection's current schema.
func openPostgres(loc string) (*DB, error) {
	name := redact(loc)
	cfg, err := pgx.ParseConfig(loc)
	if err != nil {
		// pgx's parse errors show the URL with its password masked.
		return nil, fmt.Errorf("store: PostgreSQL URL: %w", err)
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = connectTimeout
	}
	for k, v := range pgSettings {
		if _, ok := cfg.RuntimeParams[k]; !ok {
			cfg.RuntimeParams[k] = v
		}
	}
	cfg.RuntimeParams["synchronous_commit"] = "on"
	sdb := stdlib.OpenDB(*cfg)
	db := &DB{sql: sdb, loc: name, d: pgDialect, wsem: make(chan struct{}, 1)}
	ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.ConnectTimeout)
	defer cancel()
	if err := sdb.PingContext(ctx); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("%w at %s (database %q, user %q): %w", ErrUnreachable, hosts(cfg), cfg.Database, cfg.User, err)
	}
	if err := db.initPostgres(context.Background()); err != nil {
		sdb.Close()
		return nil, fmt.Errorf("store: opening %s: %w", name, err)
	}
	return db, nil
}

// initPostgres checks that the schema is ours (or empty) and the server
// durable, and migrates the schema.
func (db *DB) initPostgres(ctx context.Context) error {
	var fsync string
	if err := db.sql.QueryRowContext(ctx, qPgFsync).Scan(&fsync); err != nil {
		return err
	}
	if fsync != "on" {
		return fmt.Errorf("the server runs with fsync=%s: a committed transaction may not survive a crash of its machine, which the store's guarantees need", fsync)
	}
	// One snapshot: a store another process is migrating is seen before
	// or after, never half-way.
	err := db.read(ctx, func(tx *sql.Tx) error {
		_, err := pgVersion(ctx, tx)
		return err
	})
	if err != nil {
		return err
	}
	return db.migrate(ctx)
}

// pgVersion returns the schema version of the store in the connection's
// current schema (0: no table yet), or an error if the schema holds
// another application's tables or a newer store.
func pgVersion(ctx context.Context, q queryRower) (int, error) {
	var schema sql.NullString
	if err := q.QueryRowContext(ctx, qPgSchema).Scan(&schema); err != nil {
		return 0, err
	}
	if !schema.Valid {
		return 0, errors.New("no schema to keep the store in: the search_path names none that exists (create it, or set search_path in the URL)")
	}
	var has, tables int
	if err := q.QueryRowContext(ctx, qPgHasVersion).Scan(&has); err != nil {
		return 0, err
	}
	if has == 0 {
		if err := q.QueryRowContext(ctx, qPgTableCount).Scan(&tables); err != nil {
			return 0, err
		}
		if tables != 0 {
			return 0, fmt.Errorf("not a Cloister store (schema %s holds %d tables and no cloister_schema)", schema.String, tables)
		}
		return 0, nil
	}
	var app string
	var version int64
	switch err := q.QueryRowContext(ctx, qPgVersion).Scan(&app, &version); {
	case errors.Is(err, sql.ErrNoRows):
		return 0, fmt.Errorf("not a Cloister store (schema %s: cloister_schema is empty)", schema.String)
	case err != nil:
		return 0, err
	case app != "cloister":
		return 0, fmt.Errorf("not a Cloister store (schema %s: cloister_schema names application %q)", schema.String, app)
	case version < 0:
		return 0, fmt.Errorf("%w: schema version %d", ErrCorrupt, version)
	case version > int64(len(pgMigrations)):
		return 0, newerSchema(int(version))
	}
	return int(version), nil
}

// hosts lists the server addresses of cfg, for messages.
func hosts(cfg *pgx.ConnConfig) string {
	addrs := []string{fmt.Sprintf("%s:%d", cfg.Host, cfg.Port)}
	for _, f := range cfg.Fallbacks {
		a := fmt.Sprintf("%s:%d", f.Host, f.Port)
		if a != addrs[len(addrs)-1] {
			addrs = append(addrs, a)
		}
	}
	return strings.Join(addrs, ",")
}

// redact returns the URL without its password (in the user information or
// a password parameter), for messages.
func redact(loc string) string {
	u, err := url.Parse(loc)
	if err != nil {
		return "the PostgreSQL URL"
	}
	q := u.Query()
	for _, k := range []string{"password", "sslpassword"} {
		if q.Has(k) {
			q.Set(k, "xxxxx")
		}
	}
	u.RawQuery = q.Encode()
	return u.Redacted()
}
