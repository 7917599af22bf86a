package cli

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// hosts get/list show the agent's own health, its cadence and its stream;
// teams set/list carry missed_reports.
func TestCLIReportingHealth(t *testing.T) {
	c := startCLIHub(t)
	ctx := context.Background()
	c.enrollHost(t, "host-1", "mac-1")
	if out := c.ok(t, "hosts", "get", "host-1"); !strings.Contains(out, "agent health: not reported") {
		t.Fatalf("hosts get before any health:\n%s", out)
	}
	if err := c.hub.Store.SetHostHealth(ctx, "host-1", store.HostHealth{OsqueryOK: true, SpoolOK: false,
		Detail: "spool: no space left on device", SpoolDepth: 4, At: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := c.hub.Store.SetHostReportInterval(ctx, "host-1", time.Minute); err != nil {
		t.Fatal(err)
	}
	get := c.ok(t, "hosts", "get", "host-1")
	for _, want := range []string{"spool FAILING", "4 batches spooled", "no space left on device", "reports every 1m0s"} {
		if !strings.Contains(get, want) {
			t.Fatalf("hosts get lacks %q:\n%s", want, get)
		}
	}
	if list := c.ok(t, "hosts", "list"); !strings.Contains(list, "offline, agent unhealthy") {
		t.Fatalf("hosts list:\n%s", list)
	}
	if strings.Contains(get, "dropped at the cap") || strings.Contains(get, "history gap") {
		t.Fatalf("hosts get shows drops that never happened:\n%s", get)
	}

	// Drops are shown, marked in the list, and are no health failure.
	if err := c.hub.Store.SetHostHealth(ctx, "host-1", store.HostHealth{OsqueryOK: true, SpoolOK: true,
		At: time.Now(), SpoolDroppedResults: 4100, SpoolDroppedTransitions: 12}); err != nil {
		t.Fatal(err)
	}
	get = c.ok(t, "hosts", "get", "host-1")
	if !strings.Contains(get, "spool: 12 status transitions dropped at the cap (history gap; verdict unaffected); 4100 results dropped in all") {
		t.Fatalf("hosts get lacks the drops:\n%s", get)
	}
	if list := c.ok(t, "hosts", "list"); !strings.Contains(list, "offline, history gap") || strings.Contains(list, "unhealthy") {
		t.Fatalf("hosts list with drops:\n%s", list)
	}
	if err := c.hub.Store.SetHostHealth(ctx, "host-1", store.HostHealth{OsqueryOK: true, SpoolOK: true,
		At: time.Now(), SpoolDroppedResults: 300}); err != nil {
		t.Fatal(err)
	}
	get = c.ok(t, "hosts", "get", "host-1")
	if !strings.Contains(get, "spool: 300 repeated results dropped at the cap (no status change lost") || strings.Contains(get, "history gap") {
		t.Fatalf("hosts get with repeats dropped:\n%s", get)
	}

	if out := c.ok(t, "teams", "set", "ops", "--missed-reports", "5"); !strings.Contains(out, "missed reports 5") {
		t.Fatalf("teams set: %q", out)
	}
	if s := team(t, c, "ops").GetSettings(); s.GetMissedReports() != 5 {
		t.Fatalf("missed reports not stored: %v", s)
	}
	if errs := c.fails(t, "teams", "set", "ops", "--missed-reports", "-1"); !strings.Contains(errs, "0 to 1000") {
		t.Fatalf("negative missed reports: %q", errs)
	}
	if list := c.ok(t, "teams", "list"); !strings.Contains(list, "MISSED REPORTS") {
		t.Fatalf("teams list:\n%s", list)
	}
}
