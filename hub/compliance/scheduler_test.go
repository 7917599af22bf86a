package compliance_test

import (
	"context"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/compliance"
	"github.com/posture-dev/posture/hub/compliance/clocktest"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func TestSchedulerOrderAndReplace(t *testing.T) {
	s := compliance.NewScheduler()
	s.Set("c", t0.Add(3*time.Second))
	s.Set("a", t0.Add(5*time.Second))
	s.Set("b", t0.Add(time.Second))
	s.Set("a", t0.Add(500*time.Millisecond)) // replaces, earlier
	s.Set("b", time.Time{})                  // zero removes
	if s.Len() != 2 {
		t.Fatalf("len %d", s.Len())
	}
	if id, at, ok := s.Next(); !ok || id != "a" || !at.Equal(t0.Add(500*time.Millisecond)) {
		t.Fatalf("next %s %v %v", id, at, ok)
	}
	s.Remove("a")
	s.Remove("nope")
	if id, _, _ := s.Next(); id != "c" {
		t.Fatalf("next %s", id)
	}
}

func TestSchedulerRunFiresAtEachMoment(t *testing.T) {
	clk := clocktest.New(t0)
	s := compliance.NewScheduler()
	s.Set("h1", t0.Add(10*time.Second))
	s.Set("h2", t0.Add(20*time.Second))
	s.Set("h3", t0.Add(20*time.Second))

	fired := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- s.Run(ctx, clk, func(id string) {
			fired <- id
			if id == "h1" {
				s.Set("h1", clk.Now().Add(time.Hour)) // re-scheduled by its evaluation
			}
		})
	}()
	expectNone := func() {
		t.Helper()
		select {
		case id := <-fired:
			t.Fatalf("%s fired early at %v", id, clk.Now())
		default:
		}
	}
	expect := func(want ...string) {
		t.Helper()
		got := map[string]bool{}
		for range want {
			select {
			case id := <-fired:
				got[id] = true
			case <-time.After(5 * time.Second):
				t.Fatalf("timeout waiting for %v, got %v", want, got)
			}
		}
		for _, w := range want {
			if !got[w] {
				t.Fatalf("want %v, got %v", want, got)
			}
		}
	}
	if !clk.WaitPending(1, 5*time.Second) {
		t.Fatal("Run never armed a timer")
	}
	clk.Advance(9 * time.Second)
	expectNone()
	clk.Advance(time.Second)
	expect("h1")
	if !clk.WaitPending(1, 5*time.Second) {
		t.Fatal("Run did not re-arm")
	}
	clk.Advance(10 * time.Second)
	expect("h2", "h3")

	// A host scheduled while Run sleeps, earlier than anything pending, wakes it.
	if !clk.WaitPending(1, 5*time.Second) {
		t.Fatal("Run did not re-arm")
	}
	s.Set("h4", clk.Now().Add(time.Second))
	if !clk.WaitTimerAt(clk.Now().Add(time.Second), 5*time.Second) {
		t.Fatal("Run did not re-arm for h4")
	}
	clk.Advance(time.Second)
	expect("h4")
	expectNone()
	if id, at, _ := s.Next(); id != "h1" || !at.Equal(t0.Add(10*time.Second+time.Hour)) {
		t.Fatalf("next %s %v", id, at)
	}

	cancel()
	select {
	case err := <-done:
		if err != context.Canceled {
			t.Fatalf("Run returned %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}
