package sqlrow

import (
	"context"
	"database/sql"
	"fmt"
	"strings"

	"github.com/posture-dev/posture/hub/store"
)

// hostVerdict is a hosts row with its verdicts row (all NULL when the host
// has no verdict yet).
type hostVerdict struct {
	Host
	VHostID  sql.NullString `db:"v_host_id"`
	VState   sql.NullString `db:"v_state"`
	VCause   sql.NullString `db:"v_cause"`
	VDesired sql.NullString `db:"v_desired"`
	VReasons []byte         `db:"v_reasons"`
	VNext    NullTime       `db:"v_next_transition"`
	VUpdated NullTime       `db:"v_updated_at"`
	VVersion sql.NullInt64  `db:"v_version"`
}

// hostColsOf is HostCols qualified with a table alias (the join below
// must not depend on verdicts never gaining a column named like a host's).
func hostColsOf(alias string) string {
	cols := strings.Split(HostCols, ",")
	for i, c := range cols {
		cols[i] = alias + "." + strings.TrimSpace(c)
	}
	return strings.Join(cols, ", ")
}

// HostsOfUserQuery is the SQL of HostsOfUser ($1 = store.FoldUPN(upn),
// $2 = the LIMIT argument); tests EXPLAIN it.
func HostsOfUserQuery(d Dialect) string {
	return `SELECT ` + hostColsOf("h") + `,
		v.host_id AS v_host_id, v.state AS v_state, v.cause AS v_cause, v.desired AS v_desired,
		v.reasons AS v_reasons, v.next_transition AS v_next_transition, v.updated_at AS v_updated_at,
		v.version AS v_version
		FROM hosts h LEFT JOIN verdicts v ON v.host_id = h.id
		WHERE ` + strings.ReplaceAll(d.UserKey, "user_principal_name", "h.user_principal_name") + ` = $1
		ORDER BY h.hostname, h.id LIMIT $2`
}

// HostsOfUser lists a user's hosts with their verdicts in one query (see
// store.Hosts). The WHERE compares the dialect's UserKey, which the
// expression index of migration 0014 covers, so the cost follows the
// user's hosts, not the fleet.
func (db DB) HostsOfUser(ctx context.Context, upn string, limit int) ([]store.HostVerdict, error) {
	if upn == "" {
		return nil, nil
	}
	q := HostsOfUserQuery(db.Dialect)
	var rows []hostVerdict
	if err := db.R.SelectContext(ctx, &rows, q, store.FoldUPN(upn), db.Dialect.Limit(limit)); err != nil {
		return nil, fmt.Errorf("hosts of user: %w", err)
	}
	out := make([]store.HostVerdict, len(rows))
	for i, r := range rows {
		out[i].Host = r.Host.Host()
		if r.VHostID.Valid {
			v := Verdict{HostID: r.VHostID.String, State: r.VState.String, Cause: r.VCause.String,
				Desired: r.VDesired.String, Reasons: r.VReasons, NextTransition: r.VNext,
				UpdatedAt: Time(r.VUpdated.Time), Version: r.VVersion.Int64}.Verdict()
			out[i].Verdict = &v
		}
	}
	return out, nil
}
