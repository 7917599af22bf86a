package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

var reportingTests = []suiteTest{
	{"Reporting/ZeroUntilReported", testReportingZero},
	{"Reporting/BatchMovesLastReport", testReportingLastReport},
	{"Reporting/IntervalAndHealth", testReportingHealth},
	{"Reporting/SpoolDrops", testReportingSpoolDrops},
	{"Reporting/StreamsAcrossReplicas", testReportingStreams},
	{"Reporting/DeletedHost", testReportingDeleted},
	{"Results/LargeBatch", testLargeBatch},
	{"Teams/MissedReports", testTeamMissedReports},
}

func testReportingZero(t *testing.T, s store.Store) {
	h := enroll(t, s, "h", "")
	eq(t, "reporting", must(s.GetHostReporting(ctx(t), h.ID))(t), store.HostReporting{HostID: h.ID})
	_, err := s.GetHostReporting(ctx(t), "nope")
	wantErr(t, err, store.ErrNotFound)
}

func testReportingLastReport(t *testing.T, s store.Store) {
	h := setupResults(t, s, "fv")
	recordAt := func(r store.Result, seen time.Time) {
		t.Helper()
		must(s.RecordResults(ctx(t), h.ID, []store.Result{r}, seen))(t)
	}
	recordAt(res("fv", 1, store.StatusPass, at(time.Minute)), at(time.Minute))
	eq(t, "last report", must(s.GetHostReporting(ctx(t), h.ID))(t).LastReportAt, micro(at(time.Minute)))
	// An older batch (redelivered late) never moves it back.
	recordAt(res("fv", 1, store.StatusPass, at(30*time.Second)), at(30*time.Second))
	r := must(s.GetHostReporting(ctx(t), h.ID))(t)
	eq(t, "last report after older", r.LastReportAt, micro(at(time.Minute)))
	utcTime(t, "LastReportAt", r.LastReportAt)
	// A batch whose results are all unknown still is a report.
	recordAt(res("gone", 1, store.StatusPass, at(2*time.Minute)), at(2*time.Minute))
	eq(t, "last report after unknown", must(s.GetHostReporting(ctx(t), h.ID))(t).LastReportAt, micro(at(2*time.Minute)))
}

func testReportingHealth(t *testing.T, s store.Store) {
	h := enroll(t, s, "h", "")
	noErr(t, s.SetHostReportInterval(ctx(t), h.ID, 90*time.Second))
	noErr(t, s.SetHostHealth(ctx(t), h.ID, store.HostHealth{OsqueryOK: true, SpoolOK: false,
		Detail: "spool: no space left on device", SpoolDepth: 12, At: at(time.Minute)}))
	r := must(s.GetHostReporting(ctx(t), h.ID))(t)
	eq(t, "interval", r.ReportInterval, 90*time.Second)
	eq(t, "health", *r.Health, store.HostHealth{OsqueryOK: true, SpoolOK: false,
		Detail: "spool: no space left on device", SpoolDepth: 12, At: micro(at(time.Minute))})
	if r.Health.Healthy() {
		t.Fatal("spool failing reported healthy")
	}
	noErr(t, s.SetHostHealth(ctx(t), h.ID, store.HostHealth{OsqueryOK: true, SpoolOK: true, At: at(2 * time.Minute)}))
	r = must(s.GetHostReporting(ctx(t), h.ID))(t)
	eq(t, "interval kept", r.ReportInterval, 90*time.Second)
	eq(t, "recovered", *r.Health, store.HostHealth{OsqueryOK: true, SpoolOK: true, At: micro(at(2 * time.Minute))})
	all := must(s.ListHostReporting(ctx(t)))(t)
	eq(t, "listed", all[h.ID], r)
}

// The spool's drop counters are kept with the health, whole up to the
// largest signed 64-bit value (larger is held there), and never make a
// host unhealthy.
func testReportingSpoolDrops(t *testing.T, s store.Store) {
	h := enroll(t, s, "h", "")
	noErr(t, s.SetHostReportInterval(ctx(t), h.ID, time.Minute))
	want := store.HostHealth{OsqueryOK: true, SpoolOK: true, SpoolDepth: 3, At: at(time.Minute),
		SpoolDroppedResults: 4100, SpoolDroppedTransitions: 12}
	noErr(t, s.SetHostHealth(ctx(t), h.ID, want))
	r := must(s.GetHostReporting(ctx(t), h.ID))(t)
	want.At = micro(want.At)
	eq(t, "health with drops", *r.Health, want)
	if !r.Health.Healthy() {
		t.Fatal("a host whose spool dropped history reported unhealthy")
	}
	eq(t, "listed", must(s.ListHostReporting(ctx(t)))(t)[h.ID], r)

	noErr(t, s.SetHostHealth(ctx(t), h.ID, store.HostHealth{OsqueryOK: true, SpoolOK: true, At: at(2 * time.Minute),
		SpoolDroppedResults: store.MaxSpoolDropped, SpoolDroppedTransitions: 1<<64 - 1}))
	r = must(s.GetHostReporting(ctx(t), h.ID))(t)
	eq(t, "largest", []uint64{r.Health.SpoolDroppedResults, r.Health.SpoolDroppedTransitions},
		[]uint64{store.MaxSpoolDropped, store.MaxSpoolDropped})

	// A later report without drops (a new spool) replaces them.
	noErr(t, s.SetHostHealth(ctx(t), h.ID, store.HostHealth{OsqueryOK: true, SpoolOK: true, At: at(3 * time.Minute)}))
	r = must(s.GetHostReporting(ctx(t), h.ID))(t)
	eq(t, "reset", []uint64{r.Health.SpoolDroppedResults, r.Health.SpoolDroppedTransitions}, []uint64{0, 0})
	eq(t, "interval kept", r.ReportInterval, time.Minute)
}

func testReportingStreams(t *testing.T, s store.Store) {
	a, b := enroll(t, s, "a", ""), enroll(t, s, "b", "")
	noErr(t, s.HeartbeatStreams(ctx(t), "r2", at(time.Second)))
	noErr(t, s.SetHostStream(ctx(t), a.ID, "r1", at(0)))
	noErr(t, s.SetHostStream(ctx(t), b.ID, "r1", at(0)))
	// b moves to r2; r1's late disconnect must not clear it.
	noErr(t, s.SetHostStream(ctx(t), b.ID, "r2", at(time.Second)))
	noErr(t, s.ClearHostStream(ctx(t), b.ID, "r1", at(0)))
	noErr(t, s.HeartbeatStreams(ctx(t), "r1", at(time.Minute)))
	all := must(s.ListHostReporting(ctx(t)))(t)
	eq(t, "a", []any{all[a.ID].StreamReplica, all[a.ID].StreamHeartbeat}, []any{"r1", micro(at(time.Minute))})
	eq(t, "b", []any{all[b.ID].StreamReplica, all[b.ID].StreamHeartbeat}, []any{"r2", micro(at(time.Second))})
	if !all[a.ID].ConnectedAt(at(time.Minute+10*time.Second), 30*time.Second) {
		t.Fatal("a not connected right after its heartbeat")
	}
	if all[b.ID].ConnectedAt(at(time.Minute), 30*time.Second) {
		t.Fatal("b connected with a heartbeat older than the ttl")
	}
	// A reconnect to the same replica is a newer stream: the old one's
	// close must not clear it.
	noErr(t, s.SetHostStream(ctx(t), a.ID, "r1", at(2*time.Second)))
	noErr(t, s.ClearHostStream(ctx(t), a.ID, "r1", at(0)))
	if r := must(s.GetHostReporting(ctx(t), a.ID))(t); r.StreamReplica != "r1" {
		t.Fatalf("an old stream's close cleared the newer one: %+v", r)
	}
	noErr(t, s.ClearHostStream(ctx(t), a.ID, "r1", at(2*time.Second)))
	if r := must(s.GetHostReporting(ctx(t), a.ID))(t); r.StreamReplica != "" || !r.StreamHeartbeat.IsZero() {
		t.Fatalf("cleared stream still held: %+v", r)
	}
}

func testReportingDeleted(t *testing.T, s store.Store) {
	h := enroll(t, s, "h", "")
	noErr(t, s.SetHostStream(ctx(t), h.ID, "r1", at(0)))
	noErr(t, s.DeleteHost(ctx(t), h.ID))
	if _, ok := must(s.ListHostReporting(ctx(t)))(t)[h.ID]; ok {
		t.Fatal("reporting outlived its host")
	}
	wantErr(t, s.SetHostHealth(ctx(t), h.ID, store.HostHealth{At: at(0)}), store.ErrNotFound)
	wantErr(t, s.SetHostReportInterval(ctx(t), h.ID, time.Minute), store.ErrNotFound)
}

// testLargeBatch: more distinct policy ids than SQLite binds in one
// statement (32766) must record, not fail with "too many SQL variables".
func testLargeBatch(t *testing.T, s store.Store) {
	const known, unknown = 1200, 40000
	var ps []store.Policy
	for i := range known {
		ps = append(ps, pol(fmt.Sprintf("p%05d", i), "SELECT 1"))
	}
	apply(t, s, store.ApplyRequest{Policies: ps})
	h := enroll(t, s, "h", "")
	var rs []store.Result
	for i := range known + unknown {
		rs = append(rs, res(fmt.Sprintf("p%05d", i), 1, store.StatusPass, at(time.Minute)))
	}
	out := must(s.RecordResults(ctx(t), h.ID, rs, at(time.Minute)))(t)
	eq(t, "updated/unknown", []int{out.Updated, out.Unknown}, []int{known, unknown})
	eq(t, "latest", len(must(s.LatestResults(ctx(t), h.ID))(t)), known)
}

func testTeamMissedReports(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Teams: []store.Team{{Name: "eng", Settings: store.TeamSettings{ConditionalAccess: true, MissedReports: 5}}}})
	eq(t, "missed reports", must(s.GetTeam(ctx(t), "eng"))(t).Settings.MissedReports, 5)
	ch := must(s.ApplyPolicies(ctx(t), store.ApplyRequest{Teams: []store.Team{{Name: "eng", Settings: store.TeamSettings{ConditionalAccess: true, MissedReports: 2}}}}))(t)
	eq(t, "change", ch[0].Fields, []string{"missed_reports"})
	_, err := s.ApplyPolicies(ctx(t), store.ApplyRequest{Teams: []store.Team{{Name: "eng", Settings: store.TeamSettings{MissedReports: -1}}}})
	wantErr(t, err, store.ErrInvalid)
}
