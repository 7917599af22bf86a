package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// ApplyPolicies applies a policy tree atomically. Applies are serialised by
// an advisory lock so the plan, computed from what is stored, stays true
// until commit; rows of changed policies are locked before writing so
// in-flight result batches of the old revision finish first.
func (s *Store) ApplyPolicies(ctx context.Context, req store.ApplyRequest) ([]store.PolicyChange, error) {
	at := req.At
	if at.IsZero() {
		at = time.Now()
	}
	var changes []store.PolicyChange
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockApply)); err != nil {
			return fmt.Errorf("apply lock: %w", err)
		}
		cur, err := sqlrow.ListPolicies(ctx, tx)
		if err != nil {
			return err
		}
		teams, err := sqlrow.ListTeams(ctx, tx)
		if err != nil {
			return err
		}
		facts, err := sqlrow.ListFacts(ctx, tx)
		if err != nil {
			return err
		}
		plan, err := store.PlanApply(cur, teams, facts, req, at)
		if err != nil {
			return err
		}
		changes = plan.Changes
		if req.DryRun || plan.Empty() {
			return nil
		}
		return s.writePlan(ctx, tx, plan, store.StoredTime(at))
	})
	if err != nil {
		return nil, fmt.Errorf("apply policies: %w", err)
	}
	return changes, nil
}

func (s *Store) writePlan(ctx context.Context, tx *sqlx.Tx, plan store.ApplyPlan, at time.Time) error {
	var touched []string
	for _, p := range plan.Upsert {
		if !plan.Added[p.ID] {
			touched = append(touched, p.ID)
		}
	}
	touched = append(touched, plan.Remove...)
	if len(touched) > 0 {
		var ids []string
		if err := tx.SelectContext(ctx, &ids, `SELECT id FROM policies WHERE id = ANY($1) ORDER BY id FOR UPDATE`,
			pq.Array(touched)); err != nil {
			return fmt.Errorf("lock policies: %w", err)
		}
	}
	for _, p := range plan.Upsert {
		args, err := sqlrow.PolicyArgs(p, sqlrow.Timestamptz)
		if err != nil {
			return err
		}
		if plan.Added[p.ID] {
			_, err = tx.ExecContext(ctx, sqlrow.InsertPolicy, args...)
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
	if len(plan.Remove) > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM policies WHERE id = ANY($1)`, pq.Array(plan.Remove)); err != nil {
			return fmt.Errorf("prune policies: %w", err)
		}
	}
	for _, t := range plan.UpsertTeams {
		_, err := tx.ExecContext(ctx, `INSERT INTO teams (`+sqlrow.TeamCols+`) VALUES ($1, $2, $3, $4, $5, $6, $6)
			ON CONFLICT (name) DO UPDATE SET conditional_access = EXCLUDED.conditional_access,
				max_allowed_severity = EXCLUDED.max_allowed_severity,
				errors_as_failures = EXCLUDED.errors_as_failures,
				stale_after_ns = EXCLUDED.stale_after_ns, updated_at = EXCLUDED.updated_at`,
			t.Name, t.Settings.ConditionalAccess, t.Settings.MaxAllowedSeverity,
			t.Settings.ErrorsAsFailures, int64(t.Settings.StaleAfter), at)
		if err != nil {
			return fmt.Errorf("team %q: %w", t.Name, mapErr(err))
		}
	}
	if plan.ReplaceFacts {
		if err := replaceFacts(ctx, tx, plan.Facts); err != nil {
			return err
		}
	}
	return bumpVersion(ctx, tx)
}

// ListPolicies returns all policies sorted by id.
func (s *Store) ListPolicies(ctx context.Context) ([]store.Policy, error) {
	return sqlrow.ListPolicies(ctx, s.db)
}

// GetPolicy returns one policy.
func (s *Store) GetPolicy(ctx context.Context, id string) (store.Policy, error) {
	return s.shared().GetPolicy(ctx, id)
}

// DeletePolicy removes a policy with its latest results and counts; history
// rows stay.
func (s *Store) DeletePolicy(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(lockApply)); err != nil {
			return fmt.Errorf("apply lock: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM policies WHERE id = $1`, id)
		if err := affected(res, err, "delete policy", id); err != nil {
			return err
		}
		return bumpVersion(ctx, tx)
	})
}

// ListTeams returns applied teams sorted by name.
func (s *Store) ListTeams(ctx context.Context) ([]store.Team, error) {
	return sqlrow.ListTeams(ctx, s.db)
}

// GetTeam returns one applied team.
func (s *Store) GetTeam(ctx context.Context, name string) (store.Team, error) {
	return s.shared().GetTeam(ctx, name)
}

// PolicySetVersion returns the opaque version of the policy set.
func (s *Store) PolicySetVersion(ctx context.Context) (string, error) {
	return s.shared().PolicySetVersion(ctx)
}
