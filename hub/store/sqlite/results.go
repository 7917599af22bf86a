package sqlite

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// RecordResults applies one batch in one writer transaction.
func (s *Store) RecordResults(ctx context.Context, hostID string, rs []store.Result, seen time.Time) (store.RecordOutcome, error) {
	if err := store.ValidateResults(rs); err != nil {
		return store.RecordOutcome{}, fmt.Errorf("record results of host %q: %w", hostID, err)
	}
	var out store.RecordOutcome
	err := s.inTx(ctx, func(tx *sqlx.Tx) error {
		var host struct {
			RevokedAt     sqlrow.NullTime `db:"revoked_at"`
			ReenrollCount int             `db:"reenroll_count"`
		}
		if err := tx.GetContext(ctx, &host, `SELECT revoked_at, reenroll_count FROM hosts WHERE id = ?`, hostID); err != nil {
			return notFound(err, "host", hostID)
		}
		if host.RevokedAt.Valid {
			return fmt.Errorf("host %q: %w", hostID, store.ErrRevoked)
		}
		if err := store.CheckEnrollment(ctx, hostID, host.ReenrollCount); err != nil {
			return err
		}
		plan, err := planBatch(ctx, tx, hostID, rs)
		if err != nil {
			return err
		}
		if err := writeResults(ctx, tx, hostID, plan); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, `UPDATE hosts SET last_seen_at = ? WHERE id = ? AND last_seen_at < ?`,
			ts(seen), hostID, ts(seen)); err != nil {
			return fmt.Errorf("touch host: %w", err)
		}
		if err := sqlrow.MarkReported(ctx, tx, sqlrow.SQLite, hostID, seen); err != nil {
			return err
		}
		out = plan.Outcome
		return nil
	})
	if err != nil {
		return store.RecordOutcome{}, fmt.Errorf("record results of host %q: %w", hostID, err)
	}
	return out, nil
}

func planBatch(ctx context.Context, tx *sqlx.Tx, hostID string, rs []store.Result) (store.RecordPlan, error) {
	ids := make([]any, 0, len(rs))
	seen := map[string]bool{}
	for _, r := range rs {
		if !seen[r.PolicyID] {
			seen[r.PolicyID] = true
			ids = append(ids, r.PolicyID)
		}
	}
	revisions := map[string]int64{}
	stored := map[string]store.Result{}
	// IN lists are chunked: SQLite binds at most 32766 variables per
	// statement, and a batch may legitimately name more policies.
	for chunk := range slices.Chunk(ids, maxInList) {
		in := "(" + strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",") + ")"
		var pols []struct {
			ID       string `db:"id"`
			Revision int64  `db:"revision"`
		}
		if err := tx.SelectContext(ctx, &pols, `SELECT id, revision FROM policies WHERE id IN `+in, chunk...); err != nil {
			return store.RecordPlan{}, fmt.Errorf("read policies: %w", err)
		}
		for _, p := range pols {
			revisions[p.ID] = p.Revision
		}
		var rows []sqlrow.Result
		args := append([]any{hostID}, chunk...)
		if err := tx.SelectContext(ctx, &rows, `SELECT `+sqlrow.ResultCols+` FROM results
			WHERE host_id = ? AND policy_id IN `+in, args...); err != nil {
			return store.RecordPlan{}, fmt.Errorf("read results: %w", err)
		}
		for _, r := range rows {
			stored[r.PolicyID] = r.Result()
		}
	}
	return store.PlanRecord(hostID, rs, revisions, stored)
}

// maxInList bounds the ids bound in one IN list.
const maxInList = 1000

// maxRowsPerInsert keeps multi-row inserts under SQLite's variable limit.
const maxRowsPerInsert = 500

// writeResults writes multi-row statements: the driver prepares every
// statement it runs, so one statement per row would parse the SQL 50 times.
func writeResults(ctx context.Context, tx *sqlx.Tx, hostID string, plan store.RecordPlan) error {
	for rows := range slices.Chunk(plan.Upsert, maxRowsPerInsert) {
		args := make([]any, 0, len(rows)*8)
		for _, r := range rows {
			args = append(args, hostID, r.PolicyID, r.Revision, r.Status, r.Error,
				ts(r.EvaluatedAt), int64(r.Duration), ts(r.StatusSince))
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO results (`+sqlrow.ResultCols+`) VALUES `+
			placeholders(len(rows), 8)+`
			ON CONFLICT (host_id, policy_id) DO UPDATE SET revision = excluded.revision,
				status = excluded.status, error = excluded.error, evaluated_at = excluded.evaluated_at,
				duration_ns = excluded.duration_ns, status_since = excluded.status_since`, args...)
		if err != nil {
			return fmt.Errorf("upsert results: %w", mapErr(err))
		}
	}
	for rows := range slices.Chunk(plan.History, maxRowsPerInsert) {
		args := make([]any, 0, len(rows)*6)
		for _, h := range rows {
			args = append(args, hostID, h.PolicyID, h.Revision, h.Status, h.Error, ts(h.EvaluatedAt))
		}
		// Rows are inserted in VALUES order, so ids keep the plan's (evaluated-at) order.
		_, err := tx.ExecContext(ctx, `INSERT INTO result_history (host_id, policy_id, revision, status,
			error, evaluated_at) VALUES `+placeholders(len(rows), 6), args...)
		if err != nil {
			return fmt.Errorf("write history: %w", mapErr(err))
		}
	}
	return applyDeltas(ctx, tx, plan.Deltas)
}

// placeholders returns "(?, ?), (?, ?)" for rows rows of cols columns.
func placeholders(rows, cols int) string {
	row := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return strings.TrimSuffix(strings.Repeat(row+", ", rows), ", ")
}

func applyDeltas(ctx context.Context, tx *sqlx.Tx, ds []store.PolicyCounts) error {
	for _, d := range ds {
		if _, err := tx.ExecContext(ctx, `UPDATE policy_counts SET passing = passing + ?,
			failing = failing + ?, errors = errors + ? WHERE policy_id = ?`,
			d.Passing, d.Failing, d.Errors, d.PolicyID); err != nil {
			return fmt.Errorf("update counts of %q: %w", d.PolicyID, err)
		}
	}
	return nil
}

// LatestResults returns the host's latest results sorted by policy id.
func (s *Store) LatestResults(ctx context.Context, hostID string) ([]store.Result, error) {
	return s.shared().LatestResults(ctx, hostID)
}

// History returns status changes of one (host, policy), newest first; limit
// <= 0 means all.
func (s *Store) History(ctx context.Context, hostID, policyID string, limit int) ([]store.HistoryEntry, error) {
	return s.shared().History(ctx, hostID, policyID, limit)
}

// PolicyCounts returns the maintained counts of every policy, sorted by id.
func (s *Store) PolicyCounts(ctx context.Context) ([]store.PolicyCounts, error) {
	return sqlrow.PolicyCounts(ctx, s.r)
}
