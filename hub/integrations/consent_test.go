package integrations

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

func TestAdminConsentFlow(t *testing.T) {
	st := openStore(t)
	r := New(st, keyring(t, 3), quiet())
	ctx := context.Background()
	in := baseIntegration("int-1")
	in.TenantID = "a1b2c3d4-0000-0000-0000-000000000001"
	if err := r.Prepare(&in, Credential{ClientSecret: plainSecret}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateIntegration(ctx, in); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := r.ConsentURL(ctx, "int-1", ""); err == nil {
		t.Fatal("a consent link without the hub's public URL")
	}
	link, redirect, _, err := r.ConsentURL(ctx, "int-1", "https://posture.example.com/")
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(link)
	q := u.Query()
	if u.Host != "login.microsoftonline.com" || u.Path != "/"+in.TenantID+"/adminconsent" || q.Get("client_id") != "client" ||
		q.Get("redirect_uri") != "https://posture.example.com"+ConsentCallbackPath || redirect != q.Get("redirect_uri") || q.Get("state") == "" {
		t.Fatalf("link %s", link)
	}
	state := q.Get("state")
	srv := httptest.NewServer(r.ConsentHandler())
	defer srv.Close()
	get := func(v url.Values) (int, string) {
		resp, err := http.Get(srv.URL + ConsentCallbackPath + "?" + v.Encode())
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	health := func() store.Integration {
		got, err := st.GetIntegration(ctx, "int-1")
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// A forged or altered state is refused and records nothing.
	for _, bad := range []string{"", "forged", state[:len(state)-2] + "xx"} {
		if code, _ := get(url.Values{"state": {bad}, "admin_consent": {"True"}, "tenant": {in.TenantID}}); code != http.StatusBadRequest {
			t.Fatalf("state %q accepted (%d)", bad, code)
		}
	}
	if h := health(); h.Health != "" {
		t.Fatalf("health recorded from a forged state: %s", h.Health)
	}
	// Consent from another tenant is refused.
	if code, _ := get(url.Values{"state": {state}, "admin_consent": {"True"}, "tenant": {"ffffffff-0000-0000-0000-000000000009"}}); code != http.StatusBadRequest {
		t.Fatalf("other tenant accepted: %d", code)
	}
	// A refusal is recorded with Microsoft's text, escaped on the page.
	desc := "AADSTS65004: User declined to consent <script>alert(1)</script>"
	code, body := get(url.Values{"state": {state}, "error": {"access_denied"}, "error_description": {desc}})
	if code != http.StatusOK || strings.Contains(body, "<script>") || !strings.Contains(body, "AADSTS65004") {
		t.Fatalf("refusal page %d:\n%s", code, body)
	}
	if h := health(); h.Health != HealthConsentRefused || !strings.Contains(h.HealthMessage, "access_denied: AADSTS65004") {
		t.Fatalf("refusal recorded as %s %q", h.Health, h.HealthMessage)
	}
	// Granted.
	if code, body := get(url.Values{"state": {state}, "admin_consent": {"True"}, "tenant": {in.TenantID}}); code != http.StatusOK || !strings.Contains(body, "Consent granted") {
		t.Fatalf("grant %d:\n%s", code, body)
	}
	if h := health(); h.Health != HealthConsentGranted {
		t.Fatalf("grant recorded as %s", h.Health)
	}
	// An expired link is refused.
	r.now = func() time.Time { return time.Now().Add(ConsentTTL + time.Minute) }
	if code, _ := get(url.Values{"state": {state}, "admin_consent": {"True"}}); code != http.StatusBadRequest {
		t.Fatalf("expired state accepted: %d", code)
	}
}
