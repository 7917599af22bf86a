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
	return s.shared().UpdateHostFacts(ctx, h)
}

// SetHostIdentity stores the Entra device id and UPN the host reported, and
// when it reported them.
func (s *Store) SetHostIdentity(ctx context.Context, id, entraDeviceID, upn string) error {
	return s.shared().SetHostIdentity(ctx, id, entraDeviceID, upn)
}

// SetHostEntraOverride sets or clears the admin's device id override.
func (s *Store) SetHostEntraOverride(ctx context.Context, id, entraDeviceID string) error {
	return s.shared().SetHostEntraOverride(ctx, id, entraDeviceID)
}

// SetHostCert records the host's current certificate.
func (s *Store) SetHostCert(ctx context.Context, id, serial string, notAfter time.Time) error {
	return s.shared().SetHostCert(ctx, id, serial, notAfter)
}

// TouchHost moves last-seen forward to seen; an older seen writes nothing.
func (s *Store) TouchHost(ctx context.Context, id string, seen time.Time) error {
	return s.shared().TouchHost(ctx, id, seen)
}

// RevokeHost marks the host revoked; a second revoke keeps the first time.
func (s *Store) RevokeHost(ctx context.Context, id string, at time.Time) (store.Host, error) {
	return s.shared().RevokeHost(ctx, id, at)
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
