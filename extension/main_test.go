package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/internal/fakehub"
	"github.com/posture-dev/posture/extension/osq"
	"github.com/posture-dev/posture/extension/osquerytest"
	"google.golang.org/protobuf/types/known/durationpb"
)

type tlog struct{ t testing.TB }

func (w tlog) Write(p []byte) (int, error) { w.t.Log(strings.TrimSpace(string(p))); return len(p), nil }

func poll(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-time.After(20 * time.Millisecond)
	}
}

// latest returns the newest result per policy the hub has received.
func latest(st *fakehub.State) map[string]*posturev1.PolicyResult {
	st.Mu.Lock()
	defer st.Mu.Unlock()
	out := map[string]*posturev1.PolicyResult{}
	for _, b := range st.Batches {
		for _, r := range b.Batch.GetResults() {
			out[r.GetPolicyId()] = r
		}
	}
	return out
}

func countResults(st *fakehub.State, id string) int {
	st.Mu.Lock()
	defer st.Mu.Unlock()
	n := 0
	for _, b := range st.Batches {
		for _, r := range b.Batch.GetResults() {
			if r.GetPolicyId() == id {
				n++
			}
		}
	}
	return n
}

func TestEndToEndWithOsquerydStandIn(t *testing.T) {
	sock := shortSocket(t, "pe2e")
	osqd := startOsqueryd(t, sock, "darwin")

	ca := fakehub.NewCA(t, clock.Real{})
	st := fakehub.NewState()
	st.PolicySet = &posturev1.PolicySet{
		Version:  "e2e-1",
		Interval: durationpb.New(time.Hour),
		Policies: []*posturev1.AgentPolicy{
			{Id: "filevault", Revision: 1, Query: "SELECT 1 FROM disk_encryption WHERE encrypted = 1 AND filevault_status = 'on'"},
			{Id: "bitlocker", Revision: 1, Query: "SELECT 1 FROM bitlocker_info WHERE protection_status = 1"},
		},
		Facts: []*posturev1.FactQuery{
			{Name: "entra_device_id", Query: "SELECT common_name FROM certificates WHERE issuer LIKE '%CN=MS-Organization-Access%' LIMIT 1"},
		},
	}
	hub := fakehub.Start(t, st, ca, "")
	hubAddr, caFile := hubFlags(t, hub, ca)
	stateDir := t.TempDir()
	cfg, err := parseFlags([]string{
		"--socket", sock, "--timeout", "3", "--interval", "1",
		"--hub", hubAddr,
		"--enroll-secret", "s3cret", "--hub-ca", caFile, "--state-dir", stateDir,
		"--query-timeout", "5s",
	}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	cfg.firstRunSplay = 10 * time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, cfg, slog.New(slog.NewTextHandler(tlog{t}, &slog.HandlerOptions{Level: slog.LevelDebug})))
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	}()

	poll(t, "first results", func() bool { return len(latest(st)) == 2 })
	got := latest(st)
	if s := got["filevault"].GetStatus(); s != posturev1.ResultStatus_RESULT_STATUS_PASS {
		t.Fatalf("filevault = %v, want PASS", got["filevault"])
	}
	if r := got["bitlocker"]; r.GetStatus() != posturev1.ResultStatus_RESULT_STATUS_ERROR || !strings.Contains(r.GetError(), "no such table: bitlocker_info") {
		t.Fatalf("bitlocker on macOS = %v, want ERROR with osquery's message", r)
	}
	st.Mu.Lock()
	hello := st.Hellos[0]
	st.Mu.Unlock()
	if f := hello.GetFacts(); f.GetHardwareUuid() != osqd.UUID() || f.GetPlatform() != "darwin" || f.GetOsqueryVersion() != osquerytest.Version || f.GetHardwareSerial() != osqd.Serial() {
		t.Fatalf("hello facts = %v", f)
	}
	poll(t, "entra device id fact", func() bool {
		st.Mu.Lock()
		defer st.Mu.Unlock()
		return len(st.Facts) > 0 && st.Facts[len(st.Facts)-1]["entra_device_id"] == osqd.EntraDeviceID()
	})

	// FileVault off, then a recheck: FAIL arrives.
	if err := osqd.Exec(context.Background(), "UPDATE disk_encryption SET encrypted = 0, filevault_status = 'off'"); err != nil {
		t.Fatal(err)
	}
	st.SendLatest(&posturev1.HubMessage{Msg: &posturev1.HubMessage_Recheck{Recheck: &posturev1.Recheck{PolicyIds: []string{"filevault"}}}})
	poll(t, "FAIL after the fixture flip", func() bool {
		return latest(st)["filevault"].GetStatus() == posturev1.ResultStatus_RESULT_STATUS_FAIL
	})
	if n := countResults(st, "bitlocker"); n != 1 {
		t.Fatalf("invalid policy reported %d times, want once", n)
	}

	// osqueryd restarts (fresh fixtures: FileVault on again); the extension
	// reconnects by itself and a recheck sees the new osqueryd.
	osqd.Close()
	osqd = startOsqueryd(t, sock, "darwin")
	st.SendLatest(&posturev1.HubMessage{Msg: &posturev1.HubMessage_Recheck{Recheck: &posturev1.Recheck{PolicyIds: []string{"filevault"}}}})
	poll(t, "PASS from the restarted osqueryd", func() bool {
		return latest(st)["filevault"].GetStatus() == posturev1.ResultStatus_RESULT_STATUS_PASS
	})

	// The posture_entra table is registered with the (new) osqueryd and
	// answers queries (no rows on this Linux test host).
	poll(t, "posture_entra registered", func() bool {
		for _, name := range osqd.Extensions() {
			if name == "posture" {
				return true
			}
		}
		return false
	})
	c := osq.New(osq.Options{Socket: sock, QueryTimeout: 10 * time.Second})
	defer c.Close()
	if _, err := c.Query(context.Background(), "SELECT device_id, user_principal_name, tenant_id, source FROM posture_entra"); err != nil {
		t.Fatalf("query posture_entra: %v", err)
	}
	if n := st.Count(func() int { return st.Enrolls }); n != 1 {
		t.Fatalf("enrolled %d times", n)
	}
	if fi, err := os.Stat(filepath.Join(stateDir, "key.pem")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key.pem: %v", err)
	}
}
