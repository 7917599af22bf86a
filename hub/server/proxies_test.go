package server_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/portal"
	"github.com/posture-dev/posture/hub/server"
)

// fromIP is an HTTP client whose connections leave from the given loopback
// address (127.0.0.0/8 is all loopback on Linux), so tests can be several
// distinct clients and proxies on one machine.
func fromIP(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 10 * time.Second}
	return &http.Client{
		Transport:     &http.Transport{DialContext: d.DialContext},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		Timeout:       30 * time.Second,
	}
}

// Behind a trusted reverse proxy (a real httputil.ReverseProxy hop that
// appends its peer to X-Forwarded-For, connecting from 127.0.0.2), two
// clients get separate recheck buckets and the audit log names each;
// forged headers - through the proxy or sent straight to the hub from an
// untrusted peer - change nothing.
func TestTrustedProxyResolvesClientAddress(t *testing.T) {
	q := startQuickHub(t, server.Config{
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.2/32")},
		Portal: server.PortalConfig{PublicURL: "https://portal.example",
			RecheckPerDevice: portal.Limit{Burst: 1000, Every: time.Second},
			RecheckPerAddr:   portal.Limit{Burst: 2, Every: time.Hour}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	caPEM := q.hub.CA.CertPEM()
	adminc := posturev1.NewAdminServiceClient(dialHub(t, q.cfg.GRPCAddr, caPEM, nil))
	sec, err := adminc.CreateEnrollSecret(withToken(ctx, q.admin), &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	ag, err := startSimAgent(ctx, q.cfg.GRPCAddr, caPEM, sec.GetSecret(), "mac-p", "UUID-P")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ag.Close)
	link, _ := q.hub.Portal.RemediationURL(ag.HostID)
	lu, _ := url.Parse(link)
	token := lu.Query().Get("token")

	hubURL, _ := url.Parse(q.base)
	upstream := fromIP("127.0.0.2").Transport
	proxy := httptest.NewServer(&httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(hubURL)
			// Keep what the client sent and append its address, as
			// nginx's $proxy_add_x_forwarded_for does.
			pr.Out.Header["X-Forwarded-For"] = pr.In.Header["X-Forwarded-For"]
			pr.SetXForwarded()
		},
		Transport: upstream,
	})
	t.Cleanup(proxy.Close)

	type call struct {
		client *http.Client
		base   string
		hdr    map[string]string
	}
	viaProxy := func(ip string, hdr map[string]string) call { return call{fromIP(ip), proxy.URL, hdr} }
	direct := func(hdr map[string]string) call { return call{fromIP("127.0.0.1"), q.base, hdr} }
	do := func(c call, method, path, ctype, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, c.base+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range c.hdr {
			req.Header.Set(k, v)
		}
		resp, err := c.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	// JSON API recheck: 200 or 429.
	apiRecheck := func(c call) int {
		return do(c, "POST", "/api/v1/portal/devices/"+ag.HostID+":recheck", "application/json", `{"token":"`+token+`"}`).StatusCode
	}
	// The pages' form recheck: a redirect that says whether it was limited.
	pageRecheck := func(c call) bool {
		resp := do(c, "POST", "/remediate/recheck", "application/x-www-form-urlencoded",
			url.Values{"device_id": {ag.HostID}, "token": {token}}.Encode())
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("page recheck: %d", resp.StatusCode)
		}
		return strings.Contains(resp.Header.Get("Location"), "rechecked=limited")
	}

	// Client A (127.0.0.3) forges X-Forwarded-For to look like many users:
	// the proxy appends its real address, which is what counts.
	for i, fake := range []string{"10.0.0.1", "10.0.0.2"} {
		if code := apiRecheck(viaProxy("127.0.0.3", map[string]string{"X-Forwarded-For": fake})); code != http.StatusOK {
			t.Fatalf("client A recheck %d: %d", i, code)
		}
	}
	if code := apiRecheck(viaProxy("127.0.0.3", map[string]string{"X-Forwarded-For": "10.0.0.3"})); code != http.StatusTooManyRequests {
		t.Fatalf("client A third recheck: %d, want 429 (its own bucket is spent)", code)
	}
	if !pageRecheck(viaProxy("127.0.0.3", nil)) {
		t.Fatal("client A's page recheck was not limited: the pages use another address")
	}
	// Client B (127.0.0.4) behind the same proxy has its own bucket.
	if pageRecheck(viaProxy("127.0.0.4", nil)) {
		t.Fatal("client B limited: all clients behind the proxy share one bucket")
	}
	if code := apiRecheck(viaProxy("127.0.0.4", nil)); code != http.StatusOK {
		t.Fatalf("client B second recheck: %d", code)
	}
	if code := apiRecheck(viaProxy("127.0.0.4", nil)); code != http.StatusTooManyRequests {
		t.Fatalf("client B third recheck: %d, want 429", code)
	}
	// A peer that is not a trusted proxy: its X-Forwarded-For and Forwarded
	// headers are ignored, so rotating them does not escape its bucket.
	var codes []int
	for _, fake := range []string{"127.0.0.5", "127.0.0.6", "127.0.0.7"} {
		codes = append(codes, apiRecheck(direct(map[string]string{"X-Forwarded-For": fake, "Forwarded": "for=" + fake})))
	}
	if codes[0] != http.StatusOK || codes[1] != http.StatusOK || codes[2] != http.StatusTooManyRequests {
		t.Fatalf("untrusted peer with rotating forged headers: %v, want 200 200 429", codes)
	}

	// Audit source: the real client behind the proxy, never a forged one.
	auth := map[string]string{"Authorization": "Bearer " + q.admin}
	with := func(extra map[string]string) map[string]string {
		m := map[string]string{}
		for k, v := range auth {
			m[k] = v
		}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	do(viaProxy("127.0.0.3", with(map[string]string{"X-Forwarded-For": "6.6.6.6"})), "DELETE", "/api/v1/hosts/nope-a", "", "")
	do(viaProxy("127.0.0.4", with(map[string]string{"Grpc-Metadata-X-Posture-Client-Addr": "6.6.6.6"})), "DELETE", "/api/v1/hosts/nope-b", "", "")
	do(direct(with(map[string]string{"X-Forwarded-For": "6.6.6.6", "Forwarded": "for=6.6.6.6"})), "DELETE", "/api/v1/hosts/nope-c", "", "")
	want := map[string]func(string) bool{
		"nope-a": func(s string) bool { return s == "127.0.0.3" },
		"nope-b": func(s string) bool { return s == "127.0.0.4" },
		"nope-c": func(s string) bool { return strings.HasPrefix(s, "127.0.0.1:") },
	}
	seen := 0
	for _, e := range q.audit(t, "?action=DeleteHost") {
		if ok := want[e.Target]; ok != nil {
			seen++
			if !ok(e.Source) {
				t.Errorf("audit %s: source %q", e.Target, e.Source)
			}
		}
	}
	if seen != 3 {
		t.Fatalf("audit: %d of 3 DeleteHost events", seen)
	}
}
