package sync

import (
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/compliance/clocktest"
	"github.com/prometheus/client_golang/prometheus"
)

func TestPromMetricsCountWorkerEvents(t *testing.T) {
	reg := prometheus.NewRegistry()
	pm, err := NewPromMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewPromMetrics(reg); err == nil {
		t.Fatal("double registration accepted")
	}
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	sink.outcome = func(c Change, _ int) Outcome {
		if c.DeviceID == "gone" {
			return Outcome{Kind: OutcomePermanent, Code: "Request_ResourceNotFound"}
		}
		return Outcome{Kind: OutcomeOK}
	}
	w := newWorker(t, ob, clk, resolver(sink), func(c *Config) { c.Metrics = pm })
	enqueue(t, ob, "A", "T", "d1", DesiredNoncompliant, t0.Add(-2*time.Second))
	enqueue(t, ob, "A", "T", "d1", DesiredCompliant, t0.Add(-time.Second))
	enqueue(t, ob, "A", "T", "gone", DesiredCompliant, t0)
	runOnce(t, w)

	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[mf.GetName()] += m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				got[mf.GetName()+"_count"] += float64(m.GetHistogram().GetSampleCount())
				got[mf.GetName()+"_sum"] += m.GetHistogram().GetSampleSum()
			}
		}
	}
	want := map[string]float64{
		"posture_sync_writes_total":          1,
		"posture_sync_skipped_total":         1,
		"posture_sync_dead_letters_total":    1,
		"posture_sync_latency_seconds_count": 1,
		"posture_sync_latency_seconds_sum":   1,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v (all %v)", k, got[k], v, got)
		}
	}
}
