// Package status keeps what posture.ext knows about itself (hub link,
// verdict, last policy results) and serves it to osquery as the
// posture_status and posture_results tables.
package status

import (
	"context"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/osquery/osquery-go/plugin/table"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

// Table names served by this package.
const (
	StatusTable  = "posture_status"
	ResultsTable = "posture_results"
)

// Sources are read at query time for values other packages own.
type Sources struct {
	// Hub is the configured hub address.
	Hub string
	// Identity returns the host id and certificate expiry ("" and zero when
	// not enrolled).
	Identity func() (hostID string, notAfter time.Time)
	// SpoolDepth is the number of result batches not yet acknowledged.
	SpoolDepth func() int
	// SpoolBytes is what the spool's files count against its cap, and the cap.
	SpoolBytes func() (used, max int64)
	// SpoolDropped counts the results the spool's bound dropped, and of
	// those the status transitions (history the hub never sees).
	SpoolDropped func() (results, transitions uint64)
	// Now defaults to time.Now (remediation links past their expiry are hidden).
	Now func() time.Time
}

// State is updated by the hub link and the scheduler and read by the
// tables. Safe for concurrent use.
type State struct {
	src Sources

	mu        sync.Mutex
	connected bool
	lastAck   time.Time
	device    *posturev1.DeviceStatus
	names     map[string]string // policy id -> name, from the last policy set
	results   map[string]*posturev1.PolicyResult
}

// New returns an empty State.
func New(src Sources) *State {
	if src.Now == nil {
		src.Now = time.Now
	}
	return &State{src: src, names: map[string]string{}, results: map[string]*posturev1.PolicyResult{}}
}

// Connected records whether a stream to the hub is open.
func (s *State) Connected(up bool) { s.mu.Lock(); s.connected = up; s.mu.Unlock() }

// Acked records that the hub acknowledged a result batch at t.
func (s *State) Acked(t time.Time) { s.mu.Lock(); s.lastAck = t; s.mu.Unlock() }

// DeviceStatus records the verdict the hub last sent.
func (s *State) DeviceStatus(d *posturev1.DeviceStatus) { s.mu.Lock(); s.device = d; s.mu.Unlock() }

// PolicySet records the policy names of a newly applied set and forgets
// results of policies no longer in it.
func (s *State) PolicySet(ps *posturev1.PolicySet) {
	s.mu.Lock()
	defer s.mu.Unlock()
	names := make(map[string]string, len(ps.GetPolicies()))
	for _, p := range ps.GetPolicies() {
		names[p.GetId()] = p.GetName()
	}
	s.names = names
	for id := range s.results {
		if _, ok := names[id]; !ok {
			delete(s.results, id)
		}
	}
}

// Clear forgets every policy (the host was disabled).
func (s *State) Clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.names = map[string]string{}
	s.results = map[string]*posturev1.PolicyResult{}
}

// Results records the newest result of each policy.
func (s *State) Results(rs []*posturev1.PolicyResult) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range rs {
		if prev, ok := s.results[r.GetPolicyId()]; ok && r.GetEvaluatedAt().AsTime().Before(prev.GetEvaluatedAt().AsTime()) {
			continue
		}
		s.results[r.GetPolicyId()] = r
	}
}

func unix(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return strconv.FormatInt(t.Unix(), 10)
}

func boolInt(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// StatusRow is the single posture_status row.
func (s *State) StatusRow() map[string]string {
	hostID, notAfter := "", time.Time{}
	if s.src.Identity != nil {
		hostID, notAfter = s.src.Identity()
	}
	depth := 0
	if s.src.SpoolDepth != nil {
		depth = s.src.SpoolDepth()
	}
	var spoolUsed, spoolMax int64
	if s.src.SpoolBytes != nil {
		spoolUsed, spoolMax = s.src.SpoolBytes()
	}
	var dropped, droppedTransitions uint64
	if s.src.SpoolDropped != nil {
		dropped, droppedTransitions = s.src.SpoolDropped()
	}
	s.mu.Lock()
	connected, lastAck, d := s.connected, s.lastAck, s.device
	s.mu.Unlock()
	row := map[string]string{
		"enrolled":                  boolInt(hostID != ""),
		"host_id":                   hostID,
		"hub":                       s.src.Hub,
		"connected":                 boolInt(connected),
		"last_ack":                  unix(lastAck),
		"verdict":                   "",
		"verdict_evaluated_at":      "",
		"spool_depth":               strconv.Itoa(depth),
		"certificate_expires":       unix(notAfter),
		"remediation_url":           "",
		"remediation_url_expires":   "",
		"spool_bytes":               strconv.FormatInt(spoolUsed, 10),
		"spool_max_bytes":           strconv.FormatInt(spoolMax, 10),
		"spool_dropped":             strconv.FormatUint(dropped, 10),
		"spool_dropped_transitions": strconv.FormatUint(droppedTransitions, 10),
	}
	if d != nil {
		row["verdict"] = d.GetVerdict()
		if d.GetEvaluatedAt() != nil {
			row["verdict_evaluated_at"] = unix(d.GetEvaluatedAt().AsTime())
		}
		// An expired link only leads to an error page: leave it out.
		if exp := d.GetRemediationUrlExpiresAt(); d.GetRemediationUrl() != "" && exp != nil && s.src.Now().Before(exp.AsTime()) {
			row["remediation_url"] = d.GetRemediationUrl()
			row["remediation_url_expires"] = unix(exp.AsTime())
		}
	}
	return row
}

// ResultRows are the posture_results rows, by policy id.
func (s *State) ResultRows() []map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	rows := make([]map[string]string, 0, len(s.results))
	for id, r := range s.results {
		rows = append(rows, map[string]string{
			"policy_id":   id,
			"name":        s.names[id],
			"revision":    strconv.FormatInt(r.GetRevision(), 10),
			"status":      statusName(r.GetStatus()),
			"last_run":    unix(r.GetEvaluatedAt().AsTime()),
			"duration_ms": strconv.FormatInt(r.GetDuration().AsDuration().Milliseconds(), 10),
			"error":       r.GetError(),
		})
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i]["policy_id"] < rows[j]["policy_id"] })
	return rows
}

func statusName(st posturev1.ResultStatus) string {
	switch st {
	case posturev1.ResultStatus_RESULT_STATUS_PASS:
		return "pass"
	case posturev1.ResultStatus_RESULT_STATUS_FAIL:
		return "fail"
	case posturev1.ResultStatus_RESULT_STATUS_ERROR:
		return "error"
	}
	return "unknown"
}

// Tables returns the posture_status and posture_results plugins.
func (s *State) Tables() []*table.Plugin {
	statusCols := []table.ColumnDefinition{
		table.IntegerColumn("enrolled"),
		table.TextColumn("host_id"),
		table.TextColumn("hub"),
		table.IntegerColumn("connected"),
		table.BigIntColumn("last_ack"),
		table.TextColumn("verdict"),
		table.BigIntColumn("verdict_evaluated_at"),
		table.IntegerColumn("spool_depth"),
		table.BigIntColumn("certificate_expires"),
		table.TextColumn("remediation_url"),
		table.BigIntColumn("remediation_url_expires"),
		table.BigIntColumn("spool_bytes"),
		table.BigIntColumn("spool_max_bytes"),
		table.BigIntColumn("spool_dropped"),
		table.BigIntColumn("spool_dropped_transitions"),
	}
	resultCols := []table.ColumnDefinition{
		table.TextColumn("policy_id"),
		table.TextColumn("name"),
		table.BigIntColumn("revision"),
		table.TextColumn("status"),
		table.BigIntColumn("last_run"),
		table.BigIntColumn("duration_ms"),
		table.TextColumn("error"),
	}
	return []*table.Plugin{
		table.NewPlugin(StatusTable, statusCols, func(context.Context, table.QueryContext) ([]map[string]string, error) {
			return []map[string]string{s.StatusRow()}, nil
		}, table.WithDescription("posture.ext's enrollment, hub connection, verdict and remediation link.")),
		table.NewPlugin(ResultsTable, resultCols, func(context.Context, table.QueryContext) ([]map[string]string, error) {
			return s.ResultRows(), nil
		}, table.WithDescription("The last result of each posture policy on this host.")),
	}
}
