package standin

import (
	"bytes"
	"compress/gzip"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

const testClient = "app-1"

func start(t *testing.T) (*Pair, *http.Client) {
	t.Helper()
	p, err := Start(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.CA.Pool()}}}
	return p, hc
}

func tokenURL(p *Pair) string { return p.Entra.URL() + p.Entra.Tenant() + "/oauth2/v2.0/token" }

func postForm(t *testing.T, hc *http.Client, u string, v url.Values) (int, map[string]any) {
	t.Helper()
	resp, err := hc.PostForm(u, v)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, m
}

func secretForm(secret string) url.Values {
	return url.Values{"grant_type": {"client_credentials"}, "client_id": {testClient}, "client_secret": {secret},
		"scope": {"https://graph.microsoft.com/.default openid profile offline_access"}}
}

func TestTokenEndpointSecrets(t *testing.T) {
	p, hc := start(t)
	p.Entra.RegisterApp(App{ClientID: testClient, Secrets: []Secret{{Value: "good"}, {Value: "old", Expires: time.Now().Add(-time.Hour)}}, Permissions: []string{PermDeviceReadAll}})

	code, body := postForm(t, hc, tokenURL(p), secretForm("good"))
	if code != 200 || body["token_type"] != "Bearer" || body["access_token"] == "" {
		t.Fatalf("%d %v", code, body)
	}
	// The token is JWT-shaped and names the granted roles.
	parts := strings.Split(body["access_token"].(string), ".")
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(claims), `"roles":["Device.Read.All"]`) || !strings.Contains(string(claims), `"aud":"https://graph.microsoft.com"`) {
		t.Fatalf("claims %s", claims)
	}
	for secret, want := range map[string]float64{"bad": 7000215, "old": 7000222} {
		code, body := postForm(t, hc, tokenURL(p), secretForm(secret))
		codes, _ := body["error_codes"].([]any)
		if code != 401 || body["error"] != "invalid_client" || len(codes) != 1 || codes[0] != want ||
			!strings.HasPrefix(body["error_description"].(string), fmt.Sprintf("AADSTS%d: ", int(want))) {
			t.Fatalf("secret %q: %d %v", secret, code, body)
		}
	}
	v := secretForm("good")
	v.Set("client_id", "nobody")
	if code, body := postForm(t, hc, tokenURL(p), v); code != 400 || body["error"] != "unauthorized_client" || !strings.Contains(body["error_description"].(string), "AADSTS700016") {
		t.Fatalf("unknown app: %d %v", code, body)
	}
	v = secretForm("good")
	v.Set("scope", "https://graph.microsoft.com/Device.Read.All")
	if code, _ := postForm(t, hc, tokenURL(p), v); code != 400 {
		t.Fatalf("non-.default scope accepted: %d", code)
	}
	// Like Entra, only known resources get tokens: a proxy's URL is none.
	v = secretForm("good")
	v.Set("scope", "https://proxy.example:8443/.default")
	if code, body := postForm(t, hc, tokenURL(p), v); code != 400 || body["error"] != "invalid_resource" || !strings.HasPrefix(body["error_description"].(string), "AADSTS500011: ") {
		t.Fatalf("unknown resource: %d %v", code, body)
	}
	p.Entra.SetResources("https://graph.airgap.example")
	v.Set("scope", "https://graph.airgap.example/.default")
	if code, body := postForm(t, hc, tokenURL(p), v); code != 200 {
		t.Fatalf("configured resource refused: %d %v", code, body)
	}
	p.Entra.SetResources(GraphResources...)
	if code, body := postForm(t, hc, p.Entra.URL()+"other-tenant/oauth2/v2.0/token", secretForm("good")); code != 400 || !strings.Contains(body["error_description"].(string), "AADSTS90002") {
		t.Fatalf("unknown tenant: %d %v", code, body)
	}
	// Discovery answers with the endpoints MSAL needs.
	resp, err := hc.Get(p.Entra.URL() + p.Entra.Tenant() + "/v2.0/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var disc map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&disc)
	resp.Body.Close()
	if disc["token_endpoint"] != tokenURL(p) || disc["issuer"] != p.Entra.URL()+p.Entra.Tenant()+"/v2.0" {
		t.Fatalf("discovery %v", disc)
	}
}

func rsaCert(t *testing.T) (*rsa.PrivateKey, *x509.Certificate) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "a"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return key, c
}

func assertion(t *testing.T, key *rsa.PrivateKey, cert *x509.Certificate, alg, aud string) string {
	t.Helper()
	hdr := map[string]any{"alg": alg, "typ": "JWT"}
	if alg == "PS256" {
		s := sha256.Sum256(cert.Raw)
		hdr["x5t#S256"] = base64.StdEncoding.EncodeToString(s[:])
	} else {
		s := sha1.Sum(cert.Raw) //nolint:gosec
		hdr["x5t"] = base64.RawURLEncoding.EncodeToString(s[:])
	}
	claims := map[string]any{"aud": aud, "iss": testClient, "sub": testClient, "jti": "x", "nbf": time.Now().Unix(), "exp": time.Now().Add(10 * time.Minute).Unix()}
	h, _ := json.Marshal(hdr)
	c, _ := json.Marshal(claims)
	signing := base64.RawURLEncoding.EncodeToString(h) + "." + base64.RawURLEncoding.EncodeToString(c)
	digest := sha256.Sum256([]byte(signing))
	var sig []byte
	var err error
	if alg == "PS256" {
		sig, err = rsa.SignPSS(rand.Reader, key, crypto.SHA256, digest[:], &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthEqualsHash})
	} else {
		sig, err = rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, digest[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig)
}

func TestTokenEndpointCertificates(t *testing.T) {
	p, hc := start(t)
	key, cert := rsaCert(t)
	otherKey, otherCert := rsaCert(t)
	p.Entra.RegisterApp(App{ClientID: testClient, Certificates: []*x509.Certificate{cert}})
	form := func(a string) url.Values {
		return url.Values{"grant_type": {"client_credentials"}, "client_id": {testClient}, "scope": {"https://graph.microsoft.com/.default"},
			"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}, "client_assertion": {a}}
	}
	for _, alg := range []string{"RS256", "PS256"} {
		if code, body := postForm(t, hc, tokenURL(p), form(assertion(t, key, cert, alg, tokenURL(p)))); code != 200 {
			t.Fatalf("%s: %d %v", alg, code, body)
		}
	}
	cases := map[string]struct {
		a    string
		code string
	}{
		"unregistered cert": {assertion(t, otherKey, otherCert, "PS256", tokenURL(p)), "AADSTS700027"},
		"wrong key":         {assertion(t, otherKey, cert, "PS256", tokenURL(p)), "AADSTS700027"},
		"wrong audience":    {assertion(t, key, cert, "PS256", "https://elsewhere/token"), "AADSTS700021"},
	}
	for name, c := range cases {
		code, body := postForm(t, hc, tokenURL(p), form(c.a))
		if code != 401 || !strings.Contains(body["error_description"].(string), c.code) {
			t.Errorf("%s: %d %v", name, code, body)
		}
	}
}

func graphReq(t *testing.T, hc *http.Client, method, u, token string, body []byte, gz bool) (int, http.Header, map[string]any) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		if gz {
			var b bytes.Buffer
			zw := gzip.NewWriter(&b)
			_, _ = zw.Write(body)
			_ = zw.Close()
			rd = &b
		} else {
			rd = bytes.NewReader(body)
		}
	}
	req, _ := http.NewRequest(method, u, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	if gz {
		req.Header.Set("Content-Encoding", "gzip")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	b, _ := io.ReadAll(resp.Body)
	if len(b) > 0 {
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%s: %v", b, err)
		}
	}
	return resp.StatusCode, resp.Header, m
}

func TestGraphDevices(t *testing.T) {
	p, hc := start(t)
	p.Entra.RegisterApp(App{ClientID: testClient, Secrets: []Secret{{Value: "s"}}, Permissions: []string{PermDeviceReadWriteAll}})
	_, tok := postForm(t, hc, tokenURL(p), secretForm("s"))
	token := tok["access_token"].(string)
	for _, id := range []string{"dev-a", "dev-b", "dev-c"} {
		p.Graph.AddDevice(Device{DeviceID: id, DisplayName: id})
	}
	g := p.Graph.URL()

	code, _, body := graphReq(t, hc, "GET", g+"/devices?"+url.Values{"$filter": {"deviceId in ('dev-a','dev-c')"}, "$select": {"deviceId"}}.Encode(), token, nil, false)
	vals, _ := body["value"].([]any)
	if code != 200 || len(vals) != 2 || vals[1].(map[string]any)["deviceId"] != "dev-c" || vals[0].(map[string]any)["displayName"] != nil {
		t.Fatalf("list: %d %v", code, body)
	}
	code, _, body = graphReq(t, hc, "GET", g+"/devices?%24top=2", token, nil, false)
	if code != 200 || len(body["value"].([]any)) != 2 || body["@odata.nextLink"] == nil {
		t.Fatalf("paging: %d %v", code, body)
	}

	patch := []byte(`{"extensionAttributes":{"extensionAttribute2":"Non-compliant"}}`)
	if code, _, body := graphReq(t, hc, "PATCH", g+"/devices(deviceId='dev-a')", token, patch, true); code != 204 {
		t.Fatalf("gzip patch: %d %v", code, body)
	}
	if v, _ := p.Graph.Attribute("dev-a", 2); v != "Non-compliant" {
		t.Fatalf("attribute %q", v)
	}
	if st := p.Graph.Stats(); st.Gzipped != 1 {
		t.Fatalf("stats %+v", st)
	}
	if code, _, body := graphReq(t, hc, "PATCH", g+"/devices(deviceId='nope')", token, patch, false); code != 404 || body["error"].(map[string]any)["code"] != "Request_ResourceNotFound" {
		t.Fatalf("missing device: %d %v", code, body)
	}
	if code, _, _ := graphReq(t, hc, "PATCH", g+"/devices(deviceId='dev-a')", token, []byte(`{"extensionAttributes":{"extensionAttribute16":"x"}}`), false); code != 400 {
		t.Fatalf("attribute 16 accepted: %d", code)
	}
	if code, _, _ := graphReq(t, hc, "PATCH", g+"/devices(deviceId='dev-a')", token, []byte(`{"isCompliant":true}`), false); code != 403 {
		t.Fatalf("non-MDM app wrote isCompliant: %d", code)
	}

	// $batch: per-item results, faults per item, 20-item limit.
	p.Graph.InjectFault(Fault{Scope: ScopeItem, DeviceID: "dev-b", Status: 429, RetryAfter: "0.5", Times: 1})
	batch := `{"requests":[
	 {"id":"1","method":"PATCH","url":"/devices(deviceId='dev-b')","headers":{"Content-Type":"application/json"},"body":{"extensionAttributes":{"extensionAttribute2":"Compliant"}}},
	 {"id":"2","method":"PATCH","url":"/devices(deviceId='dev-c')","headers":{"Content-Type":"application/json","x-ms-throttle-priority":"Low"},"body":{"extensionAttributes":{"extensionAttribute2":"Compliant"}}},
	 {"id":"3","method":"GET","url":"/devices(deviceId='dev-a')?$select=extensionAttributes"}]}`
	code, _, body = graphReq(t, hc, "POST", g+"/$batch", token, []byte(batch), true)
	if code != 200 {
		t.Fatalf("batch %d %v", code, body)
	}
	rs := body["responses"].([]any)
	r0, r1, r2 := rs[0].(map[string]any), rs[1].(map[string]any), rs[2].(map[string]any)
	if r0["status"] != 429.0 || r0["headers"].(map[string]any)["Retry-After"] != "0.5" || r1["status"] != 204.0 || r2["status"] != 200.0 ||
		r2["body"].(map[string]any)["extensionAttributes"].(map[string]any)["extensionAttribute2"] != "Non-compliant" {
		t.Fatalf("batch responses %v", rs)
	}
	if w := p.Graph.WritesFor("dev-c"); len(w) != 1 || w[0].Priority != "Low" || !w[0].Batched {
		t.Fatalf("writes %+v", w)
	}
	if w := p.Graph.WritesFor("dev-b"); len(w) != 0 {
		t.Fatalf("throttled item written: %+v", w)
	}
	var many []string
	for i := 0; i < 21; i++ {
		many = append(many, fmt.Sprintf(`{"id":"%d","method":"GET","url":"/devices(deviceId='dev-a')"}`, i))
	}
	if code, _, _ := graphReq(t, hc, "POST", g+"/$batch", token, []byte(`{"requests":[`+strings.Join(many, ",")+`]}`), false); code != 400 {
		t.Fatalf("21 batch items accepted: %d", code)
	}

	// Request-level fault, then permission removal, then a bad token.
	p.Graph.InjectFault(Fault{Scope: ScopeRequest, Status: 503, RetryAfter: "1.25", Times: 1})
	if code, h, _ := graphReq(t, hc, "GET", g+"/devices", token, nil, false); code != 503 || h.Get("Retry-After") != "1.25" {
		t.Fatalf("request fault: %d", code)
	}
	if code, _, _ := graphReq(t, hc, "GET", g+"/devices", token, nil, false); code != 200 {
		t.Fatalf("fault did not clear after Times: %d", code)
	}
	p.Entra.SetPermissions(testClient)
	if code, _, body := graphReq(t, hc, "GET", g+"/devices", token, nil, false); code != 403 || body["error"].(map[string]any)["code"] != "Authorization_RequestDenied" {
		t.Fatalf("no permission: %d %v", code, body)
	}
	if code, _, _ := graphReq(t, hc, "GET", g+"/devices", "forged", nil, false); code != 401 {
		t.Fatalf("forged token: %d", code)
	}
}

func TestControlEndpoints(t *testing.T) {
	p, hc := start(t)
	resp, err := hc.Post(p.Graph.Root()+"/_standin/devices", "application/json", strings.NewReader(`[{"deviceId":"x1","extensionAttributes":{"extensionAttribute1":"Compliant"}}]`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("add devices: %v %v", resp, err)
	}
	resp.Body.Close()
	resp, err = hc.Get(p.Graph.Root() + "/_standin/devices")
	if err != nil {
		t.Fatal(err)
	}
	var view struct{ Devices []Device }
	_ = json.NewDecoder(resp.Body).Decode(&view)
	resp.Body.Close()
	if len(view.Devices) != 1 || view.Devices[0].ExtensionAttributes["extensionAttribute1"] != "Compliant" {
		t.Fatalf("view %+v", view)
	}
	resp, err = hc.Post(p.Graph.Root()+"/_standin/faults", "application/json", strings.NewReader(`{"scope":"bogus"}`))
	if err != nil || resp.StatusCode != 400 {
		t.Fatalf("bad fault scope accepted: %v", resp.StatusCode)
	}
	resp.Body.Close()
	resp, err = hc.Post(p.Entra.URL()+"_standin/apps", "application/json", strings.NewReader(`{"clientId":"`+testClient+`","secrets":[{"value":"v"}],"permissions":["Device.ReadWrite.All"]}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("register app: %v", resp.StatusCode)
	}
	resp.Body.Close()
	if code, body := postForm(t, hc, tokenURL(p), secretForm("v")); code != 200 {
		t.Fatalf("token for registered app: %d %v", code, body)
	}
}

func TestGraphAudienceAndRevokeSessions(t *testing.T) {
	p, hc := start(t)
	p.Entra.RegisterApp(App{ClientID: testClient, Secrets: []Secret{{Value: "s"}}, Permissions: []string{PermDeviceReadWriteAll}})
	p.Entra.SetResources(append([]string{"https://graph.other.example"}, GraphResources...)...)
	v := secretForm("s")
	v.Set("scope", "https://graph.other.example/.default")
	_, tok := postForm(t, hc, tokenURL(p), v)
	if code, _, body := graphReq(t, hc, "GET", p.Graph.URL()+"/devices", tok["access_token"].(string), nil, false); code != 401 {
		t.Fatalf("token for another resource accepted: %d %v", code, body)
	}
	_, tok = postForm(t, hc, tokenURL(p), secretForm("s"))
	token := tok["access_token"].(string)
	u := p.Graph.AddUser(DirectoryUser{UserPrincipalName: "ada@example.com"})
	revoke := p.Graph.URL() + "/users/" + url.PathEscape(u.UserPrincipalName) + "/revokeSignInSessions"
	if code, _, _ := graphReq(t, hc, "POST", revoke, token, nil, false); code != 403 {
		t.Fatalf("revoke without User.RevokeSessions.All: %d", code)
	}
	p.Entra.SetPermissions(testClient, PermDeviceReadWriteAll, PermUserRevokeSessionsAll)
	if code, _, body := graphReq(t, hc, "POST", p.Graph.URL()+"/users/nobody@example.com/revokeSignInSessions", token, nil, false); code != 404 {
		t.Fatalf("unknown user: %d %v", code, body)
	}
	if code, _, body := graphReq(t, hc, "POST", revoke, token, nil, false); code != 200 || body["value"] != true {
		t.Fatalf("revoke: %d %v", code, body)
	}
	if code, _, _ := graphReq(t, hc, "POST", p.Graph.URL()+"/users/"+u.ID+"/revokeSignInSessions", token, nil, false); code != 200 {
		t.Fatalf("revoke by object id: %d", code)
	}
	if r := p.Graph.Revocations(); len(r) != 2 || r[0].UserID != u.ID || r[0].ClientID != testClient {
		t.Fatalf("revocations %+v", r)
	}
	p.Graph.RejectToken(token)
	if code, _, body := graphReq(t, hc, "GET", p.Graph.URL()+"/devices", token, nil, false); code != 401 {
		t.Fatalf("rejected token accepted: %d %v", code, body)
	}
}
