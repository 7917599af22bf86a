package sync

import (
	"testing"
	"time"
)

func TestLimiterSlidingWindow(t *testing.T) {
	l := NewLimiter(5, 10*time.Second)
	if g, _ := l.Take("k", t0, 3); g != 3 {
		t.Fatalf("granted %d", g)
	}
	g, retry := l.Take("k", t0.Add(4*time.Second), 4)
	if g != 2 || !retry.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("granted %d retry %v", g, retry)
	}
	if g, _ := l.Take("other", t0, 5); g != 5 {
		t.Fatal("keys share a window")
	}
	if g, retry := l.Take("k", t0.Add(9999*time.Millisecond), 1); g != 0 || !retry.Equal(t0.Add(10*time.Second)) {
		t.Fatalf("granted %d retry %v before the window moved", g, retry)
	}
	// At t0+10s the first three leave the window; the two from t0+4s stay.
	if n := l.Available("k", t0.Add(10*time.Second)); n != 3 {
		t.Fatalf("available %d", n)
	}
	if n := l.Available("k", t0.Add(14*time.Second)); n != 5 {
		t.Fatalf("available %d", n)
	}
}
