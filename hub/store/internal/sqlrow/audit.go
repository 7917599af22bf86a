package sqlrow

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/posture-dev/posture/hub/store"
)

// AuditCols are the columns of Audit written on insert (the id is the store's).
const AuditCols = `at, actor, actor_role, action, target, source, result, error, before, after`

// Audit is a row of audit_events.
type Audit struct {
	ID        int64  `db:"id"`
	At        Time   `db:"at"`
	Actor     string `db:"actor"`
	ActorRole string `db:"actor_role"`
	Action    string `db:"action"`
	Target    string `db:"target"`
	Source    string `db:"source"`
	Result    string `db:"result"`
	Error     string `db:"error"`
	Before    string `db:"before"`
	After     string `db:"after"`
}

// Event converts the row.
func (r Audit) Event() store.AuditEvent {
	return store.AuditEvent{ID: r.ID, At: r.At.T(), Actor: r.Actor, ActorRole: r.ActorRole, Action: r.Action,
		Target: r.Target, Source: r.Source, Result: r.Result, Error: r.Error, Before: r.Before, After: r.After}
}

// InsertAudit appends one event.
var InsertAudit = insert("audit_events", AuditCols)

// RecordAuditEvent appends e to the audit log.
func (db DB) RecordAuditEvent(ctx context.Context, e store.AuditEvent) error {
	if e.Action == "" || e.Result == "" {
		return fmt.Errorf("audit event needs an action and a result: %w", store.ErrInvalid)
	}
	if e.At.IsZero() {
		return fmt.Errorf("audit event needs a time: %w", store.ErrInvalid)
	}
	if _, err := db.W.ExecContext(ctx, InsertAudit, db.Dialect.Time(store.StoredTime(e.At)), e.Actor, e.ActorRole, e.Action, e.Target,
		e.Source, e.Result, e.Error, e.Before, e.After); err != nil {
		return fmt.Errorf("record audit event %s: %w", e.Action, db.MapErr(err))
	}
	return nil
}

// ListAuditEvents returns matching events, newest first.
func (db DB) ListAuditEvents(ctx context.Context, f store.AuditFilter) ([]store.AuditEvent, error) {
	var where []string
	var args []any
	arg := func(cond string, v any) {
		args = append(args, v)
		where = append(where, strings.ReplaceAll(cond, "?", "$"+strconv.Itoa(len(args))))
	}
	if f.Actor != "" {
		arg("actor = ?", f.Actor)
	}
	if f.Action != "" {
		arg("action = ?", f.Action)
	}
	if !f.Since.IsZero() {
		arg("at >= ?", db.Dialect.Time(store.StoredTime(f.Since)))
	}
	limit := f.Limit
	if limit <= 0 {
		limit = store.DefaultAuditLimit
	}
	q := `SELECT id, ` + AuditCols + ` FROM audit_events`
	if len(where) > 0 {
		q += ` WHERE ` + strings.Join(where, " AND ")
	}
	args = append(args, limit)
	q += ` ORDER BY id DESC LIMIT $` + strconv.Itoa(len(args))
	var rows []Audit
	if err := db.R.SelectContext(ctx, &rows, q, args...); err != nil {
		return nil, fmt.Errorf("list audit events: %w", err)
	}
	out := make([]store.AuditEvent, len(rows))
	for i, r := range rows {
		out[i] = r.Event()
	}
	return out, nil
}
