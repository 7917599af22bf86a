package postgres_test

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/postgres"
	"github.com/posture-dev/posture/hub/store/postgres/pgtest"
	"github.com/posture-dev/posture/hub/store/storetest"
	"github.com/posture-dev/posture/hub/sync/outboxtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

func open(t *testing.T) *postgres.Store {
	t.Helper()
	s, err := postgres.Open(context.Background(), pgtest.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		s := open(t)
		postgres.SetPruneChunk(s, 2) // several chunks with a handful of rows
		return s
	})
}

func TestOutbox(t *testing.T) {
	outboxtest.Run(t, func(t *testing.T) outboxtest.Backend { return open(t) })
}

// Replicas starting together on one database migrate once and agree.
func TestConcurrentOpenMigratesOnce(t *testing.T) {
	url := pgtest.URL(t)
	const n = 4
	var wg sync.WaitGroup
	errs := make([]error, n)
	stores := make([]*postgres.Store, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			stores[i], errs[i] = postgres.Open(context.Background(), url)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("replica %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	var versions []int64
	if err := stores[0].DB().Select(&versions, `SELECT version FROM schema_migrations ORDER BY version`); err != nil {
		t.Fatal(err)
	}
	ms, err := store.LoadMigrations(postgres.Migrations, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if len(versions) != len(ms) {
		t.Fatalf("schema_migrations = %v, want %d rows", versions, len(ms))
	}
	v0, err := stores[0].PolicySetVersion(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stores[1:] {
		v, err := s.PolicySetVersion(context.Background())
		if err != nil || v != v0 {
			t.Fatalf("replicas disagree on the policy set version: %q vs %q (%v)", v, v0, err)
		}
	}
}

// The portal's "my devices" must not scan every host: the lookup by the
// effective user principal name uses the index of migration 0014.
func TestHostsOfUserUsesIndex(t *testing.T) {
	plan, err := postgres.ExplainHostsOfUser(open(t))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plan, "hosts_user_key") || strings.Contains(plan, "Seq Scan on hosts") {
		t.Fatalf("plan does not look hosts up by the user index:\n%s", plan)
	}
}
