package store

// Every SQL statement the package runs is in this file. The Go code around
// them uses database/sql only, so a second backend (Postgres through pgx)
// needs a copy of this file with its dialect: $n placeholders, BYTEA for
// BLOB, BIGINT for INTEGER, DOUBLE PRECISION for REAL, no STRICT, and a
// schema_version table in place of PRAGMA user_version.
//
// Conventions: times are Unix milliseconds (NULL for "not set"), digests
// are 32-byte BLOBs, node IDs are TEXT, and every table but sessions is
// keyed by the session it belongs to.

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
}

// noLimit is the LIMIT that means "all rows".
const noLimit = -1

// Schema management.
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

// Sessions.
const (
	qSessionInsert = `INSERT INTO sessions (id, manifest, epoch, created) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO NOTHING`
	qSessionGet    = `SELECT id, manifest, epoch, created FROM sessions WHERE id = ?`
	qSessionLatest = `SELECT id, manifest, epoch, created FROM sessions
		ORDER BY created DESC, rowid DESC LIMIT 1`
	qSessionExists = `SELECT 1 FROM sessions WHERE id = ?`
	qSessionEpoch  = `UPDATE sessions SET epoch = ? WHERE id = ?`
)

// Coordinator.
const (
	qStatePut = `INSERT INTO states (session, state) VALUES (?, ?)
		ON CONFLICT (session) DO UPDATE SET state = excluded.state`
	qStateGet = `SELECT state FROM states WHERE session = ?`

	qSlotPut = `INSERT INTO coordinator_slots (session, slot, round, data) VALUES (?, ?, ?, ?)
		ON CONFLICT (session, slot) DO UPDATE SET round = excluded.round, data = excluded.data`
	qSlotGet = `SELECT round, data FROM coordinator_slots WHERE session = ? AND slot = ?`

	qRoundOutcome = `SELECT outcome FROM rounds WHERE session = ? AND round = ?`
	qRoundPut     = `INSERT INTO rounds (session, round, epoch, phase, leader, aggregate, outcome,
			reason, started, ended, bytes_up, bytes_down, micro_epsilon)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (session, round) DO UPDATE SET epoch = excluded.epoch, phase = excluded.phase,
			leader = excluded.leader, aggregate = excluded.aggregate, outcome = excluded.outcome,
			reason = excluded.reason, started = excluded.started, ended = excluded.ended,
			bytes_up = excluded.bytes_up, bytes_down = excluded.bytes_down,
			micro_epsilon = excluded.micro_epsilon`
	qCohortDelete   = `DELETE FROM round_cohort WHERE session = ? AND round = ?`
	qCohortInsert   = `INSERT INTO round_cohort (session, round, node) VALUES (?, ?, ?)`
	qIncludedDelete = `DELETE FROM round_included WHERE session = ? AND round = ?`
	qIncludedInsert = `INSERT INTO round_included (session, round, node, digest, signature)
		VALUES (?, ?, ?, ?, ?)`
	qTimingDelete = `DELETE FROM round_timings WHERE session = ? AND round = ?`
	qTimingInsert = `INSERT INTO round_timings (session, round, seq, phase, ms) VALUES (?, ?, ?, ?, ?)`

	qRoundColumns = `SELECT round, epoch, phase, leader, aggregate, outcome, reason, started, ended,
			bytes_up, bytes_down, micro_epsilon FROM rounds`
	qRoundGet    = qRoundColumns + ` WHERE session = ? AND round = ?`
	qRoundRange  = qRoundColumns + ` WHERE session = ? AND round >= ? ORDER BY round LIMIT ?`
	qCohortGet   = `SELECT node FROM round_cohort WHERE session = ? AND round = ? ORDER BY node`
	qIncludedGet = `SELECT node, digest, signature FROM round_included
		WHERE session = ? AND round = ? ORDER BY node`
	qTimingGet = `SELECT phase, ms FROM round_timings WHERE session = ? AND round = ? ORDER BY seq`

	qModelInsert = `INSERT INTO models (session, round, sealed, digest) VALUES (?, ?, ?, ?)
		ON CONFLICT (session, round) DO NOTHING`
	qModelGet    = `SELECT round, sealed, digest FROM models WHERE session = ? AND round = ?`
	qModelLatest = `SELECT round, sealed, digest FROM models WHERE session = ?
		ORDER BY round DESC LIMIT 1`
	qModelDigest = `SELECT digest FROM models WHERE session = ? AND round = ?`

	qCommitInsert = `INSERT INTO commits (session, round, epoch, leader, record, digest, signature, committed)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (session, round) DO NOTHING`
	qCommitGet = `SELECT round, epoch, leader, record, digest, signature, committed FROM commits
		WHERE session = ? AND round = ?`
	qCommitDigest = `SELECT digest FROM commits WHERE session = ? AND round = ?`

	qMetricInsert = `INSERT INTO metrics (session, round, node, accuracy, loss, examples)
		VALUES (?, ?, ?, ?, ?, ?)
		ON CONFLICT (session, round, node) DO NOTHING`
	qMetricGet = `SELECT round, node, accuracy, loss, examples FROM metrics
		WHERE session = ? AND round = ? ORDER BY node`
	// Accuracy and loss are averaged with the example counts as weights
	// (plain means if no node reported examples); NaNs (NULLs) are skipped.
	qSummaryRange = `SELECT round, count(*), coalesce(sum(examples), 0),
			CASE WHEN sum(CASE WHEN accuracy IS NULL THEN 0 ELSE examples END) > 0
				THEN sum(accuracy * examples) / sum(CASE WHEN accuracy IS NULL THEN 0 ELSE examples END)
				ELSE avg(accuracy) END,
			CASE WHEN sum(CASE WHEN loss IS NULL THEN 0 ELSE examples END) > 0
				THEN sum(loss * examples) / sum(CASE WHEN loss IS NULL THEN 0 ELSE examples END)
				ELSE avg(loss) END
		FROM metrics WHERE session = ? AND round >= ?
		GROUP BY round ORDER BY round LIMIT ?`
)

// Node.
const (
	qSecretPut = `INSERT INTO node_secrets (session, slot, key_id, sealed) VALUES (?, ?, ?, ?)
		ON CONFLICT (session, slot) DO UPDATE SET key_id = excluded.key_id, sealed = excluded.sealed`
	qSecretGet = `SELECT key_id, sealed FROM node_secrets WHERE session = ? AND slot = ?`

	qNodeModelRound = `SELECT round, digest FROM node_models WHERE session = ?`
	qNodeModelPut   = `INSERT INTO node_models (session, round, sealed, digest) VALUES (?, ?, ?, ?)
		ON CONFLICT (session) DO UPDATE SET round = excluded.round, sealed = excluded.sealed,
			digest = excluded.digest`
	qNodeModelGet = `SELECT round, sealed, digest FROM node_models WHERE session = ?`

	qRevealInsert = `INSERT INTO reveals (session, round, digest) VALUES (?, ?, ?)
		ON CONFLICT (session, round) DO NOTHING`
	qRevealGet = `SELECT digest FROM reveals WHERE session = ? AND round = ?`
)
