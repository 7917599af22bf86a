package compliance

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Scheduler keeps each host's NextTransition and calls back when it comes,
// so verdicts change on time with no new result (a grace deadline passes, a
// host goes stale). It is safe for concurrent use. A host has at most one
// pending moment: Set replaces it.
type Scheduler struct {
	mu   sync.Mutex
	h    entryHeap
	idx  map[string]*entry
	wake chan struct{}
}

type entry struct {
	host string
	at   time.Time
	i    int
}

// NewScheduler returns an empty scheduler.
func NewScheduler() *Scheduler {
	return &Scheduler{idx: make(map[string]*entry), wake: make(chan struct{}, 1)}
}

// Set schedules hostID at t, replacing any earlier schedule. A zero t
// removes it (the verdict has no pending transition).
func (s *Scheduler) Set(hostID string, t time.Time) {
	if t.IsZero() {
		s.Remove(hostID)
		return
	}
	s.mu.Lock()
	if e, ok := s.idx[hostID]; ok {
		e.at = t
		heap.Fix(&s.h, e.i)
	} else {
		e := &entry{host: hostID, at: t}
		heap.Push(&s.h, e)
		s.idx[hostID] = e
	}
	s.mu.Unlock()
	s.poke()
}

// Remove forgets hostID (deleted host, or no pending transition).
func (s *Scheduler) Remove(hostID string) {
	s.mu.Lock()
	if e, ok := s.idx[hostID]; ok {
		heap.Remove(&s.h, e.i)
		delete(s.idx, hostID)
	}
	s.mu.Unlock()
	s.poke()
}

// Len returns the number of scheduled hosts.
func (s *Scheduler) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.h)
}

// Next returns the earliest scheduled host and moment.
func (s *Scheduler) Next() (hostID string, at time.Time, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.h) == 0 {
		return "", time.Time{}, false
	}
	return s.h[0].host, s.h[0].at, true
}

func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// popDue removes and returns the hosts due at now, earliest first.
func (s *Scheduler) popDue(now time.Time) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var due []string
	for len(s.h) > 0 && !s.h[0].at.After(now) {
		e := heap.Pop(&s.h).(*entry)
		delete(s.idx, e.host)
		due = append(due, e.host)
	}
	return due
}

// Run calls fire(hostID) for each host whose moment has come (on the clock's
// timer, so at the moment itself), until ctx ends; it returns ctx.Err(). The
// host is unscheduled before fire runs: fire re-evaluates the host and Sets
// its new NextTransition. fire runs on Run's goroutine, one host at a time,
// so a slow fire delays later hosts.
func (s *Scheduler) Run(ctx context.Context, clock Clock, fire func(hostID string)) error {
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, id := range s.popDue(clock.Now()) {
			fire(id)
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		var timerC <-chan time.Time
		var t Timer
		if _, at, ok := s.Next(); ok {
			t = clock.NewTimer(at.Sub(clock.Now()))
			timerC = t.C()
		}
		select {
		case <-ctx.Done():
		case <-s.wake:
		case <-timerC:
		}
		if t != nil {
			t.Stop()
		}
	}
}

type entryHeap []*entry

func (h entryHeap) Len() int { return len(h) }
func (h entryHeap) Less(i, j int) bool {
	if h[i].at.Equal(h[j].at) {
		return h[i].host < h[j].host
	}
	return h[i].at.Before(h[j].at)
}
func (h entryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].i, h[j].i = i, j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	e.i = len(*h)
	*h = append(*h, e)
}
func (h *entryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	e.i = -1
	return e
}
