package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// GetVerdict returns a host's stored verdict.
func (s *Store) GetVerdict(ctx context.Context, hostID string) (store.Verdict, error) {
	return s.shared().GetVerdict(ctx, hostID)
}

// ListVerdicts returns every stored verdict sorted by host id.
func (s *Store) ListVerdicts(ctx context.Context) ([]store.Verdict, error) {
	return sqlrow.ListVerdicts(ctx, s.r)
}

// SaveVerdict stores v as version prevVersion+1 if the stored version is
// still prevVersion, and enqueues rows in the same transaction.
func (s *Store) SaveVerdict(ctx context.Context, v store.Verdict, prevVersion int64, rows []store.OutboxRow) error {
	v, rows, err := store.PrepareVerdict(v, prevVersion, rows, time.Now())
	if err != nil {
		return fmt.Errorf("save verdict: %w", err)
	}
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		return sqlrow.SaveVerdict(ctx, tx, sqlrow.SQLite, mapErr, v, prevVersion, rows)
	})
}

// DueVerdicts lists hosts whose next transition is at or before now,
// earliest first; limit <= 0 means all.
func (s *Store) DueVerdicts(ctx context.Context, now time.Time, limit int) ([]string, error) {
	return s.shared().DueVerdicts(ctx, now, limit)
}
