package sqlrow

import (
	"context"
	"fmt"

	"github.com/posture-dev/posture/hub/store"
)

// EnrollHost is store.Hosts.EnrollHost inside tx (h already prepared with
// store.PrepareEnroll). The hosts holding h's hardware UUID are locked
// first (d.RowLock), so the choice between re-enroll and duplicate is made
// on rows no one else changes meanwhile; two enrolls racing to create the
// first row for a UUID end in a unique violation (store.ErrConflict via
// mapErr) that the caller retries.
func EnrollHost(ctx context.Context, tx Conn, d Dialect, mapErr func(error) error, h store.Host) (store.Host, error) {
	h.DuplicateOf, h.ReenrolledAt, h.ReenrollCount = "", nil, 0
	if h.HardwareUUID != "" {
		var rows []Host
		// The original (not a duplicate) first, then oldest.
		if err := tx.SelectContext(ctx, &rows, `SELECT `+HostCols+` FROM hosts WHERE hardware_uuid = $1
			ORDER BY CASE WHEN duplicate_of = '' THEN 0 ELSE 1 END, enrolled_at, id`+d.RowLock, h.HardwareUUID); err != nil {
			return store.Host{}, fmt.Errorf("enroll host: find hardware uuid: %w", err)
		}
		var original, sameTeam *Host
		for i := range rows {
			r := &rows[i]
			if r.DuplicateOf == "" && original == nil {
				original = r
			}
			if r.Team == h.Team && sameTeam == nil {
				sameTeam = r
			}
		}
		switch {
		case sameTeam != nil:
			if sameTeam.RevokedAt.Valid {
				return store.Host{}, fmt.Errorf("enroll host with hardware uuid %q: %w", h.HardwareUUID, store.ErrRevoked)
			}
			seen := h.LastSeenAt
			if prev := sameTeam.LastSeenAt.T(); prev.After(seen) {
				seen = prev
			}
			_, err := tx.ExecContext(ctx, `UPDATE hosts SET hostname = $2, platform = $3,
				os_platform = $4, os_name = $5, os_version = $6, osquery_version = $7,
				hardware_serial = $8, hardware_model = $9, ext_version = $10, enrolled_at = $11,
				last_seen_at = $12, cert_serial = $13, cert_not_after = $14,
				reenrolled_at = $11, reenroll_count = reenroll_count + 1
				WHERE id = $1`, sameTeam.ID, h.Hostname, h.Platform, h.OSPlatform, h.OSName, h.OSVersion,
				h.OsqueryVersion, h.HardwareSerial, h.HardwareModel, h.ExtVersion, d.Time(h.EnrolledAt),
				d.Time(seen), h.CertSerial, d.NullTime(h.CertNotAfter))
			if err != nil {
				return store.Host{}, fmt.Errorf("re-enroll host %q: %w", sameTeam.ID, mapErr(err))
			}
			return GetHost(ctx, tx, mapErr, sameTeam.ID)
		case original != nil && original.RevokedAt.Valid:
			// Another team's secret does not get around a revocation.
			return store.Host{}, fmt.Errorf("enroll host with hardware uuid %q: %w", h.HardwareUUID, store.ErrRevoked)
		case original != nil:
			h.DuplicateOf = original.ID
		}
	}
	args := append(HostArgs(h, d), h.DuplicateOf)
	if _, err := tx.ExecContext(ctx, `INSERT INTO hosts (`+HostCols+`) VALUES
		($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, NULL, NULL, $20, NULL, 0, '')`,
		args...); err != nil {
		return store.Host{}, fmt.Errorf("enroll host %q: %w", h.ID, mapErr(err))
	}
	return GetHost(ctx, tx, mapErr, h.ID)
}

// HostsByEntraDeviceID lists every host reporting the device id or holding
// it as override, sorted by id.
func (db DB) HostsByEntraDeviceID(ctx context.Context, deviceID string) ([]store.Host, error) {
	if deviceID == "" {
		return nil, nil
	}
	var rows []Host
	if err := db.R.SelectContext(ctx, &rows, `SELECT `+HostCols+` FROM hosts
		WHERE entra_device_id = $1 OR entra_device_id_override = $1 ORDER BY id`, deviceID); err != nil {
		return nil, fmt.Errorf("hosts by entra device id: %w", err)
	}
	return Hosts(rows), nil
}
