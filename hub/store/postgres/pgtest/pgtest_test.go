package pgtest

import (
	"database/sql"
	"net/url"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

func dbName(t *testing.T, u string) string {
	t.Helper()
	db, err := sql.Open("postgres", u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var name string
	if err := db.QueryRowContext(t.Context(), `SELECT current_database()`).Scan(&name); err != nil {
		t.Fatal(err)
	}
	return name
}

func TestFreshDatabasePerCallDroppedAtCleanup(t *testing.T) {
	var first string
	t.Run("inner", func(t *testing.T) {
		a, b := URL(t), URL(t)
		first = dbName(t, a)
		if second := dbName(t, b); first == second {
			t.Fatalf("two calls share database %s", first)
		}
		// Fresh: no tables.
		db, _ := sql.Open("postgres", a)
		defer db.Close()
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil || n != 0 {
			t.Fatalf("public tables = %d, %v", n, err)
		}
	})
	u := URL(t)
	db, err := sql.Open("postgres", u)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, first).Scan(&exists); err != nil {
		t.Fatal(err)
	}
	if exists {
		t.Fatalf("database %s not dropped after its test", first)
	}
}

func TestWithDatabase(t *testing.T) {
	got, err := withDatabase("postgres://u:p@db.example:5433/postgres?sslmode=disable", "x")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(got)
	if u.Path != "/x" || u.Host != "db.example:5433" || u.Query().Get("sslmode") != "disable" || u.User.String() != "u:p" {
		t.Fatalf("withDatabase = %s", got)
	}
	if _, err := withDatabase("host=/tmp dbname=postgres", "x"); err == nil {
		t.Fatal("key=value DSN accepted")
	}
}
