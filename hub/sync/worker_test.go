package sync

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/compliance/clocktest"
)

func TestCoalescingLatestWinsAndNoOps(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	met := newRecMetrics()
	w := newWorker(t, ob, clk, resolver(sink), func(c *Config) { c.Metrics = met })

	enqueue(t, ob, "A", "T", "d1", DesiredNoncompliant, t0.Add(-3*time.Second))
	enqueue(t, ob, "A", "T", "d1", DesiredCompliant, t0.Add(-2*time.Second))
	enqueue(t, ob, "A", "T", "d1", DesiredNoncompliant, t0.Add(-1*time.Second))
	enqueue(t, ob, "A", "T", "d2", DesiredCompliant, t0.Add(-1*time.Second))

	r := runOnce(t, w)
	if r.Claimed != 2 || r.Written != 2 {
		t.Fatalf("round %+v", r)
	}
	calls := sink.callsCopy()
	if len(calls) != 1 || len(calls[0].changes) != 2 {
		t.Fatalf("calls %+v", calls)
	}
	if v, _ := sink.get("d1"); v != DesiredNoncompliant {
		t.Fatalf("d1 holds %q", v)
	}
	if ob.PendingCount() != 0 || len(ob.Rows(RowDone)) != 4 {
		t.Fatalf("pending %d, done %d", ob.PendingCount(), len(ob.Rows(RowDone)))
	}
	if ob.Written(DeviceKey{"A", "d1"}) != DesiredNoncompliant {
		t.Fatal("last written not recorded")
	}
	if met.skipped != 2 || met.written != 2 || len(met.latencies) != 2 || met.latencies[0] != time.Second {
		t.Fatalf("metrics %+v", met)
	}

	clk.Advance(time.Minute)
	// Same state again: dropped without a write.
	enqueue(t, ob, "A", "T", "d1", DesiredNoncompliant, t0)
	if r := runOnce(t, w); r.Skipped != 1 || r.Written != 0 {
		t.Fatalf("round %+v", r)
	}
	// A flap that ends where it started: still no write.
	enqueue(t, ob, "A", "T", "d1", DesiredCompliant, t0)
	enqueue(t, ob, "A", "T", "d1", DesiredNoncompliant, t0.Add(time.Millisecond))
	if r := runOnce(t, w); r.Skipped != 1 || r.Written != 0 {
		t.Fatalf("round %+v", r)
	}
	if n := sink.writes(); n != 2 {
		t.Fatalf("writes %d, want 2", n)
	}
	// A real transition is written.
	enqueue(t, ob, "A", "T", "d1", DesiredCompliant, t0.Add(time.Second))
	if r := runOnce(t, w); r.Written != 1 {
		t.Fatalf("round %+v", r)
	}
	if ob.PendingCount() != 0 {
		t.Fatal("rows left pending")
	}
}

func TestBatchesPerIntegrationAndSize(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	a, b := newFakeSink("A", clk), newFakeSink("B", clk)
	b.batchMax = 3
	w := newWorker(t, ob, clk, resolver(a, b), nil)
	for i := range 45 {
		enqueue(t, ob, "A", "T", fmt.Sprintf("a%02d", i), DesiredNoncompliant, t0)
	}
	for i := range 7 {
		enqueue(t, ob, "B", "T", fmt.Sprintf("b%02d", i), DesiredNoncompliant, t0)
	}
	if r := runOnce(t, w); r.Written != 52 {
		t.Fatalf("round %+v", r)
	}
	var sizesA, sizesB []int
	for _, c := range a.callsCopy() {
		sizesA = append(sizesA, len(c.changes))
		for _, ch := range c.changes {
			if ch.IntegrationID != "A" {
				t.Fatalf("foreign change in A's batch: %+v", ch)
			}
		}
	}
	for _, c := range b.callsCopy() {
		sizesB = append(sizesB, len(c.changes))
	}
	if fmt.Sprint(sizesA) != "[20 20 5]" || fmt.Sprint(sizesB) != "[3 3 1]" {
		t.Fatalf("batch sizes A %v B %v", sizesA, sizesB)
	}
}

func TestQuotaSlidingWindow(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	const limit, window = 50, 150 * time.Second
	w := newWorker(t, ob, clk, resolver(sink), func(c *Config) { c.Limiter = NewLimiter(limit, window) })
	// Another tenant on the same integration has its own quota.
	for i := range 120 {
		enqueue(t, ob, "A", "T1", fmt.Sprintf("d%03d", i), DesiredNoncompliant, t0)
	}
	enqueue(t, ob, "A", "T2", "other", DesiredNoncompliant, t0)

	first := runOnce(t, w)
	if first.Written != limit+1 || first.Deferred != 70 {
		t.Fatalf("first round %+v", first)
	}
	if next := ob.NextDue(); !next.Equal(t0.Add(window)) {
		t.Fatalf("deferred to %v, want %v", next, t0.Add(window))
	}
	for range 10 {
		if ob.PendingCount() == 0 {
			break
		}
		clk.Set(ob.NextDue())
		runOnce(t, w)
	}
	if ob.PendingCount() != 0 {
		t.Fatal("not drained")
	}
	var times []time.Time
	for _, c := range sink.callsCopy() {
		for _, ch := range c.changes {
			if ch.TenantID == "T1" {
				times = append(times, c.at)
			}
		}
	}
	if len(times) != 120 {
		t.Fatalf("%d writes for T1", len(times))
	}
	for i, ti := range times {
		n := 0
		for _, tj := range times[i:] {
			if tj.Before(ti.Add(window)) {
				n++
			}
		}
		if n > limit {
			t.Fatalf("%d writes in the window starting %v", n, ti)
		}
	}
	if last := times[len(times)-1]; last.Before(t0.Add(2 * window)) {
		t.Fatalf("120 writes finished at %v, faster than the quota allows", last)
	}
	for _, r := range ob.Rows("") {
		if r.Attempts != 0 {
			t.Fatalf("quota deferral counted an attempt: %+v", r)
		}
	}
}

func TestRetryAfterPausesTenant(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	met := newRecMetrics()
	sink.outcome = func(c Change, call int) Outcome {
		if c.TenantID == "T1" && call == 0 {
			return Outcome{Kind: OutcomeThrottled, RetryAfter: 1500 * time.Millisecond, Code: "429", Message: "Too Many Requests"}
		}
		return Outcome{Kind: OutcomeOK}
	}
	w := newWorker(t, ob, clk, resolver(sink), func(c *Config) { c.Metrics = met; c.Concurrency = 1 })
	for i := range 25 { // two batches for T1: the second must not be sent
		enqueue(t, ob, "A", "T1", fmt.Sprintf("d%02d", i), DesiredNoncompliant, t0)
	}
	enqueue(t, ob, "A", "T2", "x", DesiredNoncompliant, t0)

	r := runOnce(t, w)
	if r.Written != 1 || r.Deferred != 25 {
		t.Fatalf("round %+v", r)
	}
	if got := w.PausedUntil("T1"); !got.Equal(t0.Add(1500 * time.Millisecond)) {
		t.Fatalf("paused until %v", got)
	}
	if got := w.PausedKeys(); fmt.Sprint(got) != "[T1]" {
		t.Fatalf("paused keys %v, want [T1]", got)
	}
	t1Calls := 0
	for _, c := range sink.callsCopy() {
		if c.changes[0].TenantID == "T1" {
			t1Calls++
		}
	}
	if t1Calls != 1 {
		t.Fatalf("%d calls to the throttled tenant, want 1", t1Calls)
	}
	// Rows the pause held back without sending show the throttle too.
	for _, row := range ob.Rows(RowPending) {
		if row.Attempts != 0 || !row.NextAt.Equal(t0.Add(1500*time.Millisecond)) || row.Code != "429" || row.Error != "Too Many Requests" {
			t.Fatalf("row %+v", row)
		}
	}
	if met.throttled != 1 {
		t.Fatalf("throttled metric %d", met.throttled)
	}

	clk.Advance(time.Second)
	if r := runOnce(t, w); r.Claimed != 0 {
		t.Fatalf("sent during the pause: %+v", r)
	}
	clk.Advance(500 * time.Millisecond)
	if got := w.PausedKeys(); len(got) != 0 {
		t.Fatalf("paused keys %v after the pause's end", got)
	}
	if r := runOnce(t, w); r.Written != 25 {
		t.Fatalf("round after pause %+v", r)
	}
	if !w.PausedUntil("T1").IsZero() {
		t.Fatal("pause not cleared after success")
	}
}

// resumeOnThrottle ends the pause from inside the round that set it (the
// Throttled hook runs after the pause is set, before its rows are settled):
// an `integrations resume` arriving while the throttled round settles.
type resumeOnThrottle struct {
	*recMetrics
	w *Worker
}

func (m resumeOnThrottle) Throttled(integration, code string) {
	m.recMetrics.Throttled(integration, code)
	m.w.Resume("T1")
}

func TestResumeDuringThrottledRoundFreesItsRows(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	sink.outcome = func(Change, int) Outcome {
		return Outcome{Kind: OutcomeThrottled, RetryAfter: time.Hour, Code: "429", Message: "Too Many Requests"}
	}
	hook := &resumeOnThrottle{recMetrics: newRecMetrics()}
	w := newWorker(t, ob, clk, resolver(sink), func(c *Config) { c.Metrics = hook })
	hook.w = w
	enqueue(t, ob, "A", "T1", "d1", DesiredNoncompliant, t0)
	if r := runOnce(t, w); r.Deferred != 1 {
		t.Fatalf("round %+v", r)
	}
	if !w.PausedUntil("T1").IsZero() {
		t.Fatal("still paused after Resume")
	}
	// Stored with the pause's end, the row would wait an hour for a pause
	// that no longer exists.
	rows := ob.Rows(RowPending)
	if len(rows) != 1 || !rows[0].NextAt.Equal(t0) || rows[0].Attempts != 0 {
		t.Fatalf("rows %+v, want one due now without an attempt", rows)
	}
}

func TestThrottledWithoutRetryAfterBacksOff(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	sink.outcome = func(Change, int) Outcome { return Outcome{Kind: OutcomeThrottled, Code: "AADSTS7000222"} }
	w := newWorker(t, ob, clk, resolver(sink), nil)
	enqueue(t, ob, "A", "T", "d", DesiredNoncompliant, t0)
	var pauses []time.Duration
	for range 3 {
		runOnce(t, w)
		now := clk.Now()
		pauses = append(pauses, w.PausedUntil("T").Sub(now))
		clk.Set(ob.NextDue())
	}
	// Base 2s, jitter source 0: 1s, 2s, 4s.
	if fmt.Sprint(pauses) != "[1s 2s 4s]" {
		t.Fatalf("pauses %v", pauses)
	}
	if row := ob.Rows(RowPending)[0]; row.Attempts != 0 || row.Code != "AADSTS7000222" {
		t.Fatalf("row %+v", row)
	}
}

func TestRetryBackoffThenDeadLetter(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	met := newRecMetrics()
	sink.outcome = func(Change, int) Outcome {
		return Outcome{Kind: OutcomeRetry, Code: "serviceUnavailable", Message: "503 from Graph"}
	}
	w := newWorker(t, ob, clk, resolver(sink), func(c *Config) { c.MaxAttempts = 4; c.Metrics = met })
	id := enqueue(t, ob, "A", "T", "d", DesiredNoncompliant, t0)
	var delays []time.Duration
	for range 3 {
		before := clk.Now()
		if r := runOnce(t, w); r.Retried != 1 {
			t.Fatalf("round %+v", r)
		}
		row := rowByID(ob, id)
		delays = append(delays, row.NextAt.Sub(before))
		if row.Code != "serviceUnavailable" || row.Error != "503 from Graph" {
			t.Fatalf("row %+v", row)
		}
		clk.Set(row.NextAt)
	}
	if fmt.Sprint(delays) != "[1s 2s 4s]" {
		t.Fatalf("delays %v", delays)
	}
	if r := runOnce(t, w); r.Dead != 1 {
		t.Fatalf("round %+v", r)
	}
	row := rowByID(ob, id)
	if row.State != RowDead || row.Code != "serviceUnavailable" || row.Attempts != 4 ||
		!strings.Contains(row.DeadReason, "gave up after 4 attempts") {
		t.Fatalf("dead row %+v", row)
	}
	if met.dead["serviceUnavailable"] != 1 || met.retried["serviceUnavailable"] != 3 {
		t.Fatalf("metrics %+v", met)
	}
	if ob.Written(DeviceKey{"A", "d"}) != "" {
		t.Fatal("dead change recorded as written")
	}
}

func TestRetryAfterOnOneChange(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	sink.outcome = func(_ Change, call int) Outcome {
		if call == 0 {
			return Outcome{Kind: OutcomeRetry, RetryAfter: 3 * time.Second, Code: "503"}
		}
		return Outcome{Kind: OutcomeOK}
	}
	w := newWorker(t, ob, clk, resolver(sink), nil)
	id := enqueue(t, ob, "A", "T", "d", DesiredNoncompliant, t0)
	runOnce(t, w)
	if row := rowByID(ob, id); !row.NextAt.Equal(t0.Add(3*time.Second)) || row.Attempts != 1 {
		t.Fatalf("row %+v", row)
	}
	clk.Advance(3 * time.Second)
	if r := runOnce(t, w); r.Written != 1 {
		t.Fatalf("round %+v", r)
	}
}

func TestBackoffJitterBounds(t *testing.T) {
	w := newWorker(t, NewMemOutbox(), clocktest.New(t0), resolver(), func(c *Config) {
		c.BackoffBase, c.BackoffMax = time.Second, 10*time.Second
		c.Rand = func() float64 { return 0.999 }
	})
	for attempt, nominal := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 4: 8 * time.Second, 9: 10 * time.Second} {
		d := w.backoff(attempt)
		if d < nominal/2 || d > nominal {
			t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, nominal/2, nominal)
		}
		if d < nominal*99/100 {
			t.Fatalf("attempt %d: jitter not applied: %v", attempt, d)
		}
	}
}

func TestPermanentErrorDeadLettersAtOnce(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	sink.outcome = func(c Change, _ int) Outcome {
		if c.DeviceID == "gone" {
			return Outcome{Kind: OutcomePermanent, Code: "Request_ResourceNotFound", Message: "Resource 'gone' does not exist"}
		}
		return Outcome{Kind: OutcomeOK}
	}
	w := newWorker(t, ob, clk, resolver(sink), nil)
	id := enqueue(t, ob, "A", "T", "gone", DesiredNoncompliant, t0)
	enqueue(t, ob, "A", "T", "ok", DesiredNoncompliant, t0)
	if r := runOnce(t, w); r.Dead != 1 || r.Written != 1 {
		t.Fatalf("round %+v", r)
	}
	dead := ob.Rows(RowDead)
	if len(dead) != 1 || dead[0].OutboxID != id || dead[0].Code != "Request_ResourceNotFound" ||
		dead[0].DeadReason != "Resource 'gone' does not exist" || !dead[0].DeadAt.Equal(t0) {
		t.Fatalf("dead letters %+v", dead)
	}
}

func TestSinkResolutionFailures(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	transient := errors.New("decrypt credential: key file unreadable")
	res := func(_ context.Context, id string) (Sink, error) {
		if id == "flaky" {
			return nil, transient
		}
		return nil, fmt.Errorf("%w: %s", ErrUnknownIntegration, id)
	}
	w := newWorker(t, ob, clk, res, nil)
	gone := enqueue(t, ob, "deleted", "T", "d1", DesiredNoncompliant, t0)
	flaky := enqueue(t, ob, "flaky", "T", "d2", DesiredNoncompliant, t0)
	if r := runOnce(t, w); r.Dead != 1 || r.Retried != 1 {
		t.Fatalf("round %+v", r)
	}
	if row := rowByID(ob, gone); row.State != RowDead || row.Code != CodeUnknownIntegration {
		t.Fatalf("row %+v", row)
	}
	if row := rowByID(ob, flaky); row.State != RowPending || row.Attempts != 1 || row.Code != CodeSinkUnavailable ||
		!strings.Contains(row.Error, "key file unreadable") {
		t.Fatalf("row %+v", row)
	}
}

type shortSink struct{ *fakeSink }

func (s shortSink) Apply(ctx context.Context, cs []Change) []Outcome {
	return s.fakeSink.Apply(ctx, cs)[:len(cs)-1]
}

func TestMissingOutcomeIsRetried(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	fs := newFakeSink("A", clk)
	res := func(context.Context, string) (Sink, error) { return shortSink{fs}, nil }
	w := newWorker(t, ob, clk, res, nil)
	enqueue(t, ob, "A", "T", "d1", DesiredNoncompliant, t0)
	last := enqueue(t, ob, "A", "T", "d2", DesiredNoncompliant, t0)
	if r := runOnce(t, w); r.Written != 1 || r.Retried != 1 {
		t.Fatalf("round %+v", r)
	}
	if row := rowByID(ob, last); row.Code != CodeNoOutcome || row.Attempts != 1 {
		t.Fatalf("row %+v", row)
	}
}

// A slow batch must not make the worker start a send after its lease could
// have lapsed: the remaining device is deferred unsent.
func TestNoSendOutlivingTheLease(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	sink.batchMax = 1
	sink.onApply = func(call int) {
		if call == 0 {
			clk.Advance(45 * time.Second) // lease 60s, apply timeout 20s
		}
	}
	w := newWorker(t, ob, clk, resolver(sink), nil)
	enqueue(t, ob, "A", "T", "d1", DesiredNoncompliant, t0)
	second := enqueue(t, ob, "A", "T", "d2", DesiredNoncompliant, t0)
	if r := runOnce(t, w); r.Written != 1 || r.Deferred != 1 {
		t.Fatalf("round %+v", r)
	}
	if len(sink.callsCopy()) != 1 {
		t.Fatal("second device sent near lease expiry")
	}
	if row := rowByID(ob, second); row.State != RowPending || row.Attempts != 0 {
		t.Fatalf("row %+v", row)
	}
	if r := runOnce(t, w); r.Written != 1 {
		t.Fatalf("round %+v", r)
	}
}

func TestInvalidConfig(t *testing.T) {
	if _, err := NewWorker(Config{}); err == nil {
		t.Fatal("worker without outbox accepted")
	}
	_, err := NewWorker(Config{Outbox: NewMemOutbox(), Sinks: resolver(), Lease: 10 * time.Second, ApplyTimeout: 6 * time.Second})
	if err == nil {
		t.Fatal("apply timeout over half the lease accepted")
	}
}

// Two workers on one outbox, with a producer adding transitions while they
// run: no row is ever sent twice, every device ends in its latest state, and
// no device is written the same value twice in a row.
func TestTwoWorkersNeverSendTwice(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	mk := func(owner string) *Worker {
		return newWorker(t, ob, clk, resolver(sink), func(c *Config) {
			c.Owner = owner
			c.ClaimLimit = 7
			c.BatchSize = 5
		})
	}
	w1, w2 := mk("w1"), mk("w2")

	const devices, rounds = 200, 5
	latest := map[string]string{}
	var lmu gosync.Mutex
	produce := func(round int) {
		for d := range devices {
			dev := fmt.Sprintf("d%03d", d)
			desired := DesiredCompliant
			if (d+round)%3 == 0 {
				desired = DesiredNoncompliant
			}
			lmu.Lock()
			latest[dev] = desired
			enqueue(t, ob, "A", "T", dev, desired, t0.Add(time.Duration(round-rounds)*time.Millisecond))
			lmu.Unlock()
		}
	}
	produce(0)
	var wg gosync.WaitGroup
	producerDone := make(chan struct{})
	go func() {
		defer close(producerDone)
		for r := 1; r < rounds; r++ {
			produce(r)
		}
	}()
	errs := make(chan error, 2)
	for _, w := range []*Worker{w1, w2} {
		wg.Add(1)
		go func(w *Worker) {
			defer wg.Done()
			deadline := time.Now().Add(20 * time.Second)
			for time.Now().Before(deadline) {
				if _, err := w.RunOnce(context.Background()); err != nil {
					errs <- err
					return
				}
				select {
				case <-producerDone:
					if ob.PendingCount() == 0 {
						return
					}
				default:
				}
			}
			errs <- errors.New("workers did not drain the outbox")
		}(w)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for id, n := range sink.sentRows {
		if n != 1 {
			t.Fatalf("row %d sent %d times", id, n)
		}
	}
	for dev, want := range latest {
		if got := sink.held[dev]; got != want {
			t.Fatalf("%s holds %q, want %q", dev, got, want)
		}
		h := sink.history[dev]
		for i := 1; i < len(h); i++ {
			if h[i] == h[i-1] {
				t.Fatalf("%s written %q twice in a row: %v", dev, h[i], h)
			}
		}
	}
}

func TestRunLoopNotifyAndPoll(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	w := newWorker(t, ob, clk, resolver(sink), func(c *Config) { c.PollInterval = 5 * time.Second })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()

	if !clk.WaitPending(1, 5*time.Second) {
		t.Fatal("Run never went idle")
	}
	enqueue(t, ob, "A", "T", "d1", DesiredNoncompliant, t0)
	w.Notify()
	waitUntil(t, func() bool { v, _ := sink.get("d1"); return v == DesiredNoncompliant })

	// Without Notify, the next poll finds it.
	if !clk.WaitTimerAt(clk.Now().Add(5*time.Second), 5*time.Second) {
		t.Fatal("Run did not go idle again")
	}
	enqueue(t, ob, "A", "T", "d2", DesiredNoncompliant, t0)
	if _, ok := sink.get("d2"); ok {
		t.Fatal("written before the poll")
	}
	clk.Advance(5 * time.Second)
	waitUntil(t, func() bool { _, ok := sink.get("d2"); return ok })

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

// waitUntil polls a condition another goroutine makes true, with a
// real-time deadline as a safety net; it never waits on the clock under test.
func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for !cond() {
		select {
		case <-deadline:
			t.Fatal("condition not met in time")
		default:
			runtime.Gosched()
		}
	}
}

// A shutdown during a send must still record the write, or the device would
// be sent again once its lease lapses.
func TestSettleSurvivesShutdown(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	ctx, cancel := context.WithCancel(context.Background())
	sink.onApply = func(int) { cancel() }
	w := newWorker(t, ob, clk, resolver(sink), func(c *Config) { c.BatchSize = 1; c.Concurrency = 1 })
	enqueue(t, ob, "A", "T", "d", DesiredNoncompliant, t0)
	later := enqueue(t, ob, "A", "T", "e", DesiredNoncompliant, t0)
	r, err := w.RunOnce(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r.Written != 1 || r.Deferred != 1 || ob.Written(DeviceKey{"A", "d"}) != DesiredNoncompliant {
		t.Fatalf("write not recorded: %+v", r)
	}
	// The device not yet sent is left pending, with no attempt counted.
	if row := rowByID(ob, later); row.State != RowPending || row.Attempts != 0 || len(sink.callsCopy()) != 1 {
		t.Fatalf("row %+v, %d calls", row, len(sink.callsCopy()))
	}
}
