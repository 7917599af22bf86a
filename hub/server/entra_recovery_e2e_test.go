package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

// entraEnv is a hub over the real msgraph-sdk-go and azidentity clients,
// pointed at the Entra and Graph stand-ins, with simulated hosts.
type entraEnv struct {
	tb     testing.TB
	ctx    context.Context
	pair   *standin.Pair
	hub    *server.Hub
	adminc posturev1.AdminServiceClient
	actx   context.Context
	secret string // enroll secret
}

func newEntraEnv(tb testing.TB, devices ...string) *entraEnv {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	tb.Cleanup(cancel)
	pair := startStandins(tb, devices...)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() && os.Getenv("POSTURE_TEST_LOG") != "" {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	h, err := server.New(ctx, server.Config{
		DataDir: filepath.Join(tb.TempDir(), "hub"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		DuePoll: 100 * time.Millisecond, SyncPoll: 100 * time.Millisecond, PolicyPoll: 100 * time.Millisecond, Logger: logger,
	})
	if err != nil {
		tb.Fatal(err)
	}
	hctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(hctx) }()
	tb.Cleanup(func() { stop(); <-done })
	nt, _ := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err := h.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		tb.Fatal(err)
	}
	e := &entraEnv{tb: tb, ctx: ctx, pair: pair, hub: h,
		adminc: posturev1.NewAdminServiceClient(dialHub(tb, h.GRPCAddr(), h.CA.CertPEM(), nil)), actx: withToken(ctx, nt.Plain)}
	if _, err := e.adminc.ApplyPolicies(e.actx, &posturev1.ApplyPoliciesRequest{
		Policies: []*posturev1.Policy{{Id: "disk", Name: "Disk encryption", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"}},
	}); err != nil {
		tb.Fatal(err)
	}
	sec, err := e.adminc.CreateEnrollSecret(e.actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		tb.Fatal(err)
	}
	e.secret = sec.GetSecret()
	return e
}

func (e *entraEnv) integration(in *posturev1.Integration) *posturev1.Integration {
	e.tb.Helper()
	got, err := e.adminc.CreateIntegration(e.actx, &posturev1.CreateIntegrationRequest{Integration: in})
	if err != nil {
		e.tb.Fatal(err)
	}
	return got
}

// host enrolls a simulated host that reports device and upn and sends one
// passing batch.
func (e *entraEnv) host(name, device, upn string) *simAgent {
	e.tb.Helper()
	return e.hostWith(e.secret, name, device, upn)
}

func (e *entraEnv) hostWith(secret, name, device, upn string) *simAgent {
	e.tb.Helper()
	a, err := startSimAgent(e.ctx, e.hub.GRPCAddr(), e.hub.CA.CertPEM(), secret, name, "HW-"+name)
	if err != nil {
		e.tb.Fatal(err)
	}
	e.tb.Cleanup(a.Close)
	if err := a.stream.Send(&posturev1.AgentMessage{Msg: &posturev1.AgentMessage_Facts{Facts: &posturev1.FactReport{
		Values: map[string]string{"entra_device_id": device, "user_principal_name": upn}, EvaluatedAt: timestamppb.Now(),
	}}}); err != nil {
		e.tb.Fatal(err)
	}
	return a
}

// send reports every policy at status and waits for the ack.
func (e *entraEnv) send(a *simAgent, status posturev1.ResultStatus) {
	e.tb.Helper()
	ch, err := a.Send(status, nil)
	if err != nil {
		e.tb.Fatal(err)
	}
	waitAck(e.tb, ch)
}

func (e *entraEnv) attr(device string) string {
	v, _ := e.pair.Graph.Attribute(device, testAttr)
	return v
}

// waitAttr polls (a deadline bounds a hang; no timing is asserted).
func (e *entraEnv) waitAttr(device, want string, within time.Duration) {
	e.tb.Helper()
	deadline := time.Now().Add(within)
	for e.attr(device) != want {
		if time.Now().After(deadline) {
			items, _ := e.adminc.ListSyncItems(e.actx, &posturev1.ListSyncItemsRequest{})
			ins, _ := e.adminc.ListIntegrations(e.actx, &posturev1.ListIntegrationsRequest{})
			e.tb.Fatalf("device %s: attribute %q, want %q; writes %v; items %v; integrations %v", device, e.attr(device), want,
				values(e.pair.Graph, device), items, ins)
		}
		<-time.After(20 * time.Millisecond)
	}
}

func (e *entraEnv) integrationState(id string) *posturev1.Integration {
	e.tb.Helper()
	in, err := e.adminc.GetIntegration(e.actx, &posturev1.GetIntegrationRequest{Id: id})
	if err != nil {
		e.tb.Fatal(err)
	}
	return in
}

const (
	devA = "aaaaaaaa-0000-4000-8000-000000000001"
	devB = "aaaaaaaa-0000-4000-8000-000000000002"
)

// A custom cloud whose Graph base URL is a proxy (another host, port and
// path) gets a token for the Graph resource, passes the connection test
// with its query options intact on the wire, and writes.
func TestEntraCustomCloudThroughProxy(t *testing.T) {
	e := newEntraEnv(t, devA)
	px, err := standin.NewProxy(e.pair.CA, e.pair.Graph, "egress/msgraph", nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(px.Close)
	spec := graphIntegration(e.pair)
	spec.GraphBaseUrl = px.URL()
	in := e.integration(spec)
	tr, err := e.adminc.TestIntegration(e.actx, &posturev1.TestIntegrationRequest{Id: in.GetId()})
	if err != nil || !tr.GetOk() {
		t.Fatalf("test through the proxy: %v %v", tr, err)
	}
	var list *standin.Request
	for _, r := range e.pair.Graph.Requests() {
		if r.Method == "GET" && r.Path == "/v1.0/devices" {
			list = &r
		}
	}
	if list == nil {
		t.Fatal("the connection test read no devices")
	}
	if q, _ := url.ParseQuery(list.RawQuery); q.Get("$top") != "1" || !strings.Contains(q.Get("$select"), "deviceId") {
		t.Fatalf("device read went out as ?%s, want $top=1 and $select", list.RawQuery)
	}
	a := e.host("mac-a", devA, "ada@example.com")
	e.send(a, posturev1.ResultStatus_RESULT_STATUS_FAIL)
	e.waitAttr(devA, "Non-compliant", 30*time.Second)
	if px.Requests() == 0 {
		t.Fatal("nothing went through the proxy")
	}
	for _, tr := range e.pair.Entra.TokenRequests() {
		if tr.Error != 0 || !strings.Contains(tr.Scope, "https://graph.microsoft.com/.default") {
			t.Fatalf("token request %+v: want the Graph resource, not the proxy", tr)
		}
	}
	// An explicit resource the tenant does not know says which setting to fix.
	spec.Id, spec.GraphResource = in.GetId(), "https://egress.example"
	if _, err := e.adminc.UpdateIntegration(e.actx, &posturev1.UpdateIntegrationRequest{Integration: spec}); err != nil {
		t.Fatal(err)
	}
	tr, err = e.adminc.TestIntegration(e.actx, &posturev1.TestIntegrationRequest{Id: in.GetId()})
	if err != nil || tr.GetOk() || tr.GetHealth() != "resource_not_found" || !strings.Contains(tr.GetMessage(), "graph-resource") {
		t.Fatalf("unknown resource: %v %v", tr, err)
	}
}

// After an expired secret pauses the integration, health says so at once
// (and the expiry warning follows Entra, not the typed date); replacing
// the secret makes the next write land within seconds, not at the end of
// the five-minute pause.
func TestEntraExpiredSecretReplacedResumesAtOnce(t *testing.T) {
	e := newEntraEnv(t, devA, devB)
	spec := graphIntegration(e.pair)
	spec.SecretExpiresAt = timestamppb.New(time.Now().Add(200 * 24 * time.Hour)) // what the admin typed
	in := e.integration(spec)
	a := e.host("mac-a", devA, "ada@example.com")
	e.send(a, posturev1.ResultStatus_RESULT_STATUS_PASS)
	e.waitAttr(devA, "Compliant", 30*time.Second)

	// The secret expires in Entra.
	e.pair.Entra.RegisterApp(standin.App{ClientID: testClientID, Permissions: []string{"Device.ReadWrite.All"},
		Secrets: []standin.Secret{{Value: testSecret, Expires: time.Now().Add(-time.Minute)}}})
	e.pair.Entra.RevokeTokens() // the cached token lapses too (as at its expiry)
	b := e.host("mac-b", devB, "bob@example.com")
	start := time.Now()
	e.send(b, posturev1.ResultStatus_RESULT_STATUS_FAIL)
	var st *posturev1.Integration
	eventually(t, "health secret_expired", 30*time.Second, func() (bool, string) {
		st = e.integrationState(in.GetId())
		return st.GetHealth() == "secret_expired", st.GetHealth() + " " + st.GetHealthMessage()
	})
	t.Logf("health showed secret_expired %d ms after the failing batch", time.Since(start).Milliseconds())
	if w := strings.Join(st.GetWarnings(), " "); !strings.Contains(w, "Entra says the client secret has expired") {
		t.Fatalf("warnings %q: want Entra's word over the typed expiry", st.GetWarnings())
	}
	items, err := e.adminc.ListSyncItems(e.actx, &posturev1.ListSyncItemsRequest{State: "pending"})
	if err != nil || len(items.GetItems()) == 0 || items.GetItems()[0].GetErrorCode() != "AADSTS7000222" {
		t.Fatalf("held-back items: %v %v", items, err)
	}

	// `sync retry` takes a pending item (it was refused before): sent again
	// with the expired secret, it is held back again.
	held := items.GetItems()[0]
	if _, err := e.adminc.RetrySyncItem(e.actx, &posturev1.RetrySyncItemRequest{Id: held.GetId()}); err != nil {
		t.Fatalf("retry of a pending item: %v", err)
	}
	eventually(t, "the retried item held back again", 30*time.Second, func() (bool, string) {
		items, err := e.adminc.ListSyncItems(e.actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		if err != nil || len(items.GetItems()) != 1 {
			return false, fmt.Sprint(items, err)
		}
		next := items.GetItems()[0].GetNextAttemptAt().AsTime()
		return next.After(held.GetNextAttemptAt().AsTime()) && next.After(time.Now().Add(time.Minute)), fmt.Sprint(items)
	})
	// The admin adds a new secret and updates the integration.
	e.pair.Entra.RegisterApp(standin.App{ClientID: testClientID, Permissions: []string{"Device.ReadWrite.All"},
		Secrets: []standin.Secret{{Value: testSecret, Expires: time.Now().Add(-time.Minute)}, {Value: "new-secret-value"}}})
	spec.Id, spec.ClientSecret, spec.SecretExpiresAt = in.GetId(), "new-secret-value", timestamppb.New(time.Now().Add(365*24*time.Hour))
	fixed := time.Now()
	if _, err := e.adminc.UpdateIntegration(e.actx, &posturev1.UpdateIntegrationRequest{Integration: spec}); err != nil {
		t.Fatal(err)
	}
	// Far below the 5-minute pause: the update ended it and made the held
	// item due.
	e.waitAttr(devB, "Non-compliant", 30*time.Second)
	t.Logf("credential fix to write: %d ms", time.Since(fixed).Milliseconds())
	eventually(t, "health ok", 10*time.Second, func() (bool, string) {
		st = e.integrationState(in.GetId())
		return st.GetHealth() == "ok" && len(st.GetWarnings()) == 0, fmt.Sprint(st.GetHealth(), st.GetWarnings())
	})
}

// After Graph rejects a cached token (401), the next attempt uses a new
// token and the write lands without a pause.
func TestEntraGraph401UsesNewToken(t *testing.T) {
	e := newEntraEnv(t, devA, devB)
	e.integration(graphIntegration(e.pair))
	a := e.host("mac-a", devA, "ada@example.com")
	e.send(a, posturev1.ResultStatus_RESULT_STATUS_PASS)
	e.waitAttr(devA, "Compliant", 30*time.Second)
	reqs := e.pair.Graph.Requests()
	old := reqs[len(reqs)-1].Token
	e.pair.Graph.RejectToken(old)

	b := e.host("mac-b", devB, "bob@example.com")
	e.send(b, posturev1.ResultStatus_RESULT_STATUS_FAIL)
	e.waitAttr(devB, "Non-compliant", 30*time.Second)
	var rejected, renewed bool
	for _, r := range e.pair.Graph.Requests() {
		switch {
		case r.Token == old && strings.Contains(r.Path, devB):
			rejected = true
		case rejected && r.Token != old && strings.Contains(r.Path, devB):
			renewed = true
		}
	}
	if !rejected || !renewed {
		t.Fatalf("want the rejected token, then a new one, for the write (rejected=%v renewed=%v)", rejected, renewed)
	}
}

// Session revocation: once per qualifying transition for a team that opted
// in (app holding User.RevokeSessions.All), never for a team that did not.
func TestEntraRevokeSessionsOncePerTransition(t *testing.T) {
	e := newEntraEnv(t, devA, devB)
	e.pair.Entra.SetPermissions(testClientID, "Device.ReadWrite.All", standin.PermUserRevokeSessionsAll)
	ada := e.pair.Graph.AddUser(standin.DirectoryUser{UserPrincipalName: "ada@example.com"})
	e.pair.Graph.AddUser(standin.DirectoryUser{UserPrincipalName: "bob@example.com"})
	in := e.integration(graphIntegration(e.pair))
	tr, err := e.adminc.TestIntegration(e.actx, &posturev1.TestIntegrationRequest{Id: in.GetId()})
	if err != nil || !tr.GetOk() || !tr.GetRevokeSessionsPermitted() {
		t.Fatalf("test connection: %v %v", tr, err)
	}
	// ada's team opted in; bob's (contractors) did not.
	for name, on := range map[string]bool{"eng": true, "contractors": false} {
		set := &posturev1.TeamSettings{ConditionalAccess: proto.Bool(true), MaxAllowedSeverity: proto.String(""),
			ErrorsAsFailures: proto.Bool(false), StaleAfter: durationpb.New(0), RevokeSessions: proto.Bool(on)}
		if on {
			set.RevokeSessionsMinSeverity = proto.String("high")
		}
		if _, err := e.adminc.PutTeam(e.actx, &posturev1.PutTeamRequest{Team: &posturev1.Team{Name: name, Settings: set}}); err != nil {
			t.Fatal(err)
		}
	}
	secret := func(team string) string {
		sec, err := e.adminc.CreateEnrollSecret(e.actx, &posturev1.CreateEnrollSecretRequest{Team: team})
		if err != nil {
			t.Fatal(err)
		}
		return sec.GetSecret()
	}
	a := e.hostWith(secret("eng"), "mac-a", devA, "ada@example.com")
	b := e.hostWith(secret("contractors"), "mac-b", devB, "bob@example.com")
	for _, ag := range []*simAgent{a, b} {
		e.send(ag, posturev1.ResultStatus_RESULT_STATUS_PASS)
	}
	e.waitAttr(devA, "Compliant", 30*time.Second)
	e.waitAttr(devB, "Compliant", 30*time.Second)
	for round := 1; round <= 2; round++ {
		for _, ag := range []*simAgent{a, b} {
			e.send(ag, posturev1.ResultStatus_RESULT_STATUS_FAIL)
		}
		e.waitAttr(devA, "Non-compliant", 30*time.Second)
		e.waitAttr(devB, "Non-compliant", 30*time.Second)
		deadline := time.Now().Add(30 * time.Second)
		for len(e.pair.Graph.Revocations()) < round && time.Now().Before(deadline) {
			<-time.After(20 * time.Millisecond)
		}
		// A repeated failing batch while non-compliant is no new transition.
		e.send(a, posturev1.ResultStatus_RESULT_STATUS_FAIL)
		for _, ag := range []*simAgent{a, b} {
			e.send(ag, posturev1.ResultStatus_RESULT_STATUS_PASS)
		}
		e.waitAttr(devA, "Compliant", 30*time.Second)
		e.waitAttr(devB, "Compliant", 30*time.Second)
		revs := e.pair.Graph.Revocations()
		if len(revs) != round {
			t.Fatalf("round %d: %d revocations %+v, want %d (once per transition, never for the opted-out team)", round, len(revs), revs, round)
		}
		for _, r := range revs {
			if r.UserID != ada.ID {
				t.Fatalf("revoked %+v: bob's team did not opt in", r)
			}
		}
	}
	items, err := e.adminc.ListSyncItems(e.actx, &posturev1.ListSyncItemsRequest{State: "dead"})
	if err != nil || len(items.GetItems()) != 0 {
		t.Fatalf("dead letters: %v %v", items, err)
	}
}

// Reconcile's read-back checks Graph's display name and operating system
// against the host's facts; a host speaking for a device that is not
// itself is flagged where `hosts get` shows it.
func TestEntraDeviceCheckFlagsMismatch(t *testing.T) {
	const own, other = "bbbbbbbb-0000-4000-8000-000000000001", "bbbbbbbb-0000-4000-8000-000000000002"
	e := newEntraEnv(t)
	e.pair.Graph.AddDevice(standin.Device{ID: "obj-1", DeviceID: own, DisplayName: "MAC-A", OperatingSystem: "MacMDM"})
	e.pair.Graph.AddDevice(standin.Device{ID: "obj-2", DeviceID: other, DisplayName: "DESKTOP-9Q", OperatingSystem: "Windows"})
	e.integration(graphIntegration(e.pair))
	a := e.host("mac-a", own, "ada@example.com")
	b := e.host("mac-b", other, "bob@example.com") // claims a Windows PC
	for _, ag := range []*simAgent{a, b} {
		e.send(ag, posturev1.ResultStatus_RESULT_STATUS_PASS)
	}
	e.waitAttr(own, "Compliant", 30*time.Second)
	e.waitAttr(other, "Compliant", 30*time.Second)
	// The write lands in Graph before the worker settles its row, and
	// reconcile skips a device with a pending row: wait for the outbox.
	eventually(t, "the outbox to settle", 30*time.Second, func() (bool, string) {
		items, err := e.adminc.ListSyncItems(e.actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		return err == nil && len(items.GetItems()) == 0, fmt.Sprint(items, err)
	})
	rep, err := e.hub.ReconcileNow(e.ctx)
	if err != nil || rep.Checked != 2 {
		t.Fatalf("reconcile: %+v %v, want both devices checked", rep, err)
	}
	ha, err := e.adminc.GetHost(e.actx, &posturev1.GetHostRequest{Id: a.HostID})
	if err != nil {
		t.Fatal(err)
	}
	if c := ha.GetEntraCheck(); c == nil || c.GetMismatch() != "" || c.GetDisplayName() != "MAC-A" {
		t.Fatalf("matching host: %v", c)
	}
	hb, err := e.adminc.GetHost(e.actx, &posturev1.GetHostRequest{Id: b.HostID})
	if err != nil {
		t.Fatal(err)
	}
	c := hb.GetEntraCheck()
	if c == nil || !strings.Contains(c.GetMismatch(), `"DESKTOP-9Q"`) || !strings.Contains(c.GetMismatch(), `"Windows"`) {
		t.Fatalf("mismatching host: %v", c)
	}
}

// When the fix is made in Entra alone (the secret's expiry extended, consent
// granted), `integrations resume` ends the pause at once.
func TestEntraResumeAfterFixInEntra(t *testing.T) {
	e := newEntraEnv(t, devA)
	in := e.integration(graphIntegration(e.pair))
	e.pair.Entra.RegisterApp(standin.App{ClientID: testClientID, Permissions: []string{"Device.ReadWrite.All"},
		Secrets: []standin.Secret{{Value: testSecret, Expires: time.Now().Add(-time.Minute)}}})
	a := e.host("mac-a", devA, "ada@example.com")
	e.send(a, posturev1.ResultStatus_RESULT_STATUS_FAIL)
	eventually(t, "health secret_expired", 30*time.Second, func() (bool, string) {
		st := e.integrationState(in.GetId())
		return st.GetHealth() == "secret_expired", st.GetHealth()
	})
	e.pair.Entra.RegisterApp(standin.App{ClientID: testClientID, Permissions: []string{"Device.ReadWrite.All"},
		Secrets: []standin.Secret{{Value: testSecret}}})
	r, err := e.adminc.ResumeIntegration(e.actx, &posturev1.ResumeIntegrationRequest{Id: in.GetId()})
	if err != nil || r.GetRequeued() != 1 {
		t.Fatalf("resume: %v %v", r, err)
	}
	e.waitAttr(devA, "Non-compliant", 30*time.Second)
}

// Session revocation is set through PATCH (update mask) like every team
// setting; turning it off or raising its severity needs the admin role; a
// PUT from a client that does not know the fields keeps them.
func TestEntraRevokeSessionsTeamSettings(t *testing.T) {
	e := newEntraEnv(t)
	mt, _ := admin.NewAPIToken("maintainer", store.RoleMaintainer, time.Now(), nil)
	if err := e.hub.Store.CreateAPIToken(e.ctx, mt.Stored); err != nil {
		t.Fatal(err)
	}
	mctx := withToken(e.ctx, mt.Plain)
	patch := func(ctx context.Context, s *posturev1.TeamSettings, paths ...string) (*posturev1.Team, error) {
		return e.adminc.UpdateTeam(ctx, &posturev1.UpdateTeamRequest{Team: &posturev1.Team{Name: "eng", Settings: s},
			UpdateMask: &fieldmaskpb.FieldMask{Paths: paths}})
	}
	tm, err := patch(mctx, &posturev1.TeamSettings{ConditionalAccess: proto.Bool(true), RevokeSessions: proto.Bool(true),
		RevokeSessionsMinSeverity: proto.String("critical")},
		"settings.conditional_access", "settings.revoke_sessions", "settings.revoke_sessions_min_severity")
	if err != nil || !tm.GetSettings().GetRevokeSessions() || tm.GetSettings().GetRevokeSessionsMinSeverity() != "critical" {
		t.Fatalf("turn on: %v %v", tm, err)
	}
	if _, err := patch(mctx, &posturev1.TeamSettings{RevokeSessionsMinSeverity: proto.String("medium")}, "settings.revoke_sessions_min_severity"); err != nil {
		t.Fatalf("a maintainer makes it stricter: %v", err)
	}
	if _, err := patch(mctx, &posturev1.TeamSettings{RevokeSessions: proto.Bool(false)}, "settings.revoke_sessions"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a maintainer turned revocation off: %v", err)
	}
	if _, err := patch(mctx, &posturev1.TeamSettings{RevokeSessionsMinSeverity: proto.String("high")}, "settings.revoke_sessions_min_severity"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("a maintainer raised the revocation severity: %v", err)
	}
	tm, err = e.adminc.PutTeam(e.actx, &posturev1.PutTeamRequest{Team: &posturev1.Team{Name: "eng", Settings: &posturev1.TeamSettings{
		ConditionalAccess: proto.Bool(true), MaxAllowedSeverity: proto.String(""), ErrorsAsFailures: proto.Bool(false), StaleAfter: durationpb.New(0)}}})
	if err != nil || !tm.GetSettings().GetRevokeSessions() || tm.GetSettings().GetRevokeSessionsMinSeverity() != "medium" {
		t.Fatalf("PUT without the revocation fields: %v %v", tm, err)
	}
}
