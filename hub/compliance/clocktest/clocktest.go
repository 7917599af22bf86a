// Package clocktest is a hand-driven compliance.Clock for tests: time moves
// only when the test calls Advance or Set, so no test sleeps.
package clocktest

import (
	"sort"
	"sync"
	"time"

	"github.com/posture-dev/posture/hub/compliance"
)

// Manual is a compliance.Clock whose time moves only on Advance/Set.
type Manual struct {
	mu      sync.Mutex
	now     time.Time
	timers  []*timer
	changed chan struct{} // closed and replaced whenever the timer set changes
}

// New returns a clock at t.
func New(t time.Time) *Manual { return &Manual{now: t, changed: make(chan struct{})} }

// Now returns the clock's time.
func (m *Manual) Now() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.now
}

// NewTimer returns a timer that fires when the clock reaches now+d (at once
// if d <= 0).
func (m *Manual) NewTimer(d time.Duration) compliance.Timer {
	m.mu.Lock()
	defer m.mu.Unlock()
	t := &timer{m: m, at: m.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- m.now
		t.fired = true
	} else {
		m.timers = append(m.timers, t)
	}
	m.notifyLocked()
	return t
}

// Advance moves the clock forward by d, firing due timers in time order.
func (m *Manual) Advance(d time.Duration) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setLocked(m.now.Add(d))
}

// Set moves the clock to t (never backwards), firing due timers.
func (m *Manual) Set(t time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if t.After(m.now) {
		m.setLocked(t)
	}
}

func (m *Manual) setLocked(t time.Time) {
	m.now = t
	sort.SliceStable(m.timers, func(i, j int) bool { return m.timers[i].at.Before(m.timers[j].at) })
	kept := m.timers[:0]
	for _, tm := range m.timers {
		if !tm.at.After(t) {
			tm.c <- tm.at
			tm.fired = true
			continue
		}
		kept = append(kept, tm)
	}
	m.timers = kept
	m.notifyLocked()
}

// Pending returns how many timers are waiting.
func (m *Manual) Pending() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.timers)
}

// WaitPending blocks until at least n timers are waiting or the deadline
// (a real-time safety net against a hung test) passes; it reports success.
// Tests use it to know a loop has gone to sleep before they Advance.
func (m *Manual) WaitPending(n int, deadline time.Duration) bool {
	return m.wait(func() bool { return len(m.timers) >= n }, deadline)
}

// WaitTimerAt blocks until a timer due at exactly at is waiting, or the
// real-time deadline passes; it reports success.
func (m *Manual) WaitTimerAt(at time.Time, deadline time.Duration) bool {
	return m.wait(func() bool {
		for _, t := range m.timers {
			if t.at.Equal(at) {
				return true
			}
		}
		return false
	}, deadline)
}

func (m *Manual) wait(cond func() bool, deadline time.Duration) bool {
	limit := time.After(deadline)
	for {
		m.mu.Lock()
		if cond() {
			m.mu.Unlock()
			return true
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-limit:
			return false
		}
	}
}

func (m *Manual) notifyLocked() {
	close(m.changed)
	m.changed = make(chan struct{})
}

type timer struct {
	m     *Manual
	at    time.Time
	c     chan time.Time
	fired bool
}

func (t *timer) C() <-chan time.Time { return t.c }

func (t *timer) Stop() bool {
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	if t.fired {
		return false
	}
	for i, o := range t.m.timers {
		if o == t {
			t.m.timers = append(t.m.timers[:i], t.m.timers[i+1:]...)
			t.m.notifyLocked()
			return true
		}
	}
	return false
}
