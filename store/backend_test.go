package store

import (
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// PostgresEnv names the environment variable that holds the URL of a
// PostgreSQL database the tests may create schemas in (.ci/run sets it).
// Without it the PostgreSQL half of the suite is skipped.
const PostgresEnv = "CLOISTER_TEST_POSTGRES"

// backend is one kind of store the suite runs on.
type backend struct {
	name string
	// fresh returns the location of a new, empty store, which lives until
	// the test ends.
	fresh func(t *testing.T) string
	// contents returns everything the store at loc holds, as bytes: the
	// SQLite files (database, WAL, shared memory), or every BYTEA and TEXT
	// value of the PostgreSQL schema.
	contents func(t *testing.T, loc string) []byte
}

var sqliteBackend = backend{
	name:  "sqlite",
	fresh: func(t *testing.T) string { return filepath.Join(t.TempDir(), "cloister.db") },
	contents: func(t *testing.T, loc string) []byte {
		files, _ := filepath.Glob(loc + "*")
		if len(files) == 0 {
			t.Fatalf("no file at %s", loc)
		}
		var all []byte
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		return all
	},
}

var postgresBackend = backend{name: "postgres", fresh: pgFresh, contents: pgContents}

// forEachBackend runs fn as a subtest on each backend: SQLite, and
// PostgreSQL when $CLOISTER_TEST_POSTGRES is set, each test in a fresh
// schema of that database (skipped, saying so, when it is not).
func forEachBackend(t *testing.T, fn func(t *testing.T, be backend)) {
	t.Run(sqliteBackend.name, func(t *testing.T) { fn(t, sqliteBackend) })
	t.Run(postgresBackend.name, func(t *testing.T) {
		needPostgres(t)
		fn(t, postgresBackend)
	})
}

// needPostgres skips t unless $CLOISTER_TEST_POSTGRES is set.
func needPostgres(t *testing.T) string {
	t.Helper()
	u := os.Getenv(PostgresEnv)
	if u == "" {
		t.Skipf("$%s is not set: no PostgreSQL to run this on (.ci/run sets one up)", PostgresEnv)
	}
	return u
}

var unsafeName = regexp.MustCompile(`[^a-z0-9_]+`)

// pgFresh creates a schema of its own for t in the test database and
// returns the URL whose search_path names it; the schema is dropped when
// t ends.
func pgFresh(t *testing.T) string {
	t.Helper()
	base := needPostgres(t)
	admin, err := sql.Open("pgx", base)
	if err != nil {
		t.Fatal(err)
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	name := unsafeName.ReplaceAllString(strings.ToLower(t.Name()), "_")
	name = fmt.Sprintf("t_%.40s_%s", name, hex.EncodeToString(suffix))
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := admin.Exec(`CREATE SCHEMA ` + ident); err != nil {
		admin.Close()
		t.Fatalf("creating schema %s in %s: %v", name, redact(base), err)
	}
	t.Cleanup(func() {
		if _, err := admin.Exec(`DROP SCHEMA ` + ident + ` CASCADE`); err != nil {
			t.Errorf("dropping schema %s: %v", name, err)
		}
		admin.Close()
	})
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	q.Set("search_path", name)
	u.RawQuery = q.Encode()
	return u.String()
}

// pgContents reads every BYTEA and TEXT value of the schema at loc.
func pgContents(t *testing.T, loc string) []byte {
	t.Helper()
	db, err := sql.Open("pgx", loc)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query(`SELECT table_name, column_name FROM information_schema.columns
		WHERE table_schema = current_schema() AND data_type IN ('bytea', 'text') ORDER BY table_name, column_name`)
	if err != nil {
		t.Fatal(err)
	}
	var cols [][2]string
	for rows.Next() {
		var c [2]string
		if err := rows.Scan(&c[0], &c[1]); err != nil {
			t.Fatal(err)
		}
		cols = append(cols, c)
	}
	rows.Close()
	if len(cols) == 0 {
		t.Fatalf("no columns in the schema of %s", redact(loc))
	}
	var all []byte
	for _, c := range cols {
		rows, err := db.Query(fmt.Sprintf(`SELECT %s FROM %s`, pgx.Identifier{c[1]}.Sanitize(), pgx.Identifier{c[0]}.Sanitize()))
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var b []byte
			if err := rows.Scan(&b); err != nil {
				t.Fatal(err)
			}
			all = append(all, b...)
		}
		rows.Close()
	}
	return all
}
