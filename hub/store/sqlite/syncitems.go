package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// ListSyncItems lists outbox rows in a state ("" = pending and dead), newest
// first, of one integration ("" = all); limit <= 0 means all.
func (s *Store) ListSyncItems(ctx context.Context, state, integrationID string, limit int) ([]store.SyncItem, error) {
	return s.shared().ListSyncItems(ctx, state, integrationID, limit)
}

// ResumeSyncItems makes an integration's waiting pending rows due at now.
func (s *Store) ResumeSyncItems(ctx context.Context, integrationID string, now time.Time) (int, error) {
	return s.shared().ResumeSyncItems(ctx, integrationID, now)
}

// RetrySyncItem makes a dead row pending again, due at now with no
// attempts, or a pending row due at now.
func (s *Store) RetrySyncItem(ctx context.Context, id int64, now time.Time) (store.SyncItem, error) {
	var item store.SyncItem
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var err error
		item, err = sqlrow.RetryDead(ctx, tx, sqlrow.SQLite, mapErr, id, now)
		return err
	})
	return item, err
}

// PruneSyncItems deletes done rows created before `before`, oldest first, in
// chunks of one short immediate transaction each, so other writers get the
// single writer connection between chunks. The writer lock also means no
// device can be leased between the lease check and the delete.
func (s *Store) PruneSyncItems(ctx context.Context, before time.Time) (int, error) {
	if before.IsZero() {
		return 0, fmt.Errorf("prune sync items: no cut-off time: %w", store.ErrInvalid)
	}
	chunk := s.pruneChunk
	if chunk <= 0 {
		chunk = store.PruneChunk
	}
	cut := ts(before)
	total := 0
	for {
		var n int64
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			// Rows of leased devices are filtered before the LIMIT, so a
			// device holding a lease cannot stall the loop. INDEXED BY: without
			// statistics the planner reads every done row through
			// sync_outbox_state and sorts them; the partial index walks the
			// oldest done rows in order and stops at the limit.
			res, err := tx.ExecContext(ctx, `DELETE FROM sync_outbox WHERE id IN (
				SELECT o.id FROM sync_outbox o INDEXED BY sync_outbox_done
				WHERE o.state = 'done' AND o.created_at < ?1
					AND NOT EXISTS (SELECT 1 FROM sync_device d WHERE d.integration_id = o.integration_id
						AND d.device_id = o.device_id AND d.lease_owner IS NOT NULL)
				ORDER BY o.created_at, o.id LIMIT ?2)`, cut, chunk)
			if err != nil {
				return err
			}
			n, err = res.RowsAffected()
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune sync items: %w", err)
		}
		total += int(n)
		if n < int64(chunk) {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune sync items: %w", err)
		}
	}
}

// SaveDeviceCheck replaces a host's device check.
func (s *Store) SaveDeviceCheck(ctx context.Context, c store.DeviceCheck) error {
	return s.shared().SaveDeviceCheck(ctx, c)
}

// GetDeviceCheck returns a host's device check (ErrNotFound if none).
func (s *Store) GetDeviceCheck(ctx context.Context, hostID string) (store.DeviceCheck, error) {
	return s.shared().GetDeviceCheck(ctx, hostID)
}
