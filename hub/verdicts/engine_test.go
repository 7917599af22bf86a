package verdicts

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/compliance"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
)

// clock is an injectable, settable Now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

type fixture struct {
	t     *testing.T
	ctx   context.Context
	st    *sqlite.Store
	clock *clock
	base  time.Time
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	// Close to real time: the store stamps some times itself.
	base := store.StoredTime(time.Now())
	return &fixture{t: t, ctx: ctx, st: st, clock: &clock{t: base}, base: base}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func (f *fixture) engine(mod func(*Config)) *Engine {
	cfg := Config{Store: f.st, Logger: quiet(), Now: f.clock.Now, CacheTTL: time.Nanosecond}
	if mod != nil {
		mod(&cfg)
	}
	return New(cfg)
}

func (f *fixture) policies(ps ...store.Policy) {
	f.t.Helper()
	req := store.ApplyRequest{Policies: ps, At: f.base,
		Teams: []store.Team{
			{Name: "eng", Settings: store.TeamSettings{ConditionalAccess: true}},
			{Name: "sales", Settings: store.TeamSettings{ConditionalAccess: true}},
		}}
	if _, err := f.st.ApplyPolicies(f.ctx, req); err != nil {
		f.t.Fatalf("apply policies: %v", err)
	}
}

func policy(id string, grace time.Duration) store.Policy {
	return store.Policy{ID: id, Name: id, Query: "SELECT 1;", Severity: "high", ConditionalAccess: true, GracePeriod: grace}
}

// host enrolls a host of team; device "" leaves it unmapped.
func (f *fixture) host(id, team, device string) {
	f.t.Helper()
	_, err := f.st.EnrollHost(f.ctx, store.Host{ID: id, Team: team, Hostname: id, Platform: "darwin",
		HardwareUUID: "hw-" + id, EnrolledAt: f.base, LastSeenAt: f.base})
	if err != nil {
		f.t.Fatalf("enroll %s: %v", id, err)
	}
	if device != "" {
		if err := f.st.SetHostIdentity(f.ctx, id, device, id+"@example.com"); err != nil {
			f.t.Fatal(err)
		}
	}
}

func (f *fixture) integration(id string, teams ...string) {
	f.t.Helper()
	err := f.st.CreateIntegration(f.ctx, store.Integration{ID: id, Name: id, TenantID: "tenant-" + id, ClientID: "client",
		CredentialKind: "secret", SealedCredential: []byte("sealed"), ExtensionAttribute: 7, Teams: teams})
	if err != nil {
		f.t.Fatalf("create integration %s: %v", id, err)
	}
}

func (f *fixture) result(hostID, policyID, status string, at time.Time) {
	f.t.Helper()
	out, err := f.st.RecordResults(f.ctx, hostID, []store.Result{{PolicyID: policyID, Revision: 1, Status: status, EvaluatedAt: at}}, at)
	if err != nil {
		f.t.Fatal(err)
	}
	if out.Updated != 1 {
		f.t.Fatalf("record %s %s: %+v, want 1 updated", policyID, status, out)
	}
}

// rows lists every outbox row, oldest first.
func (f *fixture) rows() []store.SyncItem {
	f.t.Helper()
	items, err := f.st.ListSyncItems(f.ctx, store.SyncPending, "", 0)
	if err != nil {
		f.t.Fatal(err)
	}
	for i, j := 0, len(items)-1; i < j; i, j = i+1, j-1 {
		items[i], items[j] = items[j], items[i]
	}
	return items
}

func (f *fixture) verdict(hostID string) store.Verdict {
	f.t.Helper()
	v, err := f.st.GetVerdict(f.ctx, hostID)
	if err != nil {
		f.t.Fatalf("verdict of %s: %v", hostID, err)
	}
	return v
}

func (f *fixture) evaluate(e *Engine, hostID string, force bool) store.Verdict {
	f.t.Helper()
	v, err := e.Evaluate(f.ctx, hostID, force)
	if err != nil {
		f.t.Fatalf("evaluate %s: %v", hostID, err)
	}
	return v
}

// rowKeys summarises rows as "integration device desired verdict".
func rowKeys(items []store.SyncItem) []string {
	var out []string
	for _, it := range items {
		out = append(out, fmt.Sprintf("%s %s %s %s", it.IntegrationID, it.DeviceID, it.Desired, it.Verdict))
	}
	return out
}

func wantRows(t *testing.T, got []store.SyncItem, want ...string) {
	t.Helper()
	g := rowKeys(got)
	if fmt.Sprint(g) != fmt.Sprint(want) {
		t.Fatalf("outbox rows:\n got %q\nwant %q", g, want)
	}
}

func TestTransitionsEnqueueOneRowPerCoveringIntegration(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("all")
	f.integration("for-eng", "eng")
	f.integration("for-sales", "sales")
	f.host("h1", "eng", "dev-1")
	f.result("h1", "disk", store.StatusPass, f.base)
	var enqueued atomic.Int32
	e := f.engine(func(c *Config) { c.Enqueued = func() { enqueued.Add(1) } })

	v := f.evaluate(e, "h1", false)
	if v.State != string(compliance.Compliant) || v.Desired != compliance.DesiredCompliant || v.Version != 1 {
		t.Fatalf("first verdict %+v", v)
	}
	if got := f.verdict("h1"); got.State != "COMPLIANT" || got.Version != 1 {
		t.Fatalf("stored verdict %+v", got)
	}
	rows := f.rows()
	wantRows(t, rows, "all dev-1 compliant COMPLIANT", "for-eng dev-1 compliant COMPLIANT")
	for _, r := range rows {
		if r.HostID != "h1" {
			t.Fatalf("row host %q", r.HostID)
		}
	}
	if enqueued.Load() != 1 {
		t.Fatalf("Enqueued called %d times, want 1", enqueued.Load())
	}

	// Nothing changed: nothing is written.
	f.clock.Set(f.base.Add(time.Minute))
	if v := f.evaluate(e, "h1", false); v.Version != 1 {
		t.Fatalf("unchanged re-evaluation saved version %d", v.Version)
	}
	if got := f.verdict("h1"); got.Version != 1 {
		t.Fatalf("stored version %d after unchanged re-evaluation", got.Version)
	}
	if n := len(f.rows()); n != 2 {
		t.Fatalf("%d rows after unchanged re-evaluation, want 2", n)
	}
	if enqueued.Load() != 1 {
		t.Fatalf("Enqueued called again with nothing enqueued")
	}

	// A failure (no grace) flips the desired state: one row per integration.
	f.result("h1", "disk", store.StatusFail, f.base.Add(2*time.Minute))
	f.clock.Set(f.base.Add(2 * time.Minute))
	v = f.evaluate(e, "h1", false)
	if v.State != "NONCOMPLIANT" || v.Cause != compliance.CauseFailing || v.Version != 2 {
		t.Fatalf("after failure: %+v", v)
	}
	wantRows(t, f.rows()[2:], "all dev-1 noncompliant NONCOMPLIANT", "for-eng dev-1 noncompliant NONCOMPLIANT")
	reasons, err := DecodeReasons(f.verdict("h1"))
	if err != nil || len(reasons) != 1 || reasons[0].PolicyID != "disk" || !reasons[0].Blocking {
		t.Fatalf("reasons %+v, %v", reasons, err)
	}

	// A second evaluation of the same failure writes nothing.
	if v := f.evaluate(e, "h1", false); v.Version != 2 || len(f.rows()) != 4 {
		t.Fatalf("repeat: version %d, %d rows", v.Version, len(f.rows()))
	}

	// An admin override changes the device; force re-enqueues under it.
	if err := f.st.SetHostEntraOverride(f.ctx, "h1", "dev-override"); err != nil {
		t.Fatal(err)
	}
	if v := f.evaluate(e, "h1", true); v.Version != 3 {
		t.Fatalf("forced evaluation version %d, want 3", v.Version)
	}
	wantRows(t, f.rows()[4:], "all dev-override noncompliant NONCOMPLIANT", "for-eng dev-override noncompliant NONCOMPLIANT")
	if enqueued.Load() != 3 {
		t.Fatalf("Enqueued called %d times, want 3", enqueued.Load())
	}
}

func TestUnknownNoResultsEnqueuesNothing(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("all")
	f.host("h1", "eng", "dev-1")
	e := f.engine(nil)

	v := f.evaluate(e, "h1", false)
	if v.State != "UNKNOWN" || v.Cause != compliance.CauseNoResults || v.Desired != "" || v.Version != 1 {
		t.Fatalf("verdict %+v", v)
	}
	// Even forced: there is no desired state to write.
	f.evaluate(e, "h1", true)
	if rows := f.rows(); len(rows) != 0 {
		t.Fatalf("rows %q, want none", rowKeys(rows))
	}
}

func TestUnmappedHostGetsVerdictButNoRows(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("all")
	f.host("h1", "eng", "")
	f.result("h1", "disk", store.StatusFail, f.base)
	e := f.engine(nil)

	if v := f.evaluate(e, "h1", false); v.State != "NONCOMPLIANT" || v.Desired != compliance.DesiredNoncompliant {
		t.Fatalf("verdict %+v", v)
	}
	if got := f.verdict("h1"); got.State != "NONCOMPLIANT" {
		t.Fatalf("stored %+v", got)
	}
	f.evaluate(e, "h1", true)
	if rows := f.rows(); len(rows) != 0 {
		t.Fatalf("rows %q for an unmapped host", rowKeys(rows))
	}
	// Once mapped, a forced evaluation (what the identity change triggers)
	// enqueues the current state.
	if err := f.st.SetHostIdentity(f.ctx, "h1", "dev-1", ""); err != nil {
		t.Fatal(err)
	}
	f.evaluate(e, "h1", true)
	wantRows(t, f.rows(), "all dev-1 noncompliant NONCOMPLIANT")
}

func TestForceReenqueuesUnchangedVerdict(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("all")
	f.host("h1", "default", "dev-1")
	f.result("h1", "disk", store.StatusPass, f.base)
	e := f.engine(nil)
	f.evaluate(e, "h1", false)
	v := f.evaluate(e, "h1", true)
	if v.Version != 2 || v.State != "COMPLIANT" {
		t.Fatalf("forced: %+v", v)
	}
	wantRows(t, f.rows(), "all dev-1 compliant COMPLIANT", "all dev-1 compliant COMPLIANT")
}

func TestIntegrationsAreCachedForCacheTTL(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("old")
	f.host("h1", "default", "dev-1")
	f.result("h1", "disk", store.StatusPass, f.base)
	e := f.engine(func(c *Config) { c.CacheTTL = time.Hour })
	f.evaluate(e, "h1", false)

	f.integration("new")
	f.evaluate(e, "h1", true)
	wantRows(t, f.rows(), "old dev-1 compliant COMPLIANT", "old dev-1 compliant COMPLIANT")

	e.Invalidate()
	f.evaluate(e, "h1", true)
	wantRows(t, f.rows()[2:], "new dev-1 compliant COMPLIANT", "old dev-1 compliant COMPLIANT")
}

func TestGraceDeadlineFlipsWithoutNewResult(t *testing.T) {
	f := newFixture(t)
	// A grace period off the store's precision: the deadline falls between
	// two representable times.
	grace := 10*time.Minute + 500*time.Nanosecond
	f.policies(policy("disk", grace))
	f.integration("all")
	f.host("h1", "default", "dev-1")
	failedAt := f.base.Add(time.Second)
	f.result("h1", "disk", store.StatusFail, failedAt)
	deadline := failedAt.Add(grace)
	e := f.engine(nil)

	f.clock.Set(failedAt)
	v := f.evaluate(e, "h1", false)
	if v.State != "GRACE" || v.Desired != compliance.DesiredCompliant {
		t.Fatalf("in grace: %+v", v)
	}
	stored := f.verdict("h1")
	if stored.NextTransition == nil {
		t.Fatal("no next transition stored")
	}
	next := *stored.NextTransition
	if next.Before(deadline) || !next.Equal(store.StoredTime(deadline).Add(store.TimePrecision)) {
		t.Fatalf("next transition %v, want the deadline %v rounded up to %v", next, deadline, store.TimePrecision)
	}
	wantRows(t, f.rows(), "all dev-1 compliant GRACE")

	// Not due before the deadline; an evaluation then changes nothing.
	f.clock.Set(deadline.Add(-time.Microsecond))
	if due, err := f.st.DueVerdicts(f.ctx, f.clock.Now(), 10); err != nil || len(due) != 0 {
		t.Fatalf("due before the deadline: %v, %v", due, err)
	}
	if v := f.evaluate(e, "h1", false); v.Version != 1 {
		t.Fatalf("evaluation before the deadline saved version %d", v.Version)
	}

	// Due at the rounded deadline; the evaluation flips with no new result.
	f.clock.Set(next)
	due, err := f.st.DueVerdicts(f.ctx, f.clock.Now(), 10)
	if err != nil || len(due) != 1 || due[0] != "h1" {
		t.Fatalf("due at the deadline: %v, %v", due, err)
	}
	v = f.evaluate(e, due[0], false)
	if v.State != "NONCOMPLIANT" || v.Desired != compliance.DesiredNoncompliant || v.Version != 2 {
		t.Fatalf("after the deadline: %+v", v)
	}
	wantRows(t, f.rows(), "all dev-1 compliant GRACE", "all dev-1 noncompliant NONCOMPLIANT")
	// The next transition is now the host going stale, so it is no longer due.
	if due, err := f.st.DueVerdicts(f.ctx, f.clock.Now(), 10); err != nil || len(due) != 0 {
		t.Fatalf("still due after the flip: %v, %v", due, err)
	}
	if nt := f.verdict("h1").NextTransition; nt == nil || !nt.Equal(failedAt.Add(compliance.DefaultStaleAfter)) {
		t.Fatalf("next transition after the flip %v, want the stale time", nt)
	}
}

// racingStore lets another replica save first the first time SaveVerdict is
// called.
type racingStore struct {
	*sqlite.Store
	mu     sync.Mutex
	before func()
	saves  int
}

func (r *racingStore) SaveVerdict(ctx context.Context, v store.Verdict, prev int64, rows []store.OutboxRow) error {
	r.mu.Lock()
	b := r.before
	r.before = nil
	r.saves++
	r.mu.Unlock()
	if b != nil {
		b()
	}
	return r.Store.SaveVerdict(ctx, v, prev, rows)
}

func TestLostRaceEnqueuesOnce(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("a")
	f.integration("b")
	f.host("h1", "default", "dev-1")
	f.result("h1", "disk", store.StatusPass, f.base)
	other := f.engine(nil)
	rs := &racingStore{Store: f.st}
	e := f.engine(func(c *Config) { c.Store = rs })

	for i, step := range []struct{ status, state string }{
		{store.StatusPass, "COMPLIANT"}, {store.StatusFail, "NONCOMPLIANT"}, {store.StatusPass, "COMPLIANT"},
	} {
		at := f.base.Add(time.Duration(i) * time.Minute)
		if i > 0 {
			f.result("h1", "disk", step.status, at)
		}
		f.clock.Set(at)
		var otherErr error
		rs.mu.Lock()
		rs.before = func() { _, otherErr = other.Evaluate(f.ctx, "h1", false) }
		rs.saves = 0
		rs.mu.Unlock()
		v := f.evaluate(e, "h1", false)
		if otherErr != nil {
			t.Fatal(otherErr)
		}
		if v.State != step.state || v.Version != int64(i+1) {
			t.Fatalf("step %d: %+v, want %s version %d", i, v, step.state, i+1)
		}
		if rs.saves != 1 {
			t.Fatalf("step %d: %d saves by the losing engine, want 1 (the lost one)", i, rs.saves)
		}
		if n := len(f.rows()); n != 2*(i+1) {
			t.Fatalf("step %d: %d rows, want %d", i, n, 2*(i+1))
		}
	}
}

// afterResults runs then once, right after the first LatestResults read:
// results arriving, and another replica saving verdicts from them, while
// this engine is between its reads.
type afterResults struct {
	*sqlite.Store
	then func()
}

func (a *afterResults) LatestResults(ctx context.Context, hostID string) ([]store.Result, error) {
	rs, err := a.Store.LatestResults(ctx, hostID)
	if a.then != nil {
		then := a.then
		a.then = nil
		then()
	}
	return rs, err
}

// An evaluation that read the results before another replica saved a
// verdict from newer ones must not save over it: its inputs are stale.
func TestStaleInputsLoseToNewerVerdict(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("a")
	f.host("h1", "default", "dev-1")
	f.result("h1", "disk", store.StatusPass, f.base)
	other := f.engine(nil)
	if v := f.evaluate(other, "h1", false); v.State != "COMPLIANT" {
		t.Fatalf("start: %+v", v)
	}
	f.clock.Set(f.base.Add(time.Minute))
	f.result("h1", "disk", store.StatusFail, f.base.Add(time.Minute))
	ar := &afterResults{Store: f.st}
	ar.then = func() {
		// This engine holds the FAIL; the other replica sees it, then a PASS.
		if v := f.evaluate(other, "h1", false); v.State != "NONCOMPLIANT" {
			t.Errorf("other on the FAIL: %+v", v)
		}
		f.clock.Set(f.base.Add(2 * time.Minute))
		f.result("h1", "disk", store.StatusPass, f.base.Add(2*time.Minute))
		if v := f.evaluate(other, "h1", false); v.State != "COMPLIANT" {
			t.Errorf("other on the PASS: %+v", v)
		}
	}
	e := f.engine(func(c *Config) { c.Store = ar })
	if v := f.evaluate(e, "h1", false); v.State != "COMPLIANT" {
		t.Fatalf("evaluation from stale results saved %+v, want the newer COMPLIANT kept", v)
	}
	if v := f.verdict("h1"); v.State != "COMPLIANT" || v.Version != 3 {
		t.Fatalf("stored verdict %+v, want COMPLIANT version 3", v)
	}
	var desired []string
	for _, r := range f.rows() {
		desired = append(desired, r.Desired)
	}
	if got := strings.Join(desired, ","); got != "compliant,noncompliant,compliant" {
		t.Fatalf("rows %s, want compliant,noncompliant,compliant", got)
	}
}

func TestConcurrentEnginesEnqueueEachTransitionOnce(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("a")
	f.integration("b")
	f.host("h1", "default", "dev-1")
	engines := []*Engine{f.engine(nil), f.engine(nil), f.engine(nil)}
	const transitions = 20
	for i := range transitions {
		status := store.StatusPass
		if i%2 == 1 {
			status = store.StatusFail
		}
		at := f.base.Add(time.Duration(i+1) * time.Second)
		f.result("h1", "disk", status, at)
		f.clock.Set(at)
		var wg sync.WaitGroup
		errs := make(chan error, len(engines)*2)
		for _, e := range engines {
			for range 2 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := e.Evaluate(f.ctx, "h1", false); err != nil {
						errs <- err
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if v := f.verdict("h1"); v.Version != int64(i+1) {
			t.Fatalf("transition %d: version %d, want %d", i, v.Version, i+1)
		}
	}
	rows := f.rows()
	if len(rows) != 2*transitions {
		t.Fatalf("%d rows for %d transitions and 2 integrations", len(rows), transitions)
	}
	for i := 0; i < len(rows); i += 2 {
		want := compliance.DesiredCompliant
		if (i/2)%2 == 1 {
			want = compliance.DesiredNoncompliant
		}
		if rows[i].Desired != want || rows[i+1].Desired != want || rows[i].IntegrationID == rows[i+1].IntegrationID {
			t.Fatalf("transition %d rows %q, want one %s per integration", i/2, rowKeys(rows[i:i+2]), want)
		}
	}
}

// drain empties the queue without evaluating.
func drain(e *Engine) int {
	n := 0
	for {
		if _, _, ok := e.next(); !ok {
			return n
		}
		e.mu.Lock()
		e.inflight--
		e.mu.Unlock()
		n++
	}
}

func TestObserveRechecksUnchangedHostAtMostOncePerRecheckEvery(t *testing.T) {
	f := newFixture(t)
	e := f.engine(func(c *Config) { c.RecheckEvery = time.Hour })

	e.Observe("h1", false)
	if n := drain(e); n != 1 {
		t.Fatalf("first unchanged batch queued %d, want 1", n)
	}
	for range 3 {
		e.Observe("h1", false)
	}
	if n := drain(e); n != 0 {
		t.Fatalf("unchanged batches within RecheckEvery queued %d, want 0", n)
	}
	e.Observe("h1", true)
	if n := drain(e); n != 1 {
		t.Fatalf("a changed batch queued %d, want 1", n)
	}
	e.Observe("h2", false) // per host
	if n := drain(e); n != 1 {
		t.Fatalf("another host's first batch queued %d, want 1", n)
	}

	// Once RecheckEvery has passed, an unchanged batch is evaluated again.
	f.clock.Set(f.clock.Now().Add(time.Hour))
	e.Observe("h1", false)
	if n := drain(e); n != 1 {
		t.Fatalf("unchanged batch after RecheckEvery queued %d, want 1", n)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestRunEvaluatesNotifiedAndDueHosts(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0), policy("fw", 5*time.Minute))
	f.integration("all")
	f.host("h1", "default", "dev-1")
	f.host("h2", "default", "dev-2")
	f.result("h1", "disk", store.StatusPass, f.base)
	f.result("h1", "fw", store.StatusPass, f.base)
	f.result("h2", "disk", store.StatusPass, f.base)
	f.result("h2", "fw", store.StatusPass, f.base)
	var enqueued atomic.Int32
	e := f.engine(func(c *Config) {
		c.DuePoll = 10 * time.Millisecond
		c.Workers = 2
		c.Enqueued = func() { enqueued.Add(1) }
	})
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()

	state := func(id string) string {
		v, err := f.st.GetVerdict(f.ctx, id)
		if err != nil {
			return ""
		}
		return v.State
	}
	// The start-up sweep evaluates every host.
	waitFor(t, "the start-up sweep", func() bool { return state("h1") == "COMPLIANT" && state("h2") == "COMPLIANT" })

	// A failing result, then Notify: NONCOMPLIANT.
	f.clock.Set(f.base.Add(time.Minute))
	f.result("h1", "disk", store.StatusFail, f.base.Add(time.Minute))
	e.Notify("h1", false)
	waitFor(t, "h1 non-compliant", func() bool { return state("h1") == "NONCOMPLIANT" })

	// A failure in grace (still compliant in Entra: no write), then only the
	// clock moves: the due poll flips it.
	f.result("h2", "fw", store.StatusFail, f.base.Add(time.Minute))
	e.Notify("h2", false)
	waitFor(t, "h2 in grace", func() bool { return state("h2") == "GRACE" })
	f.clock.Set(f.base.Add(7 * time.Minute))
	waitFor(t, "h2 past its grace deadline", func() bool { return state("h2") == "NONCOMPLIANT" })

	// A deleted host is ignored.
	if err := f.st.DeleteHost(f.ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	e.Notify("h1", true)
	e.Notify("h2", false)
	waitFor(t, "the queue to drain", func() bool { return e.Pending() == 0 })
	if _, err := f.st.GetVerdict(f.ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted host's verdict: %v", err)
	}

	wantRows(t, filterHost(f.rows(), "h1"), "all dev-1 compliant COMPLIANT", "all dev-1 noncompliant NONCOMPLIANT")
	wantRows(t, filterHost(f.rows(), "h2"), "all dev-2 compliant COMPLIANT", "all dev-2 noncompliant NONCOMPLIANT")
}

func filterHost(items []store.SyncItem, host string) []store.SyncItem {
	var out []store.SyncItem
	for _, it := range items {
		if it.HostID == host {
			out = append(out, it)
		}
	}
	return out
}

func TestDeletedHostIsIgnored(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("all")
	f.host("h1", "default", "dev-1")
	e := f.engine(nil)

	v, err := e.Evaluate(f.ctx, "never-enrolled", true)
	if err != nil || v.HostID != "" || v.Version != 0 {
		t.Fatalf("unknown host: %+v, %v", v, err)
	}
	f.result("h1", "disk", store.StatusFail, f.base)
	f.evaluate(e, "h1", false)
	if err := f.st.DeleteHost(f.ctx, "h1"); err != nil {
		t.Fatal(err)
	}
	v, err = e.Evaluate(f.ctx, "h1", true)
	if err != nil || v.Version != 0 {
		t.Fatalf("deleted host: %+v, %v", v, err)
	}
	if _, err := f.st.GetVerdict(f.ctx, "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted host has a verdict again: %v", err)
	}
	if n := len(f.rows()); n != 1 {
		t.Fatalf("%d rows, want only the one from before the delete", n)
	}
}

func TestExemptionExpiryAndStalenessAreTimeDriven(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("all")
	f.host("h1", "default", "dev-1")
	f.result("h1", "disk", store.StatusFail, f.base)
	expires := f.base.Add(time.Hour)
	if err := f.st.CreateExemption(f.ctx, store.Exemption{ID: "ex-1", HostID: "h1", PolicyID: "disk", Reason: "replacing the disk", ExpiresAt: expires}); err != nil {
		t.Fatal(err)
	}
	e := f.engine(nil)

	// Exempt: compliant until the exemption ends.
	v := f.evaluate(e, "h1", false)
	if v.State != "COMPLIANT" || v.Desired != compliance.DesiredCompliant || v.NextTransition == nil || !v.NextTransition.Equal(expires) {
		t.Fatalf("exempt: %+v (next %v)", v, v.NextTransition)
	}
	f.clock.Set(expires)
	due, err := f.st.DueVerdicts(f.ctx, f.clock.Now(), 0)
	if err != nil || len(due) != 1 {
		t.Fatalf("due at the exemption's end: %v, %v", due, err)
	}
	if v := f.evaluate(e, "h1", false); v.State != "NONCOMPLIANT" {
		t.Fatalf("after the exemption: %+v", v)
	}

	// Silent for the default stale-after: UNKNOWN, which Entra must see as
	// non-compliant, but that is already the desired state: no new row.
	staleAt := f.base.Add(compliance.DefaultStaleAfter)
	if nt := f.verdict("h1").NextTransition; nt == nil || !nt.Equal(staleAt) {
		t.Fatalf("next transition %v, want the stale time %v", nt, staleAt)
	}
	f.clock.Set(staleAt)
	if due, err := f.st.DueVerdicts(f.ctx, f.clock.Now(), 0); err != nil || len(due) != 1 {
		t.Fatalf("due when stale: %v, %v", due, err)
	}
	if v := f.evaluate(e, "h1", false); v.State != "UNKNOWN" || v.Cause != compliance.CauseStale || v.Desired != compliance.DesiredNoncompliant {
		t.Fatalf("stale: %+v", v)
	}
	wantRows(t, f.rows(), "all dev-1 compliant COMPLIANT", "all dev-1 noncompliant NONCOMPLIANT")

	// Reporting again, passing: compliant, one row.
	f.clock.Set(staleAt.Add(time.Minute))
	f.result("h1", "disk", store.StatusPass, f.clock.Now())
	if v := f.evaluate(e, "h1", false); v.State != "COMPLIANT" {
		t.Fatalf("back: %+v", v)
	}
	wantRows(t, f.rows()[2:], "all dev-1 compliant COMPLIANT")
}

func TestNotifyAllForceWritesEveryHostToANewIntegration(t *testing.T) {
	f := newFixture(t)
	f.policies(policy("disk", 0))
	f.integration("old")
	f.host("h1", "default", "dev-1")
	f.host("h2", "eng", "dev-2")
	f.host("h3", "eng", "") // unmapped
	for _, h := range []string{"h1", "h2", "h3"} {
		f.result(h, "disk", store.StatusPass, f.base)
	}
	e := f.engine(func(c *Config) { c.DuePoll = 10 * time.Millisecond; c.CacheTTL = time.Hour })
	ctx, cancel := context.WithCancel(f.ctx)
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "the start-up sweep", func() bool {
		vs, err := f.st.ListVerdicts(f.ctx)
		return err == nil && len(vs) == 3 && e.Pending() == 0
	})
	if n := len(f.rows()); n != 2 {
		t.Fatalf("%d rows after the sweep, want 2 (mapped hosts)", n)
	}

	// A new integration for team eng; NotifyAll drops the cache and forces.
	f.integration("new", "eng")
	if err := e.NotifyAll(f.ctx, true); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the forced sweep", func() bool {
		items, err := f.st.ListSyncItems(f.ctx, store.SyncPending, "new", 0)
		return err == nil && len(items) == 1 && e.Pending() == 0
	})
	items, err := f.st.ListSyncItems(f.ctx, store.SyncPending, "new", 0)
	if err != nil || len(items) != 1 || items[0].DeviceID != "dev-2" || items[0].Desired != compliance.DesiredCompliant {
		t.Fatalf("rows of the new integration: %+v, %v", items, err)
	}
}
