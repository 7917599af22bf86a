package sync

import "time"

// Metrics receives the worker's counts. Implementations must be safe for
// concurrent use; methods must not block.
type Metrics interface {
	// Written counts changes the sink acknowledged.
	Written(integrationID string, n int)
	// Skipped counts rows finished without a write: superseded by a newer
	// row of the same device, or equal to the last written state.
	Skipped(integrationID string, n int)
	// Retried counts a change rescheduled after a transient failure.
	Retried(integrationID, code string)
	// Throttled counts a tenant pause (429 or integration-wide failure).
	Throttled(integrationID, code string)
	// DeadLettered counts a change given up on.
	DeadLettered(integrationID, code string)
	// Latency observes change creation → sink success (not for repairs).
	Latency(integrationID string, d time.Duration)
}

// NopMetrics discards everything.
type NopMetrics struct{}

func (NopMetrics) Written(string, int)           {}
func (NopMetrics) Skipped(string, int)           {}
func (NopMetrics) Retried(string, string)        {}
func (NopMetrics) Throttled(string, string)      {}
func (NopMetrics) DeadLettered(string, string)   {}
func (NopMetrics) Latency(string, time.Duration) {}
