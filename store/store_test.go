package store

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var (
	ctx     = context.Background()
	t0      = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	session = []byte("session-1")
)

// openAt opens the store at path and closes it when the test ends (closing
// twice is harmless).
func openAt(t *testing.T, path string) *DB {
	t.Helper()
	db, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// newDB opens a new store of the backend with one session, session, and
// returns it with its location.
func newDB(t *testing.T, be backend) (*DB, string) {
	t.Helper()
	path := be.fresh(t)
	db := openAt(t, path)
	if err := db.CreateSession(ctx, Session{ID: session, Manifest: [32]byte{1}, Created: t0}); err != nil {
		t.Fatal(err)
	}
	return db, path
}

func reopen(t *testing.T, db *DB, path string) *DB {
	t.Helper()
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	return openAt(t, path)
}

func pragma(t *testing.T, db *DB, name string) int {
	t.Helper()
	var v int
	if err := db.sql.QueryRow("PRAGMA " + name).Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrateEmptyFile(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"new.db", "empty.db"} {
		path := filepath.Join(dir, name)
		if name == "empty.db" {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		db := openAt(t, path)
		if v := pragma(t, db, "user_version"); v != SchemaVersion {
			t.Errorf("%s: user_version %d, want %d", name, v, SchemaVersion)
		}
		if v := pragma(t, db, "application_id"); v != applicationID {
			t.Errorf("%s: application_id %#x, want %#x", name, v, applicationID)
		}
		var mode string
		db.sql.QueryRow("PRAGMA journal_mode").Scan(&mode)
		if mode != "wal" || pragma(t, db, "synchronous") != 2 || pragma(t, db, "foreign_keys") != 1 ||
			pragma(t, db, "busy_timeout") != int(busyTimeout.Milliseconds()) {
			t.Errorf("%s: journal_mode %s synchronous %d foreign_keys %d", name, mode,
				pragma(t, db, "synchronous"), pragma(t, db, "foreign_keys"))
		}
		// Reopening migrates nothing and keeps the data.
		if err := db.CreateSession(ctx, Session{ID: session, Created: t0}); err != nil {
			t.Fatal(err)
		}
		db = reopen(t, db, path)
		if _, err := db.Session(ctx, session); err != nil {
			t.Errorf("%s after reopen: %v", name, err)
		}
	}
}

func TestApplicationID(t *testing.T) {
	// "Clst", and the same number as the literal in the first migration.
	if applicationID != 0x436c7374 || !strings.Contains(migrations[0][0], "= 1131180916") {
		t.Fatal("applicationID and the first migration disagree")
	}
	if SchemaVersion != len(migrations) {
		t.Fatalf("SchemaVersion %d, %d migrations", SchemaVersion, len(migrations))
	}
}

func TestOpenRefuses(t *testing.T) {
	dir := t.TempDir()
	raw := func(name string, stmts ...string) string {
		path := filepath.Join(dir, name)
		db, err := sql.Open("sqlite", path)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		for _, s := range stmts {
			if _, err := db.Exec(s); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}
	cases := []struct {
		path, want string
	}{
		{raw("foreign.db", "CREATE TABLE t (x)"), "not a Cloister store"},
		{raw("app.db", "PRAGMA application_id = 7"), "not a Cloister store"},
		{raw("versioned.db", "PRAGMA user_version = 1"), "not a Cloister store"},
		{raw("future.db", "PRAGMA application_id = 1131180916", "PRAGMA user_version = 99"), "newer than this program"},
	}
	for _, c := range cases {
		db, err := Open(c.path)
		if err == nil {
			db.Close()
			t.Errorf("%s: opened", filepath.Base(c.path))
			continue
		}
		if !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.path) {
			t.Errorf("%s: %v, want %q and the path", filepath.Base(c.path), err, c.want)
		}
		// The refused file is left as it was: not switched to WAL.
		raw, err := sql.Open("sqlite", c.path)
		if err != nil {
			t.Fatal(err)
		}
		var mode string
		if err := raw.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "delete" {
			t.Errorf("%s: journal_mode %q, %v after a refused Open", filepath.Base(c.path), mode, err)
		}
		raw.Close()
	}
	if _, err := Open(filepath.Join(dir, "no", "such", "dir", "x.db")); err == nil {
		t.Error("opened a file in a missing directory")
	}
}

func TestOpenOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%20d e&_pragma=x")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "x.db")
	db := openAt(t, path)
	if err := db.CreateSession(ctx, Session{ID: session, Created: t0}); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the store is not at %s: %v", path, err)
	}
}

func TestSessions(t *testing.T) { forEachBackend(t, testSessions) }

func testSessions(t *testing.T, be backend) {
	db, path := newDB(t, be)
	if err := db.CreateSession(ctx, Session{ID: session, Created: t0}); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateSession: %v, want ErrExists", err)
	}
	later := Session{ID: []byte("session-2"), Manifest: [32]byte{2}, Epoch: 3, Created: t0.Add(time.Hour + 1500*time.Microsecond)}
	if err := db.CreateSession(ctx, later); err != nil {
		t.Fatal(err)
	}
	db = reopen(t, db, path)
	got, err := db.LatestSession(ctx)
	if err != nil {
		t.Fatal(err)
	}
	later.Created = later.Created.Truncate(time.Millisecond)
	if string(got.ID) != "session-2" || got.Manifest != later.Manifest || got.Epoch != 3 || !got.Created.Equal(later.Created) {
		t.Errorf("LatestSession = %+v, want %+v", got, later)
	}
	if _, err := db.Session(ctx, []byte("nope")); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "6e6f7065") {
		t.Errorf("Session(nope): %v, want ErrNotFound naming it", err)
	}
	for _, id := range [][]byte{nil, make([]byte, 65)} {
		if err := db.CreateSession(ctx, Session{ID: id}); err == nil {
			t.Errorf("CreateSession accepted an ID of %d bytes", len(id))
		}
	}

	empty := openAt(t, be.fresh(t))
	if _, err := empty.LatestSession(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("LatestSession of an empty store: %v", err)
	}
}

func TestSaveUnknownSession(t *testing.T) { forEachBackend(t, testSaveUnknownSession) }

func testSaveUnknownSession(t *testing.T, be backend) {
	db, _ := newDB(t, be)
	err := db.Coordinator([]byte("other")).Save(ctx, CoordinatorBatch{State: []byte("s")})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("coordinator Save: %v, want ErrNotFound", err)
	}
	if err := db.Node([]byte("other"), testKey(t, 1)).Record(1, [32]byte{}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Record: %v, want ErrNotFound", err)
	}
	if _, err := db.Node([]byte("other"), testKey(t, 1)).Load(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("Load: %v, want ErrNotFound", err)
	}
	if _, err := db.Coordinator([]byte("other")).State(ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("State: %v, want ErrNotFound", err)
	}
}

func TestContextCanceled(t *testing.T) { forEachBackend(t, testContextCanceled) }

func testContextCanceled(t *testing.T, be backend) {
	db, _ := newDB(t, be)
	c, cancel := context.WithCancel(ctx)
	cancel()
	if err := db.Coordinator(session).Save(c, CoordinatorBatch{State: []byte("s")}); !errors.Is(err, context.Canceled) {
		t.Errorf("Save with a canceled context: %v", err)
	}
	if st, err := db.Coordinator(session).State(ctx); err != nil || st != nil {
		t.Errorf("State = %q, %v; want nothing stored", st, err)
	}
}
