package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/internal/sqlrow"
)

// RecordResults applies one batch in one transaction. The host row is locked
// first, so batches of one host (even on two replicas) apply one after the
// other; the batch's policy rows are share-locked so an apply bumping a
// revision waits for the batch, or the batch sees the new revision.
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
		if err := tx.GetContext(ctx, &host, `SELECT revoked_at, reenroll_count FROM hosts WHERE id = $1 FOR NO KEY UPDATE`, hostID); err != nil {
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
		if _, err := tx.ExecContext(ctx, `UPDATE hosts SET last_seen_at = $2 WHERE id = $1 AND last_seen_at < $2`,
			hostID, store.StoredTime(seen)); err != nil {
			return fmt.Errorf("touch host: %w", err)
		}
		if err := sqlrow.MarkReported(ctx, tx, sqlrow.Postgres, hostID, seen); err != nil {
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
	ids := make([]string, 0, len(rs))
	seen := map[string]bool{}
	for _, r := range rs {
		if !seen[r.PolicyID] {
			seen[r.PolicyID] = true
			ids = append(ids, r.PolicyID)
		}
	}
	revisions := map[string]int64{}
	stored := map[string]store.Result{}
	if len(ids) > 0 {
		var pols []struct {
			ID       string `db:"id"`
			Revision int64  `db:"revision"`
		}
		if err := tx.SelectContext(ctx, &pols, `SELECT id, revision FROM policies WHERE id = ANY($1)
			ORDER BY id FOR SHARE`, pq.Array(ids)); err != nil {
			return store.RecordPlan{}, fmt.Errorf("read policies: %w", err)
		}
		for _, p := range pols {
			revisions[p.ID] = p.Revision
		}
		var rows []sqlrow.Result
		if err := tx.SelectContext(ctx, &rows, `SELECT `+sqlrow.ResultCols+` FROM results
			WHERE host_id = $1 AND policy_id = ANY($2)`, hostID, pq.Array(ids)); err != nil {
			return store.RecordPlan{}, fmt.Errorf("read results: %w", err)
		}
		for _, r := range rows {
			stored[r.PolicyID] = r.Result()
		}
	}
	return store.PlanRecord(hostID, rs, revisions, stored)
}

func writeResults(ctx context.Context, tx *sqlx.Tx, hostID string, plan store.RecordPlan) error {
	if n := len(plan.Upsert); n > 0 {
		ids, revs, sts, errs, evs, durs, since := make([]string, n), make([]int64, n), make([]string, n),
			make([]string, n), make([]string, n), make([]int64, n), make([]string, n)
		for i, r := range plan.Upsert {
			ids[i], revs[i], sts[i], errs[i] = r.PolicyID, r.Revision, r.Status, pgText(r.Error)
			evs[i], durs[i], since[i] = pgTime(r.EvaluatedAt), int64(r.Duration), pgTime(r.StatusSince)
		}
		_, err := tx.ExecContext(ctx, `INSERT INTO results (`+sqlrow.ResultCols+`)
			SELECT $1, u.policy_id, u.revision, u.status, u.error, u.evaluated_at, u.duration_ns, u.status_since
			FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[], $7::bigint[], $8::timestamptz[])
				AS u(policy_id, revision, status, error, evaluated_at, duration_ns, status_since)
			ON CONFLICT (host_id, policy_id) DO UPDATE SET revision = EXCLUDED.revision,
				status = EXCLUDED.status, error = EXCLUDED.error, evaluated_at = EXCLUDED.evaluated_at,
				duration_ns = EXCLUDED.duration_ns, status_since = EXCLUDED.status_since`,
			hostID, pq.Array(ids), pq.Array(revs), pq.Array(sts), pq.Array(errs), pq.Array(evs),
			pq.Array(durs), pq.Array(since))
		if err != nil {
			return fmt.Errorf("upsert results: %w", mapErr(err))
		}
	}
	if n := len(plan.History); n > 0 {
		ids, revs, sts, errs, evs := make([]string, n), make([]int64, n), make([]string, n), make([]string, n), make([]string, n)
		for i, h := range plan.History {
			ids[i], revs[i], sts[i], errs[i], evs[i] = h.PolicyID, h.Revision, h.Status, pgText(h.Error), pgTime(h.EvaluatedAt)
		}
		// WITH ORDINALITY keeps the plan's (evaluated-at) order in the serial ids.
		_, err := tx.ExecContext(ctx, `INSERT INTO result_history (host_id, policy_id, revision, status, error, evaluated_at)
			SELECT $1, u.policy_id, u.revision, u.status, u.error, u.evaluated_at
			FROM unnest($2::text[], $3::bigint[], $4::text[], $5::text[], $6::timestamptz[])
				WITH ORDINALITY AS u(policy_id, revision, status, error, evaluated_at, n)
			ORDER BY u.n`,
			hostID, pq.Array(ids), pq.Array(revs), pq.Array(sts), pq.Array(errs), pq.Array(evs))
		if err != nil {
			return fmt.Errorf("write history: %w", mapErr(err))
		}
	}
	return applyDeltas(ctx, tx, plan.Deltas)
}

// applyDeltas adds count changes, locking count rows in policy id order so
// concurrent batches cannot deadlock on them.
func applyDeltas(ctx context.Context, tx *sqlx.Tx, ds []store.PolicyCounts) error {
	if len(ds) == 0 {
		return nil
	}
	n := len(ds)
	ids, p, f, e := make([]string, n), make([]int64, n), make([]int64, n), make([]int64, n)
	for i, d := range ds {
		ids[i], p[i], f[i], e[i] = d.PolicyID, int64(d.Passing), int64(d.Failing), int64(d.Errors)
	}
	if n > 1 {
		var locked []string
		if err := tx.SelectContext(ctx, &locked, `SELECT policy_id FROM policy_counts WHERE policy_id = ANY($1)
			ORDER BY policy_id FOR UPDATE`, pq.Array(ids)); err != nil {
			return fmt.Errorf("lock counts: %w", err)
		}
	}
	_, err := tx.ExecContext(ctx, `UPDATE policy_counts c SET passing = c.passing + d.p,
		failing = c.failing + d.f, errors = c.errors + d.e
		FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS d(id, p, f, e)
		WHERE c.policy_id = d.id`, pq.Array(ids), pq.Array(p), pq.Array(f), pq.Array(e))
	if err != nil {
		return fmt.Errorf("update counts: %w", err)
	}
	return nil
}

// pgTime formats a time for a timestamptz[] parameter.
func pgTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.999999Z07:00") }

// pgText drops NUL bytes, which PostgreSQL text cannot hold.
func pgText(s string) string { return strings.ReplaceAll(s, "\x00", "") }

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
	return sqlrow.PolicyCounts(ctx, s.db)
}
