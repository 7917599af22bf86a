package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// CreateIntegration stores a new integration; a reused id is ErrConflict.
func (s *Store) CreateIntegration(ctx context.Context, in store.Integration) error {
	return s.shared().CreateIntegration(ctx, in)
}

// UpdateIntegration replaces every field but id, created-at and health
// (updated-at as given, or now).
func (s *Store) UpdateIntegration(ctx context.Context, in store.Integration) error {
	return s.shared().UpdateIntegration(ctx, in)
}

// GetIntegration returns one integration.
func (s *Store) GetIntegration(ctx context.Context, id string) (store.Integration, error) {
	return s.shared().GetIntegration(ctx, id)
}

// ListIntegrations returns every integration sorted by id.
func (s *Store) ListIntegrations(ctx context.Context) ([]store.Integration, error) {
	return sqlrow.ListIntegrations(ctx, s.db)
}

// DeleteIntegration removes an integration, dead-letters its pending outbox
// rows (reason "integration deleted": visible, and retryable should it come
// back) and forgets its devices' lease and written state.
func (s *Store) DeleteIntegration(ctx context.Context, id string) error {
	now := store.StoredTime(time.Now())
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM integrations WHERE id = $1`, id)
		if err := affected(res, err, "delete integration", id); err != nil {
			return err
		}
		// Device rows first, in key order, as Settle locks them: a settle
		// running beside this cannot deadlock with it.
		var keys []string
		if err := tx.SelectContext(ctx, &keys, `SELECT device_id FROM sync_device WHERE integration_id = $1
			ORDER BY device_id FOR UPDATE`, id); err != nil {
			return fmt.Errorf("delete integration %q: lock devices: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sync_device WHERE integration_id = $1`, id); err != nil {
			return fmt.Errorf("delete integration %q: devices: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sync_outbox SET state = 'dead', last_code = $1, dead_reason = $2,
			dead_at = $3 WHERE integration_id = $4 AND state = 'pending'`,
			store.CodeIntegrationDeleted, store.ReasonIntegrationDeleted, now, id); err != nil {
			return fmt.Errorf("delete integration %q: dead-letter rows: %w", id, err)
		}
		return nil
	})
}

// SetIntegrationHealth records the latest health check.
func (s *Store) SetIntegrationHealth(ctx context.Context, id, health, message string, at time.Time) error {
	return s.shared().SetIntegrationHealth(ctx, id, health, message, at)
}

// SetIntegrationSinkState replaces the sink's state without touching updated_at.
func (s *Store) SetIntegrationSinkState(ctx context.Context, id string, state []byte) error {
	return s.shared().SetIntegrationSinkState(ctx, id, state)
}
