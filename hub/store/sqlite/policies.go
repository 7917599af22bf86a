package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// ApplyPolicies applies a policy tree atomically (one writer transaction).
func (s *Store) ApplyPolicies(ctx context.Context, req store.ApplyRequest) ([]store.PolicyChange, error) {
	at := req.At
	if at.IsZero() {
		at = time.Now()
	}
	var changes []store.PolicyChange
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		plan, err := sqlrow.PlanApply(ctx, tx, req, at)
		if err != nil {
			return err
		}
		changes = plan.Changes
		if req.DryRun || plan.Empty() {
			return nil
		}
		return writePlan(ctx, tx, plan, at)
	})
	if err != nil {
		return nil, fmt.Errorf("apply policies: %w", err)
	}
	return changes, nil
}

func writePlan(ctx context.Context, tx *sqlx.Tx, plan store.ApplyPlan, at time.Time) error {
	if err := sqlrow.WritePolicies(ctx, tx, plan, sqlrow.SQLite, mapErr); err != nil {
		return err
	}
	for _, id := range plan.Remove {
		if _, err := tx.ExecContext(ctx, `DELETE FROM policies WHERE id = ?`, id); err != nil {
			return fmt.Errorf("prune policy %q: %w", id, err)
		}
	}
	return sqlrow.FinishPlan(ctx, tx, plan, at, sqlrow.SQLite, mapErr)
}

// ListPolicies returns all policies sorted by id.
func (s *Store) ListPolicies(ctx context.Context) ([]store.Policy, error) {
	return sqlrow.ListPolicies(ctx, s.r)
}

// GetPolicy returns one policy.
func (s *Store) GetPolicy(ctx context.Context, id string) (store.Policy, error) {
	return s.shared().GetPolicy(ctx, id)
}

// DeletePolicy removes a policy with its latest results and counts; history
// rows stay.
func (s *Store) DeletePolicy(ctx context.Context, id string) error {
	return s.inTx(ctx, func(tx *sqlx.Tx) error {
		res, err := tx.ExecContext(ctx, `DELETE FROM policies WHERE id = ?`, id)
		if err := affected(res, err, "delete policy", id); err != nil {
			return err
		}
		return sqlrow.BumpVersion(ctx, tx)
	})
}

// ListTeams returns applied teams sorted by name.
func (s *Store) ListTeams(ctx context.Context) ([]store.Team, error) {
	return sqlrow.ListTeams(ctx, s.r)
}

// GetTeam returns one applied team.
func (s *Store) GetTeam(ctx context.Context, name string) (store.Team, error) {
	return s.shared().GetTeam(ctx, name)
}

// PolicySetVersion returns the opaque version of the policy set.
func (s *Store) PolicySetVersion(ctx context.Context) (string, error) {
	return s.shared().PolicySetVersion(ctx)
}
