package server_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/server"
)

type auditEvent struct {
	Actor, ActorRole, Action, Target, Source, Result, Error, Before, After string
}

func (q *quickHub) audit(t *testing.T, query string) []auditEvent {
	t.Helper()
	code, body := q.do(t, "GET", "/api/v1/audit"+query, q.admin, "")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/audit%s: %d %s", query, code, body)
	}
	var out struct{ Events []auditEvent }
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	return out.Events
}

func (q *quickHub) teamSettings(t *testing.T, name string) map[string]any {
	t.Helper()
	code, body := q.do(t, "GET", "/api/v1/teams", q.observer, "")
	if code != http.StatusOK {
		t.Fatalf("teams: %d %s", code, body)
	}
	var out struct {
		Teams []struct {
			Name     string
			Settings map[string]any
		}
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatal(err)
	}
	for _, tm := range out.Teams {
		if tm.Name == name {
			return tm.Settings
		}
	}
	return nil
}

// PATCH changes only the fields sent; relaxing a team (conditional access
// off, a laxer severity threshold) or exempting a host needs the admin
// role; every attempt lands in the audit log with who, what, before/after
// and where from.
func TestRESTPatchTeamRolesAndAudit(t *testing.T) {
	q := startQuickHub(t, server.Config{})
	patch := func(tok, body string) (int, string) {
		return q.do(t, "PATCH", "/api/v1/teams/eng", tok, body)
	}
	// A team never applied starts from the defaults (conditional access on).
	if code, body := patch(q.maintainer, `{"settings":{"errorsAsFailures":true}}`); code != http.StatusOK {
		t.Fatalf("maintainer PATCH errorsAsFailures: %d %s", code, body)
	}
	if s := q.teamSettings(t, "eng"); s["conditionalAccess"] != true || s["errorsAsFailures"] != true {
		t.Fatalf("after PATCH: %v, want conditional access still on", s)
	}
	for _, body := range []string{`{"settings":{"conditionalAccess":false}}`, `{"settings":{"maxAllowedSeverity":"high"}}`} {
		if code, resp := patch(q.maintainer, body); code != http.StatusForbidden || !strings.Contains(resp, "admin") {
			t.Errorf("maintainer PATCH %s: %d %s, want 403 naming the admin role", body, code, resp)
		}
	}
	if s := q.teamSettings(t, "eng"); s["conditionalAccess"] != true || s["maxAllowedSeverity"] != "" {
		t.Fatalf("after refused PATCHes: %v", s)
	}
	if code, body := patch(q.admin, `{"settings":{"conditionalAccess":false}}`); code != http.StatusOK {
		t.Fatalf("admin PATCH conditional access off: %d %s", code, body)
	}
	if s := q.teamSettings(t, "eng"); s["conditionalAccess"] != false || s["errorsAsFailures"] != true {
		t.Fatalf("after admin PATCH: %v", s)
	}
	// Stricter is a maintainer's to make.
	if code, body := patch(q.maintainer, `{"settings":{"conditionalAccess":true}}`); code != http.StatusOK {
		t.Fatalf("maintainer PATCH conditional access on: %d %s", code, body)
	}
	for body, want := range map[string]string{
		`{"settings":{"conditonalAccess":false}}`: "conditonalAccess",
		`{"setings":{}}`: "setings",
		`{}`:             "update_mask",
	} {
		if code, resp := patch(q.admin, body); code != http.StatusBadRequest || !strings.Contains(resp, want) {
			t.Errorf("PATCH %s: %d %s, want 400 naming %s", body, code, resp, want)
		}
	}
	// An exemption lets a failing host pass: admin only.
	if code, body := q.do(t, "POST", "/api/v1/exemptions", q.maintainer,
		`{"hostId":"h1","reason":"travel","expiresAt":"2099-01-01T00:00:00Z"}`); code != http.StatusForbidden {
		t.Errorf("maintainer exemption: %d %s, want 403", code, body)
	}
	// A client cannot write its own source address into the log.
	req, _ := http.NewRequest("DELETE", q.base+"/api/v1/hosts/nope", nil)
	req.Header.Set("Authorization", "Bearer "+q.maintainer)
	req.Header.Set("Grpc-Metadata-X-Posture-Client-Addr", "6.6.6.6:1")
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	// Nor over gRPC, where only the peer address counts.
	conn := dialHub(t, q.cfg.GRPCAddr, q.hub.CA.CertPEM(), nil)
	adminc := posturev1.NewAdminServiceClient(conn)
	ctx := grpcMetadata(withToken(context.Background(), q.maintainer), "x-posture-client-addr", "6.6.6.6:1")
	if _, err := adminc.RecheckHost(ctx, &posturev1.RecheckHostRequest{Id: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("RecheckHost: %v", err)
	}
	// Secrets never reach the log, even from a refused call.
	const secret = "s3cr3t-client-value"
	_, err := adminc.CreateIntegration(withToken(context.Background(), q.maintainer), &posturev1.CreateIntegrationRequest{
		Integration: &posturev1.Integration{Name: "g", Kind: "graph", TenantId: "t", ClientId: "c", ClientSecret: secret, Certificate: []byte(secret)}})
	if status.Code(err) != codes.PermissionDenied {
		t.Fatalf("maintainer CreateIntegration: %v", err)
	}
	// Calls without a valid token are not logged (anyone could flood it).
	if _, err := adminc.DeleteHost(withToken(context.Background(), "pat_made-up"), &posturev1.DeleteHostRequest{Id: "x"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("bad token: %v", err)
	}

	events := q.audit(t, "")
	var sawOff, sawDenied, sawExempt, sawSpoofREST, sawGRPC, sawIntegration bool
	for _, e := range events {
		if strings.Contains(e.Source, "6.6.6.6") {
			t.Errorf("spoofed source in the log: %+v", e)
		}
		if strings.Contains(e.Before+e.After+e.Error, secret) {
			t.Errorf("secret in the log: %+v", e)
		}
		if e.Actor == "" || e.Actor == "unknown" {
			t.Errorf("event without an actor (an unauthenticated call?): %+v", e)
		}
		switch {
		case e.Action == "UpdateTeam" && e.Actor == "admin-token" && e.Result == "ok" && strings.Contains(e.Before, `"conditionalAccess":true`) &&
			strings.Contains(e.After, `"conditionalAccess":false`):
			sawOff = true
			if e.Target != "team/eng" || e.ActorRole != "admin" || !strings.HasPrefix(e.Source, "127.0.0.1:") {
				t.Errorf("conditional access off event: %+v", e)
			}
		case e.Action == "UpdateTeam" && e.Actor == "maintainer-token" && e.Result == "PermissionDenied":
			sawDenied = true
		case e.Action == "CreateExemption" && e.Result == "PermissionDenied":
			sawExempt = true
		case e.Action == "DeleteHost" && e.Result == "NotFound":
			sawSpoofREST = strings.HasPrefix(e.Source, "127.0.0.1:")
		case e.Action == "RecheckHost":
			sawGRPC = strings.HasPrefix(e.Source, "127.0.0.1:") && e.Target == "nope"
		case e.Action == "CreateIntegration":
			sawIntegration = e.Result == "PermissionDenied" && strings.Contains(e.After, "[redacted]")
		}
	}
	if !sawOff || !sawDenied || !sawExempt || !sawSpoofREST || !sawGRPC || !sawIntegration {
		t.Errorf("audit log misses events (off %v, denied %v, exemption %v, REST source %v, gRPC source %v, integration %v):\n%+v",
			sawOff, sawDenied, sawExempt, sawSpoofREST, sawGRPC, sawIntegration, events)
	}
	if got := q.audit(t, "?actor=maintainer-token&action=UpdateTeam"); len(got) != 4 {
		t.Errorf("filtered audit: %d events, want 4 (two refused, two ok): %+v", len(got), got)
	}
	if got := q.audit(t, "?limit=1"); len(got) != 1 {
		t.Errorf("limit=1: %d events", len(got))
	}
	// The log names tokens and addresses: admins only.
	if code, _ := q.do(t, "GET", "/api/v1/audit", q.maintainer, ""); code != http.StatusForbidden {
		t.Errorf("maintainer reading the audit log: %d, want 403", code)
	}
}

// PATCH on an integration changes only the fields sent: the tenant, the
// attribute and the sealed credential stay (a REST PATCH used to replace
// the whole integration).
func TestRESTPatchIntegrationKeepsOtherFields(t *testing.T) {
	q := startQuickHub(t, server.Config{})
	conn := dialHub(t, q.cfg.GRPCAddr, q.hub.CA.CertPEM(), nil)
	in, err := posturev1.NewAdminServiceClient(conn).CreateIntegration(withToken(context.Background(), q.admin),
		&posturev1.CreateIntegrationRequest{Integration: &posturev1.Integration{
			Name: "entra", Kind: "graph", TenantId: "11111111-1111-1111-1111-111111111111", ClientId: testClientID,
			ClientSecret: testSecret, ExtensionAttribute: 7,
		}})
	if err != nil {
		t.Fatal(err)
	}
	path := "/api/v1/integrations/" + in.GetId()
	if code, body := q.do(t, "PATCH", path, q.admin, `{"compliantValue":"OK"}`); code != http.StatusOK {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	code, body := q.do(t, "GET", path, q.observer, "")
	var got struct {
		TenantID           string `json:"tenantId"`
		ClientID           string `json:"clientId"`
		ExtensionAttribute int    `json:"extensionAttribute"`
		CompliantValue     string `json:"compliantValue"`
		CredentialKind     string `json:"credentialKind"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != http.StatusOK {
		t.Fatalf("GET: %d %s", code, body)
	}
	if got.TenantID != in.GetTenantId() || got.ClientID != testClientID || got.ExtensionAttribute != 7 ||
		got.CompliantValue != "OK" || got.CredentialKind != "secret" {
		t.Fatalf("after PATCH: %+v", got)
	}
	if code, body := q.do(t, "PATCH", path, q.admin, `{"health":"ok"}`); code != http.StatusBadRequest || !strings.Contains(body, "health") {
		t.Errorf("PATCH of an output field: %d %s, want 400 naming it", code, body)
	}
	// The change is in the audit log, credential redacted.
	events := q.audit(t, "?action=UpdateIntegration")
	if len(events) != 2 || !strings.Contains(events[1].After, `"compliantValue":"OK"`) || strings.Contains(events[1].After+events[1].Before, testSecret) {
		t.Errorf("audit: %+v", events)
	}
}
