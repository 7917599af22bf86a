package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
	hubsync "github.com/posture-dev/posture/hub/sync"
)

// The sync outbox (hub/sync.Outbox, Enqueuer, DeviceStates). The single
// writer connection with immediate transactions serialises Claim, Settle and
// Enqueue, which is what FOR UPDATE SKIP LOCKED buys on PostgreSQL.

var (
	_ hubsync.Outbox       = (*Store)(nil)
	_ hubsync.Enqueuer     = (*Store)(nil)
	_ hubsync.DeviceStates = (*Store)(nil)
)

// Enqueue adds one row (reconcile repairs) and returns its id.
func (s *Store) Enqueue(ctx context.Context, c hubsync.Change) (int64, error) {
	var id int64
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		id, err = sqlrow.Enqueue(ctx, tx, sqlrow.SQLite, mapErr, sqlrow.ChangeRow(c), c.Force, c.LowPriority)
		return err
	})
	return id, err
}

// Claim leases up to maxDevices devices with a due pending row and no live
// lease, earliest due first, and returns all their pending rows.
func (s *Store) Claim(ctx context.Context, owner string, now time.Time, maxDevices int, lease time.Duration) ([]hubsync.DeviceWork, error) {
	if owner == "" || maxDevices <= 0 || lease <= 0 {
		return nil, fmt.Errorf("outbox claim needs an owner, a positive limit and a lease: %w", store.ErrInvalid)
	}
	nowTS, until := ts(now), ts(now.Add(lease))
	var out []hubsync.DeviceWork
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var devs []sqlrow.Claimed
		if err := tx.SelectContext(ctx, &devs, `SELECT d.integration_id, d.device_id, d.written, d.desired
			FROM sync_device d
			JOIN (SELECT integration_id, device_id, min(next_at) AS due FROM sync_outbox
				WHERE state = 'pending' AND next_at <= ?1 GROUP BY integration_id, device_id) o
				ON o.integration_id = d.integration_id AND o.device_id = d.device_id
			WHERE d.lease_until IS NULL OR d.lease_until <= ?1
			ORDER BY o.due, d.integration_id, d.device_id LIMIT ?2`, nowTS, maxDevices); err != nil {
			return fmt.Errorf("outbox claim: %w", err)
		}
		if len(devs) == 0 {
			return nil
		}
		work := sqlrow.NewWork(devs, sqlrow.FromUnixMicro(until))
		keys := make([]any, 0, 2*len(devs))
		for _, d := range devs {
			keys = append(keys, d.IntegrationID, d.DeviceID)
		}
		in := placeholders(len(devs), 2)
		args := append([]any{owner, until}, keys...)
		if _, err := tx.ExecContext(ctx, `UPDATE sync_device SET lease_owner = ?, lease_until = ?
			WHERE (integration_id, device_id) IN (VALUES `+in+`)`, args...); err != nil {
			return fmt.Errorf("outbox claim: lease: %w", err)
		}
		var rows []sqlrow.Outbox
		if err := tx.SelectContext(ctx, &rows, `SELECT `+sqlrow.OutboxCols+` FROM sync_outbox
			WHERE state = 'pending' AND (integration_id, device_id) IN (VALUES `+in+`)
			ORDER BY created_at, id`, keys...); err != nil {
			return fmt.Errorf("outbox claim: rows: %w", err)
		}
		work.Add(rows)
		out = work.Out
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Settle records what became of leased devices and releases them. A device
// whose lease another owner holds is skipped and reported as ErrLeaseLost.
func (s *Store) Settle(ctx context.Context, owner string, ss []hubsync.Settlement) error {
	var lost []hubsync.DeviceKey
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		lost, err = sqlrow.SettleHeld(ss, func(k hubsync.DeviceKey) (bool, error) {
			var held int
			err := tx.GetContext(ctx, &held, `SELECT count(*) FROM sync_device
				WHERE integration_id = ? AND device_id = ? AND lease_owner = ?`, k.IntegrationID, k.DeviceID, owner)
			return held > 0, err
		}, func(st hubsync.Settlement) error { return settleDevice(ctx, tx, st) })
		return err
	})
	if err != nil {
		return err
	}
	return sqlrow.LeaseLost(lost)
}

// settleDevice applies one settlement to rows that are still pending and
// belong to the device, then releases the lease.
func settleDevice(ctx context.Context, tx *sqlx.Tx, st hubsync.Settlement) error {
	k := st.Key
	const own = ` AND integration_id = ? AND device_id = ? AND state = 'pending'`
	for ids := range slices.Chunk(st.Done, maxRowsPerInsert) {
		args := make([]any, 0, len(ids)+2)
		for _, id := range ids {
			args = append(args, id)
		}
		args = append(args, k.IntegrationID, k.DeviceID)
		if _, err := tx.ExecContext(ctx, `UPDATE sync_outbox SET state = 'done'
			WHERE id IN (`+strings.TrimSuffix(strings.Repeat("?,", len(ids)), ",")+`)`+own, args...); err != nil {
			return fmt.Errorf("done: %w", err)
		}
	}
	for _, r := range st.Retry {
		if _, err := tx.ExecContext(ctx, `UPDATE sync_outbox SET attempts = ?1, next_at = ?2,
			last_code = CASE WHEN ?3 = '' AND ?4 = '' THEN last_code ELSE ?3 END,
			last_error = CASE WHEN ?3 = '' AND ?4 = '' THEN last_error ELSE ?4 END
			WHERE id = ?5 AND integration_id = ?6 AND device_id = ?7 AND state = 'pending'`,
			r.Attempts, ts(r.NextAt), r.Code, r.Error, r.ID, k.IntegrationID, k.DeviceID); err != nil {
			return fmt.Errorf("retry row %d: %w", r.ID, err)
		}
	}
	for _, d := range st.Dead {
		if _, err := tx.ExecContext(ctx, `UPDATE sync_outbox SET state = 'dead', attempts = ?, last_code = ?,
			dead_reason = ?, dead_at = ? WHERE id = ?`+own,
			d.Attempts, d.Code, d.Reason, ts(d.At), d.ID, k.IntegrationID, k.DeviceID); err != nil {
			return fmt.Errorf("dead row %d: %w", d.ID, err)
		}
	}
	if st.Written != "" {
		if _, err := tx.ExecContext(ctx, `UPDATE sync_device SET written = ?, written_at = ?
			WHERE integration_id = ? AND device_id = ?`, st.Written, nts(st.WrittenAt), k.IntegrationID, k.DeviceID); err != nil {
			return fmt.Errorf("written: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sync_device SET lease_owner = NULL, lease_until = NULL
		WHERE integration_id = ? AND device_id = ?`, k.IntegrationID, k.DeviceID); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// DeviceStates pages through every device that ever had a row, ordered by
// (integration, device), after the given key.
func (s *Store) DeviceStates(ctx context.Context, after hubsync.DeviceKey, limit int) ([]hubsync.DeviceState, error) {
	return s.shared().DeviceStates(ctx, after, limit)
}
