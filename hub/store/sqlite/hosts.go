package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// EnrollHost creates a host or refreshes the one with the same hardware UUID.
func (s *Store) EnrollHost(ctx context.Context, h store.Host) (store.Host, error) {
	h = store.PrepareEnroll(h, time.Now())
	var out store.Host
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if h.HardwareUUID != "" {
			var row sqlrow.Host
			err := tx.GetContext(ctx, &row, `SELECT `+sqlrow.HostCols+` FROM hosts WHERE hardware_uuid = ?`, h.HardwareUUID)
			switch {
			case err == nil:
				if row.RevokedAt.Valid {
					return fmt.Errorf("enroll host with hardware uuid %q: %w", h.HardwareUUID, store.ErrRevoked)
				}
				_, err = tx.ExecContext(ctx, `UPDATE hosts SET team = ?, hostname = ?, platform = ?,
					os_platform = ?, os_name = ?, os_version = ?, osquery_version = ?,
					hardware_serial = ?, hardware_model = ?, ext_version = ?, enrolled_at = ?,
					last_seen_at = max(last_seen_at, ?), cert_serial = ?, cert_not_after = ?
					WHERE id = ?`, h.Team, h.Hostname, h.Platform, h.OSPlatform, h.OSName, h.OSVersion,
					h.OsqueryVersion, h.HardwareSerial, h.HardwareModel, h.ExtVersion, ts(h.EnrolledAt),
					ts(h.LastSeenAt), h.CertSerial, nts(h.CertNotAfter), row.ID)
				if err != nil {
					return fmt.Errorf("enroll host %q: %w", row.ID, mapErr(err))
				}
				out, err = getHost(ctx, tx, row.ID)
				return err
			case !errors.Is(err, sql.ErrNoRows):
				return fmt.Errorf("enroll host: %w", err)
			}
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO hosts (`+sqlrow.HostCols+`) VALUES
			(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, NULL, NULL)`,
			sqlrow.HostArgs(h, sqlrow.SQLite)...)
		if err != nil {
			return fmt.Errorf("enroll host %q: %w", h.ID, mapErr(err))
		}
		out, err = getHost(ctx, tx, h.ID)
		return err
	})
	return out, err
}

func getHost(ctx context.Context, q sqlrow.Conn, id string) (store.Host, error) {
	return sqlrow.GetHost(ctx, q, mapErr, id)
}

// GetHost returns one host.
func (s *Store) GetHost(ctx context.Context, id string) (store.Host, error) {
	return s.shared().GetHost(ctx, id)
}

// ListHosts returns hosts sorted by hostname, then id.
func (s *Store) ListHosts(ctx context.Context, f store.HostFilter) ([]store.Host, error) {
	return s.shared().ListHosts(ctx, f)
}

// UpdateHostFacts stores facts from a Hello. An empty hardware UUID keeps the
// stored one, so a host stays matchable at re-enroll.
func (s *Store) UpdateHostFacts(ctx context.Context, h store.Host) error {
	res, err := s.w.ExecContext(ctx, `UPDATE hosts SET hostname = ?, platform = ?,
		os_platform = ?, os_name = ?, os_version = ?, osquery_version = ?,
		hardware_serial = ?, hardware_uuid = coalesce(nullif(?, ''), hardware_uuid),
		hardware_model = ?, ext_version = ?
		WHERE id = ?`, h.Hostname, h.Platform, h.OSPlatform, h.OSName, h.OSVersion,
		h.OsqueryVersion, h.HardwareSerial, h.HardwareUUID, h.HardwareModel, h.ExtVersion, h.ID)
	return affected(res, err, "update facts of host", h.ID)
}

// SetHostIdentity stores the Entra device id and UPN the host reported, and
// when it reported them.
func (s *Store) SetHostIdentity(ctx context.Context, id, entraDeviceID, upn string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE hosts SET entra_device_id = ?, user_principal_name = ?,
		identity_at = ? WHERE id = ?`, entraDeviceID, upn, ts(time.Now()), id)
	return affected(res, err, "set identity of host", id)
}

// SetHostEntraOverride sets or clears the admin's device id override.
func (s *Store) SetHostEntraOverride(ctx context.Context, id, entraDeviceID string) error {
	res, err := s.w.ExecContext(ctx, `UPDATE hosts SET entra_device_id_override = ? WHERE id = ?`, entraDeviceID, id)
	return affected(res, err, "set entra override of host", id)
}

// SetHostCert records the host's current certificate.
func (s *Store) SetHostCert(ctx context.Context, id, serial string, notAfter time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE hosts SET cert_serial = ?, cert_not_after = ? WHERE id = ?`,
		serial, nts(notAfter), id)
	return affected(res, err, "set certificate of host", id)
}

// TouchHost moves last-seen forward to seen; an older seen writes nothing.
func (s *Store) TouchHost(ctx context.Context, id string, seen time.Time) error {
	return s.moveForward(ctx, "hosts", "last_seen_at", "touch host", id, seen)
}

// moveForward sets table.column of row id to t unless it already holds t or
// later. A row that is not moved costs no write; only then is existence
// checked. table and column are constants of this package.
func (s *Store) moveForward(ctx context.Context, table, column, what, id string, t time.Time) error {
	res, err := s.w.ExecContext(ctx, `UPDATE `+table+` SET `+column+` = ?2
		WHERE id = ?1 AND (`+column+` IS NULL OR `+column+` < ?2)`, id, ts(t))
	if err != nil {
		return fmt.Errorf("%s %q: %w", what, id, err)
	}
	if n, err := res.RowsAffected(); err == nil && n > 0 {
		return nil
	}
	var one int
	if err := s.r.GetContext(ctx, &one, `SELECT 1 FROM `+table+` WHERE id = ?`, id); err != nil {
		return notFound(err, what, id)
	}
	return nil
}

// RevokeHost marks the host revoked; a second revoke keeps the first time.
func (s *Store) RevokeHost(ctx context.Context, id string, at time.Time) (store.Host, error) {
	var row sqlrow.Host
	err := s.w.GetContext(ctx, &row, `UPDATE hosts SET revoked_at = coalesce(revoked_at, ?)
		WHERE id = ? RETURNING `+sqlrow.HostCols, ts(at), id)
	if err != nil {
		return store.Host{}, notFound(err, "revoke host", id)
	}
	return row.Host(), nil
}

// DeleteHost removes the host, its results and history, and takes its latest
// results out of the policy counts.
func (s *Store) DeleteHost(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		var rs []struct {
			PolicyID string `db:"policy_id"`
			Status   string `db:"status"`
		}
		if err := tx.SelectContext(ctx, &rs, `SELECT policy_id, status FROM results WHERE host_id = ?`, id); err != nil {
			return fmt.Errorf("delete host %q: read results: %w", id, err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM hosts WHERE id = ?`, id)
		if err := affected(res, err, "delete host", id); err != nil {
			return err
		}
		ds := store.NewCountDeltas()
		for _, r := range rs {
			ds.Add(r.PolicyID, r.Status, -1)
		}
		return applyDeltas(ctx, tx, ds.Sorted())
	})
}
