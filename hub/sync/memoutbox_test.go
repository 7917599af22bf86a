package sync

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestMemOutboxLeases(t *testing.T) {
	ctx := context.Background()
	ob := NewMemOutbox()
	enqueue(t, ob, "A", "T", "d1", DesiredCompliant, t0)
	enqueue(t, ob, "A", "T", "d1", DesiredNoncompliant, t0.Add(time.Second)) // not yet due at t0
	enqueue(t, ob, "A", "T", "d2", DesiredCompliant, t0.Add(time.Hour))

	w, err := ob.Claim(ctx, "w1", t0, 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 1 || w[0].Key.DeviceID != "d1" || len(w[0].Changes) != 2 || !w[0].LeaseUntil.Equal(t0.Add(time.Minute)) {
		t.Fatalf("claim %+v", w)
	}
	// Leased: nobody else gets d1, even with new rows.
	enqueue(t, ob, "A", "T", "d1", DesiredCompliant, t0)
	if w2, _ := ob.Claim(ctx, "w2", t0.Add(time.Second), 10, time.Minute); len(w2) != 0 {
		t.Fatalf("leased device claimed again: %+v", w2)
	}
	// A lapsed lease is taken over; the old owner's settle is refused.
	w2, _ := ob.Claim(ctx, "w2", t0.Add(time.Minute), 10, time.Minute)
	if len(w2) != 1 || len(w2[0].Changes) != 3 {
		t.Fatalf("takeover %+v", w2)
	}
	err = ob.Settle(ctx, "w1", []Settlement{{Key: w[0].Key, Done: []int64{w[0].Changes[0].OutboxID}}})
	if !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("settle by old owner: %v", err)
	}
	if ob.PendingCount() != 4 {
		t.Fatal("refused settle changed rows")
	}
	var done []int64
	for _, c := range w2[0].Changes {
		done = append(done, c.OutboxID)
	}
	if err := ob.Settle(ctx, "w2", []Settlement{{Key: w2[0].Key, Done: done, Written: DesiredCompliant}}); err != nil {
		t.Fatal(err)
	}
	if ob.PendingCount() != 1 || ob.Written(w2[0].Key) != DesiredCompliant {
		t.Fatalf("pending %d", ob.PendingCount())
	}
	// Released: claimable again when due.
	if w3, _ := ob.Claim(ctx, "w1", t0.Add(time.Hour), 10, time.Minute); len(w3) != 1 || w3[0].Key.DeviceID != "d2" {
		t.Fatalf("claim after release %+v", w3)
	}
}

func TestMemOutboxRejectsBadChanges(t *testing.T) {
	ob := NewMemOutbox()
	for _, c := range []Change{
		{DeviceID: "d", Desired: DesiredCompliant, CreatedAt: t0},
		{IntegrationID: "A", Desired: DesiredCompliant, CreatedAt: t0},
		{IntegrationID: "A", DeviceID: "d", Desired: "Compliant", CreatedAt: t0},
		{IntegrationID: "A", DeviceID: "d", Desired: DesiredCompliant},
	} {
		if _, err := ob.Enqueue(context.Background(), c); err == nil {
			t.Errorf("accepted %+v", c)
		}
	}
	if ob.PendingCount() != 0 {
		t.Fatal("bad change stored")
	}
}
