package server_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
)

// quickHub starts a hub (no agents) with tokens of each role.
type quickHub struct {
	*hubProc
	base                        string
	admin, maintainer, observer string
}

func startQuickHub(t testing.TB, cfg server.Config) *quickHub {
	t.Helper()
	if cfg.DataDir == "" {
		cfg.DataDir = filepath.Join(t.TempDir(), "hub")
	}
	if cfg.GRPCAddr == "" {
		cfg.GRPCAddr = "127.0.0.1:0"
	}
	if cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	hp := startHub(t, cfg)
	q := &quickHub{hubProc: hp, base: "http://" + hp.cfg.HTTPAddr}
	for _, r := range []struct {
		role string
		dst  *string
	}{{store.RoleAdmin, &q.admin}, {store.RoleMaintainer, &q.maintainer}, {store.RoleObserver, &q.observer}} {
		nt, err := admin.NewAPIToken(r.role+"-token", r.role, time.Now(), nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := hp.hub.Store.CreateAPIToken(context.Background(), nt.Stored); err != nil {
			t.Fatal(err)
		}
		*r.dst = nt.Plain
	}
	return q
}

// do sends one REST request and returns the status and body.
func (q *quickHub) do(t testing.TB, method, path, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, q.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// rawRequest writes a request head announcing contentLength body bytes,
// then the first `send` of them, and reads the answer; it fails the test
// if none comes (the hub waiting for a body it should never read).
func rawRequest(t *testing.T, addr, method, path, auth string, contentLength int64, send int) (int, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	head := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n", method, path, addr, contentLength)
	if auth != "" {
		head += "Authorization: " + auth + "\r\n"
	}
	if _, err := io.WriteString(c, head+"\r\n"); err != nil {
		t.Fatal(err)
	}
	if send > 0 {
		if _, err := c.Write(bytes.Repeat([]byte(" "), send)); err != nil {
			t.Fatal(err)
		}
	}
	// A bound on a hang, not a timing assertion: the old hub never answers
	// because it waits for the rest of the body.
	c.SetReadDeadline(time.Now().Add(15 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s %s (Content-Length %d, %d bytes sent): no answer before the body was sent: %v", method, path, contentLength, send, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// The attack: a huge REST body without (or with a made-up) token was read
// and decoded before authentication. Now the answer is 401 before the body
// is sent at all.
func TestRESTRefusesUnauthenticatedBodyUnread(t *testing.T) {
	q := startQuickHub(t, server.Config{})
	addr := q.cfg.HTTPAddr
	for _, tc := range []struct{ name, auth string }{
		{"no token", ""},
		{"not bearer", "Basic YTpi"},
		{"unknown token", "Bearer pat_made-up"},
	} {
		for _, path := range []string{"/api/v1/policies:apply", "/api/v1/teams/default", "/api/v1/exemptions"} {
			method := "POST"
			if path == "/api/v1/teams/default" {
				method = "PUT"
			}
			code, body := rawRequest(t, addr, method, path, tc.auth, 117<<20, 0)
			if code != http.StatusUnauthorized {
				t.Errorf("%s: %s %s with a 117 MB body: %d %s, want 401", tc.name, method, path, code, body)
			}
		}
	}
	// The hub is still fine.
	if code, body := q.do(t, "GET", "/api/v1/teams", q.observer, ""); code != http.StatusOK {
		t.Fatalf("after the attack: %d %s", code, body)
	}
}

// An authenticated body over the cap is 413: from Content-Length before
// reading, and while reading when the length is not announced.
func TestRESTBodyCaps(t *testing.T) {
	q := startQuickHub(t, server.Config{})
	big := `{"settings":{"conditionalAccess":true,"x":"` + strings.Repeat("a", 2<<20) + `"}}`
	code, body := rawRequest(t, q.cfg.HTTPAddr, "PUT", "/api/v1/teams/default", "Bearer "+q.admin, int64(len(big)), 0)
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("announced 2 MB team body: %d %s, want 413", code, body)
	}
	// Chunked: no Content-Length to check first.
	req, _ := http.NewRequest("PUT", q.base+"/api/v1/teams/default", io.MultiReader(strings.NewReader(big)))
	req.Header.Set("Authorization", "Bearer "+q.admin)
	req.ContentLength = -1
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked 2 MB team body: %d %s, want 413", resp.StatusCode, b)
	}
	// Policy apply may be larger: a 6 MB apply of real policies is taken
	// (more than gRPC's 4 MB default, less than the 16 MB apply cap).
	var ps []map[string]any
	desc := strings.Repeat("d", 60<<10)
	for i := 0; len(ps)*len(desc) < 6<<20; i++ {
		ps = append(ps, map[string]any{"id": fmt.Sprintf("p%03d", i), "name": fmt.Sprintf("P %d", i), "query": "SELECT 1;",
			"description": desc, "severity": "low", "platforms": []string{"linux"}})
	}
	apply, _ := json.Marshal(map[string]any{"policies": ps, "dryRun": true})
	if code, body := q.do(t, "POST", "/api/v1/policies:apply", q.admin, string(apply)); code != http.StatusOK {
		t.Errorf("%d-byte apply: %d %.300s, want 200", len(apply), code, body)
	}
	// Over the apply cap: 413 unread.
	if code, body := rawRequest(t, q.cfg.HTTPAddr, "POST", "/api/v1/policies:apply", "Bearer "+q.admin, 17<<20, 0); code != http.StatusRequestEntityTooLarge {
		t.Errorf("17 MB apply: %d %s, want 413", code, body)
	}
}

// gRPC holds each method to its own message cap over the real TLS port.
func TestGRPCPerMethodCaps(t *testing.T) {
	q := startQuickHub(t, server.Config{})
	ctx := context.Background()
	conn := dialHub(t, q.cfg.GRPCAddr, q.hub.CA.CertPEM(), nil)
	adminc := posturev1.NewAdminServiceClient(conn)
	// 2 MB on a small admin method: refused for its size, whatever the token.
	_, err := adminc.RevokeHost(withToken(ctx, q.admin), &posturev1.RevokeHostRequest{Id: strings.Repeat("h", 2<<20)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("2 MB RevokeHost: %v, want ResourceExhausted", status.Code(err))
	}
	// 200 KB enroll: refused for its size before the secret is looked at.
	_, err = posturev1.NewAgentServiceClient(conn).Enroll(ctx, &posturev1.EnrollRequest{EnrollSecret: "x", CsrDer: make([]byte, 200<<10)})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("200 KB Enroll: %v, want ResourceExhausted", err)
	}
	// ApplyPolicies may carry more than gRPC's 4 MB default.
	var ps []*posturev1.Policy
	desc := strings.Repeat("d", 60<<10)
	for i := 0; len(ps)*len(desc) < 6<<20; i++ {
		ps = append(ps, &posturev1.Policy{Id: fmt.Sprintf("p%03d", i), Name: fmt.Sprintf("P %d", i), Query: "SELECT 1;",
			Description: desc, Severity: "low", Platforms: []string{"linux"}})
	}
	if _, err := adminc.ApplyPolicies(withToken(ctx, q.admin), &posturev1.ApplyPoliciesRequest{Policies: ps, DryRun: true}); err != nil {
		t.Errorf("6 MB ApplyPolicies: %v", err)
	}
}

// PUT replaces the whole team: a partial body is refused (it used to turn
// conditional access off by omission), and a misspelled field is a 400
// naming it (it used to be dropped).
func TestRESTPutTeamIsExact(t *testing.T) {
	q := startQuickHub(t, server.Config{})
	full := `{"settings":{"conditionalAccess":true,"maxAllowedSeverity":"","errorsAsFailures":false,"staleAfter":"3600s"}}`
	if code, body := q.do(t, "PUT", "/api/v1/teams/eng", q.admin, full); code != http.StatusOK {
		t.Fatalf("full PUT: %d %s", code, body)
	}
	code, body := q.do(t, "PUT", "/api/v1/teams/eng", q.admin, `{"settings":{"maxAllowedSeverity":"low"}}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "conditionalAccess") {
		t.Errorf("partial PUT: %d %s, want 400 naming conditionalAccess", code, body)
	}
	code, body = q.do(t, "PUT", "/api/v1/teams/eng", q.admin,
		`{"settings":{"conditonalAccess":true,"conditionalAccess":true,"maxAllowedSeverity":"","errorsAsFailures":false,"staleAfter":"0s"}}`)
	if code != http.StatusBadRequest || !strings.Contains(body, "conditonalAccess") {
		t.Errorf("misspelled field: %d %s, want 400 naming conditonalAccess", code, body)
	}
	code, body = q.do(t, "GET", "/api/v1/teams", q.observer, "")
	if code != http.StatusOK || !strings.Contains(body, `"conditionalAccess":true`) || !strings.Contains(body, `"staleAfter":"3600s"`) {
		t.Errorf("team after refused PUTs: %d %s, want conditional access still on, stale after 1h", code, body)
	}
}

// logBuffer collects a hub's log lines.
type logBuffer struct{ syncBuffer }

// Plain HTTP on an address beyond loopback is announced loudly.
func TestPlainHTTPBeyondLoopbackWarns(t *testing.T) {
	for _, tc := range []struct {
		addr string
		warn bool
	}{{"127.0.0.1:0", false}, {"0.0.0.0:0", true}} {
		var logs logBuffer
		startQuickHub(t, server.Config{HTTPAddr: tc.addr, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		got := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "without TLS")
		if got != tc.warn {
			t.Errorf("--http-addr %s: warned=%v, want %v; log:\n%s", tc.addr, got, tc.warn, logs.String())
		}
	}
}
