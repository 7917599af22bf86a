package cli

import (
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

func TestCLIExemptions(t *testing.T) {
	c := startCLIHub(t)
	c.enrollHost(t, "host-1", "mac-1")

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--host", "host-1", "--reason", "laptop in repair"}, "exemptions always end"},
		{[]string{"--host", "host-1", "--expires", "72h"}, "--reason is required"},
		{[]string{"--host", "host-1", "--reason", "   ", "--expires", "72h"}, "--reason is required"},
		{[]string{"--reason", "x", "--expires", "72h"}, "--host is required"},
		{[]string{"--host", "host-1", "--reason", "x", "--expires", "72h", "--until", "2030-01-01T00:00:00Z"}, "not both"},
		{[]string{"--host", "host-1", "--reason", "x", "--until", "tomorrow"}, "RFC 3339"},
		{[]string{"--host", "host-1", "--reason", "x", "--until", "2001-01-01T00:00:00Z"}, "in the future"},
		{[]string{"--host", "host-1", "--reason", "x", "--expires", "72h", "--policy", "no-such-policy"}, "NotFound"},
	} {
		errs := c.fails(t, append([]string{"exemptions", "create"}, tc.args...)...)
		if !strings.Contains(errs, tc.want) {
			t.Errorf("exemptions create %v: stderr %q, want %q", tc.args, errs, tc.want)
		}
	}
	var none posturev1.ListExemptionsResponse
	c.jsonOut(t, &none, "exemptions", "list")
	if len(none.GetExemptions()) != 0 {
		t.Fatalf("refused creates left exemptions: %v", none.GetExemptions())
	}

	out := c.ok(t, "exemptions", "create", "--host", "host-1", "--reason", "laptop in repair", "--expires", "72h")
	if !strings.HasPrefix(out, "created exemption ") || !strings.Contains(out, "policy (all)") {
		t.Fatalf("create output: %q", out)
	}
	var list posturev1.ListExemptionsResponse
	c.jsonOut(t, &list, "exemptions", "list", "--host", "host-1")
	if len(list.GetExemptions()) != 1 {
		t.Fatalf("exemptions: %v", list.GetExemptions())
	}
	e := list.GetExemptions()[0]
	if left := time.Until(e.GetExpiresAt().AsTime()); e.GetReason() != "laptop in repair" || left < 71*time.Hour || left > 72*time.Hour || e.GetCreatedBy() != "cli-test" {
		t.Fatalf("exemption: %v", e)
	}
	table := c.ok(t, "exemptions", "list")
	if !strings.Contains(table, e.GetId()) || !strings.Contains(table, "laptop in repair") {
		t.Fatalf("exemptions list:\n%s", table)
	}
	c.jsonOut(t, &none, "exemptions", "list", "--host", "other-host")
	if len(none.GetExemptions()) != 0 {
		t.Fatalf("--host filter: %v", none.GetExemptions())
	}

	c.ok(t, "exemptions", "delete", e.GetId())
	c.jsonOut(t, &list, "exemptions", "list")
	if len(list.GetExemptions()) != 0 {
		t.Fatalf("after delete: %v", list.GetExemptions())
	}
	if errs := c.fails(t, "exemptions", "delete", e.GetId()); !strings.Contains(errs, "NotFound") {
		t.Fatalf("deleting twice: %q", errs)
	}
}
