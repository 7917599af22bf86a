package sync

import (
	"context"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/compliance/clocktest"
)

// A session revocation row is its own action: it is not coalesced into
// the attribute write of the same device, goes after it, never becomes
// the device's written state, and two pending revocations are sent once.
func TestRevokeRowsAreTheirOwnKind(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	w := newWorker(t, ob, clk, resolver(sink), nil)
	enqueue(t, ob, "A", "T1", "d1", DesiredNoncompliant, t0)
	for range 2 {
		if _, err := ob.Enqueue(context.Background(), Change{IntegrationID: "A", TenantID: "T1", DeviceID: "d1", HostID: "host-d1",
			Desired: DesiredNoncompliant, Verdict: "NONCOMPLIANT", CreatedAt: t0.Add(time.Millisecond), Kind: KindRevokeSessions, Subject: "ada@example.com"}); err != nil {
			t.Fatal(err)
		}
	}
	r := runOnce(t, w)
	if r.Written != 2 || r.Dead != 0 {
		t.Fatalf("round %+v", r)
	}
	calls := sink.callsCopy()
	if len(calls) != 2 || calls[0].changes[0].Kind != KindAttribute || calls[1].changes[0].Kind != KindRevokeSessions ||
		len(calls[1].changes) != 1 || calls[1].changes[0].Subject != "ada@example.com" {
		t.Fatalf("calls %+v", calls)
	}
	if n := len(ob.Rows(RowPending)); n != 0 {
		t.Fatalf("%d rows still pending", n)
	}
	// The attribute's written state is what a later no-op check compares.
	clk.Advance(time.Second)
	enqueue(t, ob, "A", "T1", "d1", DesiredNoncompliant, t0.Add(time.Second))
	if r := runOnce(t, w); r.Skipped != 1 || r.Written != 0 {
		t.Fatalf("same state again: %+v", r)
	}
}

// Resume ends a key's pause at once: a change enqueued after the fix is
// sent in the next round, not at the end of the pause.
func TestResumeEndsPause(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	sink.outcome = func(c Change, call int) Outcome {
		if call == 0 {
			return Outcome{Kind: OutcomeThrottled, RetryAfter: 5 * time.Minute, Code: "AADSTS7000222", Message: "expired"}
		}
		return Outcome{Kind: OutcomeOK}
	}
	w := newWorker(t, ob, clk, resolver(sink), nil)
	enqueue(t, ob, "A", "T1", "d1", DesiredNoncompliant, t0)
	runOnce(t, w)
	if w.PausedUntil("T1").IsZero() {
		t.Fatal("not paused")
	}
	enqueue(t, ob, "A", "T1", "d2", DesiredNoncompliant, t0)
	if r := runOnce(t, w); r.Written != 0 || r.Deferred != 1 {
		t.Fatalf("sent during the pause: %+v", r)
	}
	w.Resume("T1")
	enqueue(t, ob, "A", "T1", "d3", DesiredNoncompliant, t0)
	if r := runOnce(t, w); r.Written != 1 {
		t.Fatalf("after resume: %+v", r)
	}
	if !w.PausedUntil("T1").IsZero() {
		t.Fatal("still paused")
	}
}
