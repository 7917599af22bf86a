package sync

import (
	"context"
	"errors"
	"time"

	"github.com/posture-dev/posture/hub/compliance"
)

// Desired states a Change carries (the values of compliance.Desired).
const (
	DesiredCompliant    = compliance.DesiredCompliant
	DesiredNoncompliant = compliance.DesiredNoncompliant
)

// Change is one outbox row: the state one device should hold in one
// integration.
type Change struct {
	OutboxID      int64
	IntegrationID string
	TenantID      string
	DeviceID      string // Entra device id (Host.EffectiveEntraDeviceID)
	HostID        string
	Desired       string // DesiredCompliant | DesiredNoncompliant
	Verdict       string // compliance.State that produced it, for audit and logs
	CreatedAt     time.Time
	// Attempts counts failed sends so far (kept by the outbox).
	Attempts int
	// Force writes even when Desired equals the last written state: set on
	// reconcile repairs, where the sink was found to hold something else.
	Force bool
	// LowPriority: background traffic (reconcile repairs). The worker sends
	// such changes in their own Apply calls with a WithLowPriority context,
	// so the Graph sink can add "x-ms-throttle-priority: Low".
	LowPriority bool
	// Kind is KindAttribute ("") for the device's state, or
	// KindRevokeSessions: revoke the sign-in sessions of the user Subject
	// (a UPN). The worker sends each kind in its own Apply calls, never
	// coalesces one kind into another, and records a written state only
	// for attribute changes.
	Kind    string
	Subject string
}

// Change kinds.
const (
	KindAttribute      = ""
	KindRevokeSessions = "revoke_sessions"
)

// Key returns the device key the change belongs to.
func (c Change) Key() DeviceKey {
	return DeviceKey{IntegrationID: c.IntegrationID, DeviceID: c.DeviceID}
}

// OutcomeKind classifies what a sink did with one change.
type OutcomeKind uint8

// Outcome kinds.
const (
	// OutcomeOK: the sink now holds the desired state.
	OutcomeOK OutcomeKind = iota
	// OutcomeRetry: a transient failure of this change (5xx, timeout,
	// network). Retried after RetryAfter if set, else with exponential
	// backoff and jitter; counts an attempt; dead-lettered after
	// Config.MaxAttempts.
	OutcomeRetry
	// OutcomeThrottled: the tenant cannot take writes now (HTTP 429, or an
	// integration-wide failure such as an expired credential). The worker
	// pauses the whole quota key for RetryAfter (growing backoff if 0) and
	// requeues without counting an attempt: it is not the change's fault.
	OutcomeThrottled
	// OutcomePermanent: will never succeed as sent (device not found, bad
	// request, permission missing). Dead-lettered at once with Code.
	OutcomePermanent
)

func (k OutcomeKind) String() string {
	switch k {
	case OutcomeOK:
		return "ok"
	case OutcomeRetry:
		return "retry"
	case OutcomeThrottled:
		return "throttled"
	case OutcomePermanent:
		return "permanent"
	}
	return "unknown"
}

// Outcome is the sink's answer for one change.
type Outcome struct {
	Kind       OutcomeKind
	RetryAfter time.Duration // server-given wait (Retry-After); 0 = none
	// Code is the machine-readable error (Graph error code such as
	// "Request_ResourceNotFound" or "Authorization_RequestDenied", an
	// AADSTS code, or an HTTP status); shown with dead letters.
	Code    string
	Message string
}

// Sink writes desired device states to one integration (one app in one
// tenant). Apply gets at most the sink's batch size (BatchSizer, else
// Config.BatchSize) changes, all of one integration, each device once, and
// returns exactly one Outcome per change, in order. A missing outcome is
// treated as OutcomeRetry. Apply must not retry 429s itself beyond what fits
// in its context's deadline; it reports them as OutcomeThrottled.
type Sink interface {
	Name() string
	Apply(ctx context.Context, changes []Change) []Outcome
}

// BatchSizer is optionally implemented by a sink whose batches are not 20.
type BatchSizer interface {
	MaxBatch() int
}

// Reader is optionally implemented by a sink for reconcile: it reads the
// state the sink holds for the given devices (at most Config.BatchSize per
// call), mapped back to DesiredCompliant / DesiredNoncompliant, "" when
// the attribute is unset or holds an unrecognised value. A device missing
// from the map was not found (deleted from Entra): reconcile leaves it.
// The context carries WithLowPriority.
type Reader interface {
	Read(ctx context.Context, deviceIDs []string) (map[string]string, error)
}

// DeviceInfo is what a sink's directory says about a device besides the
// state it holds, for checking it against the host's own facts.
type DeviceInfo struct {
	DisplayName     string
	OperatingSystem string
}

// InfoReader is optionally implemented by a Reader that learns device
// facts while reading: DeviceInfo returns what the last Read saw of a
// device (and forgets it).
type InfoReader interface {
	DeviceInfo(deviceID string) (DeviceInfo, bool)
}

// SinkResolver returns the sink for an integration. It returns an error
// wrapping ErrUnknownIntegration when the integration no longer exists
// (its rows are dead-lettered); other errors are retried with backoff.
type SinkResolver func(ctx context.Context, integrationID string) (Sink, error)

// ErrUnknownIntegration: the integration of a change does not exist.
var ErrUnknownIntegration = errors.New("unknown integration")

type lowPriorityKey struct{}

// WithLowPriority marks ctx as background traffic.
func WithLowPriority(ctx context.Context) context.Context {
	return context.WithValue(ctx, lowPriorityKey{}, true)
}

// IsLowPriority reports whether ctx was marked by WithLowPriority.
func IsLowPriority(ctx context.Context) bool {
	v, _ := ctx.Value(lowPriorityKey{}).(bool)
	return v
}
