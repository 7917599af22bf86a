package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/osquerytest"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/policy"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
	intunestandin "github.com/posture-dev/posture/hub/sync/intune/standin"
	"github.com/posture-dev/posture/hub/sync/webhook"
)

// fleet is one osqueryd stand-in + posture.ext host enrolled in a hub with
// the FileVault policy applied.
type fleet struct {
	t      *testing.T
	ctx    context.Context
	work   string
	extBin string
	oq     *osquerytest.Server
	device string
	hp     *hubProc
	adminc posturev1.AdminServiceClient
	actx   context.Context
	ext    *extProc
	caFile string
	secret string
}

func newFleet(t *testing.T, cfg server.Config) *fleet {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs posture.ext")
	}
	f := &fleet{t: t, extBin: buildExtension(t)}
	work, err := os.MkdirTemp("", "psink")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	f.work = work
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	f.ctx = ctx
	f.oq, err = osquerytest.Start(ctx, osquerytest.Options{Platform: "darwin", SocketPath: filepath.Join(work, "osq.em"), Hostname: "sink-mac"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.oq.Close() })
	f.device = strings.ToLower(f.oq.EntraDeviceID())
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	cfg.DataDir, cfg.GRPCAddr, cfg.HTTPAddr = filepath.Join(work, "hub"), "127.0.0.1:0", "127.0.0.1:0"
	cfg.PolicyInterval, cfg.PolicyPoll, cfg.DuePoll, cfg.SyncPoll = 300*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
	cfg.Logger = logger
	f.hp = startHub(t, cfg)
	f.caFile = filepath.Join(work, "hub-ca.pem")
	os.WriteFile(f.caFile, f.hp.hub.CA.CertPEM(), 0o644)
	nt, _ := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err := f.hp.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	f.adminc = posturev1.NewAdminServiceClient(dialHub(t, f.hp.cfg.GRPCAddr, f.hp.hub.CA.CertPEM(), nil))
	f.actx = withToken(ctx, nt.Plain)
	tree, err := policy.LoadDir("../../policies")
	if err != nil {
		t.Fatal(err)
	}
	req := tree.ApplyRequest(false, false)
	req.Policies = []*posturev1.Policy{findPolicy(t, tree, "macos-filevault")}
	// The stand-in's macOS has no platform SSO state, so the shipped UPN
	// fact finds nothing there; read it from the fixture user instead.
	for _, fq := range req.GetFacts() {
		if fq.GetName() == "user_principal_name" && fq.GetPlatform() == "darwin" {
			fq.Query = "SELECT '" + upnOf(f) + "'"
		}
	}
	// These tests count verdict transitions: a loaded machine must not
	// make the 300 ms-interval host briefly silent (missed_reports 100 =
	// 30 s of silence).
	for _, tm := range req.Teams {
		if tm.GetName() == store.DefaultTeam {
			tm.Settings.MissedReports = proto.Int32(100)
		}
	}
	if _, err := f.adminc.ApplyPolicies(f.actx, req); err != nil {
		t.Fatal(err)
	}
	sec, err := f.adminc.CreateEnrollSecret(f.actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	f.secret = filepath.Join(work, "secret")
	os.WriteFile(f.secret, []byte(sec.GetSecret()), 0o600)
	return f
}

func upnOf(*fleet) string { return "alex.morgan@contoso.com" } // osquerytest's default user

func (f *fleet) startExt() {
	f.ext = startExtension(f.t, f.extBin, "--socket", f.oq.SocketPath(), "--timeout", "10", "--hub", f.hp.cfg.GRPCAddr,
		"--hub-ca", f.caFile, "--enroll-secret-path", f.secret, "--state-dir", filepath.Join(f.work, "ext"))
}

// signedReceiver is a webhook receiver that verifies every delivery and
// records each event id once.
type signedReceiver struct {
	secret []byte
	mu     sync.Mutex
	events []webhook.Event
	seen   map[string]int
	bad    []string
	fail   int // answer the next fail deliveries with 503
}

func (r *signedReceiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(req.Body)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	if err := webhook.Verify(r.secret, req.Header.Get(webhook.SignatureHeader), body, time.Now(), time.Minute); err != nil {
		r.bad = append(r.bad, err.Error())
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev webhook.Event
	if err := json.Unmarshal(body, &ev); err != nil {
		r.bad = append(r.bad, err.Error())
		http.Error(w, "bad json", http.StatusBadRequest)
		return
	}
	r.seen[ev.ID]++
	if r.seen[ev.ID] == 1 && ev.Verdict != "TEST" {
		r.events = append(r.events, ev)
	}
	w.WriteHeader(http.StatusNoContent)
}

func (r *signedReceiver) snapshot() ([]webhook.Event, map[string]int, []string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	seen := map[string]int{}
	for k, v := range r.seen {
		seen[k] = v
	}
	return append([]webhook.Event(nil), r.events...), seen, append([]string(nil), r.bad...)
}

func TestWebhookSinkEndToEnd(t *testing.T) {
	f := newFleet(t, server.Config{})
	const hookSecret = "whsec-0123456789abcdef"
	rcv := &signedReceiver{secret: []byte(hookSecret), seen: map[string]int{}}
	srv := httptest.NewServer(rcv)
	defer srv.Close()

	in, err := f.adminc.CreateIntegration(f.actx, &posturev1.CreateIntegrationRequest{Integration: &posturev1.Integration{
		Name: "siem", Kind: "webhook", WebhookUrl: srv.URL + "/posture", ClientSecret: hookSecret}})
	if err != nil {
		t.Fatal(err)
	}
	if in.GetClientSecret() != "" || in.GetWebhookUrl() != srv.URL+"/posture" || in.GetKind() != "webhook" || in.GetExtensionAttribute() != 0 {
		t.Fatalf("integration as shown: %v", in)
	}
	if tr, err := f.adminc.TestIntegration(f.actx, &posturev1.TestIntegrationRequest{Id: in.GetId()}); err != nil || !tr.GetOk() {
		t.Fatalf("test: %v %v", tr, err)
	}
	// The secret is sealed at rest: the stored bytes do not contain it.
	stored, err := f.hp.hub.Store.GetIntegration(f.ctx, in.GetId())
	if err != nil || strings.Contains(string(stored.SealedCredential), hookSecret) || strings.Contains(string(stored.Settings), hookSecret) {
		t.Fatalf("secret stored in the clear: %v", err)
	}
	f.startExt()

	want := []bool{true}
	wait := func() {
		t.Helper()
		eventually(t, fmt.Sprintf("%d webhook events", len(want)), 60*time.Second, func() (bool, string) {
			evs, _, bad := rcv.snapshot()
			return len(evs) >= len(want), fmt.Sprintf("events=%+v bad=%v ext:\n%s", evs, bad, f.ext.log.String())
		})
	}
	wait()
	if err := f.oq.Break(f.ctx, "macos-filevault"); err != nil {
		t.Fatal(err)
	}
	want = append(want, false)
	wait()
	// The receiver is down for a while: the fix arrives through retries.
	rcv.mu.Lock()
	rcv.fail = 2
	rcv.mu.Unlock()
	if err := f.oq.Reset(f.ctx); err != nil {
		t.Fatal(err)
	}
	want = append(want, true)
	wait()
	// Settle: nothing further is pending for the device.
	eventually(t, "outbox drained", 30*time.Second, func() (bool, string) {
		items, err := f.adminc.ListSyncItems(f.actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		return err == nil && len(items.GetItems()) == 0, fmt.Sprint(items, err)
	})

	evs, seen, bad := rcv.snapshot()
	if len(bad) != 0 {
		t.Fatalf("deliveries failed verification: %v", bad)
	}
	if len(evs) != len(want) {
		t.Fatalf("events %+v, want %d transitions", evs, len(want))
	}
	for i, ev := range evs {
		if ev.Compliant != want[i] || ev.DeviceID != f.device || ev.Hostname != "sink-mac" || ev.HostID == "" {
			t.Fatalf("event %d: %+v, want compliant=%v", i, ev, want[i])
		}
		if seen[ev.ID] != 1 {
			t.Fatalf("event %s delivered %d times", ev.ID, seen[ev.ID])
		}
	}
	if fp := evs[1].FailingPolicies; len(fp) != 1 || fp[0].ID != "macos-filevault" || !fp[0].Blocking || evs[1].Verdict != "NONCOMPLIANT" {
		t.Fatalf("noncompliant event's policies: %+v", evs[1])
	}
	items, err := f.adminc.ListSyncItems(f.actx, &posturev1.ListSyncItemsRequest{State: "dead"})
	if err != nil || len(items.GetItems()) != 0 {
		t.Fatalf("dead letters: %v %v", items, err)
	}
}

func TestIntunePartnerEndToEnd(t *testing.T) {
	f := newFleet(t, server.Config{PublicURL: "https://posture.example.com", PartnerMaintain: 200 * time.Millisecond,
		PartnerPoll: 50 * time.Millisecond})
	pair, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	const partnerApp, partnerSecret = "77777777-2222-3333-4444-555555555555", "partner-app-secret"
	pair.Entra.RegisterApp(standin.App{ClientID: partnerApp, Secrets: []standin.Secret{{Value: partnerSecret}}})
	itn, err := intunestandin.New(pair.CA, pair.Entra, intunestandin.Options{PartnerClientID: partnerApp})
	if err != nil {
		t.Fatal(err)
	}
	defer itn.Close()
	const userOID, groupID = "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0", "5e6f7a8b-9c0d-1e2f-3a4b-5c6d7e8f9a0b"
	itn.AddUser(upnOf(f), userOID)
	itn.AddGroup(groupID, "Posture devices")
	// Freshly issued tokens are rejected once, as Intune sometimes does.
	itn.RejectFreshTokens(1)

	in, err := f.adminc.CreateIntegration(f.actx, &posturev1.CreateIntegrationRequest{Integration: &posturev1.Integration{
		Name: "intune", Kind: "intune-partner", Cloud: "custom", AuthorityHost: pair.Entra.URL(), GraphBaseUrl: itn.GraphBaseURL(),
		ExtraCaPem: string(pair.CA.CertPEM()), TenantId: pair.Entra.Tenant(), ClientId: partnerApp, ClientSecret: partnerSecret,
		PartnerPlatforms: []string{"windows", "macos", "ios"}, PartnerGroup: "Posture devices"}})
	if err != nil {
		t.Fatal(err)
	}
	f.startExt()
	// The states Intune was sent, a repeat folded into one: delivery is at
	// least once (a send cut short by the hub's restart goes again), and a
	// repeated state changes nothing in Intune.
	uploads := func() string {
		var s []string
		for _, u := range itn.UploadsFor(f.device) {
			if len(s) == 0 || s[len(s)-1] != u.ComplianceState {
				s = append(s, u.ComplianceState)
			}
		}
		return strings.Join(s, ",")
	}
	waitState := func(want string) {
		t.Helper()
		eventually(t, "Intune holds "+want, 60*time.Second, func() (bool, string) {
			return itn.Compliance(f.device) == want, fmt.Sprintf("uploads=%s counts=%+v ext:\n%s", uploads(), itn.Counts(), f.ext.log.String())
		})
	}
	waitState("compliant")
	if err := f.oq.Break(f.ctx, "macos-filevault"); err != nil {
		t.Fatal(err)
	}
	waitState("notCompliant")
	us := itn.UploadsFor(f.device)
	if last := us[len(us)-1]; last.UserID != userOID {
		t.Fatalf("upload for user %q, want %s", last.UserID, userOID)
	}
	if err := f.oq.Reset(f.ctx); err != nil {
		t.Fatal(err)
	}
	waitState("compliant")

	// Activation, heartbeat and policies are visible in the API.
	var got *posturev1.Integration
	eventually(t, "partner status", 30*time.Second, func() (bool, string) {
		got, err = f.adminc.GetIntegration(f.actx, &posturev1.GetIntegrationRequest{Id: in.GetId()})
		ps := got.GetPartnerStatus()
		return err == nil && ps.GetActivation() == "activated" && ps.GetLastHeartbeatAt() != nil && len(ps.GetPolicies()) == 3, fmt.Sprint(got, err)
	})
	states := map[string]string{}
	for _, p := range got.GetPartnerStatus().GetPolicies() {
		states[p.GetPlatform()] = p.GetState()
	}
	if states["macos"] != "assigned" || states["windows"] != "assigned" || states["ios"] != "platform_not_registered" || got.GetPartnerStatus().GetGroupId() != groupID {
		t.Fatalf("policy states %v group %s", states, got.GetPartnerStatus().GetGroupId())
	}
	if prov, enroll, remediate := itn.Provisioned(); prov != 1 || enroll != "https://posture.example.com/enroll" || remediate != "https://posture.example.com/remediate" {
		t.Fatalf("tenant %d %s %s", prov, enroll, remediate)
	}
	before := itn.Counts()
	if before.Activations != 1 || before.PolicyCreates != 3 || before.Assigns != 2 {
		t.Fatalf("counts %+v: activation and policies must happen once", before)
	}

	// Restart the hub: another transition flows, nothing is provisioned again.
	f.hp = f.hp.restart()
	if err := f.oq.Break(f.ctx, "macos-filevault"); err != nil {
		t.Fatal(err)
	}
	waitState("notCompliant")
	after := itn.Counts()
	if after.Activations != 1 || after.PolicyCreates != 3 || after.Assigns != 2 {
		t.Fatalf("after restart %+v (before %+v): provisioning repeated", after, before)
	}
	if got, want := uploads(), "compliant,notCompliant,compliant,notCompliant"; got != want {
		t.Fatalf("uploads %s, want %s", got, want)
	}

	// Deprovision: Provisioned 2 in Intune, shown in the API.
	dep, err := f.adminc.DeprovisionIntegration(f.actx, &posturev1.DeprovisionIntegrationRequest{Id: in.GetId()})
	if err != nil || dep.GetPartnerStatus().GetActivation() != "deprovisioned" {
		t.Fatalf("deprovision: %v %v", dep.GetPartnerStatus(), err)
	}
	if prov, _, _ := itn.Provisioned(); prov != 2 {
		t.Fatalf("provisioned %d after deprovision", prov)
	}
}

func TestGroupScopingEndToEnd(t *testing.T) {
	f := newFleet(t, server.Config{PublicURL: "https://posture.example.com", PartnerMaintain: 200 * time.Millisecond,
		PartnerPoll: 50 * time.Millisecond, ScopeRefresh: 300 * time.Millisecond})
	pair, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer pair.Close()
	const partnerApp, partnerSecret = "77777777-2222-3333-4444-555555555555", "partner-app-secret"
	pair.Entra.RegisterApp(standin.App{ClientID: partnerApp, Secrets: []standin.Secret{{Value: partnerSecret}}})
	itn, err := intunestandin.New(pair.CA, pair.Entra, intunestandin.Options{PartnerClientID: partnerApp})
	if err != nil {
		t.Fatal(err)
	}
	defer itn.Close()
	const scopeGroup, nested = "6a7b8c9d-0e1f-2a3b-4c5d-6e7f8a9b0c1d", "7b8c9d0e-1f2a-3b4c-5d6e-7f8a9b0c1d2e"
	itn.AddUser(upnOf(f), "0b1c2d3e-4f50-6172-8394-a5b6c7d8e9f0")
	itn.AddGroup(scopeGroup, "Pilot")
	itn.AddGroup(nested, "Pilot Macs")
	itn.AddMember(scopeGroup, intunestandin.Member{GroupID: nested})
	itn.AddMember(nested, intunestandin.Member{DeviceID: "00000000-1111-2222-3333-444444444444"}) // someone else

	in, err := f.adminc.CreateIntegration(f.actx, &posturev1.CreateIntegrationRequest{Integration: &posturev1.Integration{
		Name: "intune", Kind: "intune-partner", Cloud: "custom", AuthorityHost: pair.Entra.URL(), GraphBaseUrl: itn.GraphBaseURL(),
		ExtraCaPem: string(pair.CA.CertPEM()), TenantId: pair.Entra.Tenant(), ClientId: partnerApp, ClientSecret: partnerSecret,
		PartnerPlatforms: []string{"macos"}, ScopeGroups: []string{scopeGroup}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(in.GetScopeGroups()) != 1 {
		t.Fatalf("scope groups not kept: %v", in)
	}
	f.startExt()
	hostScope := func() (*posturev1.Host, string) {
		hs, err := f.adminc.ListHosts(f.actx, &posturev1.ListHostsRequest{})
		if err != nil || len(hs.GetHosts()) != 1 {
			return nil, ""
		}
		h := hs.GetHosts()[0]
		for _, s := range h.GetScopes() {
			if s.GetIntegrationId() == in.GetId() {
				return h, s.GetState()
			}
		}
		return h, ""
	}
	// Out of scope: evaluated, mapped, but never written, also across a
	// transition.
	eventually(t, "host out of scope", 60*time.Second, func() (bool, string) {
		h, st := hostScope()
		return st == "out_of_scope" && h.GetVerdict().GetState() == "COMPLIANT" && h.GetEntraDeviceId() == f.device, fmt.Sprint(h, st)
	})
	if err := f.oq.Break(f.ctx, "macos-filevault"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "NONCOMPLIANT", 30*time.Second, func() (bool, string) {
		h, _ := hostScope()
		return h.GetVerdict().GetState() == "NONCOMPLIANT", fmt.Sprint(h)
	})
	// One more full refresh passes with the device still outside.
	reads := itn.MemberReads()
	eventually(t, "a scope refresh", 30*time.Second, func() (bool, string) { return itn.MemberReads() > reads, "" })
	items, err := f.adminc.ListSyncItems(f.actx, &posturev1.ListSyncItemsRequest{State: "done"})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(itn.UploadsFor(f.device)); n != 0 || len(items.GetItems()) != 0 {
		t.Fatalf("a device outside the scope was written: uploads %d, sync items %v", n, items)
	}
	// Its user joins a nested group: written within one refresh.
	itn.AddMember(nested, intunestandin.Member{UPN: upnOf(f)})
	eventually(t, "written after joining the scope", 30*time.Second, func() (bool, string) {
		_, st := hostScope()
		return itn.Compliance(f.device) == "notCompliant", fmt.Sprintf("scope=%s uploads=%v", st, itn.UploadsFor(f.device))
	})
	if _, st := hostScope(); st != "in_scope" {
		t.Fatalf("host scope %q after joining", st)
	}
}
