package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"testing"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
)

func TestCLIAuditList(t *testing.T) {
	c := startCLIHub(t)
	c.ok(t, "teams", "set", "ops", "--conditional-access=false")
	c.ok(t, "teams", "set", "ops", "--errors-as-failures")
	out := c.ok(t, "audit", "list", "--action", "UpdateTeam", "--since", "1h")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(lines[1], "cli-test") ||
		!strings.Contains(lines[1], "team/ops") || !strings.Contains(lines[1], "ok") {
		t.Fatalf("audit list:\n%s", out)
	}
	var resp posturev1.ListAuditEventsResponse
	c.jsonOut(t, &resp, "audit", "list", "--limit", "1")
	if len(resp.GetEvents()) != 1 || !strings.Contains(resp.GetEvents()[0].GetBefore(), `"conditionalAccess":false`) ||
		!strings.Contains(resp.GetEvents()[0].GetAfter(), `"errorsAsFailures":true`) {
		t.Fatalf("audit list --json: %v", resp.GetEvents())
	}
	if errs := c.fails(t, "audit", "list", "--since", "yesterday"); !strings.Contains(errs, "RFC 3339") {
		t.Fatalf("bad --since: %q", errs)
	}
}

// token create works on the store directly (there is no token yet to call
// the API with): it is recorded with actor "local", without the token.
func TestCLITokenCreateLocalIsAudited(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "hub")
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"token", "create", "--data-dir", dir, "--name", "bootstrap"}, &out, &errb); code != 0 {
		t.Fatalf("token create: exit %d: %s", code, errb.String())
	}
	plain := strings.TrimSpace(out.String())
	st, err := server.OpenStore(context.Background(), dir, "")
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	es, err := st.ListAuditEvents(context.Background(), store.AuditFilter{Actor: store.AuditActorLocal})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].Action != "token create" || es[0].Target != "token/bootstrap" || es[0].Result != store.AuditOK ||
		!strings.HasPrefix(es[0].Source, "local") {
		t.Fatalf("audit events: %+v", es)
	}
	if plain == "" || strings.Contains(es[0].After+es[0].Before, plain) {
		t.Fatalf("the token (%q) is in the audit log: %+v", plain, es[0])
	}
}
