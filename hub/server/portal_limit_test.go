package server_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/portal"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
)

// The per-address recheck limit holds when the client forges
// X-Forwarded-For: the hub counts the address its gateway saw, not the
// client's claim.
func TestPortalRecheckLimitIgnoresForgedForwardedFor(t *testing.T) {
	work, err := os.MkdirTemp("", "pportallim")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hp := startHub(t, server.Config{
		DataDir: filepath.Join(work, "hub"), GRPCAddr: "127.0.0.1:0", HTTPAddr: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		Portal: server.PortalConfig{PublicURL: "https://portal.example",
			RecheckPerDevice: portal.Limit{Burst: 100, Every: time.Second},
			RecheckPerAddr:   portal.Limit{Burst: 2, Every: time.Hour}},
	})
	nt, _ := admin.NewAPIToken("e2e", store.RoleAdmin, time.Now(), nil)
	if err := hp.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	caPEM := hp.hub.CA.CertPEM()
	adminc := posturev1.NewAdminServiceClient(dialHub(t, hp.cfg.GRPCAddr, caPEM, nil))
	sec, err := adminc.CreateEnrollSecret(withToken(ctx, nt.Plain), &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := startSimAgent(ctx, hp.cfg.GRPCAddr, caPEM, sec.GetSecret(), "mac-1", "UUID-L")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ag.Close)
	link, _ := hp.hub.Portal.RemediationURL(ag.HostID)
	u, _ := url.Parse(link)
	body := `{"token":"` + u.Query().Get("token") + `"}`
	codes := []int{}
	for i, fake := range []string{"10.0.0.1", "10.0.0.2", "10.0.0.3", "10.0.0.4"} {
		req, _ := http.NewRequest("POST", "http://"+hp.cfg.HTTPAddr+"/api/v1/portal/devices/"+ag.HostID+":recheck", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Forwarded-For", fake)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if i < 2 && resp.StatusCode != http.StatusOK {
			t.Fatalf("recheck %d: %d", i, resp.StatusCode)
		}
	}
	if codes[2] != http.StatusTooManyRequests || codes[3] != http.StatusTooManyRequests {
		t.Fatalf("forged X-Forwarded-For bypassed the address limit: %v", codes)
	}
}
