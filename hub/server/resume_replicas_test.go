package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/postgres/pgtest"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

// Two replicas on one PostgreSQL: Graph throttles one of them for an hour
// (a Retry-After pause held in that replica's memory); `integrations
// resume` on the other replica ends the pause there too, over the
// replicas' LISTEN/NOTIFY bus, and the held-back write goes out.
func TestResumeEndsPauseOnEveryReplica(t *testing.T) {
	const device = "00000000-0000-4000-8000-0000000000a1"
	dbURL := pgtest.URL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pair := startStandins(t, device)
	cfg := server.Config{
		DataDir: filepath.Join(t.TempDir(), "shared"), DatabaseURL: dbURL, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PolicyPoll: 100 * time.Millisecond, DuePoll: 100 * time.Millisecond, SyncPoll: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	replicas := []*hubProc{startHub(t, cfg), startHub(t, cfg)}
	caPEM := replicas[0].hub.CA.CertPEM()
	nt, _ := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err := replicas[0].hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	actx := withToken(ctx, nt.Plain)
	clients := []posturev1.AdminServiceClient{
		posturev1.NewAdminServiceClient(dialHub(t, replicas[0].cfg.GRPCAddr, caPEM, nil)),
		posturev1.NewAdminServiceClient(dialHub(t, replicas[1].cfg.GRPCAddr, caPEM, nil)),
	}
	in, err := clients[0].CreateIntegration(actx, &posturev1.CreateIntegrationRequest{Integration: graphIntegration(pair)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := clients[0].ApplyPolicies(actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk", Name: "Disk", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"},
	}}); err != nil {
		t.Fatal(err)
	}
	sec, err := clients[0].CreateEnrollSecret(actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := startSimAgent(ctx, replicas[0].cfg.GRPCAddr, caPEM, sec.GetSecret(), "mac-r", "UUID-R")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ag.Close)
	if err := ag.ReportDevice(device); err != nil {
		t.Fatal(err)
	}

	// Graph answers the next write with 429, Retry-After one hour.
	pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: device, Method: "PATCH", Status: 429, RetryAfter: "3600", Times: 1})
	ch, err := ag.Send(posturev1.ResultStatus_RESULT_STATUS_FAIL, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ch)
	paused := -1
	eventually(t, "one replica paused by the 429", 30*time.Second, func() (bool, string) {
		for i, r := range replicas {
			if r.hub.Worker.PausedUntil(in.GetId()).After(time.Now().Add(30 * time.Minute)) {
				paused = i
				return true, ""
			}
		}
		return false, "no pause yet"
	})
	other := 1 - paused
	if !replicas[other].hub.Worker.PausedUntil(in.GetId()).IsZero() {
		t.Fatal("both replicas paused; the test needs one unpaused")
	}
	if v, _ := pair.Graph.Attribute(device, testAttr); v == "Non-compliant" {
		t.Fatal("the throttled write went out")
	}

	// The pause is set in memory before the throttled row is stored as
	// deferred to its end: wait for the row, as an admin would see it.
	eventually(t, "the row deferred to the pause's end", 30*time.Second, func() (bool, string) {
		items, err := clients[other].ListSyncItems(actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		if err != nil || len(items.GetItems()) != 1 {
			return false, fmt.Sprint(items, err)
		}
		return items.GetItems()[0].GetNextAttemptAt().AsTime().After(time.Now().Add(30 * time.Minute)), fmt.Sprint(items)
	})

	// Resume on the replica that is not paused.
	r, err := clients[other].ResumeIntegration(actx, &posturev1.ResumeIntegrationRequest{Id: in.GetId()})
	if err != nil || r.GetRequeued() != 1 {
		t.Fatalf("resume on replica %d: %v %v", other, r, err)
	}
	eventually(t, "the paused replica's pause ended", 10*time.Second, func() (bool, string) {
		until := replicas[paused].hub.Worker.PausedUntil(in.GetId())
		return until.IsZero(), "paused until " + until.Format(time.RFC3339)
	})
	eventually(t, "the held-back write reached Graph", 30*time.Second, func() (bool, string) {
		v, _ := pair.Graph.Attribute(device, testAttr)
		return v == "Non-compliant", v
	})
}
