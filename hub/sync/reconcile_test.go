package sync

import (
	"context"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/compliance/clocktest"
)

func TestReconcileRepairsDrift(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	w := newWorker(t, ob, clk, resolver(sink), nil)
	for i, d := range []string{"cleared", "flipped", "deleted", "fine"} {
		enqueue(t, ob, "A", "T", d, DesiredCompliant, t0.Add(-time.Duration(i)*time.Millisecond))
	}
	if r := runOnce(t, w); r.Written != 4 {
		t.Fatalf("round %+v", r)
	}
	// Someone else edits Entra.
	sink.set("cleared", "")
	sink.set("flipped", DesiredNoncompliant)
	sink.del("deleted")
	// A device with pending work is left to the worker.
	enqueue(t, ob, "A", "T", "busy", DesiredNoncompliant, t0)
	sink.set("busy", DesiredCompliant)

	notified := 0
	rec, err := NewReconciler(ReconcilerConfig{Devices: ob, Outbox: ob, Sinks: resolver(sink), Clock: clk,
		Logger: quietLogger(), PageSize: 2, OnEnqueue: func() { notified++ }})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rec.RunOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := ReconcileReport{Checked: 4, Drifted: 2, NotFound: 1, Skipped: 1}
	if rep != want {
		t.Fatalf("report %+v, want %+v", rep, want)
	}
	if notified != 1 || !sink.readLow {
		t.Fatalf("notified %d, low priority read %v", notified, sink.readLow)
	}

	before := len(sink.callsCopy())
	if r := runOnce(t, w); r.Written != 3 {
		t.Fatalf("repair round %+v", r)
	}
	var lowDevs, normalDevs []string
	for _, c := range sink.callsCopy()[before:] {
		for _, ch := range c.changes {
			if c.low {
				lowDevs = append(lowDevs, ch.DeviceID)
			} else {
				normalDevs = append(normalDevs, ch.DeviceID)
			}
		}
	}
	sort.Strings(lowDevs)
	if fmt.Sprint(lowDevs) != "[cleared flipped]" || fmt.Sprint(normalDevs) != "[busy]" {
		t.Fatalf("low %v normal %v", lowDevs, normalDevs)
	}
	for dev, want := range map[string]string{"cleared": DesiredCompliant, "flipped": DesiredCompliant, "busy": DesiredNoncompliant} {
		if got, _ := sink.get(dev); got != want {
			t.Fatalf("%s holds %q, want %q", dev, got, want)
		}
	}
	// A second pass finds nothing to repair.
	rep, err = rec.RunOnce(context.Background())
	if err != nil || rep.Drifted != 0 {
		t.Fatalf("second pass %+v, %v", rep, err)
	}
}

// A verdict change enqueued after a repair must win over the repair.
func TestRepairLosesToNewerVerdict(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	w := newWorker(t, ob, clk, resolver(sink), nil)
	enqueue(t, ob, "A", "T", "d", DesiredCompliant, t0)
	runOnce(t, w)
	sink.set("d", "")
	rec, err := NewReconciler(ReconcilerConfig{Devices: ob, Outbox: ob, Sinks: resolver(sink), Clock: clk, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(time.Minute)
	if rep, err := rec.RunOnce(context.Background()); err != nil || rep.Drifted != 1 {
		t.Fatalf("%+v %v", rep, err)
	}
	enqueue(t, ob, "A", "T", "d", DesiredNoncompliant, clk.Now())
	if r := runOnce(t, w); r.Written != 1 {
		t.Fatalf("round %+v", r)
	}
	if got, _ := sink.get("d"); got != DesiredNoncompliant {
		t.Fatalf("holds %q", got)
	}
}

// statesThen runs then once, right after the first page of device states
// was read: a verdict change landing while reconcile is between its read
// of the desired states and its read of the sink.
type statesThen struct {
	*MemOutbox
	then func()
}

func (s *statesThen) DeviceStates(ctx context.Context, after DeviceKey, limit int) ([]DeviceState, error) {
	page, err := s.MemOutbox.DeviceStates(ctx, after, limit)
	if s.then != nil {
		s.then()
		s.then = nil
	}
	return page, err
}

// A repair decided from a desired state that a newer verdict has since
// replaced (and written) must not go out: it would set the device back to
// the old state until the next reconcile.
func TestStaleRepairIsDropped(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	w := newWorker(t, ob, clk, resolver(sink), nil)
	enqueue(t, ob, "A", "T", "d", DesiredCompliant, t0)
	runOnce(t, w)
	clk.Advance(time.Minute)
	devs := &statesThen{MemOutbox: ob, then: func() {
		enqueue(t, ob, "A", "T", "d", DesiredNoncompliant, clk.Now())
		if r := runOnce(t, w); r.Written != 1 {
			t.Fatalf("verdict round %+v", r)
		}
	}}
	rec, err := NewReconciler(ReconcilerConfig{Devices: devs, Outbox: ob, Sinks: resolver(sink), Clock: clk, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if rep, err := rec.RunOnce(context.Background()); err != nil || rep.Drifted != 1 {
		t.Fatalf("reconcile %+v %v: the stale read should look like drift", rep, err)
	}
	before := len(sink.callsCopy())
	if r := runOnce(t, w); r.Written != 0 || r.Skipped != 1 {
		t.Fatalf("repair round %+v, want the stale repair skipped", r)
	}
	if got, _ := sink.get("d"); got != DesiredNoncompliant || len(sink.callsCopy()) != before {
		t.Fatalf("holds %q after %d more sends, want %q untouched", got, len(sink.callsCopy())-before, DesiredNoncompliant)
	}
	if n := len(ob.Rows(RowPending)); n != 0 {
		t.Fatalf("%d rows still pending", n)
	}
}

type noReader struct{ Sink }

func TestReconcileSkipsSinksThatCannotRead(t *testing.T) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	fs := newFakeSink("A", clk)
	enqueue(t, ob, "A", "T", "d", DesiredCompliant, t0)
	w := newWorker(t, ob, clk, resolver(fs), nil)
	runOnce(t, w)
	rec, err := NewReconciler(ReconcilerConfig{Devices: ob, Outbox: ob, Clock: clk, Logger: quietLogger(),
		Sinks: func(context.Context, string) (Sink, error) { return noReader{fs}, nil }})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := rec.RunOnce(context.Background())
	if err != nil || rep.Skipped != 1 || rep.Checked != 0 || fs.reads != 0 {
		t.Fatalf("%+v %v reads %d", rep, err, fs.reads)
	}
}
