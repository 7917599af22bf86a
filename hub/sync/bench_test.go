package sync

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/compliance/clocktest"
)

// BenchmarkWorker measures the worker path per outbox row: claim,
// coalesce, batch, quota, a no-latency sink, settle. Half the rows are
// transitions, half repeat the state already written (0 writes).
func BenchmarkWorker(b *testing.B) {
	clk := clocktest.New(t0)
	ob := NewMemOutbox()
	sink := newFakeSink("A", clk)
	w := newWorker(b, ob, clk, resolver(sink), func(c *Config) { c.Limiter = NewLimiter(1<<30, time.Second) })
	const devices = 1000
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("device-%04d", i)
	}
	ctx := context.Background()
	drain := func() {
		for ob.PendingCount() > 0 {
			if _, err := w.RunOnce(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		round := i / devices
		desired := DesiredCompliant
		if (round/2)%2 == 1 { // each state twice in a row: a transition, then a no-op
			desired = DesiredNoncompliant
		}
		if _, err := ob.Enqueue(ctx, Change{IntegrationID: "A", TenantID: "T", DeviceID: ids[i%devices],
			Desired: desired, CreatedAt: t0}); err != nil {
			b.Fatal(err)
		}
		if i%devices == devices-1 {
			drain()
		}
	}
	drain()
	b.StopTimer()
	b.ReportMetric(float64(sink.writes())/float64(b.N), "writes/row")
}
