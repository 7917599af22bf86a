package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/portal"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
)

// BenchmarkRecheck measures Recheck pressed → the portal shows the new
// state, POSTURE_BENCH_RECHECKS times (default 120): the device's fixture
// flips between passing and failing, the recheck is POSTed to the JSON API
// with the device's signed link, and the JSON API the page's script polls is
// read every 5 ms until it shows the flipped state. The path is the real
// one - HTTP, grpc-gateway, PortalService, the stream to the agent, results
// back, store, verdict engine - with the simulated agent answering at once
// (the stand-in's instant queries). The page's own poll adds up to 0.5 s.
func BenchmarkRecheck(b *testing.B) {
	n := envInt("POSTURE_BENCH_RECHECKS", 120)
	for range b.N {
		p50, p95 := recheckLatency(b, n)
		b.ReportMetric(p50, "p50_ms")
		b.ReportMetric(p95, "p95_ms")
	}
}

func recheckLatency(b *testing.B, n int) (p50, p95 float64) {
	b.StopTimer()
	work, err := os.MkdirTemp("", "precheck")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(work)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	h, err := server.New(ctx, server.Config{
		DataDir: filepath.Join(work, "hub"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		PolicyInterval: time.Hour, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Portal: server.PortalConfig{PublicURL: "http://portal.invalid",
			RecheckPerDevice: portal.Limit{Burst: 1 << 20, Every: time.Millisecond},
			RecheckPerAddr:   portal.Limit{Burst: 1 << 20, Every: time.Millisecond}},
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
	adminc := posturev1.NewAdminServiceClient(dialHub(b, h.GRPCAddr(), h.CA.CertPEM(), nil))
	actx := withToken(ctx, nt.Plain)
	if _, err := adminc.ApplyPolicies(actx, &posturev1.ApplyPoliciesRequest{Policies: []*posturev1.Policy{
		{Id: "disk", Name: "Disk", Severity: "high", ConditionalAccess: true, Query: "SELECT 1"},
	}}); err != nil {
		b.Fatal(err)
	}
	sec, err := adminc.CreateEnrollSecret(actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		b.Fatal(err)
	}
	ag, err := startSimAgent(ctx, h.GRPCAddr(), h.CA.CertPEM(), sec.GetSecret(), "bench-mac", "UUID-B")
	if err != nil {
		b.Fatal(err)
	}
	defer ag.Close()
	var fixture atomic.Int32 // the "disk" result the agent reports
	fixture.Store(int32(failSt))
	ag.OnRecheck(func() { _, _ = ag.Send(posturev1.ResultStatus(fixture.Load()), nil) })
	if _, err := ag.Send(failSt, nil); err != nil {
		b.Fatal(err)
	}
	link, _ := h.Portal.RemediationURL(ag.HostID)
	u, _ := url.Parse(link)
	token := u.Query().Get("token")
	base := "http://" + h.HTTPAddr() + "/api/v1/portal/devices/" + ag.HostID
	hc := &http.Client{Timeout: 10 * time.Second}
	state := func() string {
		resp, err := hc.Get(base + "?token=" + url.QueryEscape(token))
		if err != nil {
			return ""
		}
		defer resp.Body.Close()
		var d struct {
			State string `json:"state"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&d)
		return d.State
	}
	waitState := func(want string, limit time.Duration) error {
		deadline := time.Now().Add(limit)
		for state() != want {
			if time.Now().After(deadline) {
				return fmt.Errorf("state did not become %s", want)
			}
			<-time.After(5 * time.Millisecond)
		}
		return nil
	}
	if err := waitState("NONCOMPLIANT", 30*time.Second); err != nil {
		b.Fatal(err)
	}
	body := `{"token":"` + token + `"}`
	lat := make([]float64, 0, n)
	b.StartTimer()
	for i := range n {
		want, st := "COMPLIANT", passSt
		if i%2 == 1 {
			want, st = "NONCOMPLIANT", failSt
		}
		fixture.Store(int32(st))
		start := time.Now()
		resp, err := hc.Post(base+":recheck", "application/json", strings.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("recheck %d: HTTP %d", i, resp.StatusCode)
		}
		if err := waitState(want, 30*time.Second); err != nil {
			b.Fatalf("recheck %d: %v", i, err)
		}
		lat = append(lat, float64(time.Since(start).Microseconds())/1000)
	}
	b.StopTimer()
	slices.Sort(lat)
	return lat[len(lat)/2], lat[(len(lat)*95+99)/100-1]
}
