package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

const tokenCols = `id, name, role, hash, created_at, expires_at, revoked_at, last_used_at`

type tokenRow struct {
	ID         string     `db:"id"`
	Name       string     `db:"name"`
	Role       string     `db:"role"`
	Hash       []byte     `db:"hash"`
	CreatedAt  time.Time  `db:"created_at"`
	ExpiresAt  *time.Time `db:"expires_at"`
	RevokedAt  *time.Time `db:"revoked_at"`
	LastUsedAt *time.Time `db:"last_used_at"`
}

func (r tokenRow) token() store.APIToken {
	return store.APIToken{ID: r.ID, Name: r.Name, Role: r.Role, Hash: r.Hash,
		CreatedAt: utc(r.CreatedAt), ExpiresAt: utcPtr(r.ExpiresAt), RevokedAt: utcPtr(r.RevokedAt),
		LastUsedAt: utcPtr(r.LastUsedAt)}
}

// CreateAPIToken stores a token's hash; a reused id or hash is ErrConflict.
func (s *Store) CreateAPIToken(ctx context.Context, t store.APIToken) error {
	t, err := store.PrepareAPIToken(t, time.Now())
	if err != nil {
		return err
	}
	_, err = s.db.ExecContext(ctx, `INSERT INTO api_tokens (`+tokenCols+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)`, t.ID, t.Name, t.Role, t.Hash,
		t.CreatedAt, t.ExpiresAt, t.RevokedAt, t.LastUsedAt)
	if err != nil {
		return fmt.Errorf("create api token %q: %w", t.ID, mapErr(err))
	}
	return nil
}

// FindAPIToken looks a token up by its hash, whatever its state.
func (s *Store) FindAPIToken(ctx context.Context, hash []byte) (store.APIToken, error) {
	var row tokenRow
	if err := s.db.GetContext(ctx, &row, `SELECT `+tokenCols+` FROM api_tokens WHERE hash = $1`, hash); err != nil {
		return store.APIToken{}, notFound(err, "api token", "by hash")
	}
	return row.token(), nil
}

// ListAPITokens returns all tokens, oldest first.
func (s *Store) ListAPITokens(ctx context.Context) ([]store.APIToken, error) {
	var rows []tokenRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+tokenCols+` FROM api_tokens ORDER BY created_at, id`); err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	out := make([]store.APIToken, len(rows))
	for i, r := range rows {
		out[i] = r.token()
	}
	return out, nil
}

// RevokeAPIToken revokes a token; a second revoke keeps the first time.
func (s *Store) RevokeAPIToken(ctx context.Context, id string, at time.Time) (store.APIToken, error) {
	var row tokenRow
	if err := s.db.GetContext(ctx, &row, `UPDATE api_tokens SET revoked_at = COALESCE(revoked_at, $2)
		WHERE id = $1 RETURNING `+tokenCols, id, store.StoredTime(at)); err != nil {
		return store.APIToken{}, notFound(err, "revoke api token", id)
	}
	return row.token(), nil
}

// TouchAPIToken moves last-used forward to at.
func (s *Store) TouchAPIToken(ctx context.Context, id string, at time.Time) error {
	return s.moveForward(ctx, "api_tokens", "last_used_at", "touch api token", id, at)
}
