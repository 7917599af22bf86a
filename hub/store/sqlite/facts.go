package sqlite

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
)

func listFacts(ctx context.Context, q querier) ([]store.FactQuery, error) {
	var rows []struct {
		Name     string `db:"name"`
		Platform string `db:"platform"`
		Query    string `db:"query"`
	}
	if err := q.SelectContext(ctx, &rows, `SELECT name, platform, query FROM fact_queries ORDER BY name, platform`); err != nil {
		return nil, fmt.Errorf("list fact queries: %w", err)
	}
	out := make([]store.FactQuery, len(rows))
	for i, r := range rows {
		out[i] = store.FactQuery{Name: r.Name, Platform: r.Platform, Query: r.Query}
	}
	return out, nil
}

// replaceFacts makes fs the stored set (inside the apply transaction).
func replaceFacts(ctx context.Context, tx *sqlx.Tx, fs []store.FactQuery) error {
	if _, err := tx.ExecContext(ctx, `DELETE FROM fact_queries`); err != nil {
		return fmt.Errorf("replace fact queries: %w", err)
	}
	for _, f := range fs {
		if _, err := tx.ExecContext(ctx, `INSERT INTO fact_queries (name, platform, query) VALUES (?, ?, ?)`,
			f.Name, f.Platform, f.Query); err != nil {
			return fmt.Errorf("fact query %q: %w", store.FactKey(f), mapErr(err))
		}
	}
	return nil
}

// ListFactQueries returns the fact queries sorted by name, then platform.
func (s *Store) ListFactQueries(ctx context.Context) ([]store.FactQuery, error) {
	return listFacts(ctx, s.r)
}
