package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/postgres/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// Two hub replicas on one PostgreSQL, hosts split between them, both
// evaluating every host and both draining the one outbox: every transition
// reaches Graph exactly once.
func TestTwoReplicasSendEachTransitionOnce(t *testing.T) {
	const hosts = 40
	dbURL := pgtest.URL(t)
	work, err := os.MkdirTemp("", "prepl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	devices := make([]string, hosts)
	for i := range devices {
		devices[i] = fmt.Sprintf("00000000-0000-4000-8000-%012d", i)
	}
	pair := startStandins(t, devices...)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Shared CA and secrets key (one data dir), one database.
	cfg := server.Config{
		DataDir: filepath.Join(work, "shared"), DatabaseURL: dbURL, GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PolicyPoll: 100 * time.Millisecond, DuePoll: 100 * time.Millisecond, SyncPoll: 50 * time.Millisecond, Logger: quiet,
	}
	a := startHub(t, cfg)
	b := startHub(t, cfg)
	caPEM := a.hub.CA.CertPEM()

	nt, _ := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err := a.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	adminc := posturev1.NewAdminServiceClient(dialHub(t, a.cfg.GRPCAddr, caPEM, nil))
	actx := withToken(ctx, nt.Plain)
	if _, err := adminc.CreateIntegration(actx, &posturev1.CreateIntegrationRequest{Integration: graphIntegration(pair)}); err != nil {
		t.Fatal(err)
	}
	if _, err := adminc.ApplyPolicies(actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk", Name: "Disk", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"},
	}}); err != nil {
		t.Fatal(err)
	}
	sec, err := adminc.CreateEnrollSecret(actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}

	agents := make([]*simAgent, hosts)
	for i := range agents {
		hub := a
		if i%2 == 1 {
			hub = b
		}
		ag, err := startSimAgent(ctx, hub.cfg.GRPCAddr, caPEM, sec.GetSecret(), fmt.Sprintf("mac-%02d", i), fmt.Sprintf("UUID-%02d", i))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(ag.Close)
		if err := ag.ReportDevice(devices[i]); err != nil {
			t.Fatal(err)
		}
		agents[i] = ag
	}
	// Every step: all hosts report at once, and both replicas are also told
	// to re-evaluate every host, so they race on every verdict.
	step := func(st posturev1.ResultStatus, want string) {
		t.Helper()
		var wg sync.WaitGroup
		for _, ag := range agents {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch, err := ag.Send(st, nil)
				if err != nil {
					t.Error(err)
					return
				}
				waitAck(t, ch)
				a.hub.Engine.Notify(ag.HostID, false)
				b.hub.Engine.Notify(ag.HostID, false)
			}()
		}
		wg.Wait()
		eventually(t, "every device "+want, 60*time.Second, func() (bool, string) {
			for _, d := range devices {
				if v, _ := pair.Graph.Attribute(d, testAttr); v != want {
					return false, d + "=" + v
				}
			}
			return true, ""
		})
	}
	step(posturev1.ResultStatus_RESULT_STATUS_PASS, "Compliant")
	step(posturev1.ResultStatus_RESULT_STATUS_FAIL, "Non-compliant")
	step(posturev1.ResultStatus_RESULT_STATUS_FAIL, "Non-compliant") // unchanged: no writes
	step(posturev1.ResultStatus_RESULT_STATUS_PASS, "Compliant")
	// Re-evaluate everything on both replicas once more and let it all
	// drain: a duplicate would be queued and sent now if the CAS let one by.
	for _, r := range []*hubProc{a, b} {
		if err := r.hub.Engine.NotifyAll(ctx, false); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "engines and outbox idle", 30*time.Second, func() (bool, string) {
		items, err := adminc.ListSyncItems(actx, &posturev1.ListSyncItemsRequest{State: "pending"})
		if err != nil {
			return false, err.Error()
		}
		pa, pb := a.hub.Engine.Pending(), b.hub.Engine.Pending()
		return pa == 0 && pb == 0 && len(items.GetItems()) == 0, fmt.Sprintf("engines %d/%d, outbox %d", pa, pb, len(items.GetItems()))
	})
	for _, d := range devices {
		if got := strings.Join(values(pair.Graph, d), ","); got != "Compliant,Non-compliant,Compliant" {
			t.Errorf("device %s writes: %s", d, got)
		}
	}
}
