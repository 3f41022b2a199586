// Package store is the durable state of Cloister's two daemons: one SQLite
// file per coordinator or node, through the pure-Go driver
// modernc.org/sqlite.
//
// The round engine (package round) is pure: each Ready it hands out starts
// with a state that must be durable before any message of the same Ready is
// sent. The store is where that state goes, together with whatever else the
// Ready records, in one transaction.
//
// # Opening
//
// [Open] a file (it is created if missing, and its schema migrated), then
// create or resume a session:
//
//	db, err := store.Open("/var/lib/cloister/coordinator.db")
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
// same process or after a restart, fails with [ErrCommitted] and the whole
// batch is rolled back. The dashboard reads [Coordinator.Rounds],
// [Coordinator.Summaries] (metrics aggregated per round, weighted by
// examples), [Coordinator.Metrics], [Coordinator.Commit] and
// [Coordinator.LatestModel]. The coordinator cannot open the sealed models
// it stores.
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
// # Durability
//
// Every connection runs in WAL mode with synchronous=FULL: a method that
// returns nil has been fsynced. Every method that writes more than one row
// does it in one transaction, so an error leaves nothing half-written.
// Writes of one process queue in Go; another process opening the same file
// waits up to 10 s for the write lock.
//
// The store takes no clock: every time is passed in (and kept with
// millisecond precision). Errors wrap the sentinels above and name the
// session and the key, e.g. "store: session 8f3a…: commit of round 7:
// stored record 41c2…, new 9e07…: store: round already committed".
//
// # Limits
//
// Sealing gives confidentiality and integrity, not freshness: someone who
// can write the file can roll it back to an older copy, or delete ledger
// rows, and the store cannot tell. A node that must resist that needs a
// monotonic counter outside the file (a TEE's, or the signed audit log's).
// Old sealed models are kept; nothing prunes them yet.
//
// # Schema and backends
//
// The schema is versioned (PRAGMA user_version, [SchemaVersion]) and
// upgraded by an ordered list of migrations when the file is opened; a
// file with a newer schema, or another application's database, is refused.
// All SQL is in one file (sql.go) and the rest uses database/sql only, so a
// Postgres backend (pgx) can be added by giving it its own copy of those
// statements; none exists yet.
package store
