package cli

import (
	"strings"
	"testing"
	"time"
)

func TestCLITeamsSetKeepsUnspecifiedSettings(t *testing.T) {
	c := startCLIHub(t)

	c.ok(t, "teams", "set", "ops", "--conditional-access=true", "--max-allowed-severity", "medium", "--errors-as-failures")
	// Flags after the name, and only one of them: the rest must survive.
	out := c.ok(t, "teams", "set", "ops", "--stale-after", "2h")
	if !strings.Contains(out, "stale after 2h0m0s") {
		t.Fatalf("teams set output: %q", out)
	}
	s := team(t, c, "ops").GetSettings()
	if !s.GetConditionalAccess() || s.GetMaxAllowedSeverity() != "medium" || !s.GetErrorsAsFailures() || s.GetStaleAfter().AsDuration() != 2*time.Hour {
		t.Fatalf("settings after a partial set: %v", s)
	}

	// Bad input is refused and changes nothing.
	if errs := c.fails(t, "teams", "set", "ops", "--max-allowed-severity", "critical"); !strings.Contains(errs, "want low, medium, high") {
		t.Fatalf("bad severity: %q", errs)
	}
	c.ok(t, "teams", "set", "ops", "--conditional-access=false", "--max-allowed-severity", "")
	s = team(t, c, "ops").GetSettings()
	if s.GetConditionalAccess() || s.GetMaxAllowedSeverity() != "" || !s.GetErrorsAsFailures() || s.GetStaleAfter().AsDuration() != 2*time.Hour {
		t.Fatalf("settings after turning CA off: %v", s)
	}

	table := c.ok(t, "teams", "list")
	lines := strings.Split(strings.TrimSpace(table), "\n")
	if !strings.HasPrefix(lines[0], "NAME") || !strings.Contains(lines[0], "STALE AFTER") {
		t.Fatalf("teams list header: %q", lines[0])
	}
	var row string
	for _, l := range lines[1:] {
		if strings.Fields(l)[0] == "ops" {
			row = l
		}
	}
	if !strings.Contains(row, "off") || !strings.Contains(row, "any failure blocks") || !strings.Contains(row, "2h0m0s") {
		t.Fatalf("teams list row for ops: %q\n%s", row, table)
	}
}

func TestCLITeamsRevokeSessions(t *testing.T) {
	c := startCLIHub(t)
	c.ok(t, "teams", "set", "ops", "--conditional-access=true")
	out := c.ok(t, "teams", "set", "ops", "--revoke-sessions", "--revoke-sessions-min-severity", "critical")
	if !strings.Contains(out, "revoke sessions on (critical and above)") {
		t.Fatalf("teams set output: %q", out)
	}
	s := team(t, c, "ops").GetSettings()
	if !s.GetConditionalAccess() || !s.GetRevokeSessions() || s.GetRevokeSessionsMinSeverity() != "critical" {
		t.Fatalf("settings: %v", s)
	}
	if errs := c.fails(t, "teams", "set", "ops", "--revoke-sessions-min-severity", "severe"); !strings.Contains(errs, "want low, medium, high, critical") {
		t.Fatalf("bad severity: %q", errs)
	}
	c.ok(t, "teams", "set", "ops", "--revoke-sessions=false")
	if s := team(t, c, "ops").GetSettings(); s.GetRevokeSessions() || s.GetRevokeSessionsMinSeverity() != "critical" || !s.GetConditionalAccess() {
		t.Fatalf("settings after turning revocation off: %v", s)
	}
	if table := c.ok(t, "teams", "list"); !strings.Contains(table, "REVOKE SESSIONS") {
		t.Fatalf("teams list:\n%s", table)
	}
}
