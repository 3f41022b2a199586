package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"time"

	"github.com/cloisterfl/cloister/fl"
)

// Coordinator is the coordinator's view of one session in a [DB]. It holds
// nothing secret: the engine's state, round records, sealed models (opaque:
// the coordinator cannot open them), commit records and metrics.
type Coordinator struct {
	db      *DB
	session []byte
	token   uint64 // the fencing token of its writes (lease.go); 0: none
}

// Coordinator returns the coordinator's view of the session with the given
// ID. The session must have been created ([DB.CreateSession]); methods
// return an error wrapping [ErrNotFound] otherwise.
func (db *DB) Coordinator(session []byte) *Coordinator {
	return &Coordinator{db: db, session: append([]byte(nil), session...)}
}

// Outcome is how a round ended.
type Outcome uint8

// Round outcomes.
const (
	Running   Outcome = iota // the round has not ended
	Committed                // the leader's commit record was recorded
	Aborted                  // the round was abandoned; Round.Reason says why
)

func (o Outcome) String() string {
	switch o {
	case Running:
		return "running"
	case Committed:
		return "committed"
	case Aborted:
		return "aborted"
	}
	return fmt.Sprintf("Outcome(%d)", uint8(o))
}

// Round is the coordinator's record of one round, for history and the
// dashboard. Saving a Round replaces the stored record of that round,
// cohort, included set and timings included.
type Round struct {
	Round  fl.Round
	Epoch  uint64    // the key epoch the round ran under
	Phase  string    // the engine's phase name, e.g. "collect" or "evaluate"
	Leader fl.NodeID // the current leader (the last one named)
	// Cohort lists the members asked to train (returned sorted).
	Cohort []fl.NodeID
	// Included lists the uploads summed into the aggregate (returned sorted
	// by node).
	Included []Contribution
	// Aggregate is the digest of Helper.Aggregate's output (zero until
	// collection ends).
	Aggregate [32]byte
	// Outcome and Reason (why the round was aborted). A committed round
	// cannot be marked otherwise: Save returns ErrCommitted.
	Outcome Outcome
	Reason  string
	// Started and Ended (zero while the round runs), millisecond precision.
	Started, Ended time.Time
	// Timings lists the duration of each phase, in order (stored in ms).
	Timings []Timing
	// BytesUp and BytesDown count the payload bytes received from and sent
	// to nodes for this round.
	BytesUp, BytesDown uint64
	// MicroEpsilon is the differential-privacy cost charged in this round,
	// in millionths of ε.
	MicroEpsilon uint64
}

// Contribution is one included upload: its sender, its digest and the
// sender's signature over it.
type Contribution struct {
	Node      fl.NodeID
	Digest    [32]byte
	Signature []byte
}

// Timing is how long a round spent in one phase.
type Timing struct {
	Phase    string
	Duration time.Duration
}

// Model is a sealed model: the global model after round Round (0: the
// initial model), sealed with the group key. The store never opens it.
type Model struct {
	Round  fl.Round
	Sealed []byte
	// Digest is the SHA-256 of Sealed. Save computes it; a non-zero Digest
	// that differs is an error.
	Digest [32]byte
}

// Commit is a round's commit record: the bytes the leader signed (the
// engine's round record) and its signature. A round has at most one.
type Commit struct {
	Round     fl.Round
	Epoch     uint64
	Leader    fl.NodeID
	Record    []byte // the signed bytes
	Signature []byte // the leader's signature over Record
	// Digest is the SHA-256 of Record. Save computes it; a non-zero Digest
	// that differs is an error.
	Digest    [32]byte
	Committed time.Time
}

// Metric is one node's evaluation of the model committed in Round.
type Metric struct {
	Round   fl.Round
	Node    fl.NodeID
	Metrics fl.Metrics
}

// Summary aggregates a round's metrics over the nodes that reported them.
type Summary struct {
	Round    fl.Round
	Nodes    int     // how many nodes reported
	Examples int     // the examples they evaluated, in total
	Accuracy float64 // mean accuracy, weighted by examples
	Loss     float64 // mean loss, weighted by examples
}

// CoordinatorBatch is what one Ready of the coordinator's engine persists.
// [Coordinator.Save] writes all of it in one transaction.
type CoordinatorBatch struct {
	// State is the engine's new persistent state (CoordinatorState
	// MarshalBinary), opaque to the store. Nil leaves it unchanged.
	State []byte
	// Epoch, if not 0, is the session's new key epoch.
	Epoch uint64
	// Rounds are inserted, or replace the stored records of their rounds.
	Rounds []Round
	// Models are new sealed models. A round has at most one: another is an
	// error wrapping ErrExists.
	Models []Model
	// Commits are new commit records. A second commit of a round, in this
	// batch or stored before, is an error wrapping ErrCommitted.
	Commits []Commit
	// Metrics are new evaluation results, one per node and round: another
	// is an error wrapping ErrExists.
	Metrics []Metric
	// Current, if not nil, replaces the current sealed model (the engine's
	// newest: the initial model, a committed one, or one a re-key carried
	// over to a new group key); Models keep the committed ones.
	Current *Model
	// GroupKey, if not nil, replaces the current key setup's group key
	// (the engine's, encoded; opaque here).
	GroupKey []byte
}

// Coordinator slots.
const (
	slotCurrent       = "model"
	slotCoordGroupKey = "group-key"
)

// Save writes b in one transaction: when it returns nil, all of b is
// durable; when it returns an error, none of it is stored. Once the
// session has a lease (lease.go), Save stores nothing and fails with an
// error wrapping [ErrFenced] unless the view is fenced with the lease's
// current token.
func (c *Coordinator) Save(ctx context.Context, b CoordinatorBatch) error {
	err := c.db.write(ctx, func(tx *sql.Tx) error {
		if err := c.db.lockSession(ctx, tx, c.session); err != nil {
			return err
		}
		if _, err := c.fence(ctx, tx); err != nil {
			return err
		}
		if err := setEpoch(ctx, tx, c.session, b.Epoch); err != nil {
			return err
		}
		if b.State != nil {
			if _, err := tx.ExecContext(ctx, qStatePut, c.session, b.State); err != nil {
				return fmt.Errorf("state: %w", err)
			}
		}
		if m := b.Current; m != nil {
			round, err := toInt(uint64(m.Round), "round")
			if err != nil {
				return err
			}
			if _, err := tx.ExecContext(ctx, qSlotPut, c.session, slotCurrent, round, nonNil(m.Sealed)); err != nil {
				return fmt.Errorf("current model: %w", err)
			}
		}
		if b.GroupKey != nil {
			if _, err := tx.ExecContext(ctx, qSlotPut, c.session, slotCoordGroupKey, 0, b.GroupKey); err != nil {
				return fmt.Errorf("group key: %w", err)
			}
		}
		for _, r := range b.Rounds {
			if err := c.putRound(ctx, tx, r); err != nil {
				return fmt.Errorf("round %d: %w", r.Round, err)
			}
		}
		for _, m := range b.Models {
			if err := c.putModel(ctx, tx, m); err != nil {
				return fmt.Errorf("sealed model of round %d: %w", m.Round, err)
			}
		}
		for _, cm := range b.Commits {
			if err := c.putCommit(ctx, tx, cm); err != nil {
				return fmt.Errorf("commit of round %d: %w", cm.Round, err)
			}
		}
		for _, m := range b.Metrics {
			if err := c.putMetric(ctx, tx, m); err != nil {
				return fmt.Errorf("metrics of %s in round %d: %w", m.Node, m.Round, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: session %s: %w", sid(c.session), err)
	}
	return nil
}

func (c *Coordinator) putRound(ctx context.Context, tx *sql.Tx, r Round) error {
	round, err := toInt(uint64(r.Round), "round")
	if err != nil {
		return err
	}
	nums := [...]uint64{r.Epoch, r.BytesUp, r.BytesDown, r.MicroEpsilon}
	var ints [len(nums)]int64
	for i, v := range nums {
		if ints[i], err = toInt(v, "value"); err != nil {
			return err
		}
	}
	if r.Outcome > Aborted {
		return fmt.Errorf("invalid outcome %d", r.Outcome)
	}
	var stored Outcome
	switch err := tx.QueryRowContext(ctx, qRoundOutcome, c.session, round).Scan(&stored); {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return err
	case stored == Committed && r.Outcome != Committed:
		return fmt.Errorf("marking it %s: %w", r.Outcome, ErrCommitted)
	}
	if _, err := tx.ExecContext(ctx, qRoundPut, c.session, round, ints[0], r.Phase, string(r.Leader),
		digestBytes(r.Aggregate), r.Outcome, r.Reason, fromTime(r.Started), fromTime(r.Ended),
		ints[1], ints[2], ints[3]); err != nil {
		return err
	}
	for _, q := range [...]string{qCohortDelete, qIncludedDelete, qTimingDelete} {
		if _, err := tx.ExecContext(ctx, q, c.session, round); err != nil {
			return err
		}
	}
	for _, n := range r.Cohort {
		if _, err := tx.ExecContext(ctx, qCohortInsert, c.session, round, string(n)); err != nil {
			return fmt.Errorf("cohort member %s: %w", n, err)
		}
	}
	for _, in := range r.Included {
		if _, err := tx.ExecContext(ctx, qIncludedInsert, c.session, round, string(in.Node),
			in.Digest[:], nonNil(in.Signature)); err != nil {
			return fmt.Errorf("included upload of %s: %w", in.Node, err)
		}
	}
	for i, t := range r.Timings {
		if _, err := tx.ExecContext(ctx, qTimingInsert, c.session, round, i, t.Phase, t.Duration.Milliseconds()); err != nil {
			return fmt.Errorf("timing of %s: %w", t.Phase, err)
		}
	}
	return nil
}

func (c *Coordinator) putModel(ctx context.Context, tx *sql.Tx, m Model) error {
	round, err := toInt(uint64(m.Round), "round")
	if err != nil {
		return err
	}
	d, err := checkDigest(m.Sealed, m.Digest)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, qModelInsert, c.session, round, nonNil(m.Sealed), d[:])
	if err != nil {
		return err
	}
	if err := affected(res); err != nil {
		var stored []byte
		if err := tx.QueryRowContext(ctx, qModelDigest, c.session, round).Scan(&stored); err != nil {
			return err
		}
		return fmt.Errorf("stored digest %x, new %x: %w", head(stored), d[:6], ErrExists)
	}
	return nil
}

func (c *Coordinator) putCommit(ctx context.Context, tx *sql.Tx, cm Commit) error {
	round, err := toInt(uint64(cm.Round), "round")
	if err != nil {
		return err
	}
	epoch, err := toInt(cm.Epoch, "epoch")
	if err != nil {
		return err
	}
	d, err := checkDigest(cm.Record, cm.Digest)
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, qCommitInsert, c.session, round, epoch, string(cm.Leader),
		nonNil(cm.Record), d[:], nonNil(cm.Signature), fromTime(cm.Committed))
	if err != nil {
		return err
	}
	if err := affected(res); err != nil {
		var stored []byte
		if err := tx.QueryRowContext(ctx, qCommitDigest, c.session, round).Scan(&stored); err != nil {
			return err
		}
		return fmt.Errorf("stored record %x, new %x: %w", head(stored), d[:6], ErrCommitted)
	}
	return nil
}

func (c *Coordinator) putMetric(ctx context.Context, tx *sql.Tx, m Metric) error {
	round, err := toInt(uint64(m.Round), "round")
	if err != nil {
		return err
	}
	res, err := tx.ExecContext(ctx, qMetricInsert, c.session, round, string(m.Node),
		nanNull(m.Metrics.Accuracy), nanNull(m.Metrics.Loss), m.Metrics.Examples)
	if err != nil {
		return err
	}
	return affected(res)
}

// querier is what each needs of a *sql.DB or *sql.Tx.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}

// each runs query and calls fn for every row.
func each(ctx context.Context, q querier, query string, args []any, fn func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := fn(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// affected returns ErrExists if an INSERT … ON CONFLICT DO NOTHING did
// nothing.
func affected(res sql.Result) error {
	n, err := res.RowsAffected()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrExists
	}
	return nil
}

// checkDigest returns the SHA-256 of b, or an error if want is set and
// differs.
func checkDigest(b []byte, want [32]byte) ([32]byte, error) {
	d := sha256.Sum256(b)
	if want != ([32]byte{}) && want != d {
		return d, fmt.Errorf("digest %x given, bytes hash to %x", want[:6], d[:6])
	}
	return d, nil
}

func sqlLimit(limit int) int64 {
	if limit <= 0 {
		return noLimit
	}
	return int64(limit)
}

// nonNil keeps NOT NULL BLOB columns from receiving a nil slice (NULL).
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

func head(b []byte) []byte { return b[:min(len(b), 6)] }

// nanNull stores NaN as NULL, as SQLite would anyway.
func nanNull(x float64) sql.NullFloat64 {
	if math.IsNaN(x) {
		return sql.NullFloat64{}
	}
	return sql.NullFloat64{Float64: x, Valid: true}
}

func nullNaN(x sql.NullFloat64) float64 {
	if !x.Valid {
		return math.NaN()
	}
	return x.Float64
}
