package standin

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// The sign-in endpoints are as strict as Entra where the portal relies on
// it: registered redirect URIs only, single-use codes bound to client and
// redirect URI, PKCE verifier checked, client secret required.
func TestAuthorizationCodeFlowIsStrict(t *testing.T) {
	p, hc := start(t)
	const redirect = "http://127.0.0.1:1/portal/callback"
	p.Entra.RegisterApp(App{ClientID: testClient, Secrets: []Secret{{Value: "s3cret"}}})
	if err := p.Entra.AddRedirectURI(testClient, redirect); err != nil {
		t.Fatal(err)
	}
	if err := p.Entra.AddUser(User{UPN: "ada@contoso.example", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	noFollow := *hc
	noFollow.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	authz := p.Entra.URL() + p.Entra.Tenant() + "/oauth2/v2.0/authorize"
	verifier := "a-long-enough-verifier-string-for-pkce-0123456789"
	sum := sha256.Sum256([]byte(verifier))
	q := url.Values{"client_id": {testClient}, "redirect_uri": {redirect}, "response_type": {"code"}, "scope": {"openid profile"},
		"state": {"st"}, "nonce": {"nn"}, "code_challenge": {base64.RawURLEncoding.EncodeToString(sum[:])}, "code_challenge_method": {"S256"}}

	// An unregistered redirect URI is refused without redirecting.
	bad := url.Values{}
	for k, v := range q {
		bad[k] = v
	}
	bad.Set("redirect_uri", "https://evil.example/cb")
	resp, err := noFollow.Get(authz + "?" + bad.Encode())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "AADSTS50011") {
		t.Fatalf("unregistered redirect: %d %s", resp.StatusCode, body)
	}

	signIn := func(pass string) (code string) {
		t.Helper()
		form := url.Values{}
		for k, v := range q {
			form[k] = v
		}
		form.Set("login", "ada@contoso.example")
		form.Set("passwd", pass)
		resp, err := noFollow.PostForm(authz, form)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			return ""
		}
		loc, _ := url.Parse(resp.Header.Get("Location"))
		if loc.Query().Get("state") != "st" {
			t.Fatalf("state not echoed: %s", loc)
		}
		return loc.Query().Get("code")
	}
	if signIn("wrong") != "" {
		t.Fatal("wrong password signed in")
	}
	redeem := func(code, verifier, secret string) (int, map[string]any) {
		t.Helper()
		resp, err := hc.PostForm(tokenURL(p), url.Values{"grant_type": {"authorization_code"}, "client_id": {testClient},
			"client_secret": {secret}, "code": {code}, "redirect_uri": {redirect}, "code_verifier": {verifier}})
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		_ = json.NewDecoder(resp.Body).Decode(&out)
		return resp.StatusCode, out
	}
	if st, out := redeem(signIn("pw"), "not-the-verifier-not-the-verifier-not-the-verifier", "s3cret"); st != http.StatusBadRequest || !strings.Contains(out["error_description"].(string), "AADSTS501481") {
		t.Fatalf("wrong PKCE verifier: %d %v", st, out)
	}
	if st, _ := redeem(signIn("pw"), verifier, "wrong-secret"); st != http.StatusUnauthorized {
		t.Fatalf("wrong client secret: %d", st)
	}
	code := signIn("pw")
	st, out := redeem(code, verifier, "s3cret")
	if st != http.StatusOK || out["id_token"] == nil {
		t.Fatalf("good redemption: %d %v", st, out)
	}
	if st, _ := redeem(code, verifier, "s3cret"); st != http.StatusBadRequest {
		t.Fatalf("code reused: %d", st)
	}
	// The ID token carries the nonce and the user.
	parts := strings.Split(out["id_token"].(string), ".")
	raw, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var claims map[string]any
	_ = json.Unmarshal(raw, &claims)
	if claims["nonce"] != "nn" || claims["preferred_username"] != "ada@contoso.example" || claims["aud"] != testClient || claims["iss"] != p.Entra.Issuer() {
		t.Fatalf("claims %v", claims)
	}
}
