package server_test

import (
	"context"
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

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/portal"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/postgres/pgtest"
)

// Two replicas on one PostgreSQL: a host streams to B; a portal recheck
// and a status update raised on A reach it over LISTEN/NOTIFY. The host is
// told its verdict after Hello and on every change, with a signed link.
func TestPortalRoutesAcrossReplicas(t *testing.T) {
	dbURL := pgtest.URL(t)
	work, err := os.MkdirTemp("", "pportalrepl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg := server.Config{
		DataDir: filepath.Join(work, "shared"), DatabaseURL: dbURL, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PolicyPoll: 100 * time.Millisecond, DuePoll: 100 * time.Millisecond, Logger: quiet,
		Portal: server.PortalConfig{PublicURL: "https://portal.example", RecheckPerDevice: portal.Limit{Burst: 2, Every: time.Hour}},
	}
	a := startHub(t, cfg)
	b := startHub(t, cfg)
	caPEM := a.hub.CA.CertPEM()
	nt, _ := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err := a.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	conn := dialHub(t, a.cfg.GRPCAddr, caPEM, nil)
	adminc := posturev1.NewAdminServiceClient(conn)
	actx := withToken(ctx, nt.Plain)
	if _, err := adminc.ApplyPolicies(actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk", Name: "Disk", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"},
	}}); err != nil {
		t.Fatal(err)
	}
	sec, err := adminc.CreateEnrollSecret(actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := startSimAgent(ctx, b.cfg.GRPCAddr, caPEM, sec.GetSecret(), "mac-1", "UUID-1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ag.Close)

	// After Hello: the current verdict and a signed link to the portal.
	eventually(t, "a DeviceStatus after Hello", 20*time.Second, func() (bool, string) {
		return len(ag.Statuses()) > 0, ""
	})
	first := ag.Statuses()[0]
	u, err := url.Parse(first.GetRemediationUrl())
	if err != nil || u.Host != "portal.example" || u.Path != "/remediate" || u.Query().Get("device_id") != ag.HostID ||
		first.GetRemediationUrlExpiresAt().AsTime().Before(time.Now().Add(6*24*time.Hour)) {
		t.Fatalf("status after Hello: %v", first)
	}
	token := u.Query().Get("token")

	// A verdict change reaches the host.
	ch, err := ag.Send(failSt, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ch)
	eventually(t, "a NONCOMPLIANT status", 20*time.Second, func() (bool, string) {
		st := ag.Statuses()
		return st[len(st)-1].GetVerdict() == "NONCOMPLIANT", st[len(st)-1].String()
	})

	// A status raised on A (which holds no stream) travels to B.
	n := len(ag.Statuses())
	a.hub.Router.StatusChanged(ctx, ag.HostID)
	eventually(t, "a status routed from A", 20*time.Second, func() (bool, string) {
		return len(ag.Statuses()) > n, ""
	})

	// A portal recheck on A, with the device's link, reaches the host on B.
	pc := posturev1.NewPortalServiceClient(conn)
	res, err := pc.RecheckDevice(ctx, &posturev1.RecheckPortalDeviceRequest{DeviceId: ag.HostID, Token: token})
	if err != nil || !res.GetDelivered() {
		t.Fatalf("portal recheck on A: %v %v", res, err)
	}
	eventually(t, "the recheck to reach the host", 20*time.Second, func() (bool, string) {
		return ag.Rechecks() == 1, ""
	})
	// The admin API's recheck crosses replicas the same way.
	if _, err := adminc.RecheckHost(actx, &posturev1.RecheckHostRequest{Id: ag.HostID}); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the admin recheck to reach the host", 20*time.Second, func() (bool, string) {
		return ag.Rechecks() == 2, ""
	})
	// Rate-limited per device (burst 2 here), shared wording, no host data.
	pc.RecheckDevice(ctx, &posturev1.RecheckPortalDeviceRequest{DeviceId: ag.HostID, Token: token})
	_, err = pc.RecheckDevice(ctx, &posturev1.RecheckPortalDeviceRequest{DeviceId: ag.HostID, Token: token})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("third recheck: %v, want ResourceExhausted", err)
	}
	// No link, a link for another device, or a forged one: refused.
	for name, req := range map[string]*posturev1.RecheckPortalDeviceRequest{
		"no credentials": {DeviceId: ag.HostID},
		"forged":         {DeviceId: ag.HostID, Token: token[:len(token)-4] + "AAAA"},
		"other device":   {DeviceId: "00000000-0000-4000-8000-000000000000", Token: token},
	} {
		if _, err := pc.RecheckDevice(ctx, req); status.Code(err) != codes.Unauthenticated {
			t.Errorf("%s: %v, want Unauthenticated", name, err)
		}
	}
	d, err := pc.GetDevice(ctx, &posturev1.GetPortalDeviceRequest{DeviceId: strings.ToUpper(ag.HostID), Token: token})
	if err != nil || d.GetState() != "NONCOMPLIANT" || len(d.GetPolicies()) != 1 || d.GetPolicies()[0].GetName() != "Disk" {
		t.Fatalf("GetDevice: %v %v", d, err)
	}
}
