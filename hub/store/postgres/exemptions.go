package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

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
		_, err := tx.ExecContext(ctx, sqlrow.InsertExemption,
			sqlrow.ExemptionArgs(e, sqlrow.Timestamptz)...)
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
	return s.shared().ListExemptions(ctx, hostID)
}

// DeleteExemption removes an exemption.
func (s *Store) DeleteExemption(ctx context.Context, id string) error {
	return s.shared().DeleteExemption(ctx, id)
}
