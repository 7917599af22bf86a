package agentapi

import (
	"sync"
	"time"
)

// failureLimiter slows down enroll-secret guessing: after max failures from
// one source within window, that source is refused until the window ends.
type failureLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	now    func() time.Time
	by     map[string]*failures
}

type failures struct {
	count int
	start time.Time
}

// maxTracked bounds memory under a spray of sources.
const maxTracked = 100_000

func newFailureLimiter(max int, window time.Duration, now func() time.Time) *failureLimiter {
	return &failureLimiter{max: max, window: window, now: now, by: map[string]*failures{}}
}

// Blocked reports whether src must wait, and until when.
func (l *failureLimiter) Blocked(src string) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.by[src]
	if f == nil {
		return false, time.Time{}
	}
	until := f.start.Add(l.window)
	if !l.now().Before(until) {
		delete(l.by, src)
		return false, time.Time{}
	}
	return f.count >= l.max, until
}

// Fail records a failed attempt from src.
func (l *failureLimiter) Fail(src string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	f := l.by[src]
	if f == nil || !now.Before(f.start.Add(l.window)) {
		if len(l.by) >= maxTracked {
			l.sweep(now)
		}
		f = &failures{start: now}
		l.by[src] = f
	}
	f.count++
}

func (l *failureLimiter) sweep(now time.Time) {
	for k, f := range l.by {
		if !now.Before(f.start.Add(l.window)) {
			delete(l.by, k)
		}
	}
}
