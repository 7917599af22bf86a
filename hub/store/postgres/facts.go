package postgres

import (
	"context"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// ListFactQueries returns the fact queries sorted by name, then platform.
func (s *Store) ListFactQueries(ctx context.Context) ([]store.FactQuery, error) {
	return sqlrow.ListFacts(ctx, s.db)
}
