// Package store is the durable state of Cloister's two daemons: a SQLite
// file per coordinator or node (the default, through the pure-Go driver
// modernc.org/sqlite), or, for a coordinator, a PostgreSQL database
// (through pgx) that a standby coordinator can share.
//
// The round engine (package round) is pure: each Ready it hands out starts
// with a state that must be durable before any message of the same Ready is
// sent. The store is where that state goes, together with whatever else the
// Ready records, in one transaction.
//
// # Opening
//
// [Open] a file (it is created if missing) or a PostgreSQL URL; its
// schema is migrated. Then create or resume a session:
//
//	db, err := store.Open("/var/lib/cloister/coordinator.db")
//	// or store.Open("postgres://cloister@db.example/cloister?sslmode=verify-full")
//	defer db.Close()
//	s, err := db.LatestSession(ctx)
//	if errors.Is(err, store.ErrNotFound) {
//		s = store.Session{ID: id, Manifest: sha256.Sum256(signed), Created: now}
//		err = db.CreateSession(ctx, s)
//	}
//
// A session is what every payload is bound to (protect.Group.ID). The
// store keeps any number of them; everything else belongs to one.
//
// # Coordinator
//
// [DB.Coordinator] gives a session's coordinator view. After each Ready,
// [Coordinator.Save] writes a [CoordinatorBatch] in ONE transaction: the
// engine's state (opaque bytes), the key epoch, round records, sealed
// models, commit records and metrics. Then the daemon sends the messages.
//
//	c := db.Coordinator(s.ID)
//	state, err := c.State(ctx) // nil: a new session
//	…
//	err = c.Save(ctx, store.CoordinatorBatch{State: blob, Rounds: …, Commits: …})
//
// A round is committed at most once: a second [Commit] for a round, in the
// same process, after a restart or from another coordinator, fails with
// [ErrCommitted] and the whole batch is rolled back. The dashboard reads
// [Coordinator.Rounds], [Coordinator.Summaries] (metrics aggregated per
// round, weighted by examples), [Coordinator.Metrics], [Coordinator.Commit]
// and [Coordinator.LatestModel]. The coordinator cannot open the sealed
// models it stores: nothing in its view is secret, whichever backend holds
// it.
//
// # Node
//
// [DB.Node] gives a session's node view. Its secrets (the engine's state,
// the protect.Party's key shares and the group key) are sealed with a
// [AtRest] before they are written: the database file never holds them in
// plaintext. Each sealed secret is bound to its session and slot, and
// stored with its key's ID, so opening with another key fails with
// [ErrWrongKey] naming both keys, and a tampered secret with [ErrCorrupt].
// [LoadOrCreateKey] keeps a software key next to the node's kit; in a TEE,
// pass a key derived from the TEE's sealing key to [NewKey].
//
//	key, err := store.LoadOrCreateKey(kitDir)
//	n := db.Node(s.ID, key)
//	b, err := n.Load(ctx)                         // opened secrets, newest sealed model
//	err = n.Save(ctx, store.NodeBatch{State: blob}) // after each Ready
//
// A [*Node] is the party's [protect.Ledger]: [Node.Record] durably records
// "revealed (round, digest)" before the share is sent, and refuses a second
// reveal in the same round with [ErrRevealed] (which is
// protect.ErrRevealed), whatever the digest, across restarts, goroutines
// and processes. Rounds are numbered per session across key epochs, so the
// ledger is keyed by (session, round).
//
// # Lead and fencing
//
// Two coordinators of one federation may share a PostgreSQL store, one
// leading and one waiting to take over. The lead is a lease row per
// session: a holder, an expiry, and a fencing token that grows by one at
// every [Coordinator.Acquire]. The leader writes through
// [Coordinator.Fenced] with its token and renews the lease
// ([Coordinator.Renew]); a standby reads [Coordinator.Lease] and acquires
// the lead once the lease has expired (or was released). Every Save
// checks the view's token against the stored one inside its transaction,
// with the session's row locked, so a write of the old leader either
// commits before the new leader's Acquire (and the new leader resumes
// from it) or fails with [ErrFenced] and stores nothing: two coordinators
// never both commit, whatever their clocks say. The clocks (passed in, as
// every time here) only decide when a lease may be taken. Once a session
// has a lease, an unfenced view cannot write it.
//
//	l, err := db.Coordinator(id).Acquire(ctx, "host-a:/var/lib/cloister", now, 10*time.Second)
//	c := db.Coordinator(id).Fenced(l.Token)
//	err = c.Save(ctx, batch) // errors.Is(err, store.ErrFenced): another took the lead
//
// # Transactions
//
// Every method that writes more than one row does it in one transaction,
// so an error leaves nothing half-written. Writes of one process queue in
// Go. Across processes the backends differ in mechanism, not in what they
// guarantee:
//
//   - SQLite: write transactions begin IMMEDIATE, holding the file's write
//     lock from their start; another process waits up to 10 s for it (then
//     [ErrBusy]). Read transactions see one WAL snapshot.
//   - PostgreSQL: no SERIALIZABLE transactions (and so no retries) but
//     explicit row locks. Write transactions run at READ COMMITTED and
//     begin by locking the row of their session (SELECT … FOR UPDATE), so
//     the writes of one session run one after another, as SQLite's do, and
//     what a transaction read (a round's stored outcome, the round of a
//     node's model, the lease's token) is still true when it commits.
//     Another process waits up to 10 s for the lock (lock_timeout, then
//     [ErrBusy]); the server ends a transaction whose client went silent in
//     it after 5 s (idle_in_transaction_session_timeout), so a coordinator
//     cut off mid-write frees its session's lock before the waiters give
//     up. Read transactions run at REPEATABLE READ: one snapshot.
//     Migrations of one database take an advisory lock, so processes
//     starting together migrate one at a time.
//
// In both, what must happen at most once is also a primary key that an
// INSERT … ON CONFLICT DO NOTHING meets: the reveal-once ledger (session,
// round), the commit record (session, round), the sealed models and the
// metrics. The store never overwrites any of them.
//
// # Durability
//
// A method that returns nil has made its transaction durable. SQLite: every
// connection runs in WAL mode with synchronous=FULL, so the transaction is
// fsynced to the write-ahead log. PostgreSQL: every connection sets
// synchronous_commit=on, and Open refuses a server running with fsync=off.
//
// The store takes no clock: every time is passed in (and kept with
// millisecond precision). Errors wrap the sentinels above and name the
// session and the key, e.g. "store: session 8f3a…: commit of round 7:
// stored record 41c2…, new 9e07…: store: round already committed".
//
// # Limits
//
// Sealing gives confidentiality and integrity, not freshness: someone who
// can write the file (or the database) can roll it back to an older copy,
// or delete ledger rows, and the store cannot tell. A node that must
// resist that needs a monotonic counter outside the file (a TEE's, or the
// signed audit log's). Old sealed models are kept; nothing prunes them yet.
//
// # Schema and backends
//
// The schema is versioned and upgraded by an ordered list of migrations
// when the store is opened: PRAGMA user_version and application_id in a
// SQLite file, the table cloister_schema in PostgreSQL, with the same
// version numbers ([SchemaVersion]) and the same tables, columns and keys
// (BYTEA for BLOB, BIGINT for INTEGER, DOUBLE PRECISION for REAL). A store
// with a newer schema is refused ([ErrNewerSchema]), and so is another
// application's database; neither is written to. A PostgreSQL store lives
// in the first schema of the connection's search_path, so one database can
// hold several (search_path=fed1 in the URL). A server that cannot be
// reached is an error naming its host and port and never the password:
// keep the password out of the URL (PGPASSWORD, or a ~/.pgpass file).
//
// All SQL is in one file (sql.go); the statements are shared by both
// backends, and dialect.go holds what differs. Nodes could use PostgreSQL
// through the same code (the tests run the node's half too), but `cloister
// node` keeps its SQLite file: a site runs one node, and its secrets are
// better kept on its own disk than on a database server.
package store
