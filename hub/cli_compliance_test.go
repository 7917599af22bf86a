package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

// cliHub is a real in-process hub the CLI talks to over TLS gRPC.
type cliHub struct {
	hub    *server.Hub
	addr   string
	caFile string
}

func startCLIHub(t *testing.T) *cliHub {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h, err := server.New(ctx, server.Config{
		DataDir: t.TempDir(), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
		SyncPoll: 50 * time.Millisecond, DuePoll: 50 * time.Millisecond, PolicyPoll: 100 * time.Millisecond,
	})
	if err != nil {
		cancel()
		t.Fatalf("start hub: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub run: %v", err)
		}
	})
	caFile := filepath.Join(t.TempDir(), "hub-ca.pem")
	if err := os.WriteFile(caFile, h.CA.CertPEM(), 0o644); err != nil {
		t.Fatal(err)
	}
	nt, err := admin.NewAPIToken("cli-test", store.RoleAdmin, time.Now(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	t.Setenv("POSTURE_TOKEN", nt.Plain)
	return &cliHub{hub: h, addr: h.GRPCAddr(), caFile: caFile}
}

// run runs `posture-hub CMD VERB <client flags> ARGS...` as a user would.
func (c *cliHub) run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	full := append([]string{}, args[:2]...)
	full = append(full, "--addr", c.addr, "--ca", c.caFile)
	full = append(full, args[2:]...)
	var out, errb bytes.Buffer
	code = run(context.Background(), full, &out, &errb)
	return code, out.String(), errb.String()
}

// ok runs a command that must succeed and returns its stdout.
func (c *cliHub) ok(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := c.run(t, args...)
	if code != 0 {
		t.Fatalf("posture-hub %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails runs a command that must fail and returns its stderr.
func (c *cliHub) fails(t *testing.T, args ...string) string {
	t.Helper()
	code, out, errs := c.run(t, args...)
	if code == 0 {
		t.Fatalf("posture-hub %s succeeded, want an error\nstdout:\n%s", strings.Join(args, " "), out)
	}
	return errs
}

// jsonOut runs a command with --json and decodes its output into m.
func (c *cliHub) jsonOut(t *testing.T, m proto.Message, args ...string) {
	t.Helper()
	full := append(append(append([]string{}, args[:2]...), "--json"), args[2:]...)
	out := c.ok(t, full...)
	if err := protojson.Unmarshal([]byte(out), m); err != nil {
		t.Fatalf("posture-hub %s --json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

func (c *cliHub) enrollHost(t *testing.T, id, hostname string) {
	t.Helper()
	now := time.Now()
	_, err := c.hub.Store.EnrollHost(context.Background(), store.Host{
		ID: id, Team: "default", Hostname: hostname, Platform: "darwin", OSName: "macOS", OSVersion: "15.1",
		HardwareUUID: "uuid-" + id, HardwareSerial: "serial-" + id, EnrolledAt: now, LastSeenAt: now,
	})
	if err != nil {
		t.Fatal(err)
	}
}

func team(t *testing.T, c *cliHub, name string) *posturev1.Team {
	t.Helper()
	var resp posturev1.ListTeamsResponse
	c.jsonOut(t, &resp, "teams", "list")
	for _, tm := range resp.GetTeams() {
		if tm.GetName() == name {
			return tm
		}
	}
	t.Fatalf("team %q not listed: %v", name, resp.GetTeams())
	return nil
}

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

func TestCLIHostsIdentityAndVerdict(t *testing.T) {
	c := startCLIHub(t)

	if out := c.ok(t, "hosts", "unmapped"); strings.TrimSpace(out) != "ID  HOSTNAME  REASON" {
		t.Fatalf("unmapped hosts on a fresh hub:\n%s", out)
	}
	var unmapped posturev1.ListUnmappedHostsResponse
	c.jsonOut(t, &unmapped, "hosts", "unmapped")
	if len(unmapped.GetHosts()) != 0 {
		t.Fatalf("unmapped on a fresh hub: %v", unmapped.GetHosts())
	}

	c.enrollHost(t, "host-1", "mac-1")
	out := c.ok(t, "hosts", "unmapped")
	if !strings.Contains(out, "host-1") || !strings.Contains(out, "mac-1") || !strings.Contains(out, "not reported its Entra registration") {
		t.Fatalf("unmapped after enrolling:\n%s", out)
	}

	if errs := c.fails(t, "hosts", "set-entra-id", "host-1", "not-a-guid"); !strings.Contains(errs, "GUID") {
		t.Fatalf("bad device id: %q", errs)
	}
	if errs := c.fails(t, "hosts", "set-entra-id", "host-1"); !strings.Contains(errs, "want 2 argument(s)") {
		t.Fatalf("missing device id: %q", errs)
	}
	const device = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
	if out := c.ok(t, "hosts", "set-entra-id", "host-1", strings.ToUpper(device)); !strings.Contains(out, device) {
		t.Fatalf("set-entra-id output: %q", out)
	}
	c.jsonOut(t, &unmapped, "hosts", "unmapped")
	if len(unmapped.GetHosts()) != 0 {
		t.Fatalf("a mapped host is listed as unmapped: %v", unmapped.GetHosts())
	}
	var h posturev1.Host
	c.jsonOut(t, &h, "hosts", "get", "host-1")
	if h.GetEntraDeviceIdOverride() != device {
		t.Fatalf("override: %v", &h)
	}

	// The override made the engine evaluate the host; the CLI shows it.
	deadline := time.Now().Add(20 * time.Second)
	for h.GetVerdict().GetState() == "" {
		if time.Now().After(deadline) {
			t.Fatal("no verdict computed for host-1")
		}
		c.jsonOut(t, &h, "hosts", "get", "host-1")
	}
	get := c.ok(t, "hosts", "get", "host-1")
	if !strings.Contains(get, "verdict "+h.GetVerdict().GetState()+" ("+h.GetVerdict().GetCause()+")") || !strings.Contains(get, "entra device "+device) {
		t.Fatalf("hosts get:\n%s", get)
	}
	list := c.ok(t, "hosts", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if !strings.Contains(lines[0], "VERDICT") || len(lines) != 2 || !strings.Contains(lines[1], h.GetVerdict().GetState()) {
		t.Fatalf("hosts list:\n%s", list)
	}

	// --clear after the host id (flags may follow positionals).
	c.ok(t, "hosts", "set-entra-id", "host-1", "--clear")
	c.jsonOut(t, &unmapped, "hosts", "unmapped")
	if len(unmapped.GetHosts()) != 1 || unmapped.GetHosts()[0].GetId() != "host-1" {
		t.Fatalf("after --clear: %v", unmapped.GetHosts())
	}
}

func TestPrintVerdictReasons(t *testing.T) {
	deadline := timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	h := &posturev1.Host{Verdict: &posturev1.Verdict{
		State: "NONCOMPLIANT", Cause: "failing", Desired: "noncompliant", NextTransition: deadline,
		Reasons: []*posturev1.VerdictReason{
			{PolicyId: "filevault", PolicyName: "FileVault on", Status: posturev1.ResultStatus_RESULT_STATUS_FAIL, Severity: "high", Blocking: true},
			{PolicyId: "firewall", Status: posturev1.ResultStatus_RESULT_STATUS_FAIL, Severity: "high", GraceDeadline: deadline},
			{PolicyId: "screensaver", Status: posturev1.ResultStatus_RESULT_STATUS_FAIL, Severity: "medium", Exempt: true},
			{PolicyId: "bluetooth", Status: posturev1.ResultStatus_RESULT_STATUS_FAIL, Severity: "low", Allowed: true},
			{PolicyId: "new-policy", Severity: "high"},
		},
	}, UnmappedReason: "no Entra registration"}
	var b bytes.Buffer
	if err := printVerdict(&b, h); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	want := map[string][]string{
		"filevault":   {"blocking", "FileVault on", "FAIL", "high"},
		"firewall":    {"grace", "FAIL", fmtTime(deadline)},
		"screensaver": {"exempt"},
		"bluetooth":   {"allowed", "low"},
		"new-policy":  {"missing", "MISSING"},
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		for _, w := range want[f[1]] {
			if !strings.Contains(l, w) {
				t.Errorf("reason line %q lacks %q", l, w)
			}
		}
		delete(want, f[1])
	}
	if len(want) != 0 {
		t.Errorf("reasons not printed: %v\n%s", want, out)
	}
	for _, s := range []string{"verdict NONCOMPLIANT (failing)", "writes noncompliant", "next change " + fmtTime(deadline), "unmapped: no Entra registration"} {
		if !strings.Contains(out, s) {
			t.Errorf("verdict output lacks %q:\n%s", s, out)
		}
	}
}

const (
	cliClientID = "11111111-2222-3333-4444-555555555555"
	cliSecret   = "stand-in-secret-value"
)

func TestCLIIntegrationsAndSync(t *testing.T) {
	c := startCLIHub(t)
	pair, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	pair.Entra.RegisterApp(standin.App{ClientID: cliClientID, Secrets: []standin.Secret{{Value: cliSecret}}, Permissions: []string{"Device.ReadWrite.All"}})
	const device = "0b6f2c1e-8a55-4c1f-9f3e-6d2a7c9e1b42"
	pair.Graph.AddDevice(standin.Device{ID: "obj-1", DeviceID: device, DisplayName: "mac-1", OperatingSystem: "MacMDM"})

	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("standin-ca.pem", string(pair.CA.CertPEM()))
	secretFile := write("secret", cliSecret+"\n")
	wrongFile := write("wrong", "not-the-secret\n")
	base := []string{"--cloud", "custom", "--authority-host", pair.Entra.URL(), "--graph-base-url", pair.Graph.URL(),
		"--extra-ca-file", caFile, "--tenant-id", pair.Entra.Tenant(), "--client-id", cliClientID, "--attribute", "10"}
	create := func(args ...string) []string {
		return append(append([]string{"integrations", "create"}, base...), args...)
	}

	// Refused: the secret as a plain flag, no credential, a bad attribute.
	if code, _, errs := c.run(t, create("--name", "x", "--client-secret", cliSecret)...); code != 2 || !strings.Contains(errs, "flag provided but not defined: -client-secret") {
		t.Fatalf("--client-secret: exit %d %q", code, errs)
	}
	if errs := c.fails(t, create("--name", "x")...); !strings.Contains(errs, "a credential is required") {
		t.Fatalf("no credential: %q", errs)
	}
	if errs := c.fails(t, create("--name", "x", "--client-secret-file", secretFile, "--attribute", "16")...); !strings.Contains(errs, "want 1..15") {
		t.Fatalf("attribute 16: %q", errs)
	}
	if errs := c.fails(t, create("--name", "x", "--client-secret-file", secretFile, "--cloud", "mars")...); !strings.Contains(errs, "--cloud") {
		t.Fatalf("bad cloud: %q", errs)
	}

	out := c.ok(t, create("--name", "entra", "--client-secret-file", secretFile, "--teams", "default, ops", "--secret-expires", time.Now().AddDate(0, 0, 10).Format(time.DateOnly))...)
	if !strings.Contains(out, "credential") || !strings.Contains(out, "secret, expires") || !strings.Contains(out, `extensionAttribute10 = "Compliant" / "Non-compliant"`) {
		t.Fatalf("create output:\n%s", out)
	}
	var all posturev1.ListIntegrationsResponse
	c.jsonOut(t, &all, "integrations", "list")
	if len(all.GetIntegrations()) != 1 {
		t.Fatalf("integrations: %v", all.GetIntegrations())
	}
	in := all.GetIntegrations()[0]
	if in.GetCredentialKind() != "secret" || in.GetTenantId() != pair.Entra.Tenant() || strings.Join(in.GetTeams(), ",") != "default,ops" ||
		in.GetExtensionAttribute() != 10 || len(in.GetWarnings()) != 1 {
		t.Fatalf("integration: %v", in)
	}
	id := in.GetId()
	for _, args := range [][]string{{"integrations", "list"}, {"integrations", "list", "--json"}, {"integrations", "get", id}, {"integrations", "get", id, "--json"}} {
		if out := c.ok(t, args...); strings.Contains(out, cliSecret) {
			t.Fatalf("%v shows the secret:\n%s", args, out)
		}
	}
	table := c.ok(t, "integrations", "list")
	if !strings.Contains(table, id) || !strings.Contains(table, "secret") || !strings.Contains(table, "unchecked") {
		t.Fatalf("integrations list:\n%s", table)
	}

	out = c.ok(t, "integrations", "test", id)
	if !strings.Contains(out, "ok           true") || !strings.Contains(out, "device read  ok") {
		t.Fatalf("test output:\n%s", out)
	}
	if get := c.ok(t, "integrations", "get", id); !strings.Contains(get, "health          ok (checked") {
		t.Fatalf("health after test:\n%s", get)
	}

	// Update one setting: the rest, and the sealed credential, stay.
	c.ok(t, "integrations", "update", id, "--compliant-value", "OK")
	var got posturev1.Integration
	c.jsonOut(t, &got, "integrations", "get", id)
	if got.GetCompliantValue() != "OK" || got.GetNoncompliantValue() != "Non-compliant" || got.GetClientId() != cliClientID ||
		got.GetCloud() != "custom" || got.GetExtraCaPem() == "" || len(got.GetTeams()) != 2 || got.GetSecretExpiresAt() == nil {
		t.Fatalf("after update: %v", &got)
	}
	var tr posturev1.TestIntegrationResponse
	c.jsonOut(t, &tr, "integrations", "test", id)
	if !tr.GetOk() {
		t.Fatalf("test after update: %v", &tr)
	}

	// A wrong secret: test says so and exits 1; the env variable is read
	// when no file is given.
	t.Setenv(envClientSecret, "also-wrong")
	out = c.ok(t, create("--name", "from-env")...)
	os.Unsetenv(envClientSecret)
	envID := strings.Fields(strings.Split(out, "\n")[0])[1]
	if errs := c.fails(t, "integrations", "test", envID); !strings.Contains(errs, "connection test failed") {
		t.Fatalf("secret from %s not used: %q", envClientSecret, errs)
	}
	out = c.ok(t, create("--name", "wrong", "--client-secret-file", wrongFile)...)
	wrongID := strings.Fields(strings.Split(out, "\n")[0])[1]
	code, out, errs := c.run(t, "integrations", "test", wrongID)
	if code != 1 || !strings.Contains(out, "secret_invalid") || !strings.Contains(out, "token        failed") || !strings.Contains(errs, "connection test failed") {
		t.Fatalf("test with a wrong secret: exit %d\n%s\n%s", code, out, errs)
	}
	// Replacing the credential fixes it.
	c.ok(t, "integrations", "update", wrongID, "--client-secret-file", secretFile)
	c.ok(t, "integrations", "test", wrongID)
	c.ok(t, "integrations", "delete", wrongID)
	// Failing credentials pause their whole tenant in the sync worker; only
	// the working integration stays for the sync part.
	c.ok(t, "integrations", "delete", envID)
	if errs := c.fails(t, "integrations", "get", wrongID); !strings.Contains(errs, "NotFound") {
		t.Fatalf("get after delete: %q", errs)
	}

	// Sync: a mapped host is written once; the outbox shows it done.
	c.enrollHost(t, "host-1", "mac-1")
	c.ok(t, "hosts", "set-entra-id", "host-1", device)
	var items posturev1.ListSyncItemsResponse
	deadline := time.Now().Add(30 * time.Second)
	for {
		c.jsonOut(t, &items, "sync", "list", "--state", "done", "--integration", id)
		if len(items.GetItems()) > 0 {
			break
		}
		if time.Now().After(deadline) {
			pending := c.ok(t, "sync", "list")
			t.Fatalf("no sync item done; pending/dead:\n%s", pending)
		}
	}
	it := items.GetItems()[0]
	if it.GetDeviceId() != device || it.GetHostId() != "host-1" || it.GetState() != "done" {
		t.Fatalf("sync item: %v", it)
	}
	want := map[string]string{"compliant": "OK", "noncompliant": "Non-compliant"}[it.GetDesired()]
	if v, _ := pair.Graph.Attribute(device, 10); want == "" || v != want {
		t.Fatalf("Graph attribute after syncing %q: %q", it.GetDesired(), v)
	}
	table = c.ok(t, "sync", "list", "--state", "done", "--limit", "5")
	if !strings.HasPrefix(table, "ID") || !strings.Contains(table, device) {
		t.Fatalf("sync list:\n%s", table)
	}
	if errs := c.fails(t, "sync", "list", "--state", "stuck"); !strings.Contains(errs, "want pending, dead or done") {
		t.Fatalf("bad state: %q", errs)
	}
	if errs := c.fails(t, "sync", "retry", "abc"); !strings.Contains(errs, "positive number") {
		t.Fatalf("bad id: %q", errs)
	}
	if errs := c.fails(t, "sync", "retry", "999999"); !strings.Contains(errs, "NotFound") {
		t.Fatalf("retry unknown item: %q", errs)
	}
}

// appCert makes an app registration's certificate: a PEM file with the
// certificate and its key, as the CLI reads it.
func appCert(t *testing.T, notAfter time.Time) (*x509.Certificate, []byte) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "posture-cli-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	pemBytes := append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})...)
	return cert, pemBytes
}

func TestCLIIntegrationCertificate(t *testing.T) {
	c := startCLIHub(t)
	pair, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	notAfter := time.Now().Add(20 * 24 * time.Hour).Truncate(time.Second)
	cert, pemBytes := appCert(t, notAfter)
	pair.Entra.RegisterApp(standin.App{ClientID: cliClientID, Certificates: []*x509.Certificate{cert}, Permissions: []string{"Device.ReadWrite.All"}})
	pair.Graph.AddDevice(standin.Device{ID: "obj-1", DeviceID: "0b6f2c1e-8a55-4c1f-9f3e-6d2a7c9e1b42", DisplayName: "mac-1"})

	dir := t.TempDir()
	caFile, certFile, pwFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "app.pem"), filepath.Join(dir, "pw")
	for p, b := range map[string][]byte{caFile: pair.CA.CertPEM(), certFile: pemBytes, pwFile: []byte("pw\n")} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	args := []string{"integrations", "create", "--name", "entra-cert", "--cloud", "custom", "--authority-host", pair.Entra.URL(),
		"--graph-base-url", pair.Graph.URL(), "--extra-ca-file", caFile, "--tenant-id", pair.Entra.Tenant(),
		"--client-id", cliClientID, "--attribute", "3"}

	if errs := c.fails(t, append(args, "--certificate-password-file", pwFile)...); !strings.Contains(errs, "needs --certificate-file") {
		t.Fatalf("password without certificate: %q", errs)
	}
	t.Setenv(envClientSecret, "a-secret")
	if errs := c.fails(t, append(args, "--certificate-file", certFile)...); !strings.Contains(errs, "not both") {
		t.Fatalf("secret and certificate: %q", errs)
	}
	os.Unsetenv(envClientSecret)

	var in posturev1.Integration
	c.jsonOut(t, &in, append(args, "--certificate-file", certFile)...)
	if in.GetCredentialKind() != "certificate" || !in.GetCertificateNotAfter().AsTime().Equal(notAfter) || len(in.GetCertificate()) != 0 || len(in.GetWarnings()) != 1 {
		t.Fatalf("integration with a certificate: %v", &in)
	}
	if out := c.ok(t, "integrations", "get", in.GetId()); !strings.Contains(out, "certificate, valid until "+fmtTime(in.GetCertificateNotAfter())) || strings.Contains(out, "PRIVATE KEY") {
		t.Fatalf("integrations get:\n%s", out)
	}
	var tr posturev1.TestIntegrationResponse
	c.jsonOut(t, &tr, "integrations", "test", in.GetId())
	if !tr.GetOk() || !tr.GetTokenOk() || !tr.GetDeviceReadOk() {
		t.Fatalf("test with a certificate: %v", &tr)
	}
}
