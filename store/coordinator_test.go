package store

import (
	"crypto/sha256"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cloisterfl/cloister/fl"
)

func testRound(r fl.Round, o Outcome) Round {
	return Round{
		Round:  r,
		Epoch:  1,
		Phase:  "evaluate",
		Leader: "b",
		Cohort: []fl.NodeID{"a", "b", "c"},
		Included: []Contribution{
			{Node: "a", Digest: [32]byte{0xa}, Signature: []byte("sig-a")},
			{Node: "b", Digest: [32]byte{0xb}, Signature: []byte("sig-b")},
		},
		Aggregate:    [32]byte{0xab},
		Outcome:      o,
		Started:      t0.Add(time.Duration(r) * time.Minute),
		Ended:        t0.Add(time.Duration(r)*time.Minute + 30*time.Second),
		Timings:      []Timing{{"collect", 12 * time.Second}, {"reveal", 3 * time.Second}, {"commit", 250 * time.Millisecond}},
		BytesUp:      1 << 20,
		BytesDown:    3 << 20,
		MicroEpsilon: 125_000,
	}
}

func testCommit(r fl.Round, record string) Commit {
	return Commit{Round: r, Epoch: 1, Leader: "b", Record: []byte(record), Signature: []byte("leader-sig"), Committed: t0}
}

func TestCoordinatorRestart(t *testing.T) { forEachBackend(t, testCoordinatorRestart) }

func testCoordinatorRestart(t *testing.T, be backend) {
	db, path := newDB(t, be)
	c := db.Coordinator(session)
	if st, err := c.State(ctx); err != nil || st != nil {
		t.Fatalf("State of a new session = %q, %v", st, err)
	}
	init := Model{Round: 0, Sealed: []byte("sealed initial model")}
	if err := c.Save(ctx, CoordinatorBatch{State: []byte("state-0"), Epoch: 1, Models: []Model{init}}); err != nil {
		t.Fatal(err)
	}
	r1 := testRound(1, Committed)
	m1 := Model{Round: 1, Sealed: []byte("sealed model 1")}
	cm1 := testCommit(1, "record 1")
	metrics := []Metric{
		{Round: 1, Node: "a", Metrics: fl.Metrics{Accuracy: 0.8, Loss: 0.5, Examples: 100}},
		{Round: 1, Node: "b", Metrics: fl.Metrics{Accuracy: 0.6, Loss: 1.0, Examples: 300}},
	}
	err := c.Save(ctx, CoordinatorBatch{State: []byte("state-1"), Rounds: []Round{r1, testRound(2, Running)},
		Models: []Model{m1}, Commits: []Commit{cm1}, Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}

	db = reopen(t, db, path)
	c = db.Coordinator(session)
	if st, err := c.State(ctx); err != nil || string(st) != "state-1" {
		t.Errorf("State = %q, %v", st, err)
	}
	if s, err := db.Session(ctx, session); err != nil || s.Epoch != 1 {
		t.Errorf("Session = %+v, %v; want epoch 1", s, err)
	}
	got, err := c.Round(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, r1) {
		t.Errorf("Round(1) =\n%+v\nwant\n%+v", got, r1)
	}
	all, err := c.Rounds(ctx, 0, 0)
	if err != nil || len(all) != 2 || all[1].Outcome != Running || all[1].Round != 2 {
		t.Errorf("Rounds = %+v, %v", all, err)
	}
	if page, err := c.Rounds(ctx, 2, 1); err != nil || len(page) != 1 || page[0].Round != 2 {
		t.Errorf("Rounds(2, 1) = %+v, %v", page, err)
	}
	if _, err := c.Round(ctx, 3); !errors.Is(err, ErrNotFound) {
		t.Errorf("Round(3): %v", err)
	}

	m, err := c.LatestModel(ctx)
	if err != nil || m.Round != 1 || string(m.Sealed) != "sealed model 1" || m.Digest != sha256.Sum256(m1.Sealed) {
		t.Errorf("LatestModel = %+v, %v", m, err)
	}
	if m, err := c.Model(ctx, 0); err != nil || string(m.Sealed) != string(init.Sealed) {
		t.Errorf("Model(0) = %+v, %v", m, err)
	}
	if _, err := c.Model(ctx, 7); !errors.Is(err, ErrNotFound) {
		t.Errorf("Model(7): %v", err)
	}

	cm, err := c.Commit(ctx, 1)
	cm1.Digest = sha256.Sum256(cm1.Record)
	if err != nil || !reflect.DeepEqual(cm, cm1) {
		t.Errorf("Commit(1) = %+v, %v\nwant %+v", cm, err, cm1)
	}
	if _, err := c.Commit(ctx, 2); !errors.Is(err, ErrNotFound) {
		t.Errorf("Commit(2): %v", err)
	}

	if ms, err := c.Metrics(ctx, 1); err != nil || !reflect.DeepEqual(ms, metrics) {
		t.Errorf("Metrics(1) = %+v, %v", ms, err)
	}
	sum, err := c.Summaries(ctx, 0, 0)
	want := []Summary{{Round: 1, Nodes: 2, Examples: 400, Accuracy: (0.8*100 + 0.6*300) / 400, Loss: (0.5*100 + 1.0*300) / 400}}
	if err != nil || len(sum) != 1 || sum[0].Nodes != 2 || sum[0].Examples != 400 ||
		math.Abs(sum[0].Accuracy-want[0].Accuracy) > 1e-12 || math.Abs(sum[0].Loss-want[0].Loss) > 1e-12 {
		t.Errorf("Summaries = %+v, %v; want %+v", sum, err, want)
	}
}

func TestRoundReplace(t *testing.T) { forEachBackend(t, testRoundReplace) }

func testRoundReplace(t *testing.T, be backend) {
	db, _ := newDB(t, be)
	c := db.Coordinator(session)
	r := testRound(4, Running)
	if err := c.Save(ctx, CoordinatorBatch{Rounds: []Round{r}}); err != nil {
		t.Fatal(err)
	}
	// A later Ready replaces the record, children included.
	r.Phase, r.Outcome, r.Reason = "wait", Aborted, "revealer c dropped out"
	r.Cohort, r.Included, r.Timings = []fl.NodeID{"a"}, nil, []Timing{{"collect", time.Second}}
	r.Aggregate = [32]byte{}
	if err := c.Save(ctx, CoordinatorBatch{Rounds: []Round{r}}); err != nil {
		t.Fatal(err)
	}
	got, err := c.Round(ctx, 4)
	if err != nil || !reflect.DeepEqual(got, r) {
		t.Errorf("Round(4) =\n%+v, %v\nwant\n%+v", got, err, r)
	}
}

func TestCommittedRoundStaysCommitted(t *testing.T) {
	forEachBackend(t, testCommittedRoundStaysCommitted)
}

func testCommittedRoundStaysCommitted(t *testing.T, be backend) {
	db, _ := newDB(t, be)
	c := db.Coordinator(session)
	if err := c.Save(ctx, CoordinatorBatch{Rounds: []Round{testRound(1, Committed)}}); err != nil {
		t.Fatal(err)
	}
	err := c.Save(ctx, CoordinatorBatch{Rounds: []Round{testRound(1, Aborted)}})
	if !errors.Is(err, ErrCommitted) {
		t.Errorf("aborting a committed round: %v, want ErrCommitted", err)
	}
	// Updating it (evaluation timings, say) is fine.
	r := testRound(1, Committed)
	r.Timings = append(r.Timings, Timing{"evaluate", 4 * time.Second})
	if err := c.Save(ctx, CoordinatorBatch{Rounds: []Round{r}}); err != nil {
		t.Errorf("updating a committed round: %v", err)
	}
}

func TestDoubleCommit(t *testing.T) { forEachBackend(t, testDoubleCommit) }

func testDoubleCommit(t *testing.T, be backend) {
	db, path := newDB(t, be)
	c := db.Coordinator(session)
	if err := c.Save(ctx, CoordinatorBatch{State: []byte("after commit"), Commits: []Commit{testCommit(5, "first")}}); err != nil {
		t.Fatal(err)
	}
	// In one batch.
	err := c.Save(ctx, CoordinatorBatch{Commits: []Commit{testCommit(6, "a"), testCommit(6, "b")}})
	if !errors.Is(err, ErrCommitted) {
		t.Errorf("two commits of round 6 in a batch: %v, want ErrCommitted", err)
	}
	if _, err := c.Commit(ctx, 6); !errors.Is(err, ErrNotFound) {
		t.Errorf("after the failed batch, Commit(6): %v, want ErrNotFound", err)
	}

	// Across a restart: the same record, or another.
	for _, record := range []string{"first", "second"} {
		db = reopen(t, db, path)
		c = db.Coordinator(session)
		err := c.Save(ctx, CoordinatorBatch{State: []byte("clobbered"), Rounds: []Round{testRound(5, Committed)},
			Commits: []Commit{testCommit(5, record)}})
		if !errors.Is(err, ErrCommitted) {
			t.Fatalf("commit %q of round 5 after reopen: %v, want ErrCommitted", record, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "round 5") || !strings.Contains(msg, sid(session)) {
			t.Errorf("error %q does not name the session and round", msg)
		}
	}
	if st, _ := c.State(ctx); string(st) != "after commit" {
		t.Errorf("State = %q: the failed batch changed it", st)
	}
	if _, err := c.Round(ctx, 5); !errors.Is(err, ErrNotFound) {
		t.Errorf("the failed batch stored round 5: %v", err)
	}
	if cm, err := c.Commit(ctx, 5); err != nil || string(cm.Record) != "first" {
		t.Errorf("Commit(5) = %q, %v", cm.Record, err)
	}
}

// TestSaveAtomic makes the second row of a batch fail, in several ways, and
// checks that nothing of the batch is stored.
func TestSaveAtomic(t *testing.T) { forEachBackend(t, testSaveAtomic) }

func testSaveAtomic(t *testing.T, be backend) {
	base := CoordinatorBatch{State: []byte("old"), Epoch: 1, Rounds: []Round{testRound(1, Committed)},
		Models: []Model{{Round: 1, Sealed: []byte("m1")}}, Commits: []Commit{testCommit(1, "r1")}}
	r2 := testRound(2, Committed)
	dupCohort := testRound(2, Committed)
	dupCohort.Cohort = []fl.NodeID{"a", "a"} // PRIMARY KEY violation inside SQLite
	cases := []struct {
		name  string
		batch CoordinatorBatch
		want  error
	}{
		{"duplicate metric", CoordinatorBatch{Metrics: []Metric{
			{Round: 2, Node: "a"}, {Round: 2, Node: "a"}}}, ErrExists},
		{"second round violates a constraint", CoordinatorBatch{Rounds: []Round{r2, dupCohort}}, nil},
		{"model already stored", CoordinatorBatch{Models: []Model{{Round: 2, Sealed: []byte("m2")}, {Round: 1, Sealed: []byte("other")}}}, ErrExists},
		{"model digest mismatch", CoordinatorBatch{Models: []Model{{Round: 2, Sealed: []byte("m2"), Digest: [32]byte{9}}}}, nil},
		{"commit already stored", CoordinatorBatch{Commits: []Commit{testCommit(2, "r2"), testCommit(1, "r1")}}, ErrCommitted},
		{"round number too large", CoordinatorBatch{Rounds: []Round{r2, {Round: math.MaxUint64}}}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			db, _ := newDB(t, be)
			c := db.Coordinator(session)
			if err := c.Save(ctx, base); err != nil {
				t.Fatal(err)
			}
			b := tc.batch
			b.State, b.Epoch = []byte("new"), 2
			b.Rounds = append([]Round{testRound(3, Running)}, b.Rounds...)
			b.Metrics = append([]Metric{{Round: 3, Node: "z"}}, b.Metrics...)
			err := c.Save(ctx, b)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("Save: %v, want an error wrapping %v", err, tc.want)
			}
			if st, _ := c.State(ctx); string(st) != "old" {
				t.Errorf("state %q", st)
			}
			if s, _ := db.Session(ctx, session); s.Epoch != 1 {
				t.Errorf("epoch %d", s.Epoch)
			}
			for _, r := range []fl.Round{2, 3} {
				if _, err := c.Round(ctx, r); !errors.Is(err, ErrNotFound) {
					t.Errorf("round %d stored: %v", r, err)
				}
				if ms, _ := c.Metrics(ctx, r); len(ms) != 0 {
					t.Errorf("metrics of round %d stored: %v", r, ms)
				}
				if _, err := c.Commit(ctx, r); !errors.Is(err, ErrNotFound) {
					t.Errorf("commit of round %d stored: %v", r, err)
				}
			}
			if m, _ := c.LatestModel(ctx); m.Round != 1 || string(m.Sealed) != "m1" {
				t.Errorf("latest model %d %q", m.Round, m.Sealed)
			}
			var n int
			db.sql.QueryRow(`SELECT (SELECT count(*) FROM round_cohort) + (SELECT count(*) FROM round_included) +
				(SELECT count(*) FROM round_timings)`).Scan(&n)
			if want := 3 + 2 + 3; n != want {
				t.Errorf("%d child rows of rounds, want %d (round 1's)", n, want)
			}
		})
	}
}

func TestSummaries(t *testing.T) { forEachBackend(t, testSummaries) }

func testSummaries(t *testing.T, be backend) {
	db, _ := newDB(t, be)
	c := db.Coordinator(session)
	err := c.Save(ctx, CoordinatorBatch{Metrics: []Metric{
		{Round: 1, Node: "a", Metrics: fl.Metrics{Accuracy: 0.5, Loss: 2, Examples: 10}},
		{Round: 1, Node: "b", Metrics: fl.Metrics{Accuracy: math.NaN(), Loss: math.Inf(1), Examples: 30}},
		{Round: 2, Node: "a", Metrics: fl.Metrics{Accuracy: 0.2, Loss: 1}},
		{Round: 2, Node: "b", Metrics: fl.Metrics{Accuracy: 0.4, Loss: 3}},
		{Round: 3, Node: "a", Metrics: fl.Metrics{Accuracy: 0.9, Loss: 0.1, Examples: 5}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	got, err := c.Summaries(ctx, 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	want := []Summary{
		{Round: 1, Nodes: 2, Examples: 40, Accuracy: 0.5, Loss: math.Inf(1)}, // NaN skipped, +Inf kept
		{Round: 2, Nodes: 2, Examples: 0, Accuracy: 0.3, Loss: 2},            // no examples: plain means
	}
	if len(got) != 2 {
		t.Fatalf("Summaries = %+v", got)
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Round != w.Round || g.Nodes != w.Nodes || g.Examples != w.Examples ||
			math.Abs(g.Accuracy-w.Accuracy) > 1e-12 || !(g.Loss == w.Loss || math.Abs(g.Loss-w.Loss) < 1e-12) {
			t.Errorf("summary %d = %+v, want %+v", i, g, w)
		}
	}
	ms, err := c.Metrics(ctx, 1)
	if err != nil || len(ms) != 2 || !math.IsNaN(ms[1].Metrics.Accuracy) || !math.IsInf(ms[1].Metrics.Loss, 1) {
		t.Errorf("Metrics(1) = %+v, %v", ms, err)
	}
	if rest, err := c.Summaries(ctx, 3, 0); err != nil || len(rest) != 1 || rest[0].Round != 3 {
		t.Errorf("Summaries(3) = %+v, %v", rest, err)
	}
}

func TestLatestModelNone(t *testing.T) { forEachBackend(t, testLatestModelNone) }

func testLatestModelNone(t *testing.T, be backend) {
	db, _ := newDB(t, be)
	if _, err := db.Coordinator(session).LatestModel(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("LatestModel of a new session: %v", err)
	}
}

// TestCurrentSlots: the current model and the group key are replaced, not
// appended, and survive a reopen; nil leaves them alone.
func TestCurrentSlots(t *testing.T) { forEachBackend(t, testCurrentSlots) }

func testCurrentSlots(t *testing.T, be backend) {
	db, path := newDB(t, be)
	c := db.Coordinator(session)
	if m, gk, err := c.Current(ctx); err != nil || m != nil || gk != nil {
		t.Fatalf("Current of a new session = %v, %q, %v", m, gk, err)
	}
	for i, b := range []CoordinatorBatch{
		{Current: &Model{Round: 0, Sealed: []byte("initial")}, GroupKey: []byte("key 1")},
		{Current: &Model{Round: 0, Sealed: []byte("initial, carried")}},
		{State: []byte("state")},
		{Current: &Model{Round: 1, Sealed: []byte("model 1")}, GroupKey: []byte("key 2")},
	} {
		if err := c.Save(ctx, b); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
	}
	db = reopen(t, db, path)
	m, gk, err := db.Coordinator(session).Current(ctx)
	if err != nil || m == nil || m.Round != 1 || string(m.Sealed) != "model 1" || string(gk) != "key 2" {
		t.Fatalf("Current = %+v, %q, %v; want model 1 and key 2", m, gk, err)
	}
}
