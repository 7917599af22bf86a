package sync

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	gosync "sync"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/compliance/clocktest"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

type applyCall struct {
	at      time.Time
	low     bool
	changes []Change
}

// fakeSink holds device states like Graph would and records every call.
type fakeSink struct {
	name  string
	clock *clocktest.Manual

	mu       gosync.Mutex
	held     map[string]string // device → state; absent = device not found
	calls    []applyCall
	sentRows map[int64]int       // outbox id → times sent
	history  map[string][]string // device → states written, in order
	outcome  func(c Change, call int) Outcome
	onApply  func(call int)
	reads    int
	readLow  bool
	batchMax int
}

func newFakeSink(name string, clk *clocktest.Manual) *fakeSink {
	return &fakeSink{name: name, clock: clk, held: map[string]string{}, sentRows: map[int64]int{}, history: map[string][]string{}}
}

func (s *fakeSink) Name() string { return s.name }

func (s *fakeSink) Apply(ctx context.Context, cs []Change) []Outcome {
	s.mu.Lock()
	call := len(s.calls)
	s.calls = append(s.calls, applyCall{at: s.clock.Now(), low: IsLowPriority(ctx), changes: append([]Change(nil), cs...)})
	outcome, onApply := s.outcome, s.onApply
	s.mu.Unlock()
	if onApply != nil {
		onApply(call)
	}
	out := make([]Outcome, len(cs))
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range cs {
		s.sentRows[c.OutboxID]++
		o := Outcome{Kind: OutcomeOK}
		if outcome != nil {
			o = outcome(c, call)
		}
		if o.Kind == OutcomeOK {
			s.held[c.DeviceID] = c.Desired
			s.history[c.DeviceID] = append(s.history[c.DeviceID], c.Desired)
		}
		out[i] = o
	}
	return out
}

func (s *fakeSink) Read(ctx context.Context, ids []string) (map[string]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	s.readLow = IsLowPriority(ctx)
	out := map[string]string{}
	for _, id := range ids {
		if v, ok := s.held[id]; ok {
			out[id] = v
		}
	}
	return out, nil
}

func (s *fakeSink) MaxBatch() int { return s.batchMax }

func (s *fakeSink) set(dev, v string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.held[dev] = v
}

func (s *fakeSink) get(dev string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.held[dev]
	return v, ok
}

func (s *fakeSink) del(dev string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.held, dev)
}

func (s *fakeSink) callsCopy() []applyCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]applyCall(nil), s.calls...)
}

func (s *fakeSink) writes() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, h := range s.history {
		n += len(h)
	}
	return n
}

func resolver(sinks ...*fakeSink) SinkResolver {
	m := map[string]Sink{}
	for _, s := range sinks {
		m[s.name] = s
	}
	return func(_ context.Context, id string) (Sink, error) {
		s, ok := m[id]
		if !ok {
			return nil, fmt.Errorf("%w: %s", ErrUnknownIntegration, id)
		}
		return s, nil
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newWorker(t testing.TB, ob Outbox, clk *clocktest.Manual, res SinkResolver, mod func(*Config)) *Worker {
	t.Helper()
	cfg := Config{
		Outbox:      ob,
		Sinks:       res,
		Owner:       "w1",
		Clock:       clk,
		Logger:      quietLogger(),
		BackoffBase: 2 * time.Second,
		Rand:        func() float64 { return 0 },
	}
	if mod != nil {
		mod(&cfg)
	}
	w, err := NewWorker(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func enqueue(t testing.TB, ob *MemOutbox, integ, tenant, dev, desired string, at time.Time) int64 {
	t.Helper()
	id, err := ob.Enqueue(context.Background(), Change{IntegrationID: integ, TenantID: tenant, DeviceID: dev,
		HostID: "host-" + dev, Desired: desired, Verdict: "test", CreatedAt: at})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

func runOnce(t testing.TB, w *Worker) Round {
	t.Helper()
	r, err := w.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func rowByID(ob *MemOutbox, id int64) Row {
	for _, r := range ob.Rows("") {
		if r.OutboxID == id {
			return r
		}
	}
	return Row{}
}

// recMetrics records the metrics hooks.
type recMetrics struct {
	mu        gosync.Mutex
	written   int
	skipped   int
	retried   map[string]int
	throttled int
	dead      map[string]int
	latencies []time.Duration
}

func newRecMetrics() *recMetrics {
	return &recMetrics{retried: map[string]int{}, dead: map[string]int{}}
}

func (m *recMetrics) Written(_ string, n int) { m.mu.Lock(); m.written += n; m.mu.Unlock() }
func (m *recMetrics) Skipped(_ string, n int) { m.mu.Lock(); m.skipped += n; m.mu.Unlock() }
func (m *recMetrics) Retried(_, code string)  { m.mu.Lock(); m.retried[code]++; m.mu.Unlock() }
func (m *recMetrics) Throttled(_, _ string)   { m.mu.Lock(); m.throttled++; m.mu.Unlock() }
func (m *recMetrics) DeadLettered(_, code string) {
	m.mu.Lock()
	m.dead[code]++
	m.mu.Unlock()
}
func (m *recMetrics) Latency(_ string, d time.Duration) {
	m.mu.Lock()
	m.latencies = append(m.latencies, d)
	m.mu.Unlock()
}
