package postgres

import (
	"context"
	"time"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// CreateEnrollSecret stores a secret's hash; a reused id or hash is ErrConflict.
func (s *Store) CreateEnrollSecret(ctx context.Context, sec store.EnrollSecret) error {
	return s.shared().CreateEnrollSecret(ctx, sec)
}

// FindEnrollSecret looks a secret up by its hash, whatever its state.
func (s *Store) FindEnrollSecret(ctx context.Context, hash []byte) (store.EnrollSecret, error) {
	return s.shared().FindEnrollSecret(ctx, hash)
}

// ListEnrollSecrets returns all secrets, oldest first.
func (s *Store) ListEnrollSecrets(ctx context.Context) ([]store.EnrollSecret, error) {
	return sqlrow.ListSecrets(ctx, s.db)
}

// RevokeEnrollSecret revokes a secret; a second revoke keeps the first time.
func (s *Store) RevokeEnrollSecret(ctx context.Context, id string, at time.Time) (store.EnrollSecret, error) {
	return s.shared().RevokeEnrollSecret(ctx, id, at)
}

// MarkEnrollSecretUsed moves last-used forward to at.
func (s *Store) MarkEnrollSecretUsed(ctx context.Context, id string, at time.Time) error {
	return s.shared().MarkEnrollSecretUsed(ctx, id, at)
}
