package sqlrow

import (
	"context"
	"fmt"

	"github.com/posture-dev/posture/hub/store"
)

// VerdictCols are the columns of Verdict, in VerdictArgs order.
const VerdictCols = `host_id, state, cause, desired, reasons, next_transition, updated_at, version`

// Verdict is a row of verdicts.
type Verdict struct {
	HostID         string   `db:"host_id"`
	State          string   `db:"state"`
	Cause          string   `db:"cause"`
	Desired        string   `db:"desired"`
	Reasons        []byte   `db:"reasons"`
	NextTransition NullTime `db:"next_transition"`
	UpdatedAt      Time     `db:"updated_at"`
	Version        int64    `db:"version"`
}

// Verdict converts the row.
func (r Verdict) Verdict() store.Verdict {
	v := store.Verdict{HostID: r.HostID, State: r.State, Cause: r.Cause, Desired: r.Desired,
		Reasons: r.Reasons, NextTransition: r.NextTransition.Ptr(), UpdatedAt: r.UpdatedAt.T(),
		Version: r.Version}
	if len(v.Reasons) == 0 {
		v.Reasons = nil
	}
	return v
}

// VerdictArgs are the values of VerdictCols in order.
func VerdictArgs(v store.Verdict, d Dialect) []any {
	return []any{v.HostID, v.State, v.Cause, v.Desired, v.Reasons, d.TimePtr(v.NextTransition),
		d.Time(v.UpdatedAt), v.Version}
}

// ListVerdicts returns every stored verdict sorted by host id.
func ListVerdicts(ctx context.Context, q Querier) ([]store.Verdict, error) {
	var rows []Verdict
	if err := q.SelectContext(ctx, &rows, `SELECT `+VerdictCols+` FROM verdicts ORDER BY host_id`); err != nil {
		return nil, fmt.Errorf("list verdicts: %w", err)
	}
	out := make([]store.Verdict, len(rows))
	for i, r := range rows {
		out[i] = r.Verdict()
	}
	return out, nil
}

// ExemptionCols are the columns of Exemption, in ExemptionArgs order.
const ExemptionCols = `id, host_id, policy_id, reason, created_by, created_at, expires_at`

// Exemption is a row of exemptions.
type Exemption struct {
	ID        string `db:"id"`
	HostID    string `db:"host_id"`
	PolicyID  string `db:"policy_id"`
	Reason    string `db:"reason"`
	CreatedBy string `db:"created_by"`
	CreatedAt Time   `db:"created_at"`
	ExpiresAt Time   `db:"expires_at"`
}

// Exemptions converts rows.
func Exemptions(rows []Exemption) []store.Exemption {
	out := make([]store.Exemption, len(rows))
	for i, r := range rows {
		out[i] = store.Exemption{ID: r.ID, HostID: r.HostID, PolicyID: r.PolicyID, Reason: r.Reason,
			CreatedBy: r.CreatedBy, CreatedAt: r.CreatedAt.T(), ExpiresAt: r.ExpiresAt.T()}
	}
	return out
}

// ExemptionArgs are the values of ExemptionCols in order.
func ExemptionArgs(e store.Exemption, d Dialect) []any {
	return []any{e.ID, e.HostID, e.PolicyID, e.Reason, e.CreatedBy, d.Time(e.CreatedAt), d.Time(e.ExpiresAt)}
}
