package sqlite

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
	args, err := sqlrow.IntegrationArgs(in, sqlrow.Micros)
	if err != nil {
		return err
	}
	if _, err := s.w.ExecContext(ctx, sqlrow.InsertIntegration, args...); err != nil {
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
	args, err := sqlrow.IntegrationArgs(in, sqlrow.Micros)
	if err != nil {
		return err
	}
	res, err := s.w.ExecContext(ctx, `UPDATE integrations SET name = ?2, kind = ?3, cloud = ?4,
		authority_host = ?5, graph_base_url = ?6, extra_ca_pem = ?7, tenant_id = ?8, client_id = ?9,
		credential_kind = ?10, sealed_credential = ?11, sealed_cert_password = ?12,
		secret_expires_at = ?13, cert_not_after = ?14, extension_attribute = ?15,
		compliant_value = ?16, noncompliant_value = ?17, teams = ?18, updated_at = ?23
		WHERE id = ?1`, args...)
	return affected(res, err, "update integration", in.ID)
}

// GetIntegration returns one integration.
func (s *Store) GetIntegration(ctx context.Context, id string) (store.Integration, error) {
	var row sqlrow.Integration
	if err := s.r.GetContext(ctx, &row, `SELECT `+sqlrow.IntegrationCols+` FROM integrations WHERE id = ?`, id); err != nil {
		return store.Integration{}, notFound(err, "integration", id)
	}
	return row.Integration()
}

// ListIntegrations returns every integration sorted by id.
func (s *Store) ListIntegrations(ctx context.Context) ([]store.Integration, error) {
	return sqlrow.ListIntegrations(ctx, s.r)
}

// DeleteIntegration removes an integration, dead-letters its pending outbox
// rows (reason "integration deleted": visible, and retryable should it come
// back) and forgets its devices' lease and written state.
func (s *Store) DeleteIntegration(ctx context.Context, id string) error {
	now := ts(time.Now())
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM integrations WHERE id = ?`, id)
		if err := affected(res, err, "delete integration", id); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE sync_outbox SET state = 'dead', last_code = ?, dead_reason = ?,
			dead_at = ? WHERE integration_id = ? AND state = 'pending'`,
			store.CodeIntegrationDeleted, store.ReasonIntegrationDeleted, now, id); err != nil {
			return fmt.Errorf("delete integration %q: dead-letter rows: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM sync_device WHERE integration_id = ?`, id); err != nil {
			return fmt.Errorf("delete integration %q: devices: %w", id, err)
		}
		return nil
	})
}

// SetIntegrationHealth records the latest health check.
func (s *Store) SetIntegrationHealth(ctx context.Context, id, health, message string, at time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE integrations SET health = ?, health_message = ?, health_checked_at = ?
		WHERE id = ?`, health, message, ts(at), id)
	return affected(res, err, "set health of integration", id)
}
