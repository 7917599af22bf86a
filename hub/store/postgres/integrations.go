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
	in, err := store.PrepareIntegration(in, time.Now())
	if err != nil {
		return err
	}
	args, err := sqlrow.IntegrationArgs(in, sqlrow.Timestamptz)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, sqlrow.InsertIntegration, args...); err != nil {
		return fmt.Errorf("create integration %q: %w", in.ID, mapErr(err))
	}
	return nil
}

// UpdateIntegration replaces every field but id, created-at and health
// (updated-at as given, or now).
func (s *Store) UpdateIntegration(ctx context.Context, in store.Integration) error {
	in, err := store.PrepareIntegration(in, time.Now())
	if err != nil {
		return err
	}
	args, err := sqlrow.IntegrationArgs(in, sqlrow.Timestamptz)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `UPDATE integrations SET name = $2, kind = $3, cloud = $4,
		authority_host = $5, graph_base_url = $6, extra_ca_pem = $7, tenant_id = $8, client_id = $9,
		credential_kind = $10, sealed_credential = $11, sealed_cert_password = $12,
		secret_expires_at = $13, cert_not_after = $14, extension_attribute = $15,
		compliant_value = $16, noncompliant_value = $17, teams = $18, updated_at = $19
		WHERE id = $1`, append(args[:18:18], in.UpdatedAt)...) // not health (19-21) or created-at (22)
	return affected(res, err, "update integration", in.ID)
}

// GetIntegration returns one integration.
func (s *Store) GetIntegration(ctx context.Context, id string) (store.Integration, error) {
	var row sqlrow.Integration
	if err := s.db.GetContext(ctx, &row, `SELECT `+sqlrow.IntegrationCols+` FROM integrations WHERE id = $1`, id); err != nil {
		return store.Integration{}, notFound(err, "integration", id)
	}
	return row.Integration()
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
	res, err := s.db.ExecContext(ctx, `UPDATE integrations SET health = $2, health_message = $3, health_checked_at = $4
		WHERE id = $1`, id, health, message, store.StoredTime(at))
	return affected(res, err, "set health of integration", id)
}
