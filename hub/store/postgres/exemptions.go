package postgres

import (
	"context"
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
		return sqlrow.CreateExemption(ctx, tx, sqlrow.Postgres, mapErr, e)
	})
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
