package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// CreateEnrollSecret stores a secret's hash; a reused id or hash is ErrConflict.
func (s *Store) CreateEnrollSecret(ctx context.Context, sec store.EnrollSecret) error {
	sec, err := store.PrepareEnrollSecret(sec, time.Now())
	if err != nil {
		return err
	}
	_, err = s.w.ExecContext(ctx, sqlrow.InsertSecret, sqlrow.SecretArgs(sec, sqlrow.Micros)...)
	if err != nil {
		return fmt.Errorf("create enroll secret %q: %w", sec.ID, mapErr(err))
	}
	return nil
}

// FindEnrollSecret looks a secret up by its hash, whatever its state.
func (s *Store) FindEnrollSecret(ctx context.Context, hash []byte) (store.EnrollSecret, error) {
	var row sqlrow.Secret
	if err := s.r.GetContext(ctx, &row, `SELECT `+sqlrow.SecretCols+` FROM enroll_secrets WHERE hash = ?1`, hash); err != nil {
		return store.EnrollSecret{}, notFound(err, "enroll secret", "by hash")
	}
	return row.Secret(), nil
}

// ListEnrollSecrets returns all secrets, oldest first.
func (s *Store) ListEnrollSecrets(ctx context.Context) ([]store.EnrollSecret, error) {
	return sqlrow.ListSecrets(ctx, s.r)
}

// RevokeEnrollSecret revokes a secret; a second revoke keeps the first time.
func (s *Store) RevokeEnrollSecret(ctx context.Context, id string, at time.Time) (store.EnrollSecret, error) {
	var row sqlrow.Secret
	if err := s.w.GetContext(ctx, &row, `UPDATE enroll_secrets SET revoked_at = COALESCE(revoked_at, ?2)
		WHERE id = ?1 RETURNING `+sqlrow.SecretCols, id, ts(at)); err != nil {
		return store.EnrollSecret{}, notFound(err, "revoke enroll secret", id)
	}
	return row.Secret(), nil
}

// MarkEnrollSecretUsed moves last-used forward to at.
func (s *Store) MarkEnrollSecretUsed(ctx context.Context, id string, at time.Time) error {
	return s.moveForward(ctx, "enroll_secrets", "last_used_at", "mark enroll secret used", id, at)
}
