package compliance_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	gosync "sync"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/compliance"
	"github.com/posture-dev/posture/hub/compliance/clocktest"
	"github.com/posture-dev/posture/hub/store"
)

type fakeStore struct {
	mu       gosync.Mutex
	inputs   map[string]compliance.Input
	failLoad map[string]int
	saved    chan string // "host:STATE"
}

func (f *fakeStore) LoadInput(_ context.Context, id string) (compliance.Input, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failLoad[id] > 0 {
		f.failLoad[id]--
		return compliance.Input{}, errors.New("database is locked")
	}
	in, ok := f.inputs[id]
	if !ok {
		return compliance.Input{}, fmt.Errorf("host %s: %w", id, store.ErrNotFound)
	}
	return in, nil
}

func (f *fakeStore) SaveVerdict(_ context.Context, id string, v compliance.Verdict) error {
	f.saved <- id + ":" + string(v.State)
	return nil
}

func TestEngineFlipsAtGraceDeadlineWithoutNewResult(t *testing.T) {
	clk := clocktest.New(t0)
	fs := &fakeStore{inputs: map[string]compliance.Input{}, failLoad: map[string]int{"h2": 1}, saved: make(chan string, 10)}
	host := func(id string) store.Host {
		return store.Host{ID: id, Team: "default", Platform: "darwin", LastSeenAt: t0}
	}
	pol := store.Policy{ID: "disk-encryption", Severity: "high", ConditionalAccess: true, GracePeriod: time.Hour, Revision: 1}
	for _, id := range []string{"h1", "h2"} {
		fs.inputs[id] = compliance.Input{
			Host:     host(id),
			Settings: store.TeamSettings{ConditionalAccess: true},
			Policies: []store.Policy{pol},
			Results: []store.Result{{HostID: id, PolicyID: pol.ID, Revision: 1, Status: store.StatusFail,
				EvaluatedAt: t0, StatusSince: t0}},
		}
	}
	e := compliance.NewEngine(fs, fs, clk, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err := e.ReevaluateAll(context.Background(), []string{"h1", "h2", "deleted"}); err == nil {
		t.Fatal("load failure of h2 not reported")
	}
	expect := func(want string) {
		t.Helper()
		select {
		case got := <-fs.saved:
			if got != want {
				t.Fatalf("saved %s, want %s", got, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("nothing saved, want %s", want)
		}
	}
	expect("h1:GRACE")
	if id, at, _ := e.Scheduler().Next(); id != "h2" || !at.Equal(t0.Add(30*time.Second)) {
		t.Fatalf("failed host not rescheduled: %s %v", id, at)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go e.Run(ctx)
	if !clk.WaitTimerAt(t0.Add(30*time.Second), 5*time.Second) {
		t.Fatal("engine not waiting for the retry")
	}
	clk.Advance(30 * time.Second)
	expect("h2:GRACE")
	if !clk.WaitTimerAt(t0.Add(time.Hour), 5*time.Second) {
		t.Fatal("engine not waiting for the grace deadline")
	}
	clk.Advance(time.Hour - 30*time.Second - time.Millisecond)
	select {
	case got := <-fs.saved:
		t.Fatalf("re-evaluated before the deadline: %s", got)
	default:
	}
	clk.Advance(time.Millisecond)
	got := map[string]bool{}
	for range 2 {
		select {
		case s := <-fs.saved:
			got[s] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("deadline passed, saved only %v", got)
		}
	}
	if !got["h1:NONCOMPLIANT"] || !got["h2:NONCOMPLIANT"] {
		t.Fatalf("saved %v", got)
	}
	// Next for both: going stale 24h after last seen.
	if _, at, _ := e.Scheduler().Next(); !at.Equal(t0.Add(compliance.DefaultStaleAfter)) {
		t.Fatalf("next transition %v", at)
	}
	// A deleted host leaves the schedule.
	fs.mu.Lock()
	delete(fs.inputs, "h1")
	fs.mu.Unlock()
	if _, err := e.Reevaluate(context.Background(), "h1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted host: %v", err)
	}
	if n := e.Scheduler().Len(); n != 1 {
		t.Fatalf("%d hosts scheduled, want 1", n)
	}
}
