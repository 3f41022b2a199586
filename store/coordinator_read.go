package store

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/cloisterfl/cloister/fl"
)

// The coordinator's reads: its state, current model and group key, and
// the round history, models, commits and metrics.

// State returns the engine's state as last saved, or nil if none was
// saved yet (a new session). It returns an error wrapping [ErrNotFound] if
// the session does not exist.
func (c *Coordinator) State(ctx context.Context) ([]byte, error) {
	var state []byte
	err := c.db.read(ctx, func(tx *sql.Tx) error {
		if err := requireSession(ctx, tx, c.session); err != nil {
			return err
		}
		err := tx.QueryRowContext(ctx, qStateGet, c.session).Scan(&state)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: session %s: state: %w", sid(c.session), err)
	}
	return state, nil
}

// Current returns the current sealed model ([CoordinatorBatch].Current) and
// the group key, as last saved; nil if never saved.
func (c *Coordinator) Current(ctx context.Context) (model *Model, groupKey []byte, err error) {
	err = c.db.read(ctx, func(tx *sql.Tx) error {
		if err := requireSession(ctx, tx, c.session); err != nil {
			return err
		}
		var round int64
		var data []byte
		switch err := tx.QueryRowContext(ctx, qSlotGet, c.session, slotCurrent).Scan(&round, &data); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		default:
			model = &Model{Round: fl.Round(round), Sealed: data, Digest: sha256.Sum256(data)}
		}
		switch err := tx.QueryRowContext(ctx, qSlotGet, c.session, slotCoordGroupKey).Scan(&round, &groupKey); {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return err
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("store: session %s: current model and group key: %w", sid(c.session), err)
	}
	return model, groupKey, nil
}

// Round returns the record of round r, or an error wrapping [ErrNotFound].
func (c *Coordinator) Round(ctx context.Context, r fl.Round) (Round, error) {
	var out Round
	err := c.db.read(ctx, func(tx *sql.Tx) error {
		round, err := toInt(uint64(r), "round")
		if err != nil {
			return ErrNotFound
		}
		rs, err := c.rounds(ctx, tx, qRoundGet, round)
		if err != nil {
			return err
		}
		if len(rs) == 0 {
			return ErrNotFound
		}
		out = rs[0]
		return nil
	})
	if err != nil {
		return Round{}, fmt.Errorf("store: session %s: round %d: %w", sid(c.session), r, err)
	}
	return out, nil
}

// Rounds returns the records of the rounds numbered from on, oldest first,
// at most limit of them (0: all).
func (c *Coordinator) Rounds(ctx context.Context, from fl.Round, limit int) ([]Round, error) {
	var out []Round
	err := c.db.read(ctx, func(tx *sql.Tx) error {
		f, err := toInt(uint64(from), "round")
		if err != nil {
			return nil
		}
		out, err = c.rounds(ctx, tx, qRoundRange, f, sqlLimit(limit))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("store: session %s: rounds from %d: %w", sid(c.session), from, err)
	}
	return out, nil
}

// rounds runs a rounds query (session first, then args) and fills in each
// round's cohort, included set and timings.
func (c *Coordinator) rounds(ctx context.Context, tx *sql.Tx, query string, args ...any) ([]Round, error) {
	rows, err := tx.QueryContext(ctx, query, append([]any{c.session}, args...)...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Round
	for rows.Next() {
		var r Round
		var round, epoch, up, down, eps int64
		var leader string
		var agg []byte
		var started, ended sql.NullInt64
		if err := rows.Scan(&round, &epoch, &r.Phase, &leader, &agg, &r.Outcome, &r.Reason,
			&started, &ended, &up, &down, &eps); err != nil {
			return nil, err
		}
		if round < 0 || epoch < 0 || up < 0 || down < 0 || eps < 0 || r.Outcome > Aborted {
			return nil, fmt.Errorf("%w: round row %d", ErrCorrupt, round)
		}
		if r.Aggregate, err = toDigest(agg); err != nil {
			return nil, err
		}
		r.Round, r.Epoch, r.Leader = fl.Round(round), uint64(epoch), fl.NodeID(leader)
		r.BytesUp, r.BytesDown, r.MicroEpsilon = uint64(up), uint64(down), uint64(eps)
		r.Started, r.Ended = toTime(started), toTime(ended)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	rows.Close()
	for i := range out {
		if err := c.roundDetails(ctx, tx, &out[i]); err != nil {
			return nil, fmt.Errorf("round %d: %w", out[i].Round, err)
		}
	}
	return out, nil
}

func (c *Coordinator) roundDetails(ctx context.Context, tx *sql.Tx, r *Round) error {
	err := each(ctx, tx, qCohortGet, []any{c.session, int64(r.Round)}, func(rows *sql.Rows) error {
		var n string
		if err := rows.Scan(&n); err != nil {
			return err
		}
		r.Cohort = append(r.Cohort, fl.NodeID(n))
		return nil
	})
	if err != nil {
		return err
	}
	err = each(ctx, tx, qIncludedGet, []any{c.session, int64(r.Round)}, func(rows *sql.Rows) error {
		var n string
		var d []byte
		var in Contribution
		if err := rows.Scan(&n, &d, &in.Signature); err != nil {
			return err
		}
		if len(d) != 32 {
			return fmt.Errorf("%w: digest of %d bytes", ErrCorrupt, len(d))
		}
		in.Node, in.Digest = fl.NodeID(n), [32]byte(d)
		r.Included = append(r.Included, in)
		return nil
	})
	if err != nil {
		return err
	}
	return each(ctx, tx, qTimingGet, []any{c.session, int64(r.Round)}, func(rows *sql.Rows) error {
		var t Timing
		var ms int64
		if err := rows.Scan(&t.Phase, &ms); err != nil {
			return err
		}
		t.Duration = time.Duration(ms) * time.Millisecond
		r.Timings = append(r.Timings, t)
		return nil
	})
}

// Model returns the sealed model of round r, or an error wrapping
// [ErrNotFound].
func (c *Coordinator) Model(ctx context.Context, r fl.Round) (Model, error) {
	round, err := toInt(uint64(r), "round")
	if err != nil {
		return Model{}, fmt.Errorf("store: session %s: sealed model of round %d: %w", sid(c.session), r, ErrNotFound)
	}
	m, err := scanModel(c.db.sql.QueryRowContext(ctx, qModelGet, c.session, round))
	if err != nil {
		return Model{}, fmt.Errorf("store: session %s: sealed model of round %d: %w", sid(c.session), r, err)
	}
	return m, nil
}

// LatestModel returns the newest sealed model (the highest round), or an
// error wrapping [ErrNotFound] if none is stored.
func (c *Coordinator) LatestModel(ctx context.Context) (Model, error) {
	m, err := scanModel(c.db.sql.QueryRowContext(ctx, qModelLatest, c.session))
	if err != nil {
		return Model{}, fmt.Errorf("store: session %s: latest sealed model: %w", sid(c.session), err)
	}
	return m, nil
}

func scanModel(row *sql.Row) (Model, error) {
	var m Model
	var round int64
	var d []byte
	if err := row.Scan(&round, &m.Sealed, &d); err != nil {
		return Model{}, noRows(err)
	}
	if round < 0 || len(d) != 32 || sha256.Sum256(m.Sealed) != [32]byte(d) {
		return Model{}, fmt.Errorf("%w: sealed model of round %d does not match its digest", ErrCorrupt, round)
	}
	m.Round, m.Digest = fl.Round(round), [32]byte(d)
	return m, nil
}

// Commit returns the commit record of round r, or an error wrapping
// [ErrNotFound] if the round was not committed.
func (c *Coordinator) Commit(ctx context.Context, r fl.Round) (Commit, error) {
	fail := func(err error) (Commit, error) {
		return Commit{}, fmt.Errorf("store: session %s: commit of round %d: %w", sid(c.session), r, err)
	}
	round, err := toInt(uint64(r), "round")
	if err != nil {
		return fail(ErrNotFound)
	}
	var cm Commit
	var epoch int64
	var leader string
	var d []byte
	var committed sql.NullInt64
	err = c.db.sql.QueryRowContext(ctx, qCommitGet, c.session, round).Scan(&round, &epoch, &leader,
		&cm.Record, &d, &cm.Signature, &committed)
	if err != nil {
		return fail(noRows(err))
	}
	if epoch < 0 || len(d) != 32 || sha256.Sum256(cm.Record) != [32]byte(d) {
		return fail(fmt.Errorf("%w: record does not match its digest", ErrCorrupt))
	}
	cm.Round, cm.Epoch, cm.Leader, cm.Digest = r, uint64(epoch), fl.NodeID(leader), [32]byte(d)
	cm.Committed = toTime(committed)
	return cm, nil
}

// Metrics returns the metrics the nodes reported for round r, sorted by
// node (none if no node reported).
func (c *Coordinator) Metrics(ctx context.Context, r fl.Round) ([]Metric, error) {
	round, err := toInt(uint64(r), "round")
	if err != nil {
		return nil, nil
	}
	var out []Metric
	err = each(ctx, c.db.sql, qMetricGet, []any{c.session, round}, func(rows *sql.Rows) error {
		var m Metric
		var rd int64
		var node string
		var acc, loss sql.NullFloat64
		if err := rows.Scan(&rd, &node, &acc, &loss, &m.Metrics.Examples); err != nil {
			return err
		}
		m.Round, m.Node = r, fl.NodeID(node)
		m.Metrics.Accuracy, m.Metrics.Loss = nullNaN(acc), nullNaN(loss)
		out = append(out, m)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: session %s: metrics of round %d: %w", sid(c.session), r, err)
	}
	return out, nil
}

// Summaries aggregates the metrics of the rounds numbered from on, oldest
// first, at most limit rounds (0: all). Rounds without metrics are left
// out. Accuracy and loss are means weighted by each node's examples (plain
// means if no node counted any); NaN values are skipped.
func (c *Coordinator) Summaries(ctx context.Context, from fl.Round, limit int) ([]Summary, error) {
	f, err := toInt(uint64(from), "round")
	if err != nil {
		return nil, nil
	}
	var out []Summary
	err = each(ctx, c.db.sql, qSummaryRange, []any{c.session, f, sqlLimit(limit)}, func(rows *sql.Rows) error {
		var s Summary
		var round int64
		var acc, loss sql.NullFloat64
		if err := rows.Scan(&round, &s.Nodes, &s.Examples, &acc, &loss); err != nil {
			return err
		}
		s.Round, s.Accuracy, s.Loss = fl.Round(round), nullNaN(acc), nullNaN(loss)
		out = append(out, s)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: session %s: metric summaries from round %d: %w", sid(c.session), from, err)
	}
	return out, nil
}
