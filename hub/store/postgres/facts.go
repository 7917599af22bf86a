package postgres

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// replaceFacts makes fs the stored set (inside the apply transaction).
func replaceFacts(ctx context.Context, tx *sqlx.Tx, fs []store.FactQuery) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM fact_queries`); err != nil {
		return fmt.Errorf("replace fact queries: %w", err)
	}
	for _, f := range fs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO fact_queries (name, platform, query) VALUES ($1, $2, $3)`,
			f.Name, f.Platform, f.Query); err != nil {
			return fmt.Errorf("fact query %q: %w", store.FactKey(f), mapErr(err))
		}
	}
	return nil
}

// ListFactQueries returns the fact queries sorted by name, then platform.
func (s *Store) ListFactQueries(ctx context.Context) ([]store.FactQuery, error) {
	return sqlrow.ListFacts(ctx, s.db)
}
