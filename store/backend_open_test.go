package store

import (
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMigrate: a new store of each backend gets the newest schema, and
// reopening it migrates nothing and keeps the data. Both dialects have the
// same number of migrations, which is SchemaVersion.
func TestMigrate(t *testing.T) {
	if len(migrations) != SchemaVersion || len(pgMigrations) != SchemaVersion {
		t.Fatalf("SchemaVersion %d, %d SQLite and %d PostgreSQL migrations", SchemaVersion, len(migrations), len(pgMigrations))
	}
	forEachBackend(t, func(t *testing.T, be backend) {
		db, loc := newDB(t, be)
		if v, err := db.d.version(ctx, db.sql); err != nil || v != SchemaVersion {
			t.Fatalf("schema version %d, %v; want %d", v, err, SchemaVersion)
		}
		db = reopen(t, db, loc)
		if v, err := db.d.version(ctx, db.sql); err != nil || v != SchemaVersion {
			t.Errorf("after reopen: schema version %d, %v", v, err)
		}
		if _, err := db.Session(ctx, session); err != nil {
			t.Errorf("after reopen: %v", err)
		}
	})
}

// TestOpenConcurrent opens one new store from several goroutines at once,
// as processes starting together would: each migration waits for the
// other's, and every Open succeeds.
func TestOpenConcurrent(t *testing.T) {
	forEachBackend(t, func(t *testing.T, be backend) {
		loc := be.fresh(t)
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() {
				db, err := Open(loc)
				if err == nil {
					err = db.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
		db := openAt(t, loc)
		if v, err := db.d.version(ctx, db.sql); err != nil || v != SchemaVersion {
			t.Errorf("schema version %d, %v", v, err)
		}
	})
}

// TestSchemasAgree migrates a SQLite store and a PostgreSQL one and
// compares their tables: the same columns, of corresponding types and
// nullability, the same primary keys and the same foreign keys.
func TestSchemasAgree(t *testing.T) {
	needPostgres(t)
	lite := openAt(t, sqliteBackend.fresh(t))
	pg := openAt(t, postgresBackend.fresh(t))
	litePK := map[string]bool{}
	liteCols := query(t, lite.sql, `SELECT m.name, p.name, p.type, p."notnull", p.pk FROM sqlite_schema m
		JOIN pragma_table_info(m.name) p WHERE m.type = 'table' ORDER BY m.name, p.cid`,
		func(r []string) string {
			typ := map[string]string{"BLOB": "bytes", "INTEGER": "int64", "REAL": "float64", "TEXT": "text"}[r[2]]
			if r[4] != "0" {
				litePK[r[0]+"."+r[1]] = true
				return fmt.Sprintf("%s.%s %s key %s", r[0], r[1], typ, r[4])
			}
			return fmt.Sprintf("%s.%s %s notnull=%s", r[0], r[1], typ, r[3])
		})
	pgPK := map[string]string{}
	query(t, pg.sql, `SELECT k.table_name, k.column_name, k.ordinal_position FROM information_schema.key_column_usage k
		JOIN information_schema.table_constraints c ON c.constraint_name = k.constraint_name AND c.table_schema = k.table_schema
		WHERE c.constraint_type = 'PRIMARY KEY' AND k.table_schema = current_schema()`,
		func(r []string) string { pgPK[r[0]+"."+r[1]] = r[2]; return "" })
	pgCols := query(t, pg.sql, `SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns
		WHERE table_schema = current_schema() AND table_name <> 'cloister_schema'
			AND NOT (table_name = 'sessions' AND column_name = 'rowid')
		ORDER BY table_name, ordinal_position`,
		func(r []string) string {
			typ := map[string]string{"bytea": "bytes", "bigint": "int64", "double precision": "float64", "text": "text"}[r[2]]
			if k, ok := pgPK[r[0]+"."+r[1]]; ok {
				return fmt.Sprintf("%s.%s %s key %s", r[0], r[1], typ, k)
			}
			notnull := map[string]string{"NO": "1", "YES": "0"}[r[3]]
			return fmt.Sprintf("%s.%s %s notnull=%s", r[0], r[1], typ, notnull)
		})
	liteFK := query(t, lite.sql, `SELECT m.name, f."from", f."table", f."to", f.on_delete FROM sqlite_schema m
		JOIN pragma_foreign_key_list(m.name) f WHERE m.type = 'table'`,
		func(r []string) string {
			return fmt.Sprintf("%s.%s → %s.%s on delete %s", r[0], r[1], r[2], r[3], r[4])
		})
	pgFK := query(t, pg.sql, `SELECT cl.relname, a.attname, fcl.relname, fa.attname,
			CASE c.confdeltype WHEN 'c' THEN 'CASCADE' WHEN 'a' THEN 'NO ACTION' ELSE c.confdeltype::text END
		FROM pg_constraint c
		JOIN pg_class cl ON cl.oid = c.conrelid
		JOIN pg_namespace n ON n.oid = cl.relnamespace
		JOIN pg_class fcl ON fcl.oid = c.confrelid
		CROSS JOIN LATERAL unnest(c.conkey, c.confkey) AS k(col, fcol)
		JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.col
		JOIN pg_attribute fa ON fa.attrelid = c.confrelid AND fa.attnum = k.fcol
		WHERE c.contype = 'f' AND n.nspname = current_schema()`,
		func(r []string) string {
			return fmt.Sprintf("%s.%s → %s.%s on delete %s", r[0], r[1], r[2], r[3], r[4])
		})
	for _, c := range []struct {
		what      string
		lite, pgs []string
	}{{"columns", liteCols, pgCols}, {"foreign keys", liteFK, pgFK}} {
		slices.Sort(c.lite)
		slices.Sort(c.pgs)
		if len(c.lite) == 0 || !slices.Equal(c.lite, c.pgs) {
			t.Errorf("%s differ:\nSQLite:\n  %s\nPostgreSQL:\n  %s", c.what, strings.Join(c.lite, "\n  "), strings.Join(c.pgs, "\n  "))
		}
	}
	if len(litePK) != len(pgPK) {
		t.Errorf("%d primary key columns in SQLite, %d in PostgreSQL", len(litePK), len(pgPK))
	}
}

// query runs q and returns f of each row's columns (as text), skipping "".
func query(t *testing.T, db *sql.DB, q string, f func([]string) string) []string {
	t.Helper()
	rows, err := db.Query(q)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		r := make([]string, len(cols))
		for i, v := range vals {
			r[i] = v.String
		}
		if s := f(r); s != "" {
			out = append(out, s)
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestOpenRefusesPostgres: a schema with another application's tables, a
// cloister_schema of another application or none, or a newer schema is
// refused, with a message naming the store (not its password), and left
// as it was.
func TestOpenRefusesPostgres(t *testing.T) {
	needPostgres(t)
	cases := []struct {
		name  string
		stmts []string
		want  string
	}{
		{"foreign table", []string{`CREATE TABLE t (x int)`}, "not a Cloister store (schema"},
		{"other application", []string{`CREATE TABLE cloister_schema (application TEXT, version BIGINT)`,
			`INSERT INTO cloister_schema VALUES ('other', 1)`}, `application "other"`},
		{"no version row", []string{`CREATE TABLE cloister_schema (application TEXT, version BIGINT)`}, "cloister_schema is empty"},
		{"newer schema", []string{`CREATE TABLE cloister_schema (application TEXT, version BIGINT)`,
			`INSERT INTO cloister_schema VALUES ('cloister', 99)`}, "schema version 99 is newer than this program's"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			loc := postgresBackend.fresh(t)
			raw, err := sql.Open("pgx", loc)
			if err != nil {
				t.Fatal(err)
			}
			defer raw.Close()
			for _, s := range c.stmts {
				if _, err := raw.Exec(s); err != nil {
					t.Fatal(err)
				}
			}
			before := query(t, raw, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`,
				func(r []string) string { return r[0] })
			db, err := Open(loc)
			if err == nil {
				db.Close()
				t.Fatal("opened")
			}
			u, _ := url.Parse(loc)
			pw, _ := u.User.Password()
			if msg := err.Error(); !strings.Contains(msg, c.want) || !strings.Contains(msg, "postgres://") ||
				!strings.Contains(msg, u.Host) || (pw != "" && strings.Contains(msg, ":"+pw+"@")) {
				t.Errorf("error %q: want %q, the URL and not its password", msg, c.want)
			}
			if c.name == "newer schema" && !errors.Is(err, ErrNewerSchema) {
				t.Errorf("error %v does not wrap ErrNewerSchema", err)
			}
			after := query(t, raw, `SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()`,
				func(r []string) string { return r[0] })
			if !slices.Equal(before, after) {
				t.Errorf("tables %v before the refused Open, %v after", before, after)
			}
		})
	}
	t.Run("no such schema", func(t *testing.T) {
		u, _ := url.Parse(os.Getenv(PostgresEnv))
		q := u.Query()
		q.Set("search_path", "no_such_schema_here")
		u.RawQuery = q.Encode()
		if db, err := Open(u.String()); err == nil || !strings.Contains(err.Error(), "search_path") {
			if db != nil {
				db.Close()
			}
			t.Errorf("a search_path without a schema: %v", err)
		}
	})
}

// TestOpenUnreachable: a PostgreSQL URL that cannot be reached, or that
// does not parse, is an error that names the server (host and port) and
// never the password.
func TestOpenUnreachable(t *testing.T) {
	for _, c := range []struct{ loc, want string }{
		{"postgres://cloister:s3cretpw@127.0.0.1:1/cloister?sslmode=disable", "cannot reach PostgreSQL at 127.0.0.1:1"},
		{"postgresql://cloister@127.0.0.1:1/cloister?password=s3cretpw&sslmode=disable", "cannot reach PostgreSQL at 127.0.0.1:1"},
		{"postgres://cloister:s3cretpw@127.0.0.1:99999/cloister", "PostgreSQL URL"},
	} {
		db, err := Open(c.loc)
		if err == nil {
			db.Close()
			t.Errorf("%s: opened", c.want)
			continue
		}
		if msg := err.Error(); !strings.Contains(msg, c.want) || strings.Contains(msg, "s3cretpw") {
			t.Errorf("error %q: want %q and no password", msg, c.want)
		}
		if strings.HasPrefix(c.want, "cannot reach") != errors.Is(err, ErrUnreachable) {
			t.Errorf("error %v: errors.Is(ErrUnreachable) is %v", err, errors.Is(err, ErrUnreachable))
		}
	}
}

// TestSQLiteURL: sqlite: URLs name files (relative or absolute); one with
// a host or parameters is refused.
func TestSQLiteURL(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for loc, file := range map[string]string{
		"sqlite:rel.db": filepath.Join(dir, "rel.db"),
		"sqlite://" + filepath.ToSlash(dir) + "/abs.db": filepath.Join(dir, "abs.db"),
		"plain.db": filepath.Join(dir, "plain.db"),
	} {
		db, err := Open(loc)
		if err != nil {
			t.Errorf("%s: %v", loc, err)
			continue
		}
		db.Close()
		if _, err := os.Stat(file); err != nil {
			t.Errorf("%s: no store at %s: %v", loc, file, err)
		}
	}
	for _, loc := range []string{"sqlite://host/x.db", "sqlite:x.db?_pragma=synchronous(OFF)", "sqlite:"} {
		if db, err := Open(loc); err == nil {
			db.Close()
			t.Errorf("%s: opened", loc)
		} else if !strings.Contains(err.Error(), loc) {
			t.Errorf("%s: error %q does not name it", loc, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "x.db")); err == nil {
		t.Error("a refused sqlite: URL created a file")
	}
}

// TestBusyPostgres: a write that waits longer than lock_timeout for its
// session's lock (held by another process's transaction) fails with
// ErrBusy and stores nothing; once the lock is free it succeeds. The URL's
// lock_timeout (300 ms here) takes precedence over the store's 10 s.
func TestBusyPostgres(t *testing.T) {
	needPostgres(t)
	u, err := url.Parse(postgresBackend.fresh(t))
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("lock_timeout", "300")
	u.RawQuery = q.Encode()
	db := openAt(t, u.String())
	if err := db.CreateSession(ctx, Session{ID: session, Created: t0}); err != nil {
		t.Fatal(err)
	}
	other, err := sql.Open("pgx", u.String())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	tx, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`SELECT 1 FROM sessions WHERE id = $1 FOR UPDATE`, session); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err = db.Coordinator(session).Save(ctx, CoordinatorBatch{State: []byte("s")})
	if !errors.Is(err, ErrBusy) || time.Since(start) > 5*time.Second {
		t.Errorf("Save while another transaction holds the session: %v after %v, want ErrBusy after about 300 ms", err, time.Since(start))
	}
	tx.Rollback()
	if st, err := db.Coordinator(session).State(ctx); err != nil || st != nil {
		t.Errorf("State = %q, %v: the busy Save stored something", st, err)
	}
	if err := db.Coordinator(session).Save(ctx, CoordinatorBatch{State: []byte("s")}); err != nil {
		t.Errorf("Save once the lock is free: %v", err)
	}
}
