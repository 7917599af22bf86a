package postgres

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
)

// ListSyncItems lists outbox rows in a state ("" = pending and dead), newest
// first, of one integration ("" = all); limit <= 0 means all.
func (s *Store) ListSyncItems(ctx context.Context, state, integrationID string, limit int) ([]store.SyncItem, error) {
	if !store.ValidSyncState(state) {
		return nil, fmt.Errorf("list sync items: state %q not pending, done or dead: %w", state, store.ErrInvalid)
	}
	var lim *int
	if limit > 0 {
		lim = &limit
	}
	var rows []outboxRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+outboxCols+` FROM sync_outbox
		WHERE ($1 = '' AND state <> 'done' OR state = $1) AND ($2 = '' OR integration_id = $2)
		ORDER BY id DESC LIMIT $3`, state, integrationID, lim); err != nil {
		return nil, fmt.Errorf("list sync items: %w", err)
	}
	out := make([]store.SyncItem, len(rows))
	for i, r := range rows {
		out[i] = r.item()
	}
	return out, nil
}

// RetrySyncItem makes a dead row pending again, due at now with no attempts.
func (s *Store) RetrySyncItem(ctx context.Context, id int64, now time.Time) (store.SyncItem, error) {
	var item store.SyncItem
	key := strconv.FormatInt(id, 10)
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var row outboxRow
		if err := tx.GetContext(ctx, &row, `SELECT `+outboxCols+` FROM sync_outbox WHERE id = $1 FOR UPDATE`, id); err != nil {
			return notFound(err, "sync item", key)
		}
		if row.State != store.SyncDead {
			return fmt.Errorf("sync item %d is %s; only dead items can be retried: %w", id, row.State, store.ErrInvalid)
		}
		// The dead-letter reason moves to last_error so the item still shows
		// why it failed before the retry.
		if err := tx.GetContext(ctx, &row, `UPDATE sync_outbox SET state = 'pending', attempts = 0, next_at = $1,
			last_error = CASE WHEN dead_reason <> '' THEN dead_reason ELSE last_error END,
			dead_reason = '', dead_at = NULL WHERE id = $2 RETURNING `+outboxCols, store.StoredTime(now), id); err != nil {
			return fmt.Errorf("retry sync item %d: %w", id, err)
		}
		// The device row is gone if the integration was deleted; without it
		// the row could never be claimed.
		if _, err := tx.ExecContext(ctx, `INSERT INTO sync_device (integration_id, device_id, tenant_id, host_id)
			VALUES ($1, $2, $3, $4) ON CONFLICT (integration_id, device_id) DO NOTHING`,
			row.IntegrationID, row.DeviceID, row.TenantID, row.HostID); err != nil {
			return fmt.Errorf("retry sync item %d: device row: %w", id, err)
		}
		item = row.item()
		return nil
	})
	return item, err
}
