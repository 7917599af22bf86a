package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// CreateAPIToken stores a token's hash; a reused id or hash is ErrConflict.
func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	t, err := store.PrepareAPIToken(t, time.Now())
	if err != nil {
		return err
	}
	_, err = s.w.ExecContext(ctx, sqlrow.InsertToken, sqlrow.TokenArgs(t, sqlrow.Micros)...)
	if err != nil {
		return fmt.Errorf("create api token %q: %w", t.ID, mapErr(err))
	}
	return nil
}

// FindAPIToken looks a token up by its hash, whatever its state.
func (s *Store) FindAPIToken(ctx context.Context, hash []byte) (store.APIToken, error) {
	var row sqlrow.Token
	if err := s.r.GetContext(ctx, &row, `SELECT `+sqlrow.TokenCols+` FROM api_tokens WHERE hash = ?1`, hash); err != nil {
		return store.APIToken{}, notFound(err, "api token", "by hash")
	}
	return row.Token(), nil
}

// ListAPITokens returns all tokens, oldest first.
func (s *Store) ListAPITokens(ctx context.Context) ([]store.APIToken, error) {
	return sqlrow.ListTokens(ctx, s.r)
}

// RevokeAPIToken revokes a token; a second revoke keeps the first time.
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) (store.APIToken, error) {
	var row sqlrow.Token
	if err := s.w.GetContext(ctx, &row, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, ?2)
		WHERE id = ?1 RETURNING `+sqlrow.TokenCols, id, ts(at)); err != nil {
		return store.APIToken{}, notFound(err, "revoke api token", id)
	}
	return row.Token(), nil
}

// TouchAPIToken moves last-used forward to at.
func (s *Store) TouchAPIToken(ctx context.Context, id string, at time.Time) error {
	return s.moveForward(ctx, "api_tokens", "last_used_at", "touch api token", id, at)
}
