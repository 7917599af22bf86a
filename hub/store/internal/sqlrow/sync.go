package sqlrow

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// CheckHost checks the host exists and, on PostgreSQL, keeps it from being
// deleted until the transaction ends.
func CheckHost(ctx context.Context, tx Conn, d Dialect, mapErr func(error) error, id string) error {
	var one int
	if err := tx.GetContext(ctx, &one, `SELECT 1 FROM hosts WHERE id = $1`+d.KeyLock, id); err != nil {
		return NotFound(err, mapErr, "host", id)
	}
	return nil
}

// Enqueue inserts a pending row due at its created-at and upserts its device
// row: a non-Force row becomes the device's desired state unless a newer one
// is recorded.
func Enqueue(ctx context.Context, tx Conn, d Dialect, mapErr func(error) error, r store.OutboxRow, force, lowPriority bool) (int64, error) {
	if err := store.ValidateOutboxRow(r); err != nil {
		return 0, err
	}
	created := d.Time(store.StoredTime(r.CreatedAt))
	var id int64
	if err := tx.GetContext(ctx, &id, `INSERT INTO sync_outbox (integration_id, tenant_id, device_id, host_id,
		desired, verdict, created_at, force, low_priority, next_at, kind, subject)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $7, $10, $11)
		RETURNING id`, r.IntegrationID, r.TenantID, r.DeviceID, r.HostID, r.Desired, r.Verdict, created,
		force, lowPriority, r.Kind, r.Subject); err != nil {
		return 0, fmt.Errorf("enqueue: %w", mapErr(err))
	}
	desired, desiredAt := r.Desired, created
	if force || r.Kind != "" {
		// Only the attribute's own rows say what the device should hold.
		desired, desiredAt = "", nil
	}
	_, err := tx.ExecContext(ctx, `INSERT INTO sync_device (integration_id, device_id, tenant_id, host_id,
		desired, desired_at) VALUES ($1, $2, $3, $4, $5, $6)
		ON CONFLICT (integration_id, device_id) DO UPDATE SET tenant_id = excluded.tenant_id,
			host_id = excluded.host_id,
			desired = CASE WHEN excluded.desired_at IS NOT NULL AND (sync_device.desired_at IS NULL
				OR excluded.desired_at >= sync_device.desired_at) THEN excluded.desired ELSE sync_device.desired END,
			desired_at = CASE WHEN excluded.desired_at IS NOT NULL AND (sync_device.desired_at IS NULL
				OR excluded.desired_at >= sync_device.desired_at) THEN excluded.desired_at ELSE sync_device.desired_at END`,
		r.IntegrationID, r.DeviceID, r.TenantID, r.HostID, desired, desiredAt)
	if err != nil {
		return 0, fmt.Errorf("enqueue: device %s/%s: %w", r.IntegrationID, r.DeviceID, mapErr(err))
	}
	return id, nil
}

// SaveVerdict writes v (prepared) as version prevVersion+1 if the stored
// version is still prevVersion, and enqueues rows, all inside tx. Two
// writers saving from one version: the second INSERT ... ON CONFLICT DO
// NOTHING or UPDATE ... WHERE version = prev finds nothing to write (on
// PostgreSQL after waiting for the first to commit) and fails with
// ErrConflict, so its transaction (with its rows) rolls back.
func SaveVerdict(ctx context.Context, tx Conn, d Dialect, mapErr func(error) error, v store.Verdict, prevVersion int64, rows []store.OutboxRow) error {
	if err := CheckHost(ctx, tx, d, mapErr, v.HostID); err != nil {
		return fmt.Errorf("save verdict: %w", err)
	}
	args := VerdictArgs(v, d)
	var q string
	if prevVersion == 0 {
		q = InsertVerdict + ` ON CONFLICT (host_id) DO NOTHING`
	} else {
		q = `UPDATE verdicts SET state = $2, cause = $3, desired = $4, reasons = $5, next_transition = $6,
			updated_at = $7, version = $8 WHERE host_id = $1 AND version = $9`
		args = append(args, prevVersion)
	}
	res, err := tx.ExecContext(ctx, q, args...)
	if err != nil {
		return fmt.Errorf("save verdict of host %q: %w", v.HostID, mapErr(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("save verdict of host %q: %w", v.HostID, err)
	} else if n == 0 {
		return fmt.Errorf("save verdict of host %q: version %d is no longer current: %w", v.HostID, prevVersion, store.ErrConflict)
	}
	for _, r := range rows {
		if _, err := Enqueue(ctx, tx, d, mapErr, r, false, false); err != nil {
			return fmt.Errorf("save verdict of host %q: %w", v.HostID, err)
		}
	}
	return nil
}

// RetryDead makes a dead outbox row pending again, due at now with no
// attempts, or a pending row due at now (attempts kept), inside tx.
func RetryDead(ctx context.Context, tx Conn, d Dialect, mapErr func(error) error, id int64, now time.Time) (store.SyncItem, error) {
	var row Outbox
	if err := tx.GetContext(ctx, &row, `SELECT `+OutboxCols+` FROM sync_outbox WHERE id = $1`+d.RowLock, id); err != nil {
		return store.SyncItem{}, NotFound(err, mapErr, "sync item", strconv.FormatInt(id, 10))
	}
	if row.State == store.SyncPending {
		// Waiting out a backoff or a pause: due now, attempts kept.
		if err := tx.GetContext(ctx, &row, `UPDATE sync_outbox SET next_at = CASE WHEN next_at > $1 THEN $1 ELSE next_at END
			WHERE id = $2 RETURNING `+OutboxCols, d.Time(store.StoredTime(now)), id); err != nil {
			return store.SyncItem{}, fmt.Errorf("retry sync item %d: %w", id, err)
		}
		return row.Item(), nil
	}
	if row.State != store.SyncDead {
		return store.SyncItem{}, fmt.Errorf("sync item %d is %s; only pending and dead items can be retried: %w", id, row.State, store.ErrInvalid)
	}
	// The dead-letter reason moves to last_error so the item still shows
	// why it failed before the retry.
	if err := tx.GetContext(ctx, &row, `UPDATE sync_outbox SET state = 'pending', attempts = 0, next_at = $1,
		last_error = CASE WHEN dead_reason <> '' THEN dead_reason ELSE last_error END,
		dead_reason = '', dead_at = NULL WHERE id = $2 RETURNING `+OutboxCols, d.Time(store.StoredTime(now)), id); err != nil {
		return store.SyncItem{}, fmt.Errorf("retry sync item %d: %w", id, err)
	}
	// The device row is gone if the integration was deleted; without it
	// the row could never be claimed.
	if _, err := tx.ExecContext(ctx, `INSERT INTO sync_device (integration_id, device_id, tenant_id, host_id)
		VALUES ($1, $2, $3, $4) ON CONFLICT (integration_id, device_id) DO NOTHING`,
		row.IntegrationID, row.DeviceID, row.TenantID, row.HostID); err != nil {
		return store.SyncItem{}, fmt.Errorf("retry sync item %d: device row: %w", id, err)
	}
	return row.Item(), nil
}

// CreateExemption stores a prepared exemption of an existing host inside tx.
func CreateExemption(ctx context.Context, tx Conn, d Dialect, mapErr func(error) error, e store.Exemption) error {
	if err := CheckHost(ctx, tx, d, mapErr, e.HostID); err != nil {
		return fmt.Errorf("create exemption %q: %w", e.ID, err)
	}
	if _, err := tx.ExecContext(ctx, InsertExemption, ExemptionArgs(e, d)...); err != nil {
		return fmt.Errorf("create exemption %q: %w", e.ID, mapErr(err))
	}
	return nil
}
