package sqlrow

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// Querier reads many rows: a pool or a transaction.
type Querier interface {
	SelectContext(ctx context.Context, dest any, query string, args ...any) error
}

// PolicyCols are the columns of Policy, in PolicyArgs order.
const PolicyCols = `id, name, query, description, resolution, platforms, severity,
	conditional_access, grace_period_ns, team, revision, created_at, updated_at`

// Policy is a row of policies.
type Policy struct {
	ID                string `db:"id"`
	Name              string `db:"name"`
	Query             string `db:"query"`
	Description       string `db:"description"`
	Resolution        string `db:"resolution"`
	Platforms         string `db:"platforms"`
	Severity          string `db:"severity"`
	ConditionalAccess bool   `db:"conditional_access"`
	GracePeriodNS     int64  `db:"grace_period_ns"`
	Team              string `db:"team"`
	Revision          int64  `db:"revision"`
	CreatedAt         Time   `db:"created_at"`
	UpdatedAt         Time   `db:"updated_at"`
}

// Policy converts the row.
func (r Policy) Policy() (store.Policy, error) {
	p := store.Policy{
		ID: r.ID, Name: r.Name, Query: r.Query, Description: r.Description,
		Resolution: r.Resolution, Severity: r.Severity, ConditionalAccess: r.ConditionalAccess,
		GracePeriod: time.Duration(r.GracePeriodNS), Team: r.Team, Revision: r.Revision,
		CreatedAt: r.CreatedAt.T(), UpdatedAt: r.UpdatedAt.T(),
	}
	if err := json.Unmarshal([]byte(r.Platforms), &p.Platforms); err != nil {
		return store.Policy{}, fmt.Errorf("policy %q: platforms: %w", r.ID, err)
	}
	if len(p.Platforms) == 0 {
		p.Platforms = nil
	}
	return p, nil
}

// PolicyArgs are the values of PolicyCols in order.
func PolicyArgs(p store.Policy, d Dialect) ([]any, error) {
	platforms, err := json.Marshal(NonNil(p.Platforms))
	if err != nil {
		return nil, fmt.Errorf("policy %q: %w", p.ID, err)
	}
	return []any{p.ID, p.Name, p.Query, p.Description, p.Resolution, string(platforms), p.Severity,
		p.ConditionalAccess, int64(p.GracePeriod), p.Team, p.Revision, d.Time(p.CreatedAt), d.Time(p.UpdatedAt)}, nil
}

// NonNil stores an empty list as [] rather than null.
func NonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// ListPolicies returns all policies sorted by id.
func ListPolicies(ctx context.Context, q Querier) ([]store.Policy, error) {
	var rows []Policy
	if err := q.SelectContext(ctx, &rows, `SELECT `+PolicyCols+` FROM policies ORDER BY id`); err != nil {
		return nil, fmt.Errorf("list policies: %w", err)
	}
	ps := make([]store.Policy, 0, len(rows))
	for _, r := range rows {
		p, err := r.Policy()
		if err != nil {
			return nil, err
		}
		ps = append(ps, p)
	}
	return ps, nil
}

// TeamCols are the columns of Team.
const TeamCols = `name, conditional_access, max_allowed_severity, errors_as_failures, stale_after_ns, created_at, updated_at,
	revoke_sessions, revoke_sessions_min_severity, missed_reports`

// Team is a row of teams.
type Team struct {
	Name               string `db:"name"`
	ConditionalAccess  bool   `db:"conditional_access"`
	MaxAllowedSeverity string `db:"max_allowed_severity"`
	ErrorsAsFailures   bool   `db:"errors_as_failures"`
	StaleAfterNS       int64  `db:"stale_after_ns"`
	CreatedAt          Time   `db:"created_at"`
	UpdatedAt          Time   `db:"updated_at"`
	RevokeSessions     bool   `db:"revoke_sessions"`
	RevokeMinSeverity  string `db:"revoke_sessions_min_severity"`
	MissedReports      int    `db:"missed_reports"`
}

// Team converts the row.
func (r Team) Team() store.Team {
	return store.Team{Name: r.Name, Settings: store.TeamSettings{
		ConditionalAccess: r.ConditionalAccess, MaxAllowedSeverity: r.MaxAllowedSeverity,
		ErrorsAsFailures: r.ErrorsAsFailures, StaleAfter: time.Duration(r.StaleAfterNS),
		RevokeSessions: r.RevokeSessions, RevokeSessionsMinSeverity: r.RevokeMinSeverity,
		MissedReports: r.MissedReports,
	}}
}

// ListTeams returns applied teams sorted by name.
func ListTeams(ctx context.Context, q Querier) ([]store.Team, error) {
	var rows []Team
	if err := q.SelectContext(ctx, &rows, `SELECT `+TeamCols+` FROM teams ORDER BY name`); err != nil {
		return nil, fmt.Errorf("list teams: %w", err)
	}
	ts := make([]store.Team, len(rows))
	for i, r := range rows {
		ts[i] = r.Team()
	}
	return ts, nil
}

// ListFacts returns the fact queries sorted by name, then platform.
func ListFacts(ctx context.Context, q Querier) ([]store.FactQuery, error) {
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
