package store

import "math"

// Every SQL statement the package runs is in this file. The statements
// after the migrations are shared by both backends: they use $n
// placeholders (which modernc.org/sqlite binds by ordinal, as PostgreSQL
// does) and only the SQL the two dialects share. What differs is here too:
// the schema (migrations for SQLite, pgMigrations for PostgreSQL, with the
// same version numbers), the schema-version bookkeeping (PRAGMA
// user_version and application_id in SQLite, the cloister_schema table in
// PostgreSQL), and the clause that locks a session's row (dialect.go).
//
// Conventions: times are Unix milliseconds (NULL for "not set"), digests
// are 32-byte BLOBs (BYTEA), node IDs are TEXT, integers are 64-bit, and
// every table but sessions is keyed by the session it belongs to.

// applicationID marks a SQLite file as a Cloister store ("Clst").
const applicationID = 0x436c7374

// migrations[i] upgrades the schema from version i to version i+1. Append
// to it; never edit a released entry. Open runs the missing ones in one
// transaction.
var migrations = [][]string{
	// 1: the first schema.
	{
		`PRAGMA application_id = 1131180916`, // applicationID, checked by TestApplicationID
		`CREATE TABLE sessions (
			id       BLOB PRIMARY KEY,
			manifest BLOB NOT NULL,     -- SHA-256 of the signed manifest
			epoch    INTEGER NOT NULL,  -- the current key epoch
			created  INTEGER NOT NULL
		) STRICT`,

		// Coordinator.
		`CREATE TABLE states (
			session BLOB PRIMARY KEY REFERENCES sessions(id),
			state   BLOB NOT NULL       -- the engine's state, opaque
		) STRICT`,
		`CREATE TABLE rounds (
			session       BLOB NOT NULL REFERENCES sessions(id),
			round         INTEGER NOT NULL,
			epoch         INTEGER NOT NULL,
			phase         TEXT NOT NULL,
			leader        TEXT NOT NULL,
			aggregate     BLOB,              -- NULL until collection ends
			outcome       INTEGER NOT NULL,  -- 0 running, 1 committed, 2 aborted
			reason        TEXT NOT NULL,
			started       INTEGER,
			ended         INTEGER,
			bytes_up      INTEGER NOT NULL,
			bytes_down    INTEGER NOT NULL,
			micro_epsilon INTEGER NOT NULL,
			PRIMARY KEY (session, round)
		) STRICT`,
		`CREATE TABLE round_cohort (
			session BLOB NOT NULL,
			round   INTEGER NOT NULL,
			node    TEXT NOT NULL,
			PRIMARY KEY (session, round, node),
			FOREIGN KEY (session, round) REFERENCES rounds(session, round) ON DELETE CASCADE
		) STRICT`,
		`CREATE TABLE round_included (
			session   BLOB NOT NULL,
			round     INTEGER NOT NULL,
			node      TEXT NOT NULL,
			digest    BLOB NOT NULL,
			signature BLOB NOT NULL,
			PRIMARY KEY (session, round, node),
			FOREIGN KEY (session, round) REFERENCES rounds(session, round) ON DELETE CASCADE
		) STRICT`,
		`CREATE TABLE round_timings (
			session BLOB NOT NULL,
			round   INTEGER NOT NULL,
			seq     INTEGER NOT NULL,
			phase   TEXT NOT NULL,
			ms      INTEGER NOT NULL,
			PRIMARY KEY (session, round, seq),
			FOREIGN KEY (session, round) REFERENCES rounds(session, round) ON DELETE CASCADE
		) STRICT`,
		`CREATE TABLE models (
			session BLOB NOT NULL REFERENCES sessions(id),
			round   INTEGER NOT NULL,
			sealed  BLOB NOT NULL,  -- sealed with the group key: opaque here
			digest  BLOB NOT NULL,  -- SHA-256 of sealed
			PRIMARY KEY (session, round)
		) STRICT`,
		`CREATE TABLE commits (
			session   BLOB NOT NULL REFERENCES sessions(id),
			round     INTEGER NOT NULL,
			epoch     INTEGER NOT NULL,
			leader    TEXT NOT NULL,
			record    BLOB NOT NULL,  -- the bytes the leader signed
			digest    BLOB NOT NULL,  -- SHA-256 of record
			signature BLOB NOT NULL,
			committed INTEGER,
			PRIMARY KEY (session, round)  -- a round is committed at most once
		) STRICT`,
		`CREATE TABLE metrics (
			session  BLOB NOT NULL REFERENCES sessions(id),
			round    INTEGER NOT NULL,
			node     TEXT NOT NULL,
			accuracy REAL,  -- NULL stands for NaN
			loss     REAL,
			examples INTEGER NOT NULL,
			PRIMARY KEY (session, round, node)
		) STRICT`,

		// Node.
		`CREATE TABLE node_secrets (
			session BLOB NOT NULL REFERENCES sessions(id),
			slot    TEXT NOT NULL,  -- state, party, group-key
			key_id  TEXT NOT NULL,  -- AtRest.KeyID of the key that sealed it
			sealed  BLOB NOT NULL,
			PRIMARY KEY (session, slot)
		) STRICT`,
		`CREATE TABLE node_models (
			session BLOB PRIMARY KEY REFERENCES sessions(id),
			round   INTEGER NOT NULL,
			sealed  BLOB NOT NULL,
			digest  BLOB NOT NULL
		) STRICT`,
		`CREATE TABLE reveals (
			session BLOB NOT NULL REFERENCES sessions(id),
			round   INTEGER NOT NULL,
			digest  BLOB NOT NULL,
			PRIMARY KEY (session, round)  -- reveal once per round, whatever the epoch
		) STRICT`,
	},
	// 2: the coordinator's large pieces of state, apart from its small state.
	{
		`CREATE TABLE coordinator_slots (
			session BLOB NOT NULL REFERENCES sessions(id),
			slot    TEXT NOT NULL,  -- model (round, sealed), group-key
			round   INTEGER NOT NULL,
			data    BLOB NOT NULL,
			PRIMARY KEY (session, slot)
		) STRICT`,
	},
	// 3: the coordinator's lead (lease.go).
	{
		`CREATE TABLE leases (
			session  BLOB PRIMARY KEY REFERENCES sessions(id),
			holder   TEXT NOT NULL,     -- who holds the lead
			token    INTEGER NOT NULL,  -- the fencing token: +1 at every Acquire
			acquired INTEGER NOT NULL,
			expires  INTEGER NOT NULL   -- 0 once released
		) STRICT`,
	},
}

// pgMigrations are migrations in PostgreSQL's dialect: entry i makes the
// same tables, columns and keys as migrations[i] (TestSchemasAgree checks
// it), with BYTEA for BLOB, BIGINT for INTEGER, DOUBLE PRECISION for REAL,
// and the version kept in cloister_schema. Append to both lists together;
// never edit a released entry.
var pgMigrations = [][]string{
	// 1: the first schema.
	{
		`CREATE TABLE cloister_schema (
			application TEXT NOT NULL,   -- 'cloister': what SQLite's application_id says
			version     BIGINT NOT NULL  -- what SQLite's user_version says
		)`,
		`INSERT INTO cloister_schema (application, version) VALUES ('cloister', 0)`,
		`CREATE TABLE sessions (
			id       BYTEA PRIMARY KEY,
			manifest BYTEA NOT NULL,
			epoch    BIGINT NOT NULL,
			created  BIGINT NOT NULL,
			rowid    BIGINT GENERATED ALWAYS AS IDENTITY  -- SQLite's implicit rowid: the order of creation
		)`,

		// Coordinator.
		`CREATE TABLE states (
			session BYTEA PRIMARY KEY REFERENCES sessions(id),
			state   BYTEA NOT NULL
		)`,
		`CREATE TABLE rounds (
			session       BYTEA NOT NULL REFERENCES sessions(id),
			round         BIGINT NOT NULL,
			epoch         BIGINT NOT NULL,
			phase         TEXT NOT NULL,
			leader        TEXT NOT NULL,
			aggregate     BYTEA,
			outcome       BIGINT NOT NULL,
			reason        TEXT NOT NULL,
			started       BIGINT,
			ended         BIGINT,
			bytes_up      BIGINT NOT NULL,
			bytes_down    BIGINT NOT NULL,
			micro_epsilon BIGINT NOT NULL,
			PRIMARY KEY (session, round)
		)`,
		`CREATE TABLE round_cohort (
			session BYTEA NOT NULL,
			round   BIGINT NOT NULL,
			node    TEXT NOT NULL,
			PRIMARY KEY (session, round, node),
			FOREIGN KEY (session, round) REFERENCES rounds(session, round) ON DELETE CASCADE
		)`,
		`CREATE TABLE round_included (
			session   BYTEA NOT NULL,
			round     BIGINT NOT NULL,
			node      TEXT NOT NULL,
			digest    BYTEA NOT NULL,
			signature BYTEA NOT NULL,
			PRIMARY KEY (session, round, node),
			FOREIGN KEY (session, round) REFERENCES rounds(session, round) ON DELETE CASCADE
		)`,
		`CREATE TABLE round_timings (
			session BYTEA NOT NULL,
			round   BIGINT NOT NULL,
			seq     BIGINT NOT NULL,
			phase   TEXT NOT NULL,
			ms      BIGINT NOT NULL,
			PRIMARY KEY (session, round, seq),
			FOREIGN KEY (session, round) REFERENCES rounds(session, round) ON DELETE CASCADE
		)`,
		`CREATE TABLE models (
			session BYTEA NOT NULL REFERENCES sessions(id),
			round   BIGINT NOT NULL,
			sealed  BYTEA NOT NULL,
			digest  BYTEA NOT NULL,
			PRIMARY KEY (session, round)
		)`,
		`CREATE TABLE commits (
			session   BYTEA NOT NULL REFERENCES sessions(id),
			round     BIGINT NOT NULL,
			epoch     BIGINT NOT NULL,
			leader    TEXT NOT NULL,
			record    BYTEA NOT NULL,
			digest    BYTEA NOT NULL,
			signature BYTEA NOT NULL,
			committed BIGINT,
			PRIMARY KEY (session, round)
		)`,
		`CREATE TABLE metrics (
			session  BYTEA NOT NULL REFERENCES sessions(id),
			round    BIGINT NOT NULL,
			node     TEXT NOT NULL,
			accuracy DOUBLE PRECISION,
			loss     DOUBLE PRECISION,
			examples BIGINT NOT NULL,
			PRIMARY KEY (session, round, node)
		)`,

		// Node.
		`CREATE TABLE node_secrets (
			session BYTEA NOT NULL REFERENCES sessions(id),
			slot    TEXT NOT NULL,
			key_id  TEXT NOT NULL,
			sealed  BYTEA NOT NULL,
			PRIMARY KEY (session, slot)
		)`,
		`CREATE TABLE node_models (
			session BYTEA PRIMARY KEY REFERENCES sessions(id),
			round   BIGINT NOT NULL,
			sealed  BYTEA NOT NULL,
			digest  BYTEA NOT NULL
		)`,
		`CREATE TABLE reveals (
			session BYTEA NOT NULL REFERENCES sessions(id),
			round   BIGINT NOT NULL,
			digest  BYTEA NOT NULL,
			PRIMARY KEY (session, round)
		)`,
	},
	// 2: the coordinator's large pieces of state.
	{
		`CREATE TABLE coordinator_slots (
			session BYTEA NOT NULL REFERENCES sessions(id),
			slot    TEXT NOT NULL,
			round   BIGINT NOT NULL,
			data    BYTEA NOT NULL,
			PRIMARY KEY (session, slot)
		)`,
	},
	// 3: the coordinator's lead.
	{
		`CREATE TABLE leases (
			session  BYTEA PRIMARY KEY REFERENCES sessions(id),
			holder   TEXT NOT NULL,
			token    BIGINT NOT NULL,
			acquired BIGINT NOT NULL,
			expires  BIGINT NOT NULL
		)`,
	},
}

// noLimit is the LIMIT that means "all rows" (in both dialects).
const noLimit = math.MaxInt64

// Schema management, SQLite.
const (
	qUserVersion   = `PRAGMA user_version`
	qApplicationID = `PRAGMA application_id`
	qTableCount    = `SELECT count(*) FROM sqlite_schema`
	qSetWAL        = `PRAGMA journal_mode = WAL`
	qSynchronous   = `PRAGMA synchronous`
	qForeignKeys   = `PRAGMA foreign_keys`
	// PRAGMA takes no parameters; the version is an int formatted by Go.
	qSetUserVersion = `PRAGMA user_version = %d`
)

// Schema management, PostgreSQL. The store's tables live in the first
// schema of the connection's search_path (current_schema()).
const (
	qPgSchema     = `SELECT current_schema()`
	qPgTableCount = `SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()`
	qPgHasVersion = `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = current_schema() AND table_name = 'cloister_schema'`
	qPgVersion    = `SELECT application, version FROM cloister_schema`
	qPgSetVersion = `UPDATE cloister_schema SET version = $1`
	// Migrations of one database wait for each other (the key is "Clst").
	qPgMigrateLock = `SELECT pg_advisory_xact_lock(1131180916)`
	qPgFsync       = `SHOW fsync`
)

// Sessions.
const (
	qSessionInsert = `INSERT INTO sessions (id, manifest, epoch, created) VALUES ($1, $2, $3, $4)
		ON CONFLICT (id) DO NOTHING`
	qSessionGet    = `SELECT id, manifest, epoch, created FROM sessions WHERE id = $1`
	qSessionLatest = `SELECT id, manifest, epoch, created FROM sessions
		ORDER BY created DESC, rowid DESC LIMIT 1`
	// In a write transaction, lockSession appends the dialect's FOR UPDATE.
	qSessionExists = `SELECT 1 FROM sessions WHERE id = $1`
	qSessionEpoch  = `UPDATE sessions SET epoch = $1 WHERE id = $2`
)

// Coordinator.
const (
	qStatePut = `INSERT INTO states (session, state) VALUES ($1, $2)
		ON CONFLICT (session) DO UPDATE SET state = excluded.state`
	qStateGet = `SELECT state FROM states WHERE session = $1`

	qSlotPut = `INSERT INTO coordinator_slots (session, slot, round, data) VALUES ($1, $2, $3, $4)
		ON CONFLICT (session, slot) DO UPDATE SET round = excluded.round, data = excluded.data`
	qSlotGet = `SELECT round, data FROM coordinator_slots WHERE session = $1 AND slot = $2`

	qRoundOutcome = `SELECT outcome FROM rounds WHERE session = $1 AND round = $2`
	qRoundPut     = `INSERT INTO rounds (session, round, epoch, phase, leader, aggregate, outcome,
			reason, started, ended, bytes_up, bytes_down, micro_epsilon)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)
		ON CONFLICT (session, round) DO UPDATE SET epoch = excluded.epoch, phase = excluded.phase,
			leader = excluded.leader, aggregate = excluded.aggregate, outcome = excluded.outcome,
			reason = excluded.reason, started = excluded.started, ended = excluded.ended,
			bytes_up = excluded.bytes_up, bytes_down = excluded.bytes_down,
			micro_epsilon = excluded.micro_epsilon`
	qCohortDelete   = `DELETE FROM round_cohort WHERE session = $1 AND round = $2`
	qCohortInsert   = `INSERT INTO round_cohort (session, round, node) VALUES ($1, $2, $3)`
	qIncludedDelete = `DELETE FROM round_included WHERE session = $1 AND round = $2`
	qIncludedInsert = `INSERT INTO round_included (session, round, node, digest, signature)
		VALUES ($1, $2, $3, $4, $5)`
	qTimingDelete = `DELETE FROM round_timings WHERE session = $1 AND round = $2`
	qTimingInsert = `INSERT INTO round_timings (session, round, seq, phase, ms) VALUES ($1, $2, $3, $4, $5)`

	qRoundColumns = `SELECT round, epoch, phase, leader, aggregate, outcome, reason, started, ended,
			bytes_up, bytes_down, micro_epsilon FROM rounds`
	qRoundGet    = qRoundColumns + ` WHERE session = $1 AND round = $2`
	qRoundRange  = qRoundColumns + ` WHERE session = $1 AND round >= $2 ORDER BY round LIMIT $3`
	qCohortGet   = `SELECT node FROM round_cohort WHERE session = $1 AND round = $2 ORDER BY node`
	qIncludedGet = `SELECT node, digest, signature FROM round_included
		WHERE session = $1 AND round = $2 ORDER BY node`
	qTimingGet = `SELECT phase, ms FROM round_timings WHERE session = $1 AND round = $2 ORDER BY seq`

	qModelInsert = `INSERT INTO models (session, round, sealed, digest) VALUES ($1, $2, $3, $4)
		ON CONFLICT (session, round) DO NOTHING`
	qModelGet    = `SELECT round, sealed, digest FROM models WHERE session = $1 AND round = $2`
	qModelLatest = `SELECT round, sealed, digest FROM models WHERE session = $1
		ORDER BY round DESC LIMIT 1`
	qModelDigest = `SELECT digest FROM models WHERE session = $1 AND round = $2`

	qCommitInsert = `INSERT INTO commits (session, round, epoch, leader, record, digest, signature, committed)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (session, round) DO NOTHING`
	qCommitGet = `SELECT round, epoch, leader, record, digest, signature, committed FROM commits
		WHERE session = $1 AND round = $2`
	qCommitDigest = `SELECT digest FROM commits WHERE session = $1 AND round = $2`

	qMetricInsert = `INSERT INTO metrics (session, round, node, accuracy, loss, examples)
		VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (session, round, node) DO NOTHING`
	qMetricGet = `SELECT round, node, accuracy, loss, examples FROM metrics
		WHERE session = $1 AND round = $2 ORDER BY node`
	// Accuracy and loss are averaged with the example counts as weights
	// (plain means if no node reported examples); NaNs (NULLs) are skipped.
	qSummaryRange = `SELECT round, count(*), CAST(coalesce(sum(examples), 0) AS BIGINT),
			CASE WHEN sum(CASE WHEN accuracy IS NULL THEN 0 ELSE examples END) > 0
				THEN sum(accuracy * examples) / sum(CASE WHEN accuracy IS NULL THEN 0 ELSE examples END)
				ELSE avg(accuracy) END,
			CASE WHEN sum(CASE WHEN loss IS NULL THEN 0 ELSE examples END) > 0
				THEN sum(loss * examples) / sum(CASE WHEN loss IS NULL THEN 0 ELSE examples END)
				ELSE avg(loss) END
		FROM metrics WHERE session = $1 AND round >= $2
		GROUP BY round ORDER BY round LIMIT $3`
)

// Node.
const (
	qSecretPut = `INSERT INTO node_secrets (session, slot, key_id, sealed) VALUES ($1, $2, $3, $4)
		ON CONFLICT (session, slot) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed`
	qSecretGet = `SELECT key_id, sealed FROM node_secrets WHERE session = $1 AND slot = $2`

	qNodeModelRound = `SELECT round, digest FROM node_models WHERE session = $1`
	qNodeModelPut   = `INSERT INTO node_models (session, round, sealed, digest) VALUES ($1, $2, $3, $4)
		ON CONFLICT (session) DO UPDATE SET round = excluded.round, sealed = excluded.sealed,
			digest = excluded.digest`
	qNodeModelGet = `SELECT round, sealed, digest FROM node_models WHERE session = $1`

	qRevealInsert = `INSERT INTO reveals (session, round, digest) VALUES ($1, $2, $3)
		ON CONFLICT (session, round) DO NOTHING`
	qRevealGet = `SELECT digest FROM reveals WHERE session = $1 AND round = $2`
)

// Coordinator lead (lease.go).
const (
	qLeaseGet    = `SELECT holder, token, acquired, expires FROM leases WHERE session = $1`
	qLeaseInsert = `INSERT INTO leases (session, holder, token, acquired, expires) VALUES ($1, $2, $3, $4, $5)`
	qLeaseTake   = `UPDATE leases SET holder = $1, token = $2, acquired = $3, expires = $4 WHERE session = $5`
	qLeaseRenew  = `UPDATE leases SET expires = $1 WHERE session = $2`
)
