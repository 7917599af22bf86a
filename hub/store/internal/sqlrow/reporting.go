package sqlrow

import (
	"context"
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// ReportingCols are the columns of Reporting.
const ReportingCols = `r.host_id, r.report_interval_ns, r.last_report_at, r.health_at, r.osquery_ok,
	r.spool_ok, r.health_detail, r.spool_depth, r.spool_dropped_results, r.spool_dropped_transitions,
	r.stream_replica, rp.heartbeat_at AS stream_heartbeat`

// reportingFrom joins each stream to its replica's heartbeat.
const reportingFrom = ` FROM host_reporting r LEFT JOIN hub_replicas rp ON rp.id = r.stream_replica`

// Reporting is a row of host_reporting.
type Reporting struct {
	HostID           string   `db:"host_id"`
	ReportIntervalNS int64    `db:"report_interval_ns"`
	LastReportAt     NullTime `db:"last_report_at"`
	HealthAt         NullTime `db:"health_at"`
	OsqueryOK        bool     `db:"osquery_ok"`
	SpoolOK          bool     `db:"spool_ok"`
	HealthDetail     string   `db:"health_detail"`
	SpoolDepth       int64    `db:"spool_depth"`
	DroppedResults   int64    `db:"spool_dropped_results"`
	DroppedTrans     int64    `db:"spool_dropped_transitions"`
	StreamReplica    string   `db:"stream_replica"`
	StreamHeartbeat  NullTime `db:"stream_heartbeat"`
}

// Reporting converts the row.
func (r Reporting) Reporting() store.HostReporting {
	out := store.HostReporting{
		HostID: r.HostID, ReportInterval: time.Duration(r.ReportIntervalNS),
		LastReportAt: r.LastReportAt.Time, StreamReplica: r.StreamReplica,
		StreamHeartbeat: r.StreamHeartbeat.Time,
	}
	if r.HealthAt.Valid {
		out.Health = &store.HostHealth{OsqueryOK: r.OsqueryOK, SpoolOK: r.SpoolOK, Detail: r.HealthDetail,
			SpoolDepth: int(r.SpoolDepth), At: r.HealthAt.Time,
			SpoolDroppedResults: uint64(max(r.DroppedResults, 0)), SpoolDroppedTransitions: uint64(max(r.DroppedTrans, 0))}
	}
	return out
}

// GetHostReporting returns the host's reporting; a host without a row yet
// gets the zero value (ErrNotFound only when the host does not exist).
func (db DB) GetHostReporting(ctx context.Context, hostID string) (store.HostReporting, error) {
	var rows []Reporting
	if err := db.R.SelectContext(ctx, &rows, `SELECT `+ReportingCols+reportingFrom+` WHERE r.host_id = $1`, hostID); err != nil {
		return store.HostReporting{}, fmt.Errorf("reporting of host %q: %w", hostID, err)
	}
	if len(rows) == 1 {
		return rows[0].Reporting(), nil
	}
	if _, err := db.GetHost(ctx, hostID); err != nil {
		return store.HostReporting{}, err
	}
	return store.HostReporting{HostID: hostID}, nil
}

// ListHostReporting returns every row by host id.
func (db DB) ListHostReporting(ctx context.Context) (map[string]store.HostReporting, error) {
	var rows []Reporting
	if err := db.R.SelectContext(ctx, &rows, `SELECT `+ReportingCols+reportingFrom); err != nil {
		return nil, fmt.Errorf("list host reporting: %w", err)
	}
	out := make(map[string]store.HostReporting, len(rows))
	for _, r := range rows {
		out[r.HostID] = r.Reporting()
	}
	return out, nil
}

// upsertReporting inserts the host's row with cols = args or updates them.
// A missing host is ErrNotFound (the foreign key refuses the insert).
func (db DB) upsertReporting(ctx context.Context, what, hostID, cols string, set string, args ...any) error {
	ph := ""
	for i := range args {
		ph += fmt.Sprintf(", $%d", i+2)
	}
	_, err := db.W.ExecContext(ctx, `INSERT INTO host_reporting (host_id, `+cols+`) VALUES ($1`+ph+`)
		ON CONFLICT (host_id) DO UPDATE SET `+set, append([]any{hostID}, args...)...)
	if err != nil {
		if _, gerr := db.GetHost(ctx, hostID); gerr != nil {
			return fmt.Errorf("%s: %w", what, gerr)
		}
		return fmt.Errorf("%s of host %q: %w", what, hostID, db.MapErr(err))
	}
	return nil
}

// SetHostReportInterval records the policy interval sent to the host.
func (db DB) SetHostReportInterval(ctx context.Context, hostID string, d time.Duration) error {
	return db.upsertReporting(ctx, "set report interval", hostID, "report_interval_ns",
		"report_interval_ns = excluded.report_interval_ns", int64(d))
}

// SetHostHealth stores what the agent said about itself.
func (db DB) SetHostHealth(ctx context.Context, hostID string, h store.HostHealth) error {
	return db.upsertReporting(ctx, "set health", hostID,
		"health_at, osquery_ok, spool_ok, health_detail, spool_depth, spool_dropped_results, spool_dropped_transitions",
		`health_at = excluded.health_at, osquery_ok = excluded.osquery_ok, spool_ok = excluded.spool_ok,
		health_detail = excluded.health_detail, spool_depth = excluded.spool_depth,
		spool_dropped_results = excluded.spool_dropped_results, spool_dropped_transitions = excluded.spool_dropped_transitions`,
		db.Dialect.Time(store.StoredTime(h.At)), h.OsqueryOK, h.SpoolOK, h.Detail, int64(h.SpoolDepth),
		int64(min(h.SpoolDroppedResults, store.MaxSpoolDropped)), int64(min(h.SpoolDroppedTransitions, store.MaxSpoolDropped)))
}

// SetHostStream records the replica holding the host's stream.
func (db DB) SetHostStream(ctx context.Context, hostID, replica string, at time.Time) error {
	return db.upsertReporting(ctx, "set stream", hostID, "stream_replica, stream_since",
		"stream_replica = excluded.stream_replica, stream_since = excluded.stream_since",
		replica, db.Dialect.Time(store.StoredTime(at)))
}

// ClearHostStream forgets the stream if it is still the one replica opened
// at since: a host that reconnected (to another replica, or to this one)
// keeps its newer stream.
func (db DB) ClearHostStream(ctx context.Context, hostID, replica string, since time.Time) error {
	if _, err := db.W.ExecContext(ctx, `UPDATE host_reporting SET stream_replica = '', stream_since = NULL
		WHERE host_id = $1 AND stream_replica = $2 AND stream_since = $3`, hostID, replica,
		db.Dialect.Time(store.StoredTime(since))); err != nil {
		return fmt.Errorf("clear stream of host %q: %w", hostID, err)
	}
	return nil
}

// HeartbeatStreams refreshes the replica's heartbeat, which every stream it
// holds is judged by (one row per replica, whatever its number of hosts),
// and forgets replicas silent for a day.
func (db DB) HeartbeatStreams(ctx context.Context, replica string, at time.Time) error {
	_, err := db.W.ExecContext(ctx, `INSERT INTO hub_replicas (id, heartbeat_at) VALUES ($1, $2)
		ON CONFLICT (id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at`,
		replica, db.Dialect.Time(store.StoredTime(at)))
	if err != nil {
		return fmt.Errorf("heartbeat of replica %q: %w", replica, err)
	}
	if _, err := db.W.ExecContext(ctx, `DELETE FROM hub_replicas WHERE heartbeat_at < $1`,
		db.Dialect.Time(store.StoredTime(at.Add(-24*time.Hour)))); err != nil {
		return fmt.Errorf("forget old replicas: %w", err)
	}
	return nil
}

// MarkReported moves the host's last report forward to at, inside the
// batch's transaction.
func MarkReported(ctx context.Context, tx Conn, d Dialect, hostID string, at time.Time) error {
	_, err := tx.ExecContext(ctx, `INSERT INTO host_reporting (host_id, last_report_at) VALUES ($1, $2)
		ON CONFLICT (host_id) DO UPDATE SET last_report_at = excluded.last_report_at
		WHERE host_reporting.last_report_at IS NULL OR host_reporting.last_report_at < excluded.last_report_at`,
		hostID, d.Time(store.StoredTime(at)))
	if err != nil {
		return fmt.Errorf("mark host %q reported: %w", hostID, err)
	}
	return nil
}
