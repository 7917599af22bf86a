package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

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
		item, err = sqlrow.RetryDead(ctx, tx, sqlrow.Postgres, mapErr, id, now)
		return err
	})
	return item, err
}

// PruneSyncItems deletes done rows created before `before`, oldest first, in
// chunks of one short transaction each. Each chunk takes its rows FOR UPDATE
// SKIP LOCKED (replicas pruning at once split the work) and share-locks the
// devices it deletes for, skipping any another transaction holds: a Claim
// (which takes device rows FOR UPDATE SKIP LOCKED) then skips that device
// until the chunk commits, so no device is leased while its rows go. Prune
// never waits for a lock, so it cannot deadlock with Claim or Settle.
func (s *Store) PruneSyncItems(ctx context.Context, before time.Time) (int, error) {
	if before.IsZero() {
		return 0, fmt.Errorf("prune sync items: no cut-off time: %w", store.ErrInvalid)
	}
	chunk := s.pruneChunk
	if chunk <= 0 {
		chunk = store.PruneChunk
	}
	cut := store.StoredTime(before)
	total := 0
	for {
		var candidates, deleted int
		err := s.inTx(ctx, func(tx *sqlx.Tx) error {
			var err error
			candidates, deleted, err = pruneChunk(ctx, tx, cut, chunk)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune sync items: %w", err)
		}
		total += deleted
		// Fewer candidates than a chunk: nothing older is left (but rows
		// another pruner holds, which it deletes). None deleted: every
		// candidate's device was busy; the next prune gets them.
		if candidates < chunk || deleted == 0 {
			return total, nil
		}
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("prune sync items: %w", err)
		}
	}
}

// pruneChunk deletes up to limit done rows created before cut and returns
// how many it considered and how many it deleted.
func pruneChunk(ctx context.Context, tx *sqlx.Tx, cut time.Time, limit int) (candidates, deleted int, err error) {
	var rows []struct {
		ID            int64  `db:"id"`
		IntegrationID string `db:"integration_id"`
		DeviceID      string `db:"device_id"`
	}
	// Rows of leased devices are filtered before the LIMIT, so a device
	// holding a lease cannot stall the loop.
	if err := tx.SelectContext(ctx, &rows, `SELECT o.id, o.integration_id, o.device_id FROM sync_outbox o
		WHERE o.state = 'done' AND o.created_at < $1
			AND NOT EXISTS (SELECT 1 FROM sync_device d WHERE d.integration_id = o.integration_id
				AND d.device_id = o.device_id AND d.lease_owner IS NOT NULL)
		ORDER BY o.created_at, o.id LIMIT $2
		FOR UPDATE OF o SKIP LOCKED`, cut, limit); err != nil {
		return 0, 0, fmt.Errorf("select rows: %w", err)
	}
	if len(rows) == 0 {
		return 0, 0, nil
	}
	type key struct{ integ, dev string }
	seen := map[key]bool{}
	var integ, dev []string
	for _, r := range rows {
		k := key{r.IntegrationID, r.DeviceID}
		if !seen[k] {
			seen[k] = true
			integ, dev = append(integ, k.integ), append(dev, k.dev)
		}
	}
	// The lease is re-checked on the locked, latest version of each device
	// row; devices another transaction holds are skipped, not waited for.
	var free []struct {
		IntegrationID string `db:"integration_id"`
		DeviceID      string `db:"device_id"`
	}
	if err := tx.SelectContext(ctx, &free, `SELECT integration_id, device_id FROM sync_device
		WHERE (integration_id, device_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))
			AND lease_owner IS NULL
		ORDER BY integration_id, device_id FOR SHARE SKIP LOCKED`, pq.Array(integ), pq.Array(dev)); err != nil {
		return 0, 0, fmt.Errorf("lock devices: %w", err)
	}
	var present []struct {
		IntegrationID string `db:"integration_id"`
		DeviceID      string `db:"device_id"`
	}
	if err := tx.SelectContext(ctx, &present, `SELECT integration_id, device_id FROM sync_device
		WHERE (integration_id, device_id) IN (SELECT * FROM unnest($1::text[], $2::text[]))`,
		pq.Array(integ), pq.Array(dev)); err != nil {
		return 0, 0, fmt.Errorf("read devices: %w", err)
	}
	// A row may go when its device is locked by us and unleased, or has no
	// device row at all (its integration was deleted: nothing can lease it).
	ok := map[key]bool{}
	for k := range seen {
		ok[k] = true
	}
	for _, p := range present {
		ok[key{p.IntegrationID, p.DeviceID}] = false
	}
	for _, f := range free {
		ok[key{f.IntegrationID, f.DeviceID}] = true
	}
	var ids []int64
	for _, r := range rows {
		if ok[key{r.IntegrationID, r.DeviceID}] {
			ids = append(ids, r.ID)
		}
	}
	if len(ids) == 0 {
		return len(rows), 0, nil
	}
	res, err := tx.ExecContext(ctx, `DELETE FROM sync_outbox WHERE id = ANY($1) AND state = 'done'`, pq.Array(ids))
	if err != nil {
		return 0, 0, fmt.Errorf("delete rows: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, 0, fmt.Errorf("delete rows: %w", err)
	}
	return len(rows), int(n), nil
}

// SaveDeviceCheck replaces a host's device check.
func (s *Store) SaveDeviceCheck(ctx context.Context, c store.DeviceCheck) error {
	return s.shared().SaveDeviceCheck(ctx, c)
}

// GetDeviceCheck returns a host's device check (ErrNotFound if none).
func (s *Store) GetDeviceCheck(ctx context.Context, hostID string) (store.DeviceCheck, error) {
	return s.shared().GetDeviceCheck(ctx, hostID)
}
