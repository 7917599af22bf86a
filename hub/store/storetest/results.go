package storetest

import (
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

var resultTests = []suiteTest{
	{"Results/FirstResultIsAChange", testFirstResult},
	{"Results/HistoryOnlyOnChange", testHistoryOnlyOnChange},
	{"Results/RedeliveryChangesNothing", testRedelivery},
	{"Results/OlderOrEqualIgnored", testOlderIgnored},
	{"Results/UnknownAndOldRevision", testUnknownAndOldRevision},
	{"Results/RevisionBumpInvalidatesOldResults", testRevisionBump},
	{"Results/CountsMaintained", testCountsMaintained},
	{"Results/DuplicatePolicyInOneBatch", testDuplicateInBatch},
	{"Results/BatchAppliedInEvaluatedAtOrder", testBatchInEvaluatedAtOrder},
	{"Results/BadInputRejected", testBadResults},
	{"Results/HistoryOrderAndLimit", testHistoryLimit},
}

func setupResults(t *testing.T, s store.Store, policies ...string) store.Host {
	t.Helper()
	var ps []store.Policy
	for _, p := range policies {
		ps = append(ps, pol(p, "SELECT 1 FROM "+p))
	}
	apply(t, s, store.ApplyRequest{Policies: ps})
	return enroll(t, s, "h", "")
}

func testFirstResult(t *testing.T, s store.Store) {
	h := setupResults(t, s, "fv", "fw")
	in := res("fv", 1, store.StatusFail, at(time.Minute))
	in.Duration = 2345 * time.Microsecond
	out := must(s.RecordResults(ctx(t), h.ID, []store.Result{in, res("fw", 1, store.StatusError, at(time.Minute))}, at(time.Minute)))(t)
	eq(t, "updated", out.Updated, 2)
	eq(t, "changed", len(out.Changed), 2)
	eq(t, "stale/unknown", []int{out.Stale, out.Unknown}, []int{0, 0})

	want := store.Result{HostID: h.ID, PolicyID: "fv", Revision: 1, Status: store.StatusFail,
		EvaluatedAt: micro(at(time.Minute)), Duration: 2345 * time.Microsecond, StatusSince: micro(at(time.Minute))}
	eq(t, "changed result", out.Changed[0], want)
	latest := must(s.LatestResults(ctx(t), h.ID))(t)
	eq(t, "latest count", len(latest), 2)
	eq(t, "latest fv", latest[0], want)
	eq(t, "latest fw error text", latest[1].Error, "no such table: fw")
	utcTime(t, "EvaluatedAt", latest[0].EvaluatedAt)
	utcTime(t, "StatusSince", latest[0].StatusSince)
	eq(t, "history", must(s.History(ctx(t), h.ID, "fv", 0))(t), []store.HistoryEntry{
		{HostID: h.ID, PolicyID: "fv", Revision: 1, Status: store.StatusFail, EvaluatedAt: micro(at(time.Minute))},
	})
	eq(t, "counts", counts(t, s), map[string]store.PolicyCounts{"fv": pc("fv", 0, 1, 0), "fw": pc("fw", 0, 0, 1)})
}

func testHistoryOnlyOnChange(t *testing.T, s store.Store) {
	h := setupResults(t, s, "fv")
	record(t, s, h.ID, res("fv", 1, store.StatusPass, at(1*time.Minute)))
	for i := 2; i <= 5; i++ {
		out := record(t, s, h.ID, res("fv", 1, store.StatusPass, at(time.Duration(i)*time.Minute)))
		eq(t, "unchanged: updated", out.Updated, 1)
		eq(t, "unchanged: no change", len(out.Changed), 0)
	}
	latest := must(s.LatestResults(ctx(t), h.ID))(t)[0]
	eq(t, "evaluated-at follows the newest result", latest.EvaluatedAt, micro(at(5*time.Minute)))
	eq(t, "status-since stays at the change", latest.StatusSince, micro(at(1*time.Minute)))
	eq(t, "one history row", len(must(s.History(ctx(t), h.ID, "fv", 0))(t)), 1)

	out := record(t, s, h.ID, res("fv", 1, store.StatusFail, at(6*time.Minute)))
	eq(t, "change reported", len(out.Changed), 1)
	eq(t, "change status-since", out.Changed[0].StatusSince, micro(at(6*time.Minute)))
	record(t, s, h.ID, res("fv", 1, store.StatusFail, at(7*time.Minute)))
	record(t, s, h.ID, res("fv", 1, store.StatusPass, at(8*time.Minute)))
	hist := must(s.History(ctx(t), h.ID, "fv", 0))(t)
	var statuses []string
	for _, e := range hist {
		statuses = append(statuses, e.Status)
	}
	eq(t, "history newest first, changes only", statuses, []string{"PASS", "FAIL", "PASS"})
	eq(t, "status-since after flip back", must(s.LatestResults(ctx(t), h.ID))(t)[0].StatusSince, micro(at(8*time.Minute)))
	eq(t, "counts", counts(t, s)["fv"], pc("fv", 1, 0, 0))

	// An ERROR whose message changes is no status change.
	record(t, s, h.ID, res("fv", 1, store.StatusError, at(9*time.Minute)))
	e := res("fv", 1, store.StatusError, at(10*time.Minute))
	e.Error = "timeout"
	out = record(t, s, h.ID, e)
	eq(t, "error text change is no change", len(out.Changed), 0)
	eq(t, "latest error text", must(s.LatestResults(ctx(t), h.ID))(t)[0].Error, "timeout")
	eq(t, "history rows", len(must(s.History(ctx(t), h.ID, "fv", 0))(t)), 4)
}

func testRedelivery(t *testing.T, s store.Store) {
	h := setupResults(t, s, "a", "b", "c")
	record(t, s, h.ID, res("a", 1, store.StatusPass, at(time.Minute)))
	batch := []store.Result{
		res("a", 1, store.StatusFail, at(2*time.Minute)),
		res("b", 1, store.StatusPass, at(2*time.Minute)),
		res("c", 1, store.StatusError, at(2*time.Minute)),
		res("gone", 1, store.StatusPass, at(2*time.Minute)),
	}
	first := must(s.RecordResults(ctx(t), h.ID, batch, at(2*time.Minute)))(t)
	eq(t, "first delivery", []int{first.Updated, len(first.Changed), first.Stale, first.Unknown}, []int{3, 3, 0, 1})
	latest := must(s.LatestResults(ctx(t), h.ID))(t)
	hist := must(s.History(ctx(t), h.ID, "a", 0))(t)
	c := counts(t, s)
	host := must(s.GetHost(ctx(t), h.ID))(t)

	for i := 0; i < 2; i++ {
		again := must(s.RecordResults(ctx(t), h.ID, batch, at(time.Minute)))(t)
		eq(t, "redelivery outcome", []int{again.Updated, len(again.Changed), again.Stale, again.Unknown}, []int{0, 0, 3, 1})
	}
	eq(t, "latest unchanged", must(s.LatestResults(ctx(t), h.ID))(t), latest)
	eq(t, "history unchanged", must(s.History(ctx(t), h.ID, "a", 0))(t), hist)
	eq(t, "counts unchanged", counts(t, s), c)
	eq(t, "host unchanged", must(s.GetHost(ctx(t), h.ID))(t), host)
}

func testOlderIgnored(t *testing.T, s store.Store) {
	h := setupResults(t, s, "fv")
	record(t, s, h.ID, res("fv", 1, store.StatusPass, at(10*time.Minute)))
	out := record(t, s, h.ID, res("fv", 1, store.StatusFail, at(5*time.Minute)))
	eq(t, "older is stale", []int{out.Updated, out.Stale, len(out.Changed)}, []int{0, 1, 0})
	out = record(t, s, h.ID, res("fv", 1, store.StatusFail, at(10*time.Minute)))
	eq(t, "equal is stale", []int{out.Updated, out.Stale}, []int{0, 1})
	// Sub-microsecond differences are below what the store keeps: equal.
	out = record(t, s, h.ID, res("fv", 1, store.StatusFail, at(10*time.Minute).Add(100*time.Nanosecond)))
	eq(t, "sub-microsecond newer is equal", out.Stale, 1)
	l := must(s.LatestResults(ctx(t), h.ID))(t)[0]
	eq(t, "still PASS", []any{l.Status, l.EvaluatedAt}, []any{store.StatusPass, micro(at(10 * time.Minute))})
	eq(t, "history", len(must(s.History(ctx(t), h.ID, "fv", 0))(t)), 1)
	eq(t, "counts", counts(t, s)["fv"], pc("fv", 1, 0, 0))
}

func testUnknownAndOldRevision(t *testing.T, s store.Store) {
	h := setupResults(t, s, "fv")
	out := record(t, s, h.ID,
		res("nope", 1, store.StatusPass, at(time.Minute)),
		res("fv", 2, store.StatusPass, at(time.Minute)), // a revision the hub never issued
		res("fv", 0, store.StatusPass, at(time.Minute)),
	)
	eq(t, "outcome", []int{out.Updated, out.Stale, out.Unknown}, []int{0, 2, 1})
	eq(t, "nothing stored", len(must(s.LatestResults(ctx(t), h.ID))(t)), 0)
	eq(t, "no history", len(must(s.History(ctx(t), h.ID, "nope", 0))(t)), 0)
	eq(t, "counts", counts(t, s), map[string]store.PolicyCounts{"fv": pc("fv", 0, 0, 0)})
}

func testRevisionBump(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("fv", "SELECT 1"), pol("other", "SELECT 2")}})
	h1, h2 := enroll(t, s, "h1", ""), enroll(t, s, "h2", "")
	record(t, s, h1.ID, res("fv", 1, store.StatusPass, at(time.Minute)), res("other", 1, store.StatusPass, at(time.Minute)))
	record(t, s, h2.ID, res("fv", 1, store.StatusFail, at(time.Minute)))
	eq(t, "counts rev 1", counts(t, s)["fv"], pc("fv", 1, 1, 0))

	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("fv", "SELECT 1 -- v2"), pol("other", "SELECT 2")}})
	eq(t, "old revision stops counting", counts(t, s)["fv"], pc("fv", 0, 0, 0))
	eq(t, "other policy untouched", counts(t, s)["other"], pc("other", 1, 0, 0))
	l1 := must(s.LatestResults(ctx(t), h1.ID))(t)
	eq(t, "old-revision latest result dropped", len(l1), 1)
	eq(t, "remaining", l1[0].PolicyID, "other")
	eq(t, "h2 has nothing", len(must(s.LatestResults(ctx(t), h2.ID))(t)), 0)

	// Late results of revision 1, even newer ones, never count for revision 2.
	out := record(t, s, h1.ID, res("fv", 1, store.StatusFail, at(time.Hour)))
	eq(t, "old revision stale", []int{out.Stale, out.Updated}, []int{1, 0})
	out = record(t, s, h1.ID, res("fv", 2, store.StatusPass, at(2*time.Minute)))
	eq(t, "first rev-2 result is a change", len(out.Changed), 1)
	l := must(s.LatestResults(ctx(t), h1.ID))(t)[0]
	eq(t, "rev-2 result", []any{l.Revision, l.Status, l.StatusSince}, []any{int64(2), store.StatusPass, micro(at(2 * time.Minute))})
	eq(t, "counts rev 2", counts(t, s)["fv"], pc("fv", 1, 0, 0))
	hist := must(s.History(ctx(t), h1.ID, "fv", 0))(t)
	eq(t, "history keeps both revisions", []int64{hist[0].Revision, hist[1].Revision}, []int64{2, 1})
	checkCounts(t, s)
}

func testCountsMaintained(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("a", "SELECT 1"), pol("b", "SELECT 2")}})
	var hosts []store.Host
	for i := 0; i < 5; i++ {
		hosts = append(hosts, enroll(t, s, name("h", i), ""))
	}
	statuses := []string{store.StatusPass, store.StatusFail, store.StatusError}
	for round := 0; round < 4; round++ {
		for i, h := range hosts {
			when := at(time.Duration(round*10+i) * time.Minute)
			record(t, s, h.ID,
				res("a", 1, statuses[(i+round)%3], when),
				res("b", 1, statuses[(i*round)%3], when))
		}
		checkCounts(t, s)
	}
	// Round 3: a: (i+3)%3 = P F E P F; b: (3i)%3 = P P P P P.
	eq(t, "final counts", counts(t, s), map[string]store.PolicyCounts{"a": pc("a", 2, 2, 1), "b": pc("b", 5, 0, 0)})
}

func testDuplicateInBatch(t *testing.T, s store.Store) {
	h := setupResults(t, s, "fv")
	out := record(t, s, h.ID,
		res("fv", 1, store.StatusPass, at(1*time.Minute)),
		res("fv", 1, store.StatusFail, at(2*time.Minute)),
		res("fv", 1, store.StatusPass, at(90*time.Second)), // applied before the FAIL
		res("fv", 1, store.StatusPass, at(1*time.Minute)),  // a duplicate: stale
	)
	eq(t, "outcome", []int{out.Updated, len(out.Changed), out.Stale}, []int{1, 2, 1})
	l := must(s.LatestResults(ctx(t), h.ID))(t)[0]
	eq(t, "newest wins", []any{l.Status, l.EvaluatedAt}, []any{store.StatusFail, micro(at(2 * time.Minute))})
	eq(t, "two history rows", len(must(s.History(ctx(t), h.ID, "fv", 0))(t)), 2)
	eq(t, "counts", counts(t, s)["fv"], pc("fv", 0, 1, 0))
}

// A batch holding several results of one policy, in any order (an agent's
// spool compacted during an outage), is applied in evaluated-at order: every
// status change reaches the history and the newest result wins.
func testBatchInEvaluatedAtOrder(t *testing.T, s store.Store) {
	h := setupResults(t, s, "fv", "fw")
	record(t, s, h.ID, res("fv", 1, store.StatusPass, at(0)))
	batch := []store.Result{
		res("fv", 1, store.StatusPass, at(5*time.Minute)),
		res("fw", 1, store.StatusFail, at(3*time.Minute)),
		res("fv", 1, store.StatusFail, at(4*time.Minute)),
		res("fw", 1, store.StatusPass, at(2*time.Minute)),
		res("fv", 1, store.StatusFail, at(3*time.Minute)),
		res("fw", 1, store.StatusFail, at(1*time.Minute)),
	}
	out := must(s.RecordResults(ctx(t), h.ID, batch, at(6*time.Minute)))(t)
	eq(t, "outcome", []int{out.Updated, len(out.Changed), out.Stale}, []int{2, 5, 0})
	statuses := func(id string) []string {
		var st []string
		for _, e := range must(s.History(ctx(t), h.ID, id, 0))(t) {
			st = append(st, e.Status+"@"+e.EvaluatedAt.Sub(micro(t0)).String())
		}
		return st
	}
	eq(t, "fv history, newest first", statuses("fv"), []string{"PASS@5m0s", "FAIL@3m0s", "PASS@0s"})
	eq(t, "fw history, newest first", statuses("fw"), []string{"FAIL@3m0s", "PASS@2m0s", "FAIL@1m0s"})
	latest := must(s.LatestResults(ctx(t), h.ID))(t)
	eq(t, "newest wins", []any{latest[0].Status, latest[0].EvaluatedAt, latest[0].StatusSince, latest[1].Status, latest[1].EvaluatedAt},
		[]any{store.StatusPass, micro(at(5 * time.Minute)), micro(at(5 * time.Minute)), store.StatusFail, micro(at(3 * time.Minute))})
	eq(t, "counts", counts(t, s), map[string]store.PolicyCounts{"fv": pc("fv", 1, 0, 0), "fw": pc("fw", 0, 1, 0)})
	// Redelivered (the agent crashed before deleting it): nothing changes.
	again := must(s.RecordResults(ctx(t), h.ID, batch, at(7*time.Minute)))(t)
	eq(t, "redelivery", []int{again.Updated, len(again.Changed), again.Stale}, []int{0, 0, 6})
	eq(t, "fv history unchanged", len(statuses("fv")), 3)
}

func testBadResults(t *testing.T, s store.Store) {
	h := setupResults(t, s, "fv")
	_, err := s.RecordResults(ctx(t), "missing", []store.Result{res("fv", 1, store.StatusPass, at(time.Minute))}, at(time.Minute))
	wantErr(t, err, store.ErrNotFound)
	for name, r := range map[string]store.Result{
		"bad status":      res("fv", 1, "MAYBE", at(time.Minute)),
		"empty policy":    res("", 1, store.StatusPass, at(time.Minute)),
		"no evaluated-at": res("fv", 1, store.StatusPass, time.Time{}),
	} {
		_, err := s.RecordResults(ctx(t), h.ID, []store.Result{res("fv", 1, store.StatusPass, at(time.Minute)), r}, at(time.Hour))
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		wantErr(t, err, store.ErrInvalid)
	}
	eq(t, "nothing written", len(must(s.LatestResults(ctx(t), h.ID))(t)), 0)
	eq(t, "last-seen untouched", must(s.GetHost(ctx(t), h.ID))(t).LastSeenAt, micro(t0))
}

func testHistoryLimit(t *testing.T, s store.Store) {
	h := setupResults(t, s, "fv", "other")
	st := []string{store.StatusPass, store.StatusFail}
	for i := 0; i < 6; i++ {
		record(t, s, h.ID, res("fv", 1, st[i%2], at(time.Duration(i)*time.Minute)))
	}
	record(t, s, h.ID, res("other", 1, store.StatusPass, at(time.Hour)))
	all := must(s.History(ctx(t), h.ID, "fv", 0))(t)
	eq(t, "all rows", len(all), 6)
	for i, e := range all {
		eq(t, "newest first", e.EvaluatedAt, micro(at(time.Duration(5-i)*time.Minute)))
		utcTime(t, "history EvaluatedAt", e.EvaluatedAt)
	}
	eq(t, "limit", must(s.History(ctx(t), h.ID, "fv", 2))(t), all[:2])
	eq(t, "unknown pair", len(must(s.History(ctx(t), h.ID, "nope", 0))(t)), 0)
}
