package sqlrow

import (
	"context"
	"fmt"

	"github.com/posture-dev/posture/hub/store"
)

// SecretCols are the columns of Secret, in SecretArgs order.
const SecretCols = `id, team, description, hash, created_at, expires_at, revoked_at, last_used_at`

// Secret is a row of enroll_secrets.
type Secret struct {
	ID          string   `db:"id"`
	Team        string   `db:"team"`
	Description string   `db:"description"`
	Hash        []byte   `db:"hash"`
	CreatedAt   Time     `db:"created_at"`
	ExpiresAt   NullTime `db:"expires_at"`
	RevokedAt   NullTime `db:"revoked_at"`
	LastUsedAt  NullTime `db:"last_used_at"`
}

// Secret converts the row.
func (r Secret) Secret() store.EnrollSecret {
	return store.EnrollSecret{ID: r.ID, Team: r.Team, Description: r.Description, Hash: r.Hash,
		CreatedAt: r.CreatedAt.T(), ExpiresAt: r.ExpiresAt.Ptr(), RevokedAt: r.RevokedAt.Ptr(),
		LastUsedAt: r.LastUsedAt.Ptr()}
}

// SecretArgs are the values of SecretCols in order.
func SecretArgs(s store.EnrollSecret, d Dialect) []any {
	return []any{s.ID, s.Team, s.Description, s.Hash, d.Time(s.CreatedAt), d.TimePtr(s.ExpiresAt),
		d.TimePtr(s.RevokedAt), d.TimePtr(s.LastUsedAt)}
}

// ListSecrets returns all enroll secrets, oldest first.
func ListSecrets(ctx context.Context, q Querier) ([]store.EnrollSecret, error) {
	var rows []Secret
	if err := q.SelectContext(ctx, &rows, `SELECT `+SecretCols+` FROM enroll_secrets ORDER BY created_at, id`); err != nil {
		return nil, fmt.Errorf("list enroll secrets: %w", err)
	}
	out := make([]store.EnrollSecret, len(rows))
	for i, r := range rows {
		out[i] = r.Secret()
	}
	return out, nil
}

// TokenCols are the columns of Token, in TokenArgs order.
const TokenCols = `id, name, role, hash, created_at, expires_at, revoked_at, last_used_at`

// Token is a row of api_tokens.
type Token struct {
	ID         string   `db:"id"`
	Name       string   `db:"name"`
	Role       string   `db:"role"`
	Hash       []byte   `db:"hash"`
	CreatedAt  Time     `db:"created_at"`
	ExpiresAt  NullTime `db:"expires_at"`
	RevokedAt  NullTime `db:"revoked_at"`
	LastUsedAt NullTime `db:"last_used_at"`
}

// Token converts the row.
func (r Token) Token() store.APIToken {
	return store.APIToken{ID: r.ID, Name: r.Name, Role: r.Role, Hash: r.Hash,
		CreatedAt: r.CreatedAt.T(), ExpiresAt: r.ExpiresAt.Ptr(), RevokedAt: r.RevokedAt.Ptr(),
		LastUsedAt: r.LastUsedAt.Ptr()}
}

// TokenArgs are the values of TokenCols in order.
func TokenArgs(t store.APIToken, d Dialect) []any {
	return []any{t.ID, t.Name, t.Role, t.Hash, d.Time(t.CreatedAt), d.TimePtr(t.ExpiresAt),
		d.TimePtr(t.RevokedAt), d.TimePtr(t.LastUsedAt)}
}

// ListTokens returns all API tokens, oldest first.
func ListTokens(ctx context.Context, q Querier) ([]store.APIToken, error) {
	var rows []Token
	if err := q.SelectContext(ctx, &rows, `SELECT `+TokenCols+` FROM api_tokens ORDER BY created_at, id`); err != nil {
		return nil, fmt.Errorf("list api tokens: %w", err)
	}
	out := make([]store.APIToken, len(rows))
	for i, r := range rows {
		out[i] = r.Token()
	}
	return out, nil
}
