package sync

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// PromMetrics exports the worker's Metrics as Prometheus collectors:
// posture_sync_{writes,skipped,retries,throttled,dead_letters}_total and
// the posture_sync_latency_seconds histogram (change created → sink
// acknowledged).
type PromMetrics struct {
	writes, skipped    *prometheus.CounterVec
	retries, throttled *prometheus.CounterVec
	deadLetters        *prometheus.CounterVec
	latency            *prometheus.HistogramVec
}

// NewPromMetrics creates the collectors and registers them with reg.
func NewPromMetrics(reg prometheus.Registerer) (*PromMetrics, error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "posture", Subsystem: "sync", Name: name, Help: help}, labels)
	}
	m := &PromMetrics{
		writes:      counter("writes_total", "Device states acknowledged by a sink.", "integration"),
		skipped:     counter("skipped_total", "Outbox rows finished without a write (superseded or unchanged).", "integration"),
		retries:     counter("retries_total", "Changes rescheduled after a transient failure.", "integration", "code"),
		throttled:   counter("throttled_total", "Tenant pauses after a 429 or an integration-wide failure.", "integration", "code"),
		deadLetters: counter("dead_letters_total", "Changes given up on.", "integration", "code"),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "posture", Subsystem: "sync", Name: "latency_seconds",
			Help:    "Time from a verdict change to the sink acknowledging it.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2, 5, 10, 30, 60, 300, 1800},
		}, []string{"integration"}),
	}
	for _, c := range []prometheus.Collector{m.writes, m.skipped, m.retries, m.throttled, m.deadLetters, m.latency} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register sync metrics: %w", err)
		}
	}
	return m, nil
}

func (m *PromMetrics) Written(integ string, n int) { m.writes.WithLabelValues(integ).Add(float64(n)) }
func (m *PromMetrics) Skipped(integ string, n int) { m.skipped.WithLabelValues(integ).Add(float64(n)) }
func (m *PromMetrics) Retried(integ, code string)  { m.retries.WithLabelValues(integ, code).Inc() }
func (m *PromMetrics) Throttled(integ, code string) {
	m.throttled.WithLabelValues(integ, code).Inc()
}
func (m *PromMetrics) DeadLettered(integ, code string) {
	m.deadLetters.WithLabelValues(integ, code).Inc()
}
func (m *PromMetrics) Latency(integ string, d time.Duration) {
	m.latency.WithLabelValues(integ).Observe(d.Seconds())
}
