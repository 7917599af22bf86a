package sync

import (
	"context"
	"errors"
	"time"
)

// DeviceKey names one device in one integration: the unit of leasing,
// coalescing and last-written state.
type DeviceKey struct {
	IntegrationID string
	DeviceID      string
}

// DeviceWork is one leased device with all its pending rows.
type DeviceWork struct {
	Key DeviceKey
	// LastWritten is the state the sink last acknowledged for the device
	// ("" if never): a coalesced change equal to it is a no-op.
	LastWritten string
	// Desired is the device's current desired state (its latest non-Force
	// row's; "" if none). A Force repair asking for another state was
	// decided before that row and is stale.
	Desired string
	// Changes are all pending rows of the device, due or not, ordered by
	// (CreatedAt, OutboxID). Never empty.
	Changes []Change
	// LeaseUntil is when the lease lapses; the worker starts no send that
	// could outlive it.
	LeaseUntil time.Time
}

// RetryRow keeps a row pending until NextAt.
type RetryRow struct {
	ID       int64
	Attempts int // the new attempt count (unchanged when the row was only deferred)
	NextAt   time.Time
	Code     string
	Error    string
}

// DeadRow moves a row to the dead letters, visible in the admin API.
type DeadRow struct {
	ID       int64
	Attempts int
	Code     string // the sink's error code, e.g. "Request_ResourceNotFound"
	Reason   string
	At       time.Time
}

// Settlement is what became of one leased device. Every claimed row of the
// device appears in exactly one of Done, Retry and Dead. Settling releases
// the device's lease.
type Settlement struct {
	Key DeviceKey
	// Done rows are finished: delivered, superseded by a newer row, or no-ops.
	Done []int64
	// Written, when not empty, is the state the sink now holds: store it as
	// the device's last written state (with WrittenAt).
	Written   string
	WrittenAt time.Time
	Retry     []RetryRow
	Dead      []DeadRow
}

// ErrLeaseLost: a settlement named a device whose lease another owner has
// taken since (the lease lapsed). Settle applies the others and returns an
// error wrapping this.
var ErrLeaseLost = errors.New("outbox lease lost")

// Outbox is the durable queue the worker drains. hub/store backends implement
// it; MemOutbox is the in-memory reference the tests use. Semantics a
// backend must give (the reference schema names are only a suggestion):
//
// Rows live in sync_outbox(id, integration_id, tenant_id, device_id,
// host_id, desired, verdict, created_at, force, low_priority, state
// pending|done|dead, attempts, next_at, last_code, last_error, dead_reason,
// dead_at). The lease and last written state live in one row per device,
// sync_device(integration_id, device_id PRIMARY KEY, tenant_id, host_id,
// lease_owner, lease_until, written, written_at, desired, desired_at).
// The device row is what makes leasing per device: row locks on two outbox
// rows of one device would not exclude each other, so two replicas could
// send a device's old and new state in the wrong order.
//
// Enqueue (inside the verdict transaction): INSERT the outbox row (state
// pending, attempts 0, next_at = created_at) and upsert sync_device
// (INSERT ... ON CONFLICT DO NOTHING, then for a row without Force set
// desired/desired_at when created_at is not older than desired_at).
//
// Claim, in one transaction:
//
//	SELECT d.integration_id, d.device_id FROM sync_device d
//	WHERE (d.lease_until IS NULL OR d.lease_until <= $now)
//	  AND EXISTS (SELECT 1 FROM sync_outbox o WHERE o.integration_id = d.integration_id
//	              AND o.device_id = d.device_id AND o.state = 'pending' AND o.next_at <= $now)
//	ORDER BY <earliest due next_at> LIMIT $max
//	FOR UPDATE OF d SKIP LOCKED;
//	UPDATE sync_device SET lease_owner = $owner, lease_until = $now + $lease WHERE <picked>;
//	SELECT ... FROM sync_outbox WHERE state = 'pending' AND (integration_id, device_id) IN <picked>
//	ORDER BY created_at, id;
//
// so two replicas never hold one device, and a device's rows come together
// (not-yet-due ones too: a newer due row supersedes an older one in backoff).
// SQLite has one writer: BEGIN IMMEDIATE and the same statements without
// SKIP LOCKED. Due times and leases are compared with the $now passed in
// (the worker's clock), not the database clock; hub/sync/outboxtest checks
// all of this and every backend must pass it.
//
// Settle, in one transaction, per settlement: only if sync_device.lease_owner
// = $owner (else skip it and report ErrLeaseLost): Done → state done;
// Retry → attempts, next_at, and last_code, last_error unless both are empty
// (a deferral keeps the last error); Dead → state dead with
// code, reason, attempts, dead_at; Written → written, written_at; then
// lease_owner = NULL, lease_until = NULL. Rows enqueued after the Claim are
// not in the settlement and stay pending. Settle must be atomic per
// settlement at least; the worker calls it once per round.
type Outbox interface {
	// Claim leases up to maxDevices devices that have a due pending row and
	// no live lease, until now+lease, and returns their pending rows.
	Claim(ctx context.Context, owner string, now time.Time, maxDevices int, lease time.Duration) ([]DeviceWork, error)
	// Settle records what became of leased devices and releases them.
	Settle(ctx context.Context, owner string, settlements []Settlement) error
}

// Enqueuer adds a row; the reconcile loop uses it for repairs. (Verdict
// changes are enqueued by the store inside the verdict transaction.) It
// returns the row id.
type Enqueuer interface {
	Enqueue(ctx context.Context, c Change) (int64, error)
}

// DeviceState is what reconcile needs to know about one synced device.
type DeviceState struct {
	Key      DeviceKey
	TenantID string
	HostID   string
	// Desired is the latest enqueued non-Force desired state (the current
	// verdict's), DesiredAt its CreatedAt.
	Desired   string
	DesiredAt time.Time
	// Written is the state last acknowledged by the sink ("" if never).
	Written string
	// Pending: the device has pending rows (it will be written anyway).
	Pending bool
}

// DeviceStates pages through every device that has ever had a row, across
// integrations, ordered by (IntegrationID, DeviceID), starting after the
// given key (zero key = from the start). Fewer than limit rows = last page.
type DeviceStates interface {
	DeviceStates(ctx context.Context, after DeviceKey, limit int) ([]DeviceState, error)
}
