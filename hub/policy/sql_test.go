package policy

import (
	"strings"
	"testing"
)

func TestCheckQueryAccepts(t *testing.T) {
	for _, q := range []string{
		"SELECT 1",
		"select 1 from users;",
		"SELECT 1;;",
		"  SELECT 1 ; ",
		"SELECT 1 FROM users WHERE username = 'a;b'",
		"SELECT 1 FROM users WHERE username = 'it''s; DROP TABLE x'",
		`SELECT "weird;col" FROM t`,
		`SELECT "a""b;" FROM t`,
		"SELECT [odd;name] FROM t",
		"SELECT `back;tick` FROM t",
		"SELECT 1 -- ; DROP TABLE users",
		"SELECT 1; -- trailing comment",
		"/* ; DELETE FROM x; */ SELECT 1",
		"SELECT 1 /* inline */ FROM t",
		"SELECT 'DELETE' AS x, \"update\" FROM t",
		"SELECT replace(name, 'a', 'b') FROM users", // replace() is a function
		"SELECT name, release FROM rpm_packages",    // release is a column
		"SELECT CASE WHEN 1 THEN 2 END",             // END closes CASE
		"SELECT 1 FROM pragma_table_info('users')",  // table-valued function
		"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x+1 FROM c WHERE x < 3) SELECT x FROM c",
		"WITH a AS MATERIALIZED (SELECT 1), b AS (SELECT 2) SELECT * FROM a, b",
		"WITH v(x) AS (VALUES (1)) SELECT x FROM v",
		"SELECT 1 FROM t WHERE a = ? AND b = :name AND c = @p AND d = $v",
		"SELECT 1.5e-3, .5, 0x1F, 1e+9",
		"SELECT 'ünïcode' AS名 FROM t",
		"\n\tSELECT\n1\n",
	} {
		if err := CheckQuery(q); err != nil {
			t.Errorf("CheckQuery(%q) = %v, want nil", q, err)
		}
	}
}

func TestCheckQueryRejects(t *testing.T) {
	for q, want := range map[string]string{
		"":                                      "empty query",
		"   ":                                   "empty query",
		";":                                     "empty query",
		"-- just a comment":                     "empty query",
		"/* nothing */ ;;":                      "empty query",
		"SELECT 1; SELECT 2":                    "query has 2 statements",
		"SELECT 1; DELETE FROM users;":          "query has 2 statements",
		"SELECT 'a;b'; SELECT 2; SELECT 3":      "query has 3 statements",
		"DELETE FROM users":                     "query starts with DELETE",
		"insert into t values (1)":              "query starts with INSERT",
		"UPDATE t SET a = 1":                    "query starts with UPDATE",
		"PRAGMA table_info(users)":              "query starts with PRAGMA",
		"ATTACH DATABASE 'x' AS y":              "query starts with ATTACH",
		"DETACH y":                              "query starts with DETACH",
		"CREATE TABLE t (a)":                    "query starts with CREATE",
		"DROP TABLE t":                          "query starts with DROP",
		"ALTER TABLE t ADD b":                   "query starts with ALTER",
		"VACUUM":                                "query starts with VACUUM",
		"BEGIN":                                 "query starts with BEGIN",
		"REPLACE INTO t VALUES (1)":             "query starts with REPLACE",
		"VALUES (1)":                            "query starts with VALUES",
		"EXPLAIN SELECT 1":                      "query starts with EXPLAIN",
		"(SELECT 1)":                            "query starts with (",
		"'SELECT 1'":                            "query starts with 'SELECT 1'",
		"WITH a AS (SELECT 1) DELETE FROM t":    "DELETE is not allowed",
		"WITH a AS (SELECT 1) UPDATE t SET x=1": "UPDATE is not allowed",
		"WITH a AS (SELECT 1) REPLACE INTO t SELECT * FROM a": "REPLACE INTO is not allowed",
		"WITH a AS (SELECT 1)":                                "WITH clause is not followed by a SELECT",
		"SELECT load_extension('/tmp/evil.so')":               "load_extension() is not allowed",
		"SELECT 1 FROM users WHERE name = 'x":                 "unterminated string literal",
		`SELECT "x FROM t`:                                    "unterminated quoted identifier",
		"SELECT [x FROM t":                                    "unterminated [identifier]",
		"SELECT 1 /* open":                                    "unterminated /* comment",
		"SELECT (1":                                           "unbalanced '('",
		"SELECT 1)":                                           "unbalanced ')'",
	} {
		err := CheckQuery(q)
		if err == nil {
			t.Errorf("CheckQuery(%q) = nil, want %q", q, want)
			continue
		}
		if !strings.Contains(err.Error(), want) {
			t.Errorf("CheckQuery(%q) = %q, want it to contain %q", q, err, want)
		}
	}
}

// The offset points at the offending token so the loader can name its line.
func TestCheckQueryOffset(t *testing.T) {
	q := "SELECT 1\nFROM t;\nSELECT 2"
	_, err := checkQuery(q)
	if err == nil || q[err.off:] != "SELECT 2" {
		t.Fatalf("err = %+v, want offset of the second statement", err)
	}
	q = "WITH a AS (SELECT 1)\nDELETE FROM t"
	_, err = checkQuery(q)
	if err == nil || !strings.HasPrefix(q[err.off:], "DELETE") {
		t.Fatalf("err = %+v, want offset of DELETE", err)
	}
}

func TestTokenize(t *testing.T) {
	toks, err := tokenize(`SELECT 'a;''b' AS "c""d", [e f], x1 FROM t -- c` + "\n;")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, tk := range toks {
		got = append(got, tk.text)
	}
	want := []string{"SELECT", "'a;''b'", "AS", `"c""d"`, ",", "[e f]", ",", "x1", "FROM", "t", ";"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("tokens = %q, want %q", got, want)
	}
}

// FuzzCheckQuery checks invariants that hold for any input: no panic;
// tokens are in order and are slices of the input; an accepted query stays
// accepted with a trailing ";" and is rejected once a second statement is
// appended.
func FuzzCheckQuery(f *testing.F) {
	for _, s := range []string{
		"SELECT 1", "SELECT 'a;b'", `SELECT "x"`, "SELECT [a]", "SELECT 1 -- c",
		"/* c */ SELECT 1", "WITH a AS (SELECT 1) SELECT * FROM a", "SELECT 'it''s'",
		"SELECT 1; SELECT 2", "DELETE FROM t", "SELECT `a``b`", "SELECT 1 /*", "'",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, q string) {
		toks, terr := tokenize(q)
		if terr == nil {
			last := -1
			for _, tk := range toks {
				if tk.off <= last || tk.off+len(tk.text) > len(q) || q[tk.off:tk.off+len(tk.text)] != tk.text || tk.text == "" {
					t.Fatalf("bad token %+v in %q", tk, q)
				}
				last = tk.off
			}
		} else if terr.off < 0 || terr.off > len(q) {
			t.Fatalf("error offset %d out of range for %q", terr.off, q)
		}
		if _, err := checkQuery(q); err != nil {
			if err.off < 0 || err.off > len(q) {
				t.Fatalf("error offset %d out of range for %q", err.off, q)
			}
			return
		}
		if err := CheckQuery(q + "\n;"); err != nil {
			t.Fatalf("%q accepted but %q rejected: %v", q, q+"\n;", err)
		}
		if err := CheckQuery(q + "\n; SELECT 1"); err == nil {
			t.Fatalf("%q with a second statement was accepted", q)
		}
	})
}
