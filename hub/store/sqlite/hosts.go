package sqlite

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// EnrollHost creates a host, re-enrolls the one of the same team with the
// same hardware UUID, or creates a duplicate of another team's (see
// store.Hosts). Two enrolls racing to create a UUID's first host: the loser
// retries and finds the winner's row.
func (s *Store) EnrollHost(ctx context.Context, h store.Host) (store.Host, error) {
	h = store.PrepareEnroll(h, time.Now())
	var out store.Host
	var err error
	for range 3 {
		err = s.inTx(ctx, func(tx *sqlx.Tx) error {
			var err error
			out, err = sqlrow.EnrollHost(ctx, tx, sqlrow.SQLite, mapErr, h)
			return err
		})
		if !errors.Is(err, store.ErrConflict) {
			break
		}
	}
	return out, err
}

// HostsByEntraDeviceID lists the hosts claiming a device, sorted by id.
func (s *Store) HostsByEntraDeviceID(ctx context.Context, deviceID string) ([]store.Host, error) {
	return s.shared().HostsByEntraDeviceID(ctx, deviceID)
}

// HostsOfUser lists a user's hosts with their verdicts (see store.Hosts).
func (s *Store) HostsOfUser(ctx context.Context, upn string, limit int) ([]store.HostVerdict, error) {
	return s.shared().HostsOfUser(ctx, upn, limit)
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

// SetHostUPNOverride sets or clears the admin's user principal name override.
func (s *Store) SetHostUPNOverride(ctx context.Context, id, upn string) error {
	return s.shared().SetHostUPNOverride(ctx, id, upn)
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
