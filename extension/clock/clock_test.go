package clock

import (
	"testing"
	"time"
)

func TestFakeFiresDueTimersOnly(t *testing.T) {
	f := NewFake(time.Unix(0, 0))
	a := f.After(time.Second)
	b := f.After(time.Minute)
	now := f.After(0)
	select {
	case <-now:
	default:
		t.Fatal("After(0) did not fire at once")
	}
	if f.Waiters() != 2 || !f.NextDeadline().Equal(time.Unix(1, 0)) {
		t.Fatalf("waiters %d next %v", f.Waiters(), f.NextDeadline())
	}
	f.Advance(2 * time.Second)
	select {
	case at := <-a:
		if !at.Equal(time.Unix(2, 0)) {
			t.Fatalf("fired with %v", at)
		}
	default:
		t.Fatal("due timer did not fire")
	}
	select {
	case <-b:
		t.Fatal("timer fired early")
	default:
	}
	f.Advance(time.Minute)
	select {
	case <-b:
	default:
		t.Fatal("second timer did not fire")
	}
}
