package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
)

const exemptionCols = `id, host_id, policy_id, reason, created_by, created_at, expires_at`

type exemptionRow struct {
	ID        string    `db:"id"`
	HostID    string    `db:"host_id"`
	PolicyID  string    `db:"policy_id"`
	Reason    string    `db:"reason"`
	CreatedBy string    `db:"created_by"`
	CreatedAt time.Time `db:"created_at"`
	ExpiresAt time.Time `db:"expires_at"`
}

// CreateExemption stores an exemption of an existing host. The host row is
// key-share locked so a concurrent delete cannot slip in between.
func (s *Store) CreateExemption(ctx context.Context, e store.Exemption) error {
	e, err := store.PrepareExemption(e, time.Now())
	if err != nil {
		return err
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if err := lockHostKey(ctx, tx, e.HostID); err != nil {
			return fmt.Errorf("create exemption %q: %w", e.ID, err)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO exemptions (`+exemptionCols+`) VALUES ($1, $2, $3, $4, $5, $6, $7)`,
			e.ID, e.HostID, e.PolicyID, e.Reason, e.CreatedBy, e.CreatedAt, e.ExpiresAt)
		if err != nil {
			return fmt.Errorf("create exemption %q: %w", e.ID, mapErr(err))
		}
		return nil
	})
}

// lockHostKey checks the host exists and keeps it from being deleted until
// the transaction ends.
func lockHostKey(ctx context.Context, tx *sqlx.Tx, id string) error {
	var one int
	if err := tx.GetContext(ctx, &one, `SELECT 1 FROM hosts WHERE id = $1 FOR KEY SHARE`, id); err != nil {
		return notFound(err, "host", id)
	}
	return nil
}

// ListExemptions lists exemptions of a host ("" = all), expired ones too,
// oldest first.
func (s *Store) ListExemptions(ctx context.Context, hostID string) ([]store.Exemption, error) {
	var rows []exemptionRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+exemptionCols+` FROM exemptions
		WHERE ($1 = '' OR host_id = $1) ORDER BY created_at, id`, hostID); err != nil {
		return nil, fmt.Errorf("list exemptions: %w", err)
	}
	out := make([]store.Exemption, len(rows))
	for i, r := range rows {
		out[i] = store.Exemption{ID: r.ID, HostID: r.HostID, PolicyID: r.PolicyID, Reason: r.Reason,
			CreatedBy: r.CreatedBy, CreatedAt: utc(r.CreatedAt), ExpiresAt: utc(r.ExpiresAt)}
	}
	return out, nil
}

// DeleteExemption removes an exemption.
func (s *Store) DeleteExemption(ctx context.Context, id string) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM exemptions WHERE id = $1`, id)
	return affected(res, err, "delete exemption", id)
}
