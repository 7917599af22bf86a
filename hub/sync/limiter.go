package sync

import (
	gosync "sync"
	"time"
)

// Graph's device write quota: 3,000 writes per 150 s per app per tenant.
const (
	DefaultQuotaLimit  = 3000
	DefaultQuotaWindow = 150 * time.Second
)

// Limiter is a sliding-window write limiter per key (tenant). It keeps the
// time of every write in the window, so no window of its length ever holds
// more than limit writes; a token bucket of the same rate would allow twice
// the limit in a window after an idle period. Memory is O(limit) per key.
type Limiter struct {
	limit  int
	window time.Duration
	mu     gosync.Mutex
	keys   map[string][]time.Time // write times, oldest first
}

// NewLimiter allows limit writes per window per key.
func NewLimiter(limit int, window time.Duration) *Limiter {
	if limit <= 0 {
		limit = DefaultQuotaLimit
	}
	if window <= 0 {
		window = DefaultQuotaWindow
	}
	return &Limiter{limit: limit, window: window, keys: make(map[string][]time.Time)}
}

// Take grants up to n writes for key at now. When it grants fewer than n,
// retryAt is when the next write becomes possible.
func (l *Limiter) Take(key string, now time.Time, n int) (granted int, retryAt time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := l.prune(key, now)
	granted = min(n, l.limit-len(ev))
	if granted < 0 {
		granted = 0
	}
	for range granted {
		ev = append(ev, now)
	}
	l.keys[key] = ev
	if granted < n {
		retryAt = ev[len(ev)-l.limit].Add(l.window)
	}
	return granted, retryAt
}

// Available returns how many writes key may make at now.
func (l *Limiter) Available(key string, now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev := l.prune(key, now)
	l.keys[key] = ev
	return l.limit - len(ev)
}

// prune drops writes that left the window: a write at t counts while
// now < t+window.
func (l *Limiter) prune(key string, now time.Time) []time.Time {
	ev := l.keys[key]
	i := 0
	for i < len(ev) && !now.Before(ev[i].Add(l.window)) {
		i++
	}
	if i == len(ev) {
		return ev[:0]
	}
	return ev[i:]
}
