package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
)

const integrationCols = `id, name, kind, cloud, authority_host, graph_base_url, extra_ca_pem, tenant_id,
	client_id, credential_kind, sealed_credential, sealed_cert_password, secret_expires_at, cert_not_after,
	extension_attribute, compliant_value, noncompliant_value, teams, health, health_message,
	health_checked_at, created_at, updated_at`

type integrationRow struct {
	ID                 string     `db:"id"`
	Name               string     `db:"name"`
	Kind               string     `db:"kind"`
	Cloud              string     `db:"cloud"`
	AuthorityHost      string     `db:"authority_host"`
	GraphBaseURL       string     `db:"graph_base_url"`
	ExtraCAPEM         string     `db:"extra_ca_pem"`
	TenantID           string     `db:"tenant_id"`
	ClientID           string     `db:"client_id"`
	CredentialKind     string     `db:"credential_kind"`
	SealedCredential   []byte     `db:"sealed_credential"`
	SealedCertPassword []byte     `db:"sealed_cert_password"`
	SecretExpiresAt    *time.Time `db:"secret_expires_at"`
	CertNotAfter       *time.Time `db:"cert_not_after"`
	ExtensionAttribute int        `db:"extension_attribute"`
	CompliantValue     string     `db:"compliant_value"`
	NoncompliantValue  string     `db:"noncompliant_value"`
	Teams              string     `db:"teams"`
	Health             string     `db:"health"`
	HealthMessage      string     `db:"health_message"`
	HealthCheckedAt    *time.Time `db:"health_checked_at"`
	CreatedAt          time.Time  `db:"created_at"`
	UpdatedAt          time.Time  `db:"updated_at"`
}

func (r integrationRow) integration() (store.Integration, error) {
	in := store.Integration{ID: r.ID, Name: r.Name, Kind: r.Kind, Cloud: r.Cloud, AuthorityHost: r.AuthorityHost,
		GraphBaseURL: r.GraphBaseURL, ExtraCAPEM: r.ExtraCAPEM, TenantID: r.TenantID, ClientID: r.ClientID,
		CredentialKind: r.CredentialKind, SealedCredential: r.SealedCredential,
		SealedCertPassword: r.SealedCertPassword, SecretExpiresAt: utcPtr(r.SecretExpiresAt),
		CertNotAfter: utcPtr(r.CertNotAfter), ExtensionAttribute: r.ExtensionAttribute,
		CompliantValue: r.CompliantValue, NoncompliantValue: r.NoncompliantValue, Health: r.Health,
		HealthMessage: r.HealthMessage, HealthCheckedAt: utcPtr(r.HealthCheckedAt),
		CreatedAt: utc(r.CreatedAt), UpdatedAt: utc(r.UpdatedAt)}
	if err := json.Unmarshal([]byte(r.Teams), &in.Teams); err != nil {
		return store.Integration{}, fmt.Errorf("integration %q: teams: %w", r.ID, err)
	}
	if len(in.Teams) == 0 {
		in.Teams = nil
	}
	if len(in.SealedCertPassword) == 0 {
		in.SealedCertPassword = nil
	}
	return in, nil
}

// integrationArgs are the values of integrationCols in order.
func integrationArgs(in store.Integration) ([]any, error) {
	teams, err := json.Marshal(nonNil(in.Teams))
	if err != nil {
		return nil, fmt.Errorf("integration %q: teams: %w", in.ID, err)
	}
	return []any{in.ID, in.Name, in.Kind, in.Cloud, in.AuthorityHost, in.GraphBaseURL, in.ExtraCAPEM,
		in.TenantID, in.ClientID, in.CredentialKind, in.SealedCredential, in.SealedCertPassword,
		in.SecretExpiresAt, in.CertNotAfter, in.ExtensionAttribute, in.CompliantValue,
		in.NoncompliantValue, string(teams), in.Health, in.HealthMessage, in.HealthCheckedAt,
		in.CreatedAt, in.UpdatedAt}, nil
}

// CreateIntegration stores a new integration; a reused id is ErrConflict.
func (s *Store) CreateIntegration(ctx context.Context, in store.Integration) error {
	in, err := store.PrepareIntegration(in, time.Now())
	if err != nil {
		return err
	}
	args, err := integrationArgs(in)
	if err != nil {
		return err
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO integrations (`+integrationCols+`) VALUES ($1, $2, $3, $4, $5, $6,
		$7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21, $22, $23)`, args...); err != nil {
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
	args, err := integrationArgs(in)
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
	var row integrationRow
	if err := s.db.GetContext(ctx, &row, `SELECT `+integrationCols+` FROM integrations WHERE id = $1`, id); err != nil {
		return store.Integration{}, notFound(err, "integration", id)
	}
	return row.integration()
}

// ListIntegrations returns every integration sorted by id.
func (s *Store) ListIntegrations(ctx context.Context) ([]store.Integration, error) {
	var rows []integrationRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+integrationCols+` FROM integrations ORDER BY id`); err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	out := make([]store.Integration, 0, len(rows))
	for _, r := range rows {
		in, err := r.integration()
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
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
