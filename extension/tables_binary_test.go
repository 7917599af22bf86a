package main

import (
	"strconv"
	"strings"
	"testing"
	"time"

	osquery "github.com/osquery/osquery-go"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/internal/fakehub"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// Issue 11, item 2: the posture_status and posture_results tables, read the
// way osqueryi or Fleet reads them: a query to osqueryd, which calls the
// tables' generate action over the extension's socket. Runs the real
// binary against the fake hub.
func TestBinaryStatusAndResultsTables(t *testing.T) {
	sock := shortSocket(t, "ptab")
	startOsqueryd(t, sock, "darwin")

	ca := fakehub.NewCA(t, clock.Real{})
	st := fakehub.NewState()
	st.PolicySet = &posturev1.PolicySet{
		Version:  "tables-1",
		Interval: durationpb.New(time.Hour),
		Policies: []*posturev1.AgentPolicy{
			{Id: "always", Name: "Always passes", Revision: 3, Query: "SELECT 1"},
			{Id: "never", Name: "Never passes", Revision: 1, Query: "SELECT 1 WHERE 0"},
			{Id: "broken", Name: "Names a missing table", Revision: 1, Query: "SELECT 1 FROM no_such_table"},
		},
	}
	urlExpires := time.Now().Add(time.Hour).Truncate(time.Second)
	evaluated := time.Now().Add(-time.Minute).Truncate(time.Second)
	const remURL = "https://hub.example/remediate?t=signed"
	st.Status = &posturev1.DeviceStatus{
		Verdict: "NONCOMPLIANT", RemediationUrl: remURL,
		RemediationUrlExpiresAt: timestamppb.New(urlExpires), EvaluatedAt: timestamppb.New(evaluated),
	}
	hub := fakehub.Start(t, st, ca, "")
	hubAddr, caFile := hubFlags(t, hub, ca)
	started := time.Now()
	startExt(t, sock, hubAddr, caFile, t.TempDir())

	c, err := osquery.NewClient(sock, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	query := func(sql string) []map[string]string {
		rows, err := c.QueryRows(sql)
		if err != nil {
			return nil // not registered yet, or no rows
		}
		return rows
	}

	var results map[string]map[string]string
	poll(t, "three rows in posture_results", func() bool {
		results = map[string]map[string]string{}
		for _, r := range query("SELECT * FROM posture_results") {
			results[r["policy_id"]] = r
		}
		return len(results) == 3
	})
	for id, want := range map[string][2]string{
		"always": {"Always passes", "pass"}, "never": {"Never passes", "fail"}, "broken": {"Names a missing table", "error"},
	} {
		r := results[id]
		if r["name"] != want[0] || r["status"] != want[1] {
			t.Errorf("%s: name=%q status=%q, want %q %q", id, r["name"], r["status"], want[0], want[1])
		}
		if run, err := strconv.ParseInt(r["last_run"], 10, 64); err != nil || run < started.Unix() || run > time.Now().Unix() {
			t.Errorf("%s: last_run=%q, want a unix time since the start", id, r["last_run"])
		}
		if d, err := strconv.ParseInt(r["duration_ms"], 10, 64); err != nil || d < 0 {
			t.Errorf("%s: duration_ms=%q", id, r["duration_ms"])
		}
	}
	if results["always"]["revision"] != "3" || results["always"]["error"] != "" {
		t.Errorf("always: %v", results["always"])
	}
	if !strings.Contains(results["broken"]["error"], "no_such_table") {
		t.Errorf("broken: error=%q, want osquery's message", results["broken"]["error"])
	}
	// osquery filters extension rows like its own.
	if rows := query("SELECT name FROM posture_results WHERE status = 'fail'"); len(rows) != 1 || rows[0]["name"] != "Never passes" {
		t.Errorf("filtered posture_results = %v", rows)
	}

	var s map[string]string
	poll(t, "posture_status connected, verdict told, results acked", func() bool {
		rows := query("SELECT * FROM posture_status")
		if len(rows) != 1 {
			return false
		}
		s = rows[0]
		return s["connected"] == "1" && s["verdict"] != "" && s["last_ack"] != "" && s["spool_depth"] == "0"
	})
	if s["enrolled"] != "1" || s["host_id"] == "" || s["hub"] != hubAddr || s["verdict"] != "NONCOMPLIANT" {
		t.Errorf("posture_status = %v", s)
	}
	if s["verdict_evaluated_at"] != strconv.FormatInt(evaluated.Unix(), 10) {
		t.Errorf("verdict_evaluated_at = %q, want %d", s["verdict_evaluated_at"], evaluated.Unix())
	}
	if s["remediation_url"] != remURL || s["remediation_url_expires"] != strconv.FormatInt(urlExpires.Unix(), 10) {
		t.Errorf("remediation link = %q expiring %q", s["remediation_url"], s["remediation_url_expires"])
	}
	// The fake hub issues one-hour certificates.
	if exp, err := strconv.ParseInt(s["certificate_expires"], 10, 64); err != nil || exp < started.Add(50*time.Minute).Unix() || exp > time.Now().Add(2*time.Hour).Unix() {
		t.Errorf("certificate_expires = %q", s["certificate_expires"])
	}
	if ack, err := strconv.ParseInt(s["last_ack"], 10, 64); err != nil || ack < started.Unix() {
		t.Errorf("last_ack = %q", s["last_ack"])
	}

	// Column names and types as documented in extension/README.md.
	for sql, want := range map[string][]string{
		"SELECT * FROM posture_status": {"enrolled INTEGER", "host_id TEXT", "hub TEXT", "connected INTEGER", "last_ack BIGINT",
			"verdict TEXT", "verdict_evaluated_at BIGINT", "spool_depth INTEGER", "certificate_expires BIGINT",
			"remediation_url TEXT", "remediation_url_expires BIGINT",
			"spool_bytes BIGINT", "spool_max_bytes BIGINT", "spool_dropped BIGINT", "spool_dropped_transitions BIGINT"},
		"SELECT * FROM posture_results": {"policy_id TEXT", "name TEXT", "revision BIGINT", "status TEXT", "last_run BIGINT",
			"duration_ms BIGINT", "error TEXT"},
	} {
		resp, err := c.GetQueryColumns(sql)
		if err != nil || resp.Status.Code != 0 {
			t.Fatalf("getQueryColumns(%s): %v %+v", sql, err, resp)
		}
		var got []string
		for _, col := range resp.Response {
			for name, typ := range col {
				got = append(got, name+" "+typ)
			}
		}
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("%s columns:\n got %v\nwant %v", sql, got, want)
		}
	}

	// The hub goes away: the table says so, and keeps the last verdict.
	hub.Stop()
	poll(t, "posture_status disconnected", func() bool {
		rows := query("SELECT connected, verdict FROM posture_status")
		return len(rows) == 1 && rows[0]["connected"] == "0"
	})
	if rows := query("SELECT verdict FROM posture_status"); len(rows) != 1 || rows[0]["verdict"] != "NONCOMPLIANT" {
		t.Errorf("after the hub left: %v", rows)
	}
}
