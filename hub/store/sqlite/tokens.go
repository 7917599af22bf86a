package sqlite

import (
	"context"
	"time"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// CreateAPIToken stores a token's hash; a reused id or hash is ErrConflict.
func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	return s.shared().CreateAPIToken(ctx, t)
}

// FindAPIToken looks a token up by its hash, whatever its state.
func (s *Store) FindAPIToken(ctx context.Context, hash []byte) (store.APIToken, error) {
	return s.shared().FindAPIToken(ctx, hash)
}

// ListAPITokens returns all tokens, oldest first.
func (s *Store) ListAPITokens(ctx context.Context) ([]store.APIToken, error) {
	return sqlrow.ListTokens(ctx, s.r)
}

// RevokeAPIToken revokes a token; a second revoke keeps the first time.
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) (store.APIToken, error) {
	return s.shared().RevokeAPIToken(ctx, id, at)
}

// TouchAPIToken moves last-used forward to at.
func (s *Store) TouchAPIToken(ctx context.Context, id string, at time.Time) error {
	return s.shared().TouchAPIToken(ctx, id, at)
}
