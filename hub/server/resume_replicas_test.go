package server_test

import (
	"context"
	"database/sql"
	"fmt"
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

const throttledDevice = "00000000-0000-4000-8000-0000000000a1"

// throttledHubs are replicas on one PostgreSQL after Graph answered a
// device write with 429, Retry-After one hour: one replica holds the pause
// in memory and the row waits in the outbox for its end.
type throttledHubs struct {
	dbURL    string
	pair     *standin.Pair
	replicas []*hubProc
	clients  []posturev1.AdminServiceClient
	actx     context.Context
	in       *posturev1.Integration
	paused   int // index of the paused replica
}

func startThrottledHubs(t *testing.T, ctx context.Context, n int) *throttledHubs {
	t.Helper()
	th := &throttledHubs{dbURL: pgtest.URL(t), pair: startStandins(t, throttledDevice)}
	// The replicas' logs, shown only when the test fails.
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("hub logs:\n%s", logs.String())
		}
	})
	cfg := server.Config{
		DataDir: filepath.Join(t.TempDir(), "shared"), DatabaseURL: th.dbURL, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PolicyPoll: 100 * time.Millisecond, DuePoll: 100 * time.Millisecond, SyncPoll: 50 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	for range n {
		th.replicas = append(th.replicas, startHub(t, cfg))
	}
	caPEM := th.replicas[0].hub.CA.CertPEM()
	nt, _ := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err := th.replicas[0].hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	th.actx = withToken(ctx, nt.Plain)
	for _, r := range th.replicas {
		th.clients = append(th.clients, posturev1.NewAdminServiceClient(dialHub(t, r.cfg.GRPCAddr, caPEM, nil)))
	}
	var err error
	th.in, err = th.clients[0].CreateIntegration(th.actx, &posturev1.CreateIntegrationRequest{Integration: graphIntegration(th.pair)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := th.clients[0].ApplyPolicies(th.actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk", Name: "Disk", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"},
	}}); err != nil {
		t.Fatal(err)
	}
	sec, err := th.clients[0].CreateEnrollSecret(th.actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := startSimAgent(ctx, th.replicas[0].cfg.GRPCAddr, caPEM, sec.GetSecret(), "mac-r", "UUID-R")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ag.Close)
	if err := ag.ReportDevice(throttledDevice); err != nil {
		t.Fatal(err)
	}

	// Graph answers the next write with 429, Retry-After one hour.
	th.pair.Graph.InjectFault(standin.Fault{Scope: standin.ScopeItem, DeviceID: throttledDevice, Method: "PATCH", Status: 429, RetryAfter: "3600", Times: 1})
	ch, err := ag.Send(posturev1.ResultStatus_RESULT_STATUS_FAIL, nil)
	if err != nil {
		t.Fatal(err)
	}
	waitAck(t, ch)
	th.paused = -1
	eventually(t, "one replica paused by the 429", 30*time.Second, func() (bool, string) {
		for i, r := range th.replicas {
			if r.hub.Worker.PausedUntil(th.in.GetId()).After(time.Now().Add(30 * time.Minute)) {
				th.paused = i
				return true, ""
			}
		}
		return false, "no pause yet"
	})
	// The pause is set in memory before the throttled row is stored as
	// deferred to its end: wait for the row, as an admin would see it.
	eventually(t, "the row deferred to the pause's end", 30*time.Second, func() (bool, string) {
		items, err := th.clients[0].ListSyncItems(th.actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		if err != nil || len(items.GetItems()) != 1 {
			return false, fmt.Sprint(items, err)
		}
		return items.GetItems()[0].GetNextAttemptAt().AsTime().After(time.Now().Add(30 * time.Minute)), fmt.Sprint(items)
	})
	if v, _ := th.pair.Graph.Attribute(throttledDevice, testAttr); v == "Non-compliant" {
		t.Fatal("the throttled write went out")
	}
	return th
}

func (th *throttledHubs) waitWritten(t *testing.T) {
	t.Helper()
	eventually(t, "the paused replica's pause ended", 10*time.Second, func() (bool, string) {
		until := th.replicas[th.paused].hub.Worker.PausedUntil(th.in.GetId())
		return until.IsZero(), "paused until " + until.Format(time.RFC3339)
	})
	eventually(t, "the held-back write reached Graph", 30*time.Second, func() (bool, string) {
		v, _ := th.pair.Graph.Attribute(throttledDevice, testAttr)
		return v == "Non-compliant", v
	})
}

// Two replicas on one PostgreSQL: Graph throttles one of them for an hour
// (a Retry-After pause held in that replica's memory); `integrations
// resume` on the other replica ends the pause there too, over the
// replicas' LISTEN/NOTIFY bus, and the held-back write goes out.
func TestResumeEndsPauseOnEveryReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	th := startThrottledHubs(t, ctx, 2)
	other := 1 - th.paused
	if !th.replicas[other].hub.Worker.PausedUntil(th.in.GetId()).IsZero() {
		t.Fatal("both replicas paused; the test needs one unpaused")
	}
	// Resume on the replica that is not paused.
	r, err := th.clients[other].ResumeIntegration(th.actx, &posturev1.ResumeIntegrationRequest{Id: th.in.GetId()})
	if err != nil || r.GetRequeued() != 1 {
		t.Fatalf("resume on replica %d: %v %v", other, r, err)
	}
	th.waitWritten(t)
}

// A replica whose event-bus connection dropped (a PostgreSQL restart or
// failover) may have missed a resume: once its listener is back it ends
// its pauses rather than hold a verdict back for the rest of the hour.
func TestBusReconnectEndsPauses(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	th := startThrottledHubs(t, ctx, 1)
	db, err := sql.Open("postgres", th.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// The bus's listener is the session whose last statement was LISTEN
	// (or the listener's empty keep-alive query).
	res, err := db.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND (query ILIKE 'LISTEN%' OR query = '')`)
	if err != nil {
		t.Fatal(err)
	}
	// (An idle pooled session may match too; the pool replaces it.)
	if n, _ := res.RowsAffected(); n < 1 {
		t.Fatal("found no listener session to terminate")
	}
	th.waitWritten(t)
}
