package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/osquerytest"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/policy"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

const (
	testClientID = "11111111-2222-3333-4444-555555555555"
	testSecret   = "stand-in-secret-value"
	testAttr     = 10
)

func attrName() string { return fmt.Sprintf("extensionAttribute%d", testAttr) }

// values lists the values written to a device's attribute, in order.
func values(g *standin.Graph, device string) []string {
	var out []string
	for _, w := range g.WritesFor(device) {
		if w.Attribute == attrName() && w.Value != nil {
			out = append(out, *w.Value)
		}
	}
	return out
}

func startStandins(t testing.TB, devices ...string) *standin.Pair {
	t.Helper()
	pair, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	pair.Entra.RegisterApp(standin.App{ClientID: testClientID, Secrets: []standin.Secret{{Value: testSecret}}, Permissions: []string{"Device.ReadWrite.All"}})
	for _, d := range devices {
		pair.Graph.AddDevice(standin.Device{ID: "obj-" + d, DeviceID: d, DisplayName: "test mac", OperatingSystem: "MacMDM"})
	}
	return pair
}

func graphIntegration(pair *standin.Pair) *posturev1.Integration {
	return &posturev1.Integration{
		Name: "entra", Cloud: "custom", AuthorityHost: pair.Entra.URL(), GraphBaseUrl: pair.Graph.URL(),
		ExtraCaPem: string(pair.CA.CertPEM()), TenantId: pair.Entra.Tenant(), ClientId: testClientID,
		ClientSecret: testSecret, ExtensionAttribute: testAttr,
	}
}

func TestEntraSyncEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs posture.ext")
	}
	extBin := buildExtension(t)
	work, err := os.MkdirTemp("", "psync")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	oq, err := osquerytest.Start(ctx, osquerytest.Options{Platform: "darwin", SocketPath: filepath.Join(work, "osq.em"), Hostname: "sync-mac"})
	if err != nil {
		t.Fatal(err)
	}
	defer oq.Close()
	device := strings.ToLower(oq.EntraDeviceID())
	pair := startStandins(t, device)

	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	hp := startHub(t, server.Config{
		DataDir: filepath.Join(work, "hub"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PolicyInterval: 300 * time.Millisecond, PolicyPoll: 100 * time.Millisecond,
		DuePoll: 100 * time.Millisecond, SyncPoll: 100 * time.Millisecond, Logger: logger,
	})
	caFile := filepath.Join(work, "hub-ca.pem")
	os.WriteFile(caFile, hp.hub.CA.CertPEM(), 0o644)
	nt, _ := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err := hp.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	adminc := posturev1.NewAdminServiceClient(dialHub(t, hp.cfg.GRPCAddr, hp.hub.CA.CertPEM(), nil))
	actx := withToken(ctx, nt.Plain)

	in, err := adminc.CreateIntegration(actx, &posturev1.CreateIntegrationRequest{Integration: graphIntegration(pair)})
	if err != nil {
		t.Fatal(err)
	}
	if in.GetClientSecret() != "" || in.GetCredentialKind() != "secret" {
		t.Fatalf("integration leaks or lost its credential kind: %v", in)
	}
	if tr, err := adminc.TestIntegration(actx, &posturev1.TestIntegrationRequest{Id: in.GetId()}); err != nil || !tr.GetOk() {
		t.Fatalf("test connection: %v %v", tr, err)
	}

	// Policies: FileVault (blocks at once) and a firewall check with a grace
	// period; the fact queries come from the shipped policies/ tree.
	tree, err := policy.LoadDir("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	req := tree.ApplyRequest(false, false)
	fv := findPolicy(t, tree, "macos-filevault")
	req.Policies = []*posturev1.Policy{fv,
		{Id: "firewall-grace", Name: "Firewall", Severity: "high", Platforms: []string{"darwin"}, ConditionalAccess: true,
			Query: "SELECT 1 FROM alf WHERE global_state >= 1", GracePeriod: durationpb.New(3 * time.Second)}}
	// The grace deadline, not silence, must flip the stopped host: allow
	// 100 missed intervals (30 s) before it counts as silent.
	for _, tm := range req.Teams {
		if tm.GetName() == store.DefaultTeam {
			tm.Settings.MissedReports = proto.Int32(100)
		}
	}
	if _, err := adminc.ApplyPolicies(actx, req); err != nil {
		t.Fatal(err)
	}
	sec, err := adminc.CreateEnrollSecret(actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(work, "secret")
	os.WriteFile(secretFile, []byte(sec.GetSecret()), 0o600)
	ext := startExtension(t, extBin, "--socket", oq.SocketPath(), "--timeout", "10", "--hub", hp.cfg.GRPCAddr,
		"--hub-ca", caFile, "--enroll-secret-path", secretFile, "--state-dir", filepath.Join(work, "ext"))

	attr := func() string { v, _ := pair.Graph.Attribute(device, testAttr); return v }
	waitAttr := func(want string) {
		t.Helper()
		eventually(t, "attribute "+want, 60*time.Second, func() (bool, string) {
			return attr() == want, fmt.Sprintf("attr=%q writes=%v ext:\n%s", attr(), values(pair.Graph, device), ext.log.String())
		})
	}
	// The host maps itself through the fact query and is written compliant.
	waitAttr("Compliant")
	hs, err := adminc.ListHosts(actx, &posturev1.ListHostsRequest{})
	if err != nil || len(hs.GetHosts()) != 1 {
		t.Fatalf("hosts: %v %v", hs, err)
	}
	host := hs.GetHosts()[0]
	if host.GetEntraDeviceId() != device || host.GetVerdict().GetState() != "COMPLIANT" || host.GetUnmappedReason() != "" {
		t.Fatalf("host identity/verdict: %v", host)
	}

	// FileVault off → Non-compliant; on → Compliant; one write each.
	if err := oq.Break(ctx, "macos-filevault"); err != nil {
		t.Fatal(err)
	}
	waitAttr("Non-compliant")
	h, _ := adminc.GetHost(actx, &posturev1.GetHostRequest{Id: host.GetId()})
	if v := h.GetVerdict(); v.GetState() != "NONCOMPLIANT" || len(v.GetReasons()) == 0 || v.GetReasons()[0].GetPolicyId() != "macos-filevault" || !v.GetReasons()[0].GetBlocking() {
		t.Fatalf("verdict after FileVault off: %v", v)
	}
	if err := oq.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	waitAttr("Compliant")

	// Faults: 5xx and 429 (fractional Retry-After) on the next writes.
	pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: device, Method: "PATCH", Status: 503, Times: 2})
	pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: device, Method: "PATCH", Status: 429, RetryAfter: "0.2", Times: 2})
	if err := oq.Break(ctx, "macos-filevault"); err != nil {
		t.Fatal(err)
	}
	waitAttr("Non-compliant")
	if err := oq.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	waitAttr("Compliant")
	if got, want := strings.Join(values(pair.Graph, device), ","), "Compliant,Non-compliant,Compliant,Non-compliant,Compliant"; got != want {
		t.Fatalf("writes = %s, want %s (nothing lost, nothing twice)", got, want)
	}

	// Grace: the firewall fails → GRACE (still Compliant in Entra); the
	// extension stops, so no new result arrives; the deadline passing alone
	// flips the device.
	if err := oq.Exec(ctx, "UPDATE alf SET global_state = 0"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "GRACE", 30*time.Second, func() (bool, string) {
		h, err := adminc.GetHost(actx, &posturev1.GetHostRequest{Id: host.GetId()})
		return err == nil && h.GetVerdict().GetState() == "GRACE", fmt.Sprint(h.GetVerdict(), err)
	})
	ext.stop(t)
	h, _ = adminc.GetHost(actx, &posturev1.GetHostRequest{Id: host.GetId()})
	lastResult := resultOf(h, "firewall-grace").GetEvaluatedAt().AsTime()
	if attr() != "Compliant" {
		t.Fatalf("a host in grace was written %q", attr())
	}
	waitAttr("Non-compliant")
	h, _ = adminc.GetHost(actx, &posturev1.GetHostRequest{Id: host.GetId()})
	if h.GetVerdict().GetState() != "NONCOMPLIANT" || !resultOf(h, "firewall-grace").GetEvaluatedAt().AsTime().Equal(lastResult) {
		t.Fatalf("grace flip: verdict %v, result moved: %v", h.GetVerdict(), resultOf(h, "firewall-grace"))
	}
	if n := len(values(pair.Graph, device)); n != 6 {
		t.Fatalf("%d writes, want 6: %v", n, values(pair.Graph, device))
	}
	// Drift: someone edits the attribute in Entra; reconcile reads it back
	// and repairs it with low-priority traffic.
	// The last write lands in Graph before the worker settles its row;
	// reconcile skips devices with a pending row, so wait for it first.
	eventually(t, "the outbox to settle", 30*time.Second, func() (bool, string) {
		items, err := adminc.ListSyncItems(actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		return err == nil && len(items.GetItems()) == 0, fmt.Sprint(items, err)
	})
	pair.Graph.SetAttribute(device, testAttr, "Compliant")
	rep, err := hp.hub.ReconcileNow(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("reconcile: %+v", rep)
	waitAttr("Non-compliant")
	ws := pair.Graph.WritesFor(device)
	if last := ws[len(ws)-1]; last.Priority != "Low" {
		t.Fatalf("repair write priority %q, want Low", last.Priority)
	}
	resp, err := http.Get("http://" + hp.cfg.HTTPAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`posture_verdict_changes_total{state="NONCOMPLIANT"}`, `posture_sync_writes_total{`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	items, err := adminc.ListSyncItems(actx, &posturev1.ListSyncItemsRequest{State: "dead"})
	if err != nil || len(items.GetItems()) != 0 {
		t.Fatalf("dead letters: %v %v", items, err)
	}
}

func findPolicy(t *testing.T, tree policy.Tree, id string) *posturev1.Policy {
	t.Helper()
	for _, p := range tree.StorePolicies() {
		if p.ID == id {
			return policy.PolicyToProto(p)
		}
	}
	t.Fatalf("policy %s not in policies/", id)
	return nil
}
