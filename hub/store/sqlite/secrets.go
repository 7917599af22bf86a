package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

const secretCols = `id, team, description, hash, created_at, expires_at, revoked_at, last_used_at`

type secretRow struct {
	ID          string `db:"id"`
	Team        string `db:"team"`
	Description string `db:"description"`
	Hash        []byte `db:"hash"`
	CreatedAt   int64  `db:"created_at"`
	ExpiresAt   *int64 `db:"expires_at"`
	RevokedAt   *int64 `db:"revoked_at"`
	LastUsedAt  *int64 `db:"last_used_at"`
}

func (r secretRow) secret() store.EnrollSecret {
	return store.EnrollSecret{ID: r.ID, Team: r.Team, Description: r.Description, Hash: r.Hash,
		CreatedAt: fromTS(r.CreatedAt), ExpiresAt: fromNTS(r.ExpiresAt), RevokedAt: fromNTS(r.RevokedAt),
		LastUsedAt: fromNTS(r.LastUsedAt)}
}

// CreateEnrollSecret stores a secret's hash; a reused id or hash is ErrConflict.
func (s *Store) CreateEnrollSecret(ctx context.Context, sec store.EnrollSecret) error {
	sec, err := store.PrepareEnrollSecret(sec, time.Now())
	if err != nil {
		return err
	}
	_, err = s.w.ExecContext(ctx, `INSERT INTO enroll_secrets (`+secretCols+`)
		VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`, sec.ID, sec.Team, sec.Description, sec.Hash,
		ts(sec.CreatedAt), ntsPtr(sec.ExpiresAt), ntsPtr(sec.RevokedAt), ntsPtr(sec.LastUsedAt))
	if err != nil {
		return fmt.Errorf("create enroll secret %q: %w", sec.ID, mapErr(err))
	}
	return nil
}

// FindEnrollSecret looks a secret up by its hash, whatever its state.
func (s *Store) FindEnrollSecret(ctx context.Context, hash []byte) (store.EnrollSecret, error) {
	var row secretRow
	if err := s.r.GetContext(ctx, &row, `SELECT `+secretCols+` FROM enroll_secrets WHERE hash = ?1`, hash); err != nil {
		return store.EnrollSecret{}, notFound(err, "enroll secret", "by hash")
	}
	return row.secret(), nil
}

// ListEnrollSecrets returns all secrets, oldest first.
func (s *Store) ListEnrollSecrets(ctx context.Context) ([]store.EnrollSecret, error) {
	var rows []secretRow
	if err := s.r.SelectContext(ctx, &rows, `SELECT `+secretCols+` FROM enroll_secrets ORDER BY created_at, id`); err != nil {
		return nil, fmt.Errorf("list enroll secrets: %w", err)
	}
	out := make([]store.EnrollSecret, len(rows))
	for i, r := range rows {
		out[i] = r.secret()
	}
	return out, nil
}

// RevokeEnrollSecret revokes a secret; a second revoke keeps the first time.
func (s *Store) RevokeEnrollSecret(ctx context.Context, id string, at time.Time) (store.EnrollSecret, error) {
	var row secretRow
	if err := s.w.GetContext(ctx, &row, `UPDATE enroll_secrets SET revoked_at = COALESCE(revoked_at, ?2)
		WHERE id = ?1 RETURNING `+secretCols, id, ts(at)); err != nil {
		return store.EnrollSecret{}, notFound(err, "revoke enroll secret", id)
	}
	return row.secret(), nil
}

// MarkEnrollSecretUsed moves last-used forward to at.
func (s *Store) MarkEnrollSecretUsed(ctx context.Context, id string, at time.Time) error {
	return s.moveForward(ctx, "enroll_secrets", "last_used_at", "mark enroll secret used", id, at)
}
