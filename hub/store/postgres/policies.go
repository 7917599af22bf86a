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
		plan, err := sqlrow.PlanApply(ctx, tx, req, at)
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
	if err := sqlrow.WritePolicies(ctx, tx, plan, sqlrow.Postgres, mapErr); err != nil {
		return err
	}
	if len(plan.Remove) > 0 {
		if _, err := tx.ExecContext(ctx, `DELETE FROM policies WHERE id = ANY($1)`, pq.Array(plan.Remove)); err != nil {
			return fmt.Errorf("prune policies: %w", err)
		}
	}
	return sqlrow.FinishPlan(ctx, tx, plan, at, sqlrow.Postgres, mapErr)
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
		return sqlrow.BumpVersion(ctx, tx)
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
