package sqlrow

import (
	"context"
	"fmt"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// HostCols are the columns of Host; HostInsert binds a new host to all of them.
const HostCols = `id, team, hostname, platform, os_platform, os_name, os_version, osquery_version,
	hardware_serial, hardware_uuid, hardware_model, ext_version, entra_device_id,
	entra_device_id_override, user_principal_name, enrolled_at, last_seen_at, cert_serial,
	cert_not_after, revoked_at, identity_at, duplicate_of, reenrolled_at, reenroll_count,
	user_principal_name_override`

// Host is a row of hosts.
type Host struct {
	ID                    string   `db:"id"`
	Team                  string   `db:"team"`
	Hostname              string   `db:"hostname"`
	Platform              string   `db:"platform"`
	OSPlatform            string   `db:"os_platform"`
	OSName                string   `db:"os_name"`
	OSVersion             string   `db:"os_version"`
	OsqueryVersion        string   `db:"osquery_version"`
	HardwareSerial        string   `db:"hardware_serial"`
	HardwareUUID          string   `db:"hardware_uuid"`
	HardwareModel         string   `db:"hardware_model"`
	ExtVersion            string   `db:"ext_version"`
	EntraDeviceID         string   `db:"entra_device_id"`
	EntraDeviceIDOverride string   `db:"entra_device_id_override"`
	UserPrincipalName     string   `db:"user_principal_name"`
	EnrolledAt            Time     `db:"enrolled_at"`
	LastSeenAt            Time     `db:"last_seen_at"`
	CertSerial            string   `db:"cert_serial"`
	CertNotAfter          NullTime `db:"cert_not_after"`
	RevokedAt             NullTime `db:"revoked_at"`
	IdentityAt            NullTime `db:"identity_at"`
	DuplicateOf           string   `db:"duplicate_of"`
	ReenrolledAt          NullTime `db:"reenrolled_at"`
	ReenrollCount         int      `db:"reenroll_count"`
	UPNOverride           string   `db:"user_principal_name_override"`
}

// Host converts the row; a NULL certificate expiry is the zero time.
func (r Host) Host() store.Host {
	return store.Host{
		ID: r.ID, Team: r.Team, Hostname: r.Hostname, Platform: r.Platform,
		OSPlatform: r.OSPlatform, OSName: r.OSName, OSVersion: r.OSVersion,
		OsqueryVersion: r.OsqueryVersion, HardwareSerial: r.HardwareSerial,
		HardwareUUID: r.HardwareUUID, HardwareModel: r.HardwareModel, ExtVersion: r.ExtVersion,
		EntraDeviceID: r.EntraDeviceID, EntraDeviceIDOverride: r.EntraDeviceIDOverride,
		UserPrincipalName: r.UserPrincipalName, EnrolledAt: r.EnrolledAt.T(),
		LastSeenAt: r.LastSeenAt.T(), CertSerial: r.CertSerial, CertNotAfter: r.CertNotAfter.Time,
		RevokedAt: r.RevokedAt.Ptr(), IdentityAt: r.IdentityAt.Ptr(),
		DuplicateOf: r.DuplicateOf, ReenrolledAt: r.ReenrolledAt.Ptr(), ReenrollCount: r.ReenrollCount,
		UserPrincipalNameOverride: r.UPNOverride,
	}
}

// HostArgs are the values of the first 19 HostCols (a new host: not
// revoked, no identity report yet).
func HostArgs(h store.Host, d Dialect) []any {
	return []any{h.ID, h.Team, h.Hostname, h.Platform, h.OSPlatform, h.OSName, h.OSVersion,
		h.OsqueryVersion, h.HardwareSerial, h.HardwareUUID, h.HardwareModel, h.ExtVersion,
		h.EntraDeviceID, h.EntraDeviceIDOverride, h.UserPrincipalName, d.Time(h.EnrolledAt),
		d.Time(h.LastSeenAt), h.CertSerial, d.NullTime(h.CertNotAfter)}
}

// Hosts converts rows.
func Hosts(rows []Host) []store.Host {
	hs := make([]store.Host, len(rows))
	for i, r := range rows {
		hs[i] = r.Host()
	}
	return hs
}

// ResultCols are the columns of Result.
const ResultCols = `host_id, policy_id, revision, status, error, evaluated_at, duration_ns, status_since`

// Result is a row of results.
type Result struct {
	HostID      string `db:"host_id"`
	PolicyID    string `db:"policy_id"`
	Revision    int64  `db:"revision"`
	Status      string `db:"status"`
	Error       string `db:"error"`
	EvaluatedAt Time   `db:"evaluated_at"`
	DurationNS  int64  `db:"duration_ns"`
	StatusSince Time   `db:"status_since"`
}

// Result converts the row.
func (r Result) Result() store.Result {
	return store.Result{
		HostID: r.HostID, PolicyID: r.PolicyID, Revision: r.Revision, Status: r.Status,
		Error: r.Error, EvaluatedAt: r.EvaluatedAt.T(), Duration: time.Duration(r.DurationNS),
		StatusSince: r.StatusSince.T(),
	}
}

// Results converts rows.
func Results(rows []Result) []store.Result {
	out := make([]store.Result, len(rows))
	for i, r := range rows {
		out[i] = r.Result()
	}
	return out
}

// HistoryCols are the columns of History.
const HistoryCols = `host_id, policy_id, revision, status, error, evaluated_at`

// History is a row of result_history.
type History struct {
	HostID      string `db:"host_id"`
	PolicyID    string `db:"policy_id"`
	Revision    int64  `db:"revision"`
	Status      string `db:"status"`
	Error       string `db:"error"`
	EvaluatedAt Time   `db:"evaluated_at"`
}

// Histories converts rows.
func Histories(rows []History) []store.HistoryEntry {
	out := make([]store.HistoryEntry, len(rows))
	for i, r := range rows {
		out[i] = store.HistoryEntry{HostID: r.HostID, PolicyID: r.PolicyID, Revision: r.Revision,
			Status: r.Status, Error: r.Error, EvaluatedAt: r.EvaluatedAt.T()}
	}
	return out
}

// PolicyCounts returns the maintained counts of every policy, sorted by id.
func PolicyCounts(ctx context.Context, q Querier) ([]store.PolicyCounts, error) {
	var rows []struct {
		PolicyID string `db:"policy_id"`
		Passing  int    `db:"passing"`
		Failing  int    `db:"failing"`
		Errors   int    `db:"errors"`
	}
	if err := q.SelectContext(ctx, &rows, `SELECT policy_id, passing, failing, errors FROM policy_counts
		ORDER BY policy_id`); err != nil {
		return nil, fmt.Errorf("policy counts: %w", err)
	}
	out := make([]store.PolicyCounts, len(rows))
	for i, r := range rows {
		out[i] = store.PolicyCounts{PolicyID: r.PolicyID, Passing: r.Passing, Failing: r.Failing, Errors: r.Errors}
	}
	return out, nil
}
