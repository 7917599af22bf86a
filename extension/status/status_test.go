package status

import (
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func TestStatusRowBeforeEnrollment(t *testing.T) {
	s := New(Sources{Hub: "hub:8443", Identity: func() (string, time.Time) { return "", time.Time{} }, SpoolDepth: func() int { return 4 },
		SpoolBytes:   func() (int64, int64) { return 16384, 64 << 20 },
		SpoolDropped: func() (uint64, uint64) { return 1200, 3 }})
	row := s.StatusRow()
	want := map[string]string{"enrolled": "0", "hub": "hub:8443", "connected": "0", "last_ack": "", "verdict": "",
		"spool_depth": "4", "certificate_expires": "", "remediation_url": "",
		"spool_bytes": "16384", "spool_max_bytes": "67108864", "spool_dropped": "1200", "spool_dropped_transitions": "3"}
	for k, v := range want {
		if row[k] != v {
			t.Errorf("%s = %q, want %q", k, row[k], v)
		}
	}
}

// A remediation link past its expiry leads to an error page: it is not shown.
func TestExpiredRemediationLinkHidden(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	s := New(Sources{Now: func() time.Time { return now }})
	s.DeviceStatus(&posturev1.DeviceStatus{Verdict: "GRACE", RemediationUrl: "https://hub/remediate?t=x",
		RemediationUrlExpiresAt: timestamppb.New(now.Add(time.Minute))})
	if row := s.StatusRow(); row["remediation_url"] == "" || row["remediation_url_expires"] != "1800000060" {
		t.Fatalf("fresh link: %v", row)
	}
	now = now.Add(2 * time.Minute)
	if row := s.StatusRow(); row["remediation_url"] != "" || row["remediation_url_expires"] != "" || row["verdict"] != "GRACE" {
		t.Errorf("expired link: %v", row)
	}
	// A link without an expiry cannot be judged fresh.
	s.DeviceStatus(&posturev1.DeviceStatus{Verdict: "NONCOMPLIANT", RemediationUrl: "https://hub/remediate?t=y"})
	if row := s.StatusRow(); row["remediation_url"] != "" {
		t.Errorf("link without expiry shown: %v", row)
	}
}

func TestResultRowsFollowThePolicySet(t *testing.T) {
	s := New(Sources{})
	at := time.Unix(1_800_000_000, 0)
	res := func(id string, st posturev1.ResultStatus, t time.Time) *posturev1.PolicyResult {
		return &posturev1.PolicyResult{PolicyId: id, Revision: 2, Status: st, EvaluatedAt: timestamppb.New(t), Duration: durationpb.New(1500 * time.Millisecond)}
	}
	s.PolicySet(&posturev1.PolicySet{Policies: []*posturev1.AgentPolicy{{Id: "a", Name: "A"}, {Id: "b", Name: "B"}}})
	s.Results([]*posturev1.PolicyResult{res("b", posturev1.ResultStatus_RESULT_STATUS_FAIL, at), res("a", posturev1.ResultStatus_RESULT_STATUS_PASS, at)})
	// An older result arriving late does not replace a newer one.
	s.Results([]*posturev1.PolicyResult{res("b", posturev1.ResultStatus_RESULT_STATUS_PASS, at.Add(-time.Minute))})
	rows := s.ResultRows()
	if len(rows) != 2 || rows[0]["policy_id"] != "a" || rows[1]["status"] != "fail" || rows[1]["name"] != "B" ||
		rows[1]["last_run"] != "1800000000" || rows[1]["duration_ms"] != "1500" || rows[1]["revision"] != "2" {
		t.Fatalf("rows = %v", rows)
	}
	// A policy removed from the set leaves the table.
	s.PolicySet(&posturev1.PolicySet{Policies: []*posturev1.AgentPolicy{{Id: "a", Name: "A renamed"}}})
	if rows := s.ResultRows(); len(rows) != 1 || rows[0]["name"] != "A renamed" {
		t.Fatalf("after the set changed: %v", rows)
	}
	s.Clear()
	if rows := s.ResultRows(); len(rows) != 0 {
		t.Errorf("after Clear: %v", rows)
	}
}

// Every column the tables declare has a value in every row, and no row
// carries a column the table does not declare.
func TestRowsMatchDeclaredColumns(t *testing.T) {
	s := New(Sources{})
	s.Results([]*posturev1.PolicyResult{{PolicyId: "a", Status: posturev1.ResultStatus_RESULT_STATUS_PASS, EvaluatedAt: timestamppb.Now()}})
	rows := map[string][]map[string]string{StatusTable: {s.StatusRow()}, ResultsTable: s.ResultRows()}
	for _, p := range s.Tables() {
		cols := map[string]bool{}
		for _, r := range p.Routes() {
			cols[r["name"]] = true
		}
		if len(rows[p.Name()]) == 0 {
			t.Fatalf("%s: no rows", p.Name())
		}
		for _, row := range rows[p.Name()] {
			for c := range cols {
				if _, ok := row[c]; !ok {
					t.Errorf("%s: column %s missing from the row", p.Name(), c)
				}
			}
			for c := range row {
				if !cols[c] {
					t.Errorf("%s: row has undeclared column %s", p.Name(), c)
				}
			}
		}
	}
}
