package storetest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

var concurrencyTests = []suiteTest{
	{"Concurrency/BatchesOfManyHosts", testConcurrentHosts},
	{"Concurrency/SameBatchTwiceAtOnce", testConcurrentRedelivery},
	{"Concurrency/ApplyDuringBatches", testConcurrentApply},
}

// runAll runs fn(i) for i in [0, n) at once and fails on the first error.
func runAll(t *testing.T, n int, fn func(i int) error) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan error, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			if err := fn(i); err != nil {
				errs <- err
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func testConcurrentHosts(t *testing.T, s store.Store) {
	const hosts, batches, policies = 8, 12, 10
	var ps []store.Policy
	for p := 0; p < policies; p++ {
		ps = append(ps, pol(name("p", p), fmt.Sprintf("SELECT %d", p)))
	}
	apply(t, s, store.ApplyRequest{Policies: ps})
	ids := make([]string, hosts)
	for i := range ids {
		ids[i] = enroll(t, s, name("host", i), "").ID
	}
	status := func(h, b, p int) string {
		return []string{store.StatusPass, store.StatusFail, store.StatusError}[(h+p+b/3)%3]
	}
	runAll(t, hosts, func(h int) error {
		for b := 0; b < batches; b++ {
			var rs []store.Result
			for p := 0; p < policies; p++ {
				rs = append(rs, res(name("p", p), 1, status(h, b, p), at(time.Duration(b)*time.Minute)))
			}
			if _, err := s.RecordResults(t.Context(), ids[h], rs, at(time.Duration(b)*time.Minute)); err != nil {
				return fmt.Errorf("host %d batch %d: %w", h, b, err)
			}
		}
		return nil
	})
	for h, id := range ids {
		latest := must(s.LatestResults(ctx(t), id))(t)
		eq(t, "latest per host", len(latest), policies)
		for p, r := range latest {
			eq(t, "final status", r.Status, status(h, batches-1, p))
		}
		// Status changes every 3 batches: 4 runs of 3 -> 4 history rows.
		eq(t, "history rows", len(must(s.History(ctx(t), id, "p-00", 0))(t)), batches/3)
		eq(t, "last seen", must(s.GetHost(ctx(t), id))(t).LastSeenAt, micro(at(time.Duration(batches-1)*time.Minute)))
	}
	checkCounts(t, s)
}

func testConcurrentRedelivery(t *testing.T, s store.Store) {
	h := setupResults(t, s, "a", "b", "c")
	batch := []store.Result{
		res("a", 1, store.StatusPass, at(time.Minute)),
		res("b", 1, store.StatusFail, at(time.Minute)),
		res("c", 1, store.StatusError, at(time.Minute)),
	}
	const n = 6
	outs := make([]store.RecordOutcome, n)
	runAll(t, n, func(i int) error {
		var err error
		outs[i], err = s.RecordResults(t.Context(), h.ID, batch, at(time.Minute))
		return err
	})
	applied := 0
	for _, o := range outs {
		switch {
		case o.Updated == 3 && len(o.Changed) == 3:
			applied++
		case o.Updated == 0 && o.Stale == 3:
		default:
			t.Fatalf("outcome %+v: neither applied nor stale", o)
		}
	}
	eq(t, "batches applied", applied, 1)
	for _, p := range []string{"a", "b", "c"} {
		eq(t, "one history row for "+p, len(must(s.History(ctx(t), h.ID, p, 0))(t)), 1)
	}
	eq(t, "counts", counts(t, s), map[string]store.PolicyCounts{"a": pc("a", 1, 0, 0), "b": pc("b", 0, 1, 0), "c": pc("c", 0, 0, 1)})
}

// testConcurrentApply bumps a revision while hosts record results of both
// revisions: whatever the interleaving, counts must match the latest rows
// and no row of the old revision may survive the bump.
func testConcurrentApply(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("fv", "SELECT 1")}})
	const hosts = 6
	ids := make([]string, hosts)
	for i := range ids {
		ids[i] = enroll(t, s, name("h", i), "").ID
	}
	runAll(t, hosts+1, func(i int) error {
		if i == hosts {
			_, err := s.ApplyPolicies(t.Context(), store.ApplyRequest{Policies: []store.Policy{pol("fv", "SELECT 1 -- v2")}, At: at(time.Hour)})
			return err
		}
		for b := 0; b < 10; b++ {
			st := store.StatusPass
			if (i+b)%2 == 0 {
				st = store.StatusFail
			}
			rs := []store.Result{res("fv", int64(1+b%2), st, at(time.Duration(b)*time.Minute))}
			if _, err := s.RecordResults(t.Context(), ids[i], rs, at(time.Minute)); err != nil {
				return err
			}
		}
		return nil
	})
	eq(t, "revision", must(s.GetPolicy(ctx(t), "fv"))(t).Revision, int64(2))
	for _, id := range ids {
		for _, r := range must(s.LatestResults(ctx(t), id))(t) {
			eq(t, "no old-revision row survives", r.Revision, int64(2))
		}
	}
	checkCounts(t, s)
}
