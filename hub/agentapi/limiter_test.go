package agentapi

import (
	"testing"
	"time"
)

func TestFailureLimiterBlocksAfterMaxUntilWindowEnds(t *testing.T) {
	now := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	l := newFailureLimiter(3, time.Minute, func() time.Time { return now })
	for i := range 3 {
		if blocked, _ := l.Blocked("10.0.0.1"); blocked {
			t.Fatalf("blocked after %d failures", i)
		}
		l.Fail("10.0.0.1")
	}
	blocked, until := l.Blocked("10.0.0.1")
	if !blocked || !until.Equal(now.Add(time.Minute)) {
		t.Fatalf("after 3 failures: blocked=%v until %v", blocked, until)
	}
	if blocked, _ := l.Blocked("10.0.0.2"); blocked {
		t.Fatal("another source is blocked too")
	}
	now = now.Add(time.Minute)
	if blocked, _ := l.Blocked("10.0.0.1"); blocked {
		t.Fatal("still blocked once the window ended")
	}
	l.Fail("10.0.0.1")
	if blocked, _ := l.Blocked("10.0.0.1"); blocked {
		t.Fatal("a new window starts counting from zero")
	}
}

func TestFailureLimiterBoundsMemory(t *testing.T) {
	now := time.Date(2026, 11, 23, 6, 0, 0, 0, time.UTC)
	l := newFailureLimiter(3, time.Minute, func() time.Time { return now })
	for i := range maxTracked {
		l.Fail(time.Duration(i).String())
	}
	now = now.Add(2 * time.Minute)
	l.Fail("late")
	if len(l.by) != 1 {
		t.Fatalf("%d sources tracked after every window ended, want 1", len(l.by))
	}
}
