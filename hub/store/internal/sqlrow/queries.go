package sqlrow

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
)

// Conn is a pool or a transaction.
type Conn interface {
	Querier
	GetContext(ctx context.Context, dest any, query string, args ...any) error
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// DB runs the store methods whose SQL both backends share (placeholders are
// $N, which both drivers bind by position). Reads go to R, writes to W: the
// read-only pool and the single writer on SQLite, one pool on PostgreSQL.
type DB struct {
	R, W    Conn
	Dialect Dialect
	MapErr  func(error) error // constraint violations to store errors
}

func (db DB) notFound(err error, what, id string) error { return NotFound(err, db.MapErr, what, id) }

func (db DB) affected(res sql.Result, err error, what, id string) error {
	return Affected(res, err, db.MapErr, what, id)
}

// GetHost returns one host.
func (db DB) GetHost(ctx context.Context, id string) (store.Host, error) {
	return GetHost(ctx, db.R, db.MapErr, id)
}

// GetHost returns one host read through q (a pool or a transaction).
func GetHost(ctx context.Context, q Conn, mapErr func(error) error, id string) (store.Host, error) {
	var row Host
	if err := q.GetContext(ctx, &row, `SELECT `+HostCols+` FROM hosts WHERE id = $1`, id); err != nil {
		return store.Host{}, NotFound(err, mapErr, "host", id)
	}
	return row.Host(), nil
}

// ListHosts returns hosts sorted by hostname, then id.
func (db DB) ListHosts(ctx context.Context, f store.HostFilter) ([]store.Host, error) {
	var rows []Host
	q := `SELECT ` + HostCols + ` FROM hosts WHERE ($1 = '' OR team = $1) ORDER BY hostname, id`
	if err := db.R.SelectContext(ctx, &rows, q, f.Team); err != nil {
		return nil, fmt.Errorf("list hosts: %w", err)
	}
	return Hosts(rows), nil
}

// LatestResults returns the host's latest results sorted by policy id.
func (db DB) LatestResults(ctx context.Context, hostID string) ([]store.Result, error) {
	var rows []Result
	if err := db.R.SelectContext(ctx, &rows, `SELECT `+ResultCols+` FROM results WHERE host_id = $1
		ORDER BY policy_id`, hostID); err != nil {
		return nil, fmt.Errorf("latest results of host %q: %w", hostID, err)
	}
	return Results(rows), nil
}

// History returns status changes of one (host, policy), newest first; limit
// <= 0 means all.
func (db DB) History(ctx context.Context, hostID, policyID string, limit int) ([]store.HistoryEntry, error) {
	var rows []History
	if err := db.R.SelectContext(ctx, &rows, `SELECT `+HistoryCols+` FROM result_history
		WHERE host_id = $1 AND policy_id = $2 ORDER BY id DESC LIMIT $3`,
		hostID, policyID, db.Dialect.Limit(limit)); err != nil {
		return nil, fmt.Errorf("history of host %q policy %q: %w", hostID, policyID, err)
	}
	return Histories(rows), nil
}

// GetPolicy returns one policy.
func (db DB) GetPolicy(ctx context.Context, id string) (store.Policy, error) {
	var row Policy
	if err := db.R.GetContext(ctx, &row, `SELECT `+PolicyCols+` FROM policies WHERE id = $1`, id); err != nil {
		return store.Policy{}, db.notFound(err, "policy", id)
	}
	return row.Policy()
}

// GetTeam returns one applied team.
func (db DB) GetTeam(ctx context.Context, name string) (store.Team, error) {
	var row Team
	if err := db.R.GetContext(ctx, &row, `SELECT `+TeamCols+` FROM teams WHERE name = $1`, name); err != nil {
		return store.Team{}, db.notFound(err, "team", name)
	}
	return row.Team(), nil
}

// PolicySetVersion returns the opaque version of the policy set.
func (db DB) PolicySetVersion(ctx context.Context) (string, error) {
	var v string
	if err := db.R.GetContext(ctx, &v, `SELECT value FROM meta WHERE key = 'policy_set_version'`); err != nil {
		return "", fmt.Errorf("policy set version: %w", err)
	}
	return v, nil
}

// GetVerdict returns a host's stored verdict.
func (db DB) GetVerdict(ctx context.Context, hostID string) (store.Verdict, error) {
	var row Verdict
	if err := db.R.GetContext(ctx, &row, `SELECT `+VerdictCols+` FROM verdicts WHERE host_id = $1`, hostID); err != nil {
		return store.Verdict{}, db.notFound(err, "verdict of host", hostID)
	}
	return row.Verdict(), nil
}

// DueVerdicts lists hosts whose next transition is at or before now,
// earliest first; limit <= 0 means all.
func (db DB) DueVerdicts(ctx context.Context, now time.Time, limit int) ([]string, error) {
	var ids []string
	if err := db.R.SelectContext(ctx, &ids, `SELECT host_id FROM verdicts
		WHERE next_transition IS NOT NULL AND next_transition <= $1
		ORDER BY next_transition, host_id LIMIT $2`, db.Dialect.Time(store.StoredTime(now)), db.Dialect.Limit(limit)); err != nil {
		return nil, fmt.Errorf("due verdicts: %w", err)
	}
	return ids, nil
}

// ListExemptions lists exemptions of a host ("" = all), expired ones too,
// oldest first.
func (db DB) ListExemptions(ctx context.Context, hostID string) ([]store.Exemption, error) {
	var rows []Exemption
	if err := db.R.SelectContext(ctx, &rows, `SELECT `+ExemptionCols+` FROM exemptions
		WHERE ($1 = '' OR host_id = $1) ORDER BY created_at, id`, hostID); err != nil {
		return nil, fmt.Errorf("list exemptions: %w", err)
	}
	return Exemptions(rows), nil
}

// DeleteExemption removes an exemption.
func (db DB) DeleteExemption(ctx context.Context, id string) error {
	res, err := db.W.ExecContext(ctx, `DELETE FROM exemptions WHERE id = $1`, id)
	return db.affected(res, err, "delete exemption", id)
}

// CreateIntegration stores a new integration; a reused id is ErrConflict.
func (db DB) CreateIntegration(ctx context.Context, in store.Integration) error {
	in, err := store.PrepareIntegration(in, time.Now())
	if err != nil {
		return err
	}
	args, err := IntegrationArgs(in, db.Dialect)
	if err != nil {
		return err
	}
	if _, err := db.W.ExecContext(ctx, InsertIntegration, args...); err != nil {
		return fmt.Errorf("create integration %q: %w", in.ID, db.MapErr(err))
	}
	return nil
}

// UpdateIntegration replaces every field but id, created-at and health
// (updated-at as given, or now).
func (db DB) UpdateIntegration(ctx context.Context, in store.Integration) error {
	in, err := store.PrepareIntegration(in, time.Now())
	if err != nil {
		return err
	}
	args, err := IntegrationArgs(in, db.Dialect)
	if err != nil {
		return err
	}
	res, err := db.W.ExecContext(ctx, `UPDATE integrations SET name = $2, kind = $3, cloud = $4,
		authority_host = $5, graph_base_url = $6, extra_ca_pem = $7, tenant_id = $8, client_id = $9,
		credential_kind = $10, sealed_credential = $11, sealed_cert_password = $12,
		secret_expires_at = $13, cert_not_after = $14, extension_attribute = $15,
		compliant_value = $16, noncompliant_value = $17, teams = $18, updated_at = $19, settings = $20, graph_resource = $21
		WHERE id = $1`, append(args[:18:18], args[22], args[23], args[25])...) // not health ($19-$21), created-at ($22) or sink state ($25)
	return db.affected(res, err, "update integration", in.ID)
}

// GetIntegration returns one integration.
func (db DB) GetIntegration(ctx context.Context, id string) (store.Integration, error) {
	var row Integration
	if err := db.R.GetContext(ctx, &row, `SELECT `+IntegrationCols+` FROM integrations WHERE id = $1`, id); err != nil {
		return store.Integration{}, db.notFound(err, "integration", id)
	}
	return row.Integration()
}

// SetIntegrationHealth records the latest health check.
func (db DB) SetIntegrationHealth(ctx context.Context, id, health, message string, at time.Time) error {
	res, err := db.W.ExecContext(ctx, `UPDATE integrations SET health = $2, health_message = $3, health_checked_at = $4
		WHERE id = $1`, id, health, message, db.Dialect.Time(store.StoredTime(at)))
	return db.affected(res, err, "set health of integration", id)
}

// SetIntegrationSinkState replaces the sink's state without touching updated_at.
func (db DB) SetIntegrationSinkState(ctx context.Context, id string, state []byte) error {
	res, err := db.W.ExecContext(ctx, `UPDATE integrations SET sink_state = $2 WHERE id = $1`, id, JSONObject(state))
	return db.affected(res, err, "set sink state of integration", id)
}

// CreateEnrollSecret stores a secret's hash; a reused id or hash is ErrConflict.
func (db DB) CreateEnrollSecret(ctx context.Context, sec store.EnrollSecret) error {
	sec, err := store.PrepareEnrollSecret(sec, time.Now())
	if err != nil {
		return err
	}
	if _, err := db.W.ExecContext(ctx, InsertSecret, SecretArgs(sec, db.Dialect)...); err != nil {
		return fmt.Errorf("create enroll secret %q: %w", sec.ID, db.MapErr(err))
	}
	return nil
}

// FindEnrollSecret looks a secret up by its hash, whatever its state.
func (db DB) FindEnrollSecret(ctx context.Context, hash []byte) (store.EnrollSecret, error) {
	var row Secret
	if err := db.R.GetContext(ctx, &row, `SELECT `+SecretCols+` FROM enroll_secrets WHERE hash = $1`, hash); err != nil {
		return store.EnrollSecret{}, db.notFound(err, "enroll secret", "by hash")
	}
	return row.Secret(), nil
}

// RevokeEnrollSecret revokes a secret; a second revoke keeps the first time.
func (db DB) RevokeEnrollSecret(ctx context.Context, id string, at time.Time) (store.EnrollSecret, error) {
	var row Secret
	if err := db.W.GetContext(ctx, &row, `UPDATE enroll_secrets SET revoked_at = COALESCE(revoked_at, $2)
		WHERE id = $1 RETURNING `+SecretCols, id, db.Dialect.Time(store.StoredTime(at))); err != nil {
		return store.EnrollSecret{}, db.notFound(err, "revoke enroll secret", id)
	}
	return row.Secret(), nil
}

// CreateAPIToken stores a token's hash; a reused id or hash is ErrConflict.
func (db DB) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	t, err := store.PrepareAPIToken(t, time.Now())
	if err != nil {
		return err
	}
	if _, err := db.W.ExecContext(ctx, InsertToken, TokenArgs(t, db.Dialect)...); err != nil {
		return fmt.Errorf("create api token %q: %w", t.ID, db.MapErr(err))
	}
	return nil
}

// FindAPIToken looks a token up by its hash, whatever its state.
func (db DB) FindAPIToken(ctx context.Context, hash []byte) (store.APIToken, error) {
	var row Token
	if err := db.R.GetContext(ctx, &row, `SELECT `+TokenCols+` FROM api_tokens WHERE hash = $1`, hash); err != nil {
		return store.APIToken{}, db.notFound(err, "api token", "by hash")
	}
	return row.Token(), nil
}

// RevokeAPIToken revokes a token; a second revoke keeps the first time.
func (db DB) RevokeAPIToken(ctx context.Context, id string, at time.Time) (store.APIToken, error) {
	var row Token
	if err := db.W.GetContext(ctx, &row, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2)
		WHERE id = $1 RETURNING `+TokenCols, id, db.Dialect.Time(store.StoredTime(at))); err != nil {
		return store.APIToken{}, db.notFound(err, "revoke api token", id)
	}
	return row.Token(), nil
}

// ListSyncItems lists outbox rows in a state ("" = pending and dead), newest
// first, of one integration ("" = all); limit <= 0 means all.
func (db DB) ListSyncItems(ctx context.Context, state, integrationID string, limit int) ([]store.SyncItem, error) {
	if !store.ValidSyncState(state) {
		return nil, fmt.Errorf("list sync items: state %q not pending, done or dead: %w", state, store.ErrInvalid)
	}
	var rows []Outbox
	if err := db.R.SelectContext(ctx, &rows, `SELECT `+OutboxCols+` FROM sync_outbox
		WHERE ($1 = '' AND state <> 'done' OR state = $1) AND ($2 = '' OR integration_id = $2)
		ORDER BY id DESC LIMIT $3`, state, integrationID, db.Dialect.Limit(limit)); err != nil {
		return nil, fmt.Errorf("list sync items: %w", err)
	}
	return Items(rows), nil
}

// SaveDeviceCheck replaces a host's device check.
func (db DB) SaveDeviceCheck(ctx context.Context, c store.DeviceCheck) error {
	if c.HostID == "" || c.CheckedAt.IsZero() {
		return fmt.Errorf("save device check: host and time are required: %w", store.ErrInvalid)
	}
	_, err := db.W.ExecContext(ctx, `INSERT INTO entra_device_checks (host_id, integration_id, device_id, display_name,
		operating_system, mismatch, checked_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
		ON CONFLICT (host_id) DO UPDATE SET integration_id = excluded.integration_id, device_id = excluded.device_id,
			display_name = excluded.display_name, operating_system = excluded.operating_system,
			mismatch = excluded.mismatch, checked_at = excluded.checked_at`,
		c.HostID, c.IntegrationID, c.DeviceID, c.DisplayName, c.OperatingSystem, c.Mismatch, db.Dialect.Time(store.StoredTime(c.CheckedAt)))
	if err != nil {
		return fmt.Errorf("save device check of host %q: %w", c.HostID, db.MapErr(err))
	}
	return nil
}

// GetDeviceCheck returns a host's device check.
func (db DB) GetDeviceCheck(ctx context.Context, hostID string) (store.DeviceCheck, error) {
	var row struct {
		HostID          string `db:"host_id"`
		IntegrationID   string `db:"integration_id"`
		DeviceID        string `db:"device_id"`
		DisplayName     string `db:"display_name"`
		OperatingSystem string `db:"operating_system"`
		Mismatch        string `db:"mismatch"`
		CheckedAt       Time   `db:"checked_at"`
	}
	if err := db.R.GetContext(ctx, &row, `SELECT host_id, integration_id, device_id, display_name, operating_system,
		mismatch, checked_at FROM entra_device_checks WHERE host_id = $1`, hostID); err != nil {
		return store.DeviceCheck{}, db.notFound(err, "device check of host", hostID)
	}
	return store.DeviceCheck{HostID: row.HostID, IntegrationID: row.IntegrationID, DeviceID: row.DeviceID,
		DisplayName: row.DisplayName, OperatingSystem: row.OperatingSystem, Mismatch: row.Mismatch,
		CheckedAt: row.CheckedAt.T()}, nil
}

// ResumeSyncItems makes the pending rows of an integration that wait past
// now due at now, keeping attempts and the last error.
func (db DB) ResumeSyncItems(ctx context.Context, integrationID string, now time.Time) (int, error) {
	res, err := db.W.ExecContext(ctx, `UPDATE sync_outbox SET next_at = $1
		WHERE integration_id = $2 AND state = 'pending' AND next_at > $1`, db.Dialect.Time(store.StoredTime(now)), integrationID)
	if err != nil {
		return 0, fmt.Errorf("resume sync items of %s: %w", integrationID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("resume sync items of %s: %w", integrationID, err)
	}
	return int(n), nil
}

// DeviceStates pages through every device that ever had a row, ordered by
// (integration, device), after the given key. On PostgreSQL the key columns
// are COLLATE "C" (see its migration): byte order, as in Go and SQLite, on
// the primary key index.
func (db DB) DeviceStates(ctx context.Context, after hubsync.DeviceKey, limit int) ([]hubsync.DeviceState, error) {
	var rows []DeviceState
	if err := db.R.SelectContext(ctx, &rows, `SELECT d.integration_id, d.device_id, d.tenant_id, d.host_id,
		d.desired, d.desired_at, d.written,
		EXISTS (SELECT 1 FROM sync_outbox o WHERE o.integration_id = d.integration_id
			AND o.device_id = d.device_id AND o.state = 'pending') AS pending
		FROM sync_device d
		WHERE (d.integration_id, d.device_id) > ($1, $2)
		ORDER BY d.integration_id, d.device_id LIMIT $3`,
		after.IntegrationID, after.DeviceID, db.Dialect.Limit(limit)); err != nil {
		return nil, fmt.Errorf("device states: %w", err)
	}
	return DeviceStates(rows), nil
}
