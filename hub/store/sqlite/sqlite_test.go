package sqlite_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
	"github.com/posture-dev/posture/hub/store/storetest"
	"github.com/posture-dev/posture/hub/sync/outboxtest"
)

func open(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t, filepath.Join(t.TempDir(), "posture.db"))
		sqlite.SetPruneChunk(s, 2) // several chunks with a handful of rows
		return s
	})
}

func TestOutbox(t *testing.T) {
	outboxtest.Run(t, func(t *testing.T) outboxtest.Backend {
		return open(t, filepath.Join(t.TempDir(), "posture.db"))
	})
}

func TestFileModeAndReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "posture.db")
	// A pre-existing file with loose permissions is tightened.
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	s := open(t, path)
	ctx := context.Background()
	if _, err := s.ApplyPolicies(ctx, store.ApplyRequest{Policies: []store.Policy{{ID: "p", Query: "SELECT 1", Severity: "low"}}}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Fatalf("%s mode %v, want 0600", filepath.Base(p), fi.Mode().Perm())
		}
	}
	v, err := s.PolicySetVersion(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopening runs no migration twice and keeps the data.
	s2 := open(t, path)
	if v2, err := s2.PolicySetVersion(ctx); err != nil || v2 != v {
		t.Fatalf("version after reopen = %q, %v; want %q", v2, err, v)
	}
	if _, err := s2.GetPolicy(ctx, "p"); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := s2.Reader().Get(&n, `SELECT count(*) FROM schema_migrations`); err != nil {
		t.Fatal(err)
	}
	ms, err := store.LoadMigrations(sqlite.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Fatalf("schema_migrations has %d rows, want %d", n, len(ms))
	}
}

func TestOpenRejectsNonFilePaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if _, err := sqlite.Open(context.Background(), p); err == nil {
			t.Fatalf("Open(%q) accepted", p)
		}
	}
}

// The portal's "my devices" must not scan every host: the lookup by the
// effective user principal name uses the index of migration 0014.
func TestHostsOfUserUsesIndex(t *testing.T) {
	s := open(t, filepath.Join(t.TempDir(), "hub.db"))
	plan, err := sqlite.ExplainHostsOfUser(s)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "USING INDEX hosts_user_key") || strings.Contains(plan, "SCAN h") {
		t.Fatalf("plan does not look hosts up by the user index:\n%s", plan)
	}
}
