// Package outboxtest is the conformance suite for sync.Outbox backends:
// sync.MemOutbox runs it, and so must the SQLite and PostgreSQL stores.
//
//	func TestOutbox(t *testing.T) {
//		outboxtest.Run(t, func(t *testing.T) outboxtest.Backend { return openFreshStore(t) })
//	}
//
// The suite passes its own `now` to Claim and expects the backend to use it
// (not the database clock) for due times and leases.
package outboxtest

import (
	"context"
	"errors"
	"fmt"
	gosync "sync"
	"testing"
	"time"

	hubsync "github.com/posture-dev/posture/hub/sync"
)

// Backend is what the suite exercises.
type Backend interface {
	hubsync.Outbox
	hubsync.Enqueuer
	hubsync.DeviceStates
}

// T0 is the suite's base time.
var T0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// Run runs every case on a fresh backend from open.
func Run(t *testing.T, open func(t *testing.T) Backend) {
	cases := []struct {
		name string
		fn   func(t *testing.T, b Backend)
	}{
		{"EnqueueRejectsBadChanges", enqueueRejects},
		{"ClaimDueDevicesWithAllRows", claimDue},
		{"ClaimLimitEarliestFirst", claimLimit},
		{"LeaseExcludesOthersUntilItLapses", leaseExcludes},
		{"SettleByLostOwnerChangesNothing", settleLost},
		{"SettleDoneRecordsWritten", settleDone},
		{"SettleRetryKeepsRowUntilNextAt", settleRetry},
		{"SettleDeadRemovesRow", settleDead},
		{"RowsEnqueuedDuringLeaseStayPending", enqueuedDuringLease},
		{"DeviceStatesPagesAndIgnoresForce", deviceStates},
		{"ConcurrentClaimsNeverShareADevice", concurrentClaims},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.fn(t, open(t)) })
	}
}

var ctx = context.Background()

func change(integ, dev, desired string, at time.Time) hubsync.Change {
	return hubsync.Change{IntegrationID: integ, TenantID: "tenant-" + integ, DeviceID: dev, HostID: "host-" + dev,
		Desired: desired, Verdict: "NONCOMPLIANT", CreatedAt: at}
}

func enqueue(t *testing.T, b Backend, c hubsync.Change) int64 {
	t.Helper()
	id, err := b.Enqueue(ctx, c)
	if err != nil {
		t.Fatalf("enqueue %+v: %v", c, err)
	}
	if id == 0 {
		t.Fatal("enqueue returned id 0")
	}
	return id
}

func claim(t *testing.T, b Backend, owner string, now time.Time, max int) []hubsync.DeviceWork {
	t.Helper()
	w, err := b.Claim(ctx, owner, now, max, time.Minute)
	if err != nil {
		t.Fatalf("claim: %v", err)
	}
	return w
}

func settle(t *testing.T, b Backend, owner string, s ...hubsync.Settlement) {
	t.Helper()
	if err := b.Settle(ctx, owner, s); err != nil {
		t.Fatalf("settle: %v", err)
	}
}

func ids(w hubsync.DeviceWork) []int64 {
	var out []int64
	for _, c := range w.Changes {
		out = append(out, c.OutboxID)
	}
	return out
}

func states(t *testing.T, b Backend) map[hubsync.DeviceKey]hubsync.DeviceState {
	t.Helper()
	all, err := b.DeviceStates(ctx, hubsync.DeviceKey{}, 1000)
	if err != nil {
		t.Fatal(err)
	}
	m := map[hubsync.DeviceKey]hubsync.DeviceState{}
	for _, s := range all {
		m[s.Key] = s
	}
	return m
}

func enqueueRejects(t *testing.T, b Backend) {
	good := change("A", "d", hubsync.DesiredCompliant, T0)
	bad := []func(*hubsync.Change){
		func(c *hubsync.Change) { c.IntegrationID = "" },
		func(c *hubsync.Change) { c.DeviceID = "" },
		func(c *hubsync.Change) { c.Desired = "Compliant" },
		func(c *hubsync.Change) { c.Desired = "" },
		func(c *hubsync.Change) { c.CreatedAt = time.Time{} },
	}
	for i, mod := range bad {
		c := good
		mod(&c)
		if _, err := b.Enqueue(ctx, c); err == nil {
			t.Errorf("bad change %d accepted: %+v", i, c)
		}
	}
	if w := claim(t, b, "w1", T0.Add(time.Hour), 10); len(w) != 0 {
		t.Fatalf("rejected changes were stored: %+v", w)
	}
}

func claimDue(t *testing.T, b Backend) {
	a1 := enqueue(t, b, change("A", "d1", hubsync.DesiredNoncompliant, T0.Add(-2*time.Second)))
	a3 := enqueue(t, b, change("A", "d1", hubsync.DesiredNoncompliant, T0.Add(time.Second))) // not due yet
	a2 := enqueue(t, b, change("A", "d1", hubsync.DesiredCompliant, T0.Add(-time.Second)))
	enqueue(t, b, change("A", "later", hubsync.DesiredCompliant, T0.Add(time.Hour)))
	w := claim(t, b, "w1", T0, 10)
	if len(w) != 1 {
		t.Fatalf("claimed %d devices, want 1: %+v", len(w), w)
	}
	got := w[0]
	if got.Key != (hubsync.DeviceKey{IntegrationID: "A", DeviceID: "d1"}) || !got.LeaseUntil.Equal(T0.Add(time.Minute)) ||
		got.LastWritten != "" {
		t.Fatalf("work %+v", got)
	}
	if fmt.Sprint(ids(got)) != fmt.Sprint([]int64{a1, a2, a3}) {
		t.Fatalf("rows %v, want %v ordered by created-at", ids(got), []int64{a1, a2, a3})
	}
	c := got.Changes[1]
	if c.IntegrationID != "A" || c.TenantID != "tenant-A" || c.DeviceID != "d1" || c.HostID != "host-d1" ||
		c.Desired != hubsync.DesiredCompliant || c.Verdict != "NONCOMPLIANT" || !c.CreatedAt.Equal(T0.Add(-time.Second)) ||
		c.Attempts != 0 {
		t.Fatalf("row not returned as enqueued: %+v", c)
	}
}

func claimLimit(t *testing.T, b Backend) {
	for i := range 5 {
		enqueue(t, b, change("A", fmt.Sprintf("d%d", i), hubsync.DesiredCompliant, T0.Add(-time.Duration(i)*time.Second)))
	}
	w := claim(t, b, "w1", T0, 2)
	got := map[string]bool{}
	for _, x := range w {
		got[x.Key.DeviceID] = true
	}
	if len(w) != 2 || !got["d4"] || !got["d3"] {
		t.Fatalf("a claim of 2 should take the earliest due, d4 and d3: %+v", w)
	}
	if w2 := claim(t, b, "w2", T0, 10); len(w2) != 3 {
		t.Fatalf("second claim got %d devices, want the other 3", len(w2))
	}
}

func leaseExcludes(t *testing.T, b Backend) {
	enqueue(t, b, change("A", "d", hubsync.DesiredCompliant, T0))
	if w := claim(t, b, "w1", T0, 10); len(w) != 1 {
		t.Fatalf("claim %+v", w)
	}
	if w := claim(t, b, "w2", T0.Add(59*time.Second), 10); len(w) != 0 {
		t.Fatalf("leased device claimed by another owner: %+v", w)
	}
	if w := claim(t, b, "w1", T0.Add(59*time.Second), 10); len(w) != 0 {
		t.Fatalf("leased device claimed twice by its owner: %+v", w)
	}
	if w := claim(t, b, "w2", T0.Add(time.Minute), 10); len(w) != 1 {
		t.Fatalf("lapsed lease not taken over: %+v", w)
	}
}

func settleLost(t *testing.T, b Backend) {
	id := enqueue(t, b, change("A", "d", hubsync.DesiredCompliant, T0))
	w := claim(t, b, "w1", T0, 10)
	claim(t, b, "w2", T0.Add(time.Minute), 10) // lease lapsed, taken over
	err := b.Settle(ctx, "w1", []hubsync.Settlement{{Key: w[0].Key, Done: []int64{id}, Written: hubsync.DesiredCompliant, WrittenAt: T0}})
	if !errors.Is(err, hubsync.ErrLeaseLost) {
		t.Fatalf("settle by the old owner: %v, want ErrLeaseLost", err)
	}
	s := states(t, b)[w[0].Key]
	if s.Written != "" || !s.Pending {
		t.Fatalf("refused settle changed state: %+v", s)
	}
	// The new owner settles fine.
	settle(t, b, "w2", hubsync.Settlement{Key: w[0].Key, Done: []int64{id}, Written: hubsync.DesiredCompliant, WrittenAt: T0})
}

func settleDone(t *testing.T, b Backend) {
	enqueue(t, b, change("A", "d", hubsync.DesiredNoncompliant, T0.Add(-time.Second)))
	enqueue(t, b, change("A", "d", hubsync.DesiredCompliant, T0))
	w := claim(t, b, "w1", T0, 10)
	settle(t, b, "w1", hubsync.Settlement{Key: w[0].Key, Done: ids(w[0]), Written: hubsync.DesiredCompliant, WrittenAt: T0})
	s := states(t, b)[w[0].Key]
	if s.Written != hubsync.DesiredCompliant || s.Pending || s.Desired != hubsync.DesiredCompliant || s.TenantID != "tenant-A" ||
		s.HostID != "host-d" {
		t.Fatalf("state %+v", s)
	}
	if w := claim(t, b, "w2", T0.Add(time.Hour), 10); len(w) != 0 {
		t.Fatalf("done rows claimed again: %+v", w)
	}
	enqueue(t, b, change("A", "d", hubsync.DesiredNoncompliant, T0.Add(time.Second)))
	w = claim(t, b, "w2", T0.Add(time.Second), 10)
	if len(w) != 1 || len(w[0].Changes) != 1 || w[0].LastWritten != hubsync.DesiredCompliant {
		t.Fatalf("claim after write %+v", w)
	}
}

func settleRetry(t *testing.T, b Backend) {
	id := enqueue(t, b, change("A", "d", hubsync.DesiredNoncompliant, T0))
	w := claim(t, b, "w1", T0, 10)
	settle(t, b, "w1", hubsync.Settlement{Key: w[0].Key, Retry: []hubsync.RetryRow{{ID: id, Attempts: 3, NextAt: T0.Add(10 * time.Second), Code: "503", Error: "unavailable"}}})
	if w := claim(t, b, "w1", T0.Add(9*time.Second), 10); len(w) != 0 {
		t.Fatalf("claimed before next-at: %+v", w)
	}
	if s := states(t, b)[w[0].Key]; !s.Pending || s.Written != "" {
		t.Fatalf("state %+v", s)
	}
	w = claim(t, b, "w2", T0.Add(10*time.Second), 10)
	if len(w) != 1 || w[0].Changes[0].Attempts != 3 {
		t.Fatalf("claim after retry %+v", w)
	}
}

func settleDead(t *testing.T, b Backend) {
	id := enqueue(t, b, change("A", "d", hubsync.DesiredNoncompliant, T0))
	w := claim(t, b, "w1", T0, 10)
	settle(t, b, "w1", hubsync.Settlement{Key: w[0].Key, Dead: []hubsync.DeadRow{{ID: id, Attempts: 1, Code: "Request_ResourceNotFound", Reason: "gone", At: T0}}})
	if w := claim(t, b, "w2", T0.Add(time.Hour), 10); len(w) != 0 {
		t.Fatalf("dead row claimed: %+v", w)
	}
	if s := states(t, b)[w[0].Key]; s.Pending || s.Written != "" || s.Desired != hubsync.DesiredNoncompliant {
		t.Fatalf("state %+v", s)
	}
}

func enqueuedDuringLease(t *testing.T, b Backend) {
	enqueue(t, b, change("A", "d", hubsync.DesiredNoncompliant, T0))
	w := claim(t, b, "w1", T0, 10)
	late := enqueue(t, b, change("A", "d", hubsync.DesiredCompliant, T0.Add(time.Second)))
	settle(t, b, "w1", hubsync.Settlement{Key: w[0].Key, Done: ids(w[0]), Written: hubsync.DesiredNoncompliant, WrittenAt: T0})
	if s := states(t, b)[w[0].Key]; !s.Pending {
		t.Fatalf("row enqueued during the lease lost: %+v", s)
	}
	w = claim(t, b, "w2", T0.Add(time.Second), 10)
	if len(w) != 1 || fmt.Sprint(ids(w[0])) != fmt.Sprint([]int64{late}) || w[0].LastWritten != hubsync.DesiredNoncompliant {
		t.Fatalf("claim %+v", w)
	}
}

func deviceStates(t *testing.T, b Backend) {
	for _, integ := range []string{"B", "A"} {
		for i := range 3 {
			enqueue(t, b, change(integ, fmt.Sprintf("d%d", i), hubsync.DesiredNoncompliant, T0))
		}
	}
	repair := change("A", "d1", hubsync.DesiredCompliant, T0.Add(time.Second))
	repair.Force, repair.LowPriority = true, true
	enqueue(t, b, repair)

	var keys []string
	var after hubsync.DeviceKey
	for range 10 {
		page, err := b.DeviceStates(ctx, after, 4)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range page {
			keys = append(keys, s.Key.IntegrationID+"/"+s.Key.DeviceID)
			if s.Key == (hubsync.DeviceKey{IntegrationID: "A", DeviceID: "d1"}) &&
				(s.Desired != hubsync.DesiredNoncompliant || !s.DesiredAt.Equal(T0)) {
				t.Fatalf("a Force row changed the desired state: %+v", s)
			}
		}
		if len(page) < 4 {
			break
		}
		after = page[len(page)-1].Key
	}
	if fmt.Sprint(keys) != "[A/d0 A/d1 A/d2 B/d0 B/d1 B/d2]" {
		t.Fatalf("pages %v", keys)
	}
	// Force and LowPriority survive the round trip; the claim carries the
	// device's desired state, which the repair did not change (the worker
	// drops a repair that disagrees with it as stale).
	for _, w := range claim(t, b, "w1", T0.Add(time.Second), 10) {
		if w.Desired != hubsync.DesiredNoncompliant {
			t.Fatalf("claimed %v with desired %q, want %q", w.Key, w.Desired, hubsync.DesiredNoncompliant)
		}
		if w.Key.IntegrationID == "A" && w.Key.DeviceID == "d1" {
			last := w.Changes[len(w.Changes)-1]
			if !last.Force || !last.LowPriority {
				t.Fatalf("repair flags lost: %+v", last)
			}
			return
		}
	}
	t.Fatal("A/d1 not claimed")
}

func concurrentClaims(t *testing.T, b Backend) {
	const devices, workers = 60, 4
	for i := range devices {
		enqueue(t, b, change("A", fmt.Sprintf("d%02d", i), hubsync.DesiredCompliant, T0))
	}
	var mu gosync.Mutex
	seen := map[hubsync.DeviceKey]string{}
	var wg gosync.WaitGroup
	errs := make(chan error, workers)
	for n := range workers {
		wg.Add(1)
		go func(owner string) {
			defer wg.Done()
			for range devices {
				w, err := b.Claim(ctx, owner, T0, 3, time.Minute)
				if err != nil {
					errs <- err
					return
				}
				if len(w) == 0 {
					return
				}
				mu.Lock()
				for _, x := range w {
					if prev, ok := seen[x.Key]; ok {
						mu.Unlock()
						errs <- fmt.Errorf("%v claimed by %s and %s", x.Key, prev, owner)
						return
					}
					seen[x.Key] = owner
				}
				mu.Unlock()
			}
		}(fmt.Sprintf("w%d", n))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(seen) != devices {
		t.Fatalf("%d of %d devices claimed", len(seen), devices)
	}
}
