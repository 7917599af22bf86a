package sqlrow

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/posture-dev/posture/hub/store"
)

// PlanApply plans an apply against what tx reads as stored.
func PlanApply(ctx context.Context, tx Conn, req store.ApplyRequest, at time.Time) (store.ApplyPlan, error) {
	cur, err := ListPolicies(ctx, tx)
	if err != nil {
		return store.ApplyPlan{}, err
	}
	teams, err := ListTeams(ctx, tx)
	if err != nil {
		return store.ApplyPlan{}, err
	}
	facts, err := ListFacts(ctx, tx)
	if err != nil {
		return store.ApplyPlan{}, err
	}
	return store.PlanApply(cur, teams, facts, req, at)
}

// WritePolicies writes a plan's new and changed policies and drops the
// results of those whose query changed (inside the apply transaction, after
// any locks the backend takes).
func WritePolicies(ctx context.Context, tx Conn, plan store.ApplyPlan, d Dialect, mapErr func(error) error) error {
	for _, p := range plan.Upsert {
		args, err := PolicyArgs(p, d)
		if err != nil {
			return err
		}
		if plan.Added[p.ID] {
			_, err = tx.ExecContext(ctx, InsertPolicy, args...)
			if err == nil {
				_, err = tx.ExecContext(ctx, `INSERT INTO policy_counts (policy_id) VALUES ($1)`, p.ID)
			}
		} else {
			_, err = tx.ExecContext(ctx, `UPDATE policies SET name = $2, query = $3, description = $4,
				resolution = $5, platforms = $6, severity = $7, conditional_access = $8,
				grace_period_ns = $9, team = $10, revision = $11, created_at = $12, updated_at = $13
				WHERE id = $1`, args...)
		}
		if err != nil {
			return fmt.Errorf("policy %q: %w", p.ID, mapErr(err))
		}
	}
	for _, id := range plan.Bumped {
		// Old-revision results stop counting the moment the query changes.
		if _, err := tx.ExecContext(ctx, `DELETE FROM results WHERE policy_id = $1`, id); err != nil {
			return fmt.Errorf("policy %q: drop old results: %w", id, err)
		}
		if _, err := tx.ExecContext(ctx, `UPDATE policy_counts SET passing = 0, failing = 0, errors = 0
			WHERE policy_id = $1`, id); err != nil {
			return fmt.Errorf("policy %q: reset counts: %w", id, err)
		}
	}
	return nil
}

// FinishPlan upserts a plan's teams as of at, replaces the fact queries if
// the plan says so and bumps the policy set version.
func FinishPlan(ctx context.Context, tx Conn, plan store.ApplyPlan, at time.Time, d Dialect, mapErr func(error) error) error {
	for _, t := range plan.UpsertTeams {
		_, err := tx.ExecContext(ctx, `INSERT INTO teams (`+TeamCols+`) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9)
			ON CONFLICT (name) DO UPDATE SET conditional_access = excluded.conditional_access,
				revoke_sessions = excluded.revoke_sessions,
				revoke_sessions_min_severity = excluded.revoke_sessions_min_severity,
				max_allowed_severity = excluded.max_allowed_severity,
				errors_as_failures = excluded.errors_as_failures,
				stale_after_ns = excluded.stale_after_ns, updated_at = excluded.updated_at,
				missed_reports = excluded.missed_reports`,
			t.Name, t.Settings.ConditionalAccess, t.Settings.MaxAllowedSeverity,
			t.Settings.ErrorsAsFailures, int64(t.Settings.StaleAfter), d.Time(at),
			t.Settings.RevokeSessions, t.Settings.RevokeSessionsMinSeverity, t.Settings.MissedReports)
		if err != nil {
			return fmt.Errorf("team %q: %w", t.Name, mapErr(err))
		}
	}
	if plan.ReplaceFacts {
		if err := replaceFacts(ctx, tx, plan.Facts, mapErr); err != nil {
			return err
		}
	}
	return BumpVersion(ctx, tx)
}

// replaceFacts makes fs the stored set.
func replaceFacts(ctx context.Context, tx Conn, fs []store.FactQuery, mapErr func(error) error) error {
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

// BumpVersion gives the policy set a new opaque version (inside the
// transaction that changed it).
func BumpVersion(ctx context.Context, tx Conn) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value) VALUES ('policy_set_version', $1)
		ON CONFLICT (key) DO UPDATE SET value = excluded.value`, uuid.NewString())
	if err != nil {
		return fmt.Errorf("bump policy set version: %w", err)
	}
	return nil
}
