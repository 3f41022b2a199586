package store

import (
	"context"
	"database/sql"
)

// A dialect is what one backend does differently. The statements are
// shared (sql.go); the schema, its version bookkeeping and the way write
// transactions exclude each other are not.
//
// SQLite's write transactions begin IMMEDIATE: each holds the file's write
// lock from its start, so the writes of all processes on a file run one
// after another. PostgreSQL's run at READ COMMITTED and begin by locking
// the row of the session they write ([DB.lockSession]), so the writes of
// one session run one after another too, and what a transaction read (the
// stored outcome of a round, the round of a node's model, the lead's
// fencing token) is still true when it commits. Read transactions see one
// snapshot: WAL in SQLite, REPEATABLE READ in PostgreSQL. The package
// documentation (# Transactions) says what this guarantees.
type dialect struct {
	name       string
	migrations [][]string
	// forUpdate, appended to a SELECT in a write transaction, locks the
	// rows it reads until the transaction ends ("" in SQLite, where the
	// transaction already holds the write lock).
	forUpdate string
	// writeTx and readTx begin write and read transactions.
	writeTx, readTx *sql.TxOptions
	// migrateLock, if set, runs first in the migration's transaction, so
	// that two processes opening a new store migrate it one after the other.
	migrateLock string
	// version returns the store's schema version, or an error if the
	// database is another application's or newer than this program.
	version func(ctx context.Context, q queryRower) (int, error)
	// setVersion records the schema version in a migration's transaction.
	setVersion func(ctx context.Context, tx *sql.Tx, v int) error
	// isBusy reports whether err is a lock wait that timed out.
	isBusy func(err error) bool
}
