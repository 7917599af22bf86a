package sqlrow

import (
	"context"
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// UpdateHostFacts stores facts from a Hello. The hardware UUID is the one
// the host enrolled with and is never changed by a Hello.
func (db DB) UpdateHostFacts(ctx context.Context, h store.Host) error {
	res, err := db.W.ExecContext(ctx, `UPDATE hosts SET hostname = $2, platform = $3,
		os_platform = $4, os_name = $5, os_version = $6, osquery_version = $7,
		hardware_serial = $8, hardware_model = $9, ext_version = $10
		WHERE id = $1`, h.ID, h.Hostname, h.Platform, h.OSPlatform, h.OSName, h.OSVersion,
		h.OsqueryVersion, h.HardwareSerial, h.HardwareModel, h.ExtVersion)
	return db.affected(res, err, "update facts of host", h.ID)
}

// SetHostIdentity stores the Entra device id and UPN the host reported, and
// when it reported them.
func (db DB) SetHostIdentity(ctx context.Context, id, entraDeviceID, upn string) error {
	res, err := db.W.ExecContext(ctx, `UPDATE hosts SET entra_device_id = $2, user_principal_name = $3,
		identity_at = $4 WHERE id = $1`, id, entraDeviceID, upn, db.Dialect.Time(store.StoredTime(time.Now())))
	return db.affected(res, err, "set identity of host", id)
}

// SetHostEntraOverride sets or clears the admin's device id override.
func (db DB) SetHostEntraOverride(ctx context.Context, id, entraDeviceID string) error {
	res, err := db.W.ExecContext(ctx, `UPDATE hosts SET entra_device_id_override = $2 WHERE id = $1`, id, entraDeviceID)
	return db.affected(res, err, "set entra override of host", id)
}

// SetHostUPNOverride sets or clears the admin's user principal name override.
func (db DB) SetHostUPNOverride(ctx context.Context, id, upn string) error {
	res, err := db.W.ExecContext(ctx, `UPDATE hosts SET user_principal_name_override = $2 WHERE id = $1`, id, upn)
	return db.affected(res, err, "set user principal name override of host", id)
}

// SetHostCert records the host's current certificate.
func (db DB) SetHostCert(ctx context.Context, id, serial string, notAfter time.Time) error {
	res, err := db.W.ExecContext(ctx, `UPDATE hosts SET cert_serial = $2, cert_not_after = $3 WHERE id = $1`,
		id, serial, db.Dialect.NullTime(notAfter))
	return db.affected(res, err, "set certificate of host", id)
}

// RevokeHost marks the host revoked; a second revoke keeps the first time.
func (db DB) RevokeHost(ctx context.Context, id string, at time.Time) (store.Host, error) {
	var row Host
	err := db.W.GetContext(ctx, &row, `UPDATE hosts SET revoked_at = COALESCE(revoked_at, $2)
		WHERE id = $1 RETURNING `+HostCols, id, db.Dialect.Time(store.StoredTime(at)))
	if err != nil {
		return store.Host{}, db.notFound(err, "revoke host", id)
	}
	return row.Host(), nil
}

// TouchHost moves last-seen forward to seen; an older seen writes nothing.
func (db DB) TouchHost(ctx context.Context, id string, seen time.Time) error {
	return db.moveForward(ctx, "hosts", "last_seen_at", "touch host", id, seen)
}

// MarkEnrollSecretUsed moves last-used forward to at.
func (db DB) MarkEnrollSecretUsed(ctx context.Context, id string, at time.Time) error {
	return db.moveForward(ctx, "enroll_secrets", "last_used_at", "mark enroll secret used", id, at)
}

// TouchAPIToken moves last-used forward to at.
func (db DB) TouchAPIToken(ctx context.Context, id string, at time.Time) error {
	return db.moveForward(ctx, "api_tokens", "last_used_at", "touch api token", id, at)
}

// moveForward sets table.column of row id to t unless it already holds t or
// later. A row that is not moved costs no write; only then is existence
// checked. table and column are constants of this package.
func (db DB) moveForward(ctx context.Context, table, column, what, id string, t time.Time) error {
	res, err := db.W.ExecContext(ctx, `UPDATE `+table+` SET `+column+` = $2
		WHERE id = $1 AND (`+column+` IS NULL OR `+column+` < $2)`, id, db.Dialect.Time(store.StoredTime(t)))
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		return nil
	}
	var one int
	if err := db.R.GetContext(ctx, &one, `SELECT 1 FROM `+table+` WHERE id = $1`, id); err != nil {
		return db.notFound(err, what, id)
	}
	return nil
}
