package server_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
)

// BenchmarkTimeToNoncompliant measures, over many devices (default 1,000;
// POSTURE_BENCH_DEVICES), the time from a failing result reaching the hub
// to the PATCH that marks the device non-compliant reaching the Graph
// stand-in, through the real stream, store, verdict engine, outbox, sync
// worker and msgraph-sdk-go. Failures arrive at POSTURE_BENCH_RATE per
// second (default 200). It also counts Graph writes per transition, and
// checks that unchanged results cause none. Run with -benchtime 1x.
func BenchmarkTimeToNoncompliant(b *testing.B) {
	n := envInt("POSTURE_BENCH_DEVICES", 1000)
	rate := envInt("POSTURE_BENCH_RATE", 200)
	for range b.N {
		p50, p99, perTransition, unchangedWrites := timeToNoncompliant(b, n, rate)
		b.ReportMetric(p50, "p50_ms")
		b.ReportMetric(p99, "p99_ms")
		b.ReportMetric(perTransition, "writes/transition")
		b.ReportMetric(float64(unchangedWrites), "unchanged_writes")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func timeToNoncompliant(b *testing.B, n, rate int) (p50, p99, perTransition float64, unchangedWrites int) {
	b.StopTimer()
	work, err := os.MkdirTemp("", "pbench")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	devices := make([]string, n)
	for i := range devices {
		devices[i] = fmt.Sprintf("00000000-0000-4000-9000-%012d", i)
	}
	pair := startStandins(b, devices...)
	h, err := server.New(ctx, server.Config{
		DataDir: filepath.Join(work, "hub"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	hctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- h.Run(hctx) }()
	defer func() { stop(); <-done }()

	nt, _ := admin.NewAPIToken("bench", store.RoleAdmin, time.Now(), nil)
	if err := h.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		b.Fatal(err)
	}
	conn := dialHub(b, h.GRPCAddr(), h.CA.CertPEM(), nil)
	adminc := posturev1.NewAdminServiceClient(conn)
	actx := withToken(ctx, nt.Plain)
	if _, err := adminc.CreateIntegration(actx, &posturev1.CreateIntegrationRequest{Integration: graphIntegration(pair)}); err != nil {
		b.Fatal(err)
	}
	if _, err := adminc.ApplyPolicies(actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk", Name: "Disk", Severity: "critical", ConditionalAccess: true, Query: "SELECT 1"},
	}}); err != nil {
		b.Fatal(err)
	}
	sec, err := adminc.CreateEnrollSecret(actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		b.Fatal(err)
	}

	agents := make([]*simAgent, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	var mu sync.Mutex
	var firstErr error
	for i := range agents {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			ag, err := startSimAgent(ctx, h.GRPCAddr(), h.CA.CertPEM(), sec.GetSecret(), fmt.Sprintf("bench-%04d", i), fmt.Sprintf("BENCH-%04d", i))
			if err == nil {
				err = ag.ReportDevice(devices[i])
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = err
			}
			agents[i] = ag
		}()
	}
	wg.Wait()
	if firstErr != nil {
		b.Fatal(firstErr)
	}
	defer func() {
		for _, ag := range agents {
			ag.Close()
		}
	}()
	waitAll := func(want string) {
		deadline := time.Now().Add(5 * time.Minute)
		for {
			missing := 0
			for _, d := range devices {
				if v, _ := pair.Graph.Attribute(d, testAttr); v != want {
					missing++
				}
			}
			if missing == 0 {
				return
			}
			if time.Now().After(deadline) {
				b.Fatalf("%d devices never became %s", missing, want)
			}
			<-time.After(20 * time.Millisecond)
		}
	}
	sendAll := func(st posturev1.ResultStatus, at []time.Time) {
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for i, ag := range agents {
			<-tick.C
			if at != nil {
				at[i] = time.Now()
			}
			if _, err := ag.Send(st, nil); err != nil {
				b.Fatal(err)
			}
		}
	}
	sendAll(posturev1.ResultStatus_RESULT_STATUS_PASS, nil)
	waitAll("Compliant")
	before := len(pair.Graph.Writes())

	b.StartTimer()
	sent := make([]time.Time, n)
	sendAll(posturev1.ResultStatus_RESULT_STATUS_FAIL, sent)
	waitAll("Non-compliant")
	b.StopTimer()
	afterFail := len(pair.Graph.Writes())

	lat := make([]float64, n)
	for i, d := range devices {
		for _, w := range pair.Graph.WritesFor(d) {
			if w.Attribute == attrName() && w.Value != nil && *w.Value == "Non-compliant" {
				lat[i] = float64(w.At.Sub(sent[i])) / float64(time.Millisecond)
				break
			}
		}
	}
	slices.Sort(lat)
	p50 = lat[len(lat)/2]
	p99 = lat[min(len(lat)-1, len(lat)*99/100)]
	perTransition = float64(afterFail-before) / float64(n)

	// Unchanged results: every device reports FAIL again; nothing may be written.
	sendAll(posturev1.ResultStatus_RESULT_STATUS_FAIL, nil)
	deadline := time.Now().Add(time.Minute)
	for h.Engine.Pending() > 0 && time.Now().Before(deadline) {
		<-time.After(20 * time.Millisecond)
	}
	items, err := adminc.ListSyncItems(actx, &posturev1.ListSyncItemsRequest{State: "pending"})
	if err != nil || len(items.GetItems()) != 0 {
		b.Fatalf("outbox not drained after unchanged results: %v %v", items, err)
	}
	unchangedWrites = len(pair.Graph.Writes()) - afterFail
	return p50, p99, perTransition, unchangedWrites
}
