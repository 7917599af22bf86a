package postgres

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
	hubsync "github.com/posture-dev/posture/hub/sync"
)

// The sync outbox (hub/sync.Outbox, Enqueuer, DeviceStates). Claim locks
// device rows FOR UPDATE SKIP LOCKED, so replicas on one database share the
// work and never hold one device at once.

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
		id, err = sqlrow.Enqueue(ctx, tx, sqlrow.Postgres, mapErr, sqlrow.ChangeRow(c), c.Force, c.LowPriority)
		return err
	})
	return id, err
}

// Claim leases up to maxDevices devices with a due pending row and no live
// lease, earliest due first, and returns all their pending rows. Device rows
// another transaction holds are skipped, not waited for.
func (s *Store) Claim(ctx context.Context, owner string, now time.Time, maxDevices int, lease time.Duration) ([]hubsync.DeviceWork, error) {
	if owner == "" || maxDevices <= 0 || lease <= 0 {
		return nil, fmt.Errorf("outbox claim needs an owner, a positive limit and a lease: %w", store.ErrInvalid)
	}
	nowTS, until := store.StoredTime(now), store.StoredTime(now.Add(lease))
	var out []hubsync.DeviceWork
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		out = nil
		var devs []sqlrow.Claimed
		if err := tx.SelectContext(ctx, &devs, `UPDATE sync_device d SET lease_owner = $3, lease_until = $4
			FROM (SELECT c.integration_id, c.device_id, o.due FROM sync_device c
				JOIN (SELECT integration_id, device_id, min(next_at) AS due FROM sync_outbox
					WHERE state = 'pending' AND next_at <= $1 GROUP BY integration_id, device_id) o
					ON o.integration_id = c.integration_id AND o.device_id = c.device_id
				WHERE c.lease_until IS NULL OR c.lease_until <= $1
				ORDER BY o.due, c.integration_id, c.device_id LIMIT $2
				FOR UPDATE OF c SKIP LOCKED) p
			WHERE d.integration_id = p.integration_id AND d.device_id = p.device_id
			RETURNING d.integration_id, d.device_id, d.written, d.desired, p.due`, nowTS, maxDevices, owner, until); err != nil {
			return fmt.Errorf("outbox claim: %w", err)
		}
		if len(devs) == 0 {
			return nil
		}
		sort.Slice(devs, func(i, j int) bool {
			a, b := devs[i], devs[j]
			if !a.Due.T().Equal(b.Due.T()) {
				return a.Due.T().Before(b.Due.T())
			}
			if a.IntegrationID != b.IntegrationID {
				return a.IntegrationID < b.IntegrationID
			}
			return a.DeviceID < b.DeviceID
		})
		work := sqlrow.NewWork(devs, until)
		integ := make([]string, len(devs))
		dev := make([]string, len(devs))
		for i, d := range devs {
			integ[i], dev[i] = d.IntegrationID, d.DeviceID
		}
		var rows []sqlrow.Outbox
		if err := tx.SelectContext(ctx, &rows, `SELECT `+sqlrow.OutboxCols+` FROM sync_outbox
			WHERE state = 'pending' AND (integration_id, device_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
			ORDER BY created_at, id`, pq.Array(integ), pq.Array(dev)); err != nil {
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
// Device rows are locked in key order, so concurrent settles and enqueues
// cannot deadlock.
func (s *Store) Settle(ctx context.Context, owner string, ss []hubsync.Settlement) error {
	ss = append([]hubsync.Settlement(nil), ss...)
	sort.SliceStable(ss, func(i, j int) bool {
		a, b := ss[i].Key, ss[j].Key
		if a.IntegrationID != b.IntegrationID {
			return a.IntegrationID < b.IntegrationID
		}
		return a.DeviceID < b.DeviceID
	})
	var lost []hubsync.DeviceKey
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		lost, err = sqlrow.SettleHeld(ss, func(k hubsync.DeviceKey) (bool, error) {
			var held []int
			err := tx.SelectContext(ctx, &held, `SELECT 1 FROM sync_device
				WHERE integration_id = $1 AND device_id = $2 AND lease_owner = $3 FOR UPDATE`,
				k.IntegrationID, k.DeviceID, owner)
			return len(held) > 0, err
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
	if len(st.Done) > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE sync_outbox SET state = 'done'
			WHERE id = ANY($1) AND integration_id = $2 AND device_id = $3 AND state = 'pending'`,
			pq.Array(st.Done), k.IntegrationID, k.DeviceID); err != nil {
			return fmt.Errorf("done: %w", err)
		}
	}
	for _, r := range st.Retry {
		if _, err := tx.ExecContext(ctx, `UPDATE sync_outbox SET attempts = $1, next_at = $2,
			last_code = CASE WHEN $3 = '' AND $4 = '' THEN last_code ELSE $3 END,
			last_error = CASE WHEN $3 = '' AND $4 = '' THEN last_error ELSE $4 END
			WHERE id = $5 AND integration_id = $6 AND device_id = $7 AND state = 'pending'`,
			r.Attempts, store.StoredTime(r.NextAt), r.Code, r.Error, r.ID, k.IntegrationID, k.DeviceID); err != nil {
			return fmt.Errorf("retry row %d: %w", r.ID, err)
		}
	}
	for _, d := range st.Dead {
		if _, err := tx.ExecContext(ctx, `UPDATE sync_outbox SET state = 'dead', attempts = $1, last_code = $2,
			dead_reason = $3, dead_at = $4
			WHERE id = $5 AND integration_id = $6 AND device_id = $7 AND state = 'pending'`,
			d.Attempts, d.Code, d.Reason, nullTime(d.At), d.ID, k.IntegrationID, k.DeviceID); err != nil {
			return fmt.Errorf("dead row %d: %w", d.ID, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE sync_device SET lease_owner = NULL, lease_until = NULL,
		written = CASE WHEN $3 = '' THEN written ELSE $3 END,
		written_at = CASE WHEN $3 = '' THEN written_at ELSE $4 END
		WHERE integration_id = $1 AND device_id = $2`, k.IntegrationID, k.DeviceID, st.Written, nullTime(st.WrittenAt)); err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// DeviceStates pages through every device that ever had a row, ordered by
// (integration, device), after the given key.
func (s *Store) DeviceStates(ctx context.Context, after hubsync.DeviceKey, limit int) ([]hubsync.DeviceState, error) {
	return s.shared().DeviceStates(ctx, after, limit)
}
