package server_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/osquerytest"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/portal"
	"github.com/posture-dev/posture/hub/server"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/sync/graph/standin"
)

const (
	portalClient = "11111111-2222-3333-4444-555555555555"
	portalSecret = "portal-app-secret"
	portalUser   = "ada@contoso.example"
	portalPass   = "correct horse"
)

// maliciousResolution must render as plain instructions: none of its
// script, handler or javascript: link may survive or run.
const maliciousResolution = "Turn on **FileVault**: open *System Settings* → Privacy & Security.\n\n" +
	"<script>window.__pwned = 'script'</script>\n\n" +
	"<img src=x onerror=\"window.__pwned = 'onerror'\">\n\n" +
	"[Open settings](javascript:window.__pwned='link')\n"

func findChromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("CI") != "" || os.Getenv("POSTURE_REQUIRE_CHROMIUM") != "" {
		t.Fatal("chromium is not installed (apt-get install -y chromium)")
	}
	t.Skip("chromium is not installed (apt-get install -y chromium)")
	return ""
}

// artifactDir keeps screenshots after the test: $POSTURE_TEST_ARTIFACTS or
// a directory under the system temp dir, logged.
func artifactDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("POSTURE_TEST_ARTIFACTS")
	if base == "" {
		base = filepath.Join(os.TempDir(), "posture-test-artifacts")
	}
	dir := filepath.Join(base, strings.ReplaceAll(t.Name(), "/", "_"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

// newBrowser starts Debian's headless chromium with a fresh profile.
func newBrowser(t *testing.T, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	bin := findChromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Flag("headless", true),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(412, 915), // a phone
	}
	opts = append(opts, extra...)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelB(); cancelA() })
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

func do(t *testing.T, ctx context.Context, what string, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("browser: %s: %v", what, err)
	}
}

func pageText(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("browser: text of %s: %v", sel, err)
	}
	return v
}

func pageAttr(t *testing.T, ctx context.Context, sel, name string) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), name))
	if err != nil {
		t.Fatalf("browser: %s of %s: %v", name, sel, err)
	}
	return v.Value
}

func pageEval[T any](t *testing.T, ctx context.Context, expr string, opts ...chromedp.EvaluateOption) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		t.Fatalf("browser: eval %s: %v", expr, err)
	}
	return v
}

func pageURL(t *testing.T, ctx context.Context) string {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func screenshot(t *testing.T, ctx context.Context, dir, name string) {
	t.Helper()
	buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Errorf("screenshot %s: %v", name, err)
		return
	}
	if err := os.WriteFile(filepath.Join(dir, name), buf, 0o644); err != nil {
		t.Error(err)
	}
}

type portalEnv struct {
	hp      *hubProc
	base    string
	entra   *standin.Entra
	idpCA   []byte
	oq      *osquerytest.Server
	hostID  string
	adminc  posturev1.AdminServiceClient
	actx    context.Context
	token   string // admin bearer
	dataDir string
}

// startPortalEnv runs a hub with the portal and Entra sign-in against the
// stand-in, and one real posture.ext on an osqueryd stand-in whose disk is
// not encrypted. Policies run once an hour, so only Recheck re-runs them.
func startPortalEnv(t *testing.T, ctx context.Context) *portalEnv {
	t.Helper()
	extBin := buildExtension(t)
	work, err := os.MkdirTemp("", "pportal")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(work) })
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	pair, err := standin.Start(standin.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pair.Close)
	addr := freeAddr(t)
	base := "http://" + addr
	pair.Entra.RegisterApp(standin.App{ClientID: portalClient, Secrets: []standin.Secret{{Value: portalSecret}}})
	if err := pair.Entra.AddRedirectURI(portalClient, base+"/portal/callback"); err != nil {
		t.Fatal(err)
	}
	if err := pair.Entra.AddUser(standin.User{UPN: portalUser, Password: portalPass, Name: "Ada"}); err != nil {
		t.Fatal(err)
	}
	if err := pair.Entra.AddUser(standin.User{UPN: "bob@contoso.example", Password: "pw", Name: "Bob"}); err != nil {
		t.Fatal(err)
	}
	dataDir := filepath.Join(work, "hub")
	hp := startHub(t, server.Config{
		DataDir: dataDir, GRPCAddr: "127.0.0.1:0", HTTPAddr: addr,
		PolicyInterval: time.Hour, PolicyPoll: 100 * time.Millisecond, DuePoll: 100 * time.Millisecond, Logger: logger,
		Portal: server.PortalConfig{
			OrgName: "Contoso", SupportURL: "https://help.contoso.example/", PublicURL: base,
			OIDCIssuer: pair.Entra.Issuer(), OIDCClientID: portalClient, OIDCClientSecret: portalSecret,
			OIDCHTTPClient:   &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pair.CA.Pool()}}},
			RecheckPerDevice: portal.Limit{Burst: 20, Every: time.Second},
		},
	})
	caPEM := hp.hub.CA.CertPEM()
	caFile := filepath.Join(work, "hub-ca.pem")
	if err := os.WriteFile(caFile, caPEM, 0o644); err != nil {
		t.Fatal(err)
	}
	nt, _ := admin.NewAPIToken("portal", store.RoleAdmin, time.Now(), nil)
	if err := hp.hub.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		t.Fatal(err)
	}
	adminc := posturev1.NewAdminServiceClient(dialHub(t, hp.cfg.GRPCAddr, caPEM, nil))
	actx := withToken(ctx, nt.Plain)
	if _, err := adminc.ApplyPolicies(actx, &posturev1.ApplyPoliciesRequest{
		Policies: []*posturev1.Policy{{Id: "disk-encrypted", Name: "FileVault on", Severity: "high", Platforms: []string{"darwin"},
			ConditionalAccess: true, Resolution: maliciousResolution,
			Query: "SELECT 1 FROM disk_encryption WHERE name = '/dev/disk3s1' AND encrypted = 1"}},
		Facts: []*posturev1.FactQuery{{Name: "user_principal_name", Query: "SELECT '" + portalUser + "'"}},
	}); err != nil {
		t.Fatal(err)
	}
	sec, err := adminc.CreateEnrollSecret(actx, &posturev1.CreateEnrollSecretRequest{})
	if err != nil {
		t.Fatal(err)
	}
	secretFile := filepath.Join(work, "secret")
	if err := os.WriteFile(secretFile, []byte(sec.GetSecret()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	oq, err := osquerytest.Start(ctx, osquerytest.Options{Platform: "darwin", SocketPath: filepath.Join(work, "osq.em"), Hostname: "ada-mac"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { oq.Close() })
	if err := oq.Exec(ctx, "UPDATE disk_encryption SET encrypted = 0"); err != nil {
		t.Fatal(err)
	}
	ext := startExtension(t, extBin, "--socket", oq.SocketPath(), "--timeout", "10", "--hub", hp.cfg.GRPCAddr,
		"--hub-ca", caFile, "--enroll-secret-path", secretFile, "--state-dir", filepath.Join(work, "ext"), "--no-table")
	env := &portalEnv{hp: hp, base: base, entra: pair.Entra, idpCA: pair.CA.CertPEM(), oq: oq, adminc: adminc, actx: actx, token: nt.Plain, dataDir: dataDir}
	eventually(t, "the host to be non-compliant with its user known", 60*time.Second, func() (bool, string) {
		hs, err := adminc.ListHosts(actx, &posturev1.ListHostsRequest{})
		if err != nil || len(hs.GetHosts()) != 1 {
			return false, fmt.Sprint(hs.GetHosts(), err, ext.log.String())
		}
		h := hs.GetHosts()[0]
		env.hostID = h.GetId()
		return h.GetVerdict().GetState() == "NONCOMPLIANT" && h.GetUserPrincipalName() == portalUser, fmt.Sprint(h.GetVerdict(), h.GetUserPrincipalName())
	})
	return env
}

func TestPortalRemediateInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs posture.ext and chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	browser := newBrowser(t)
	env := startPortalEnv(t, ctx)
	shots := artifactDir(t)
	link, _ := env.hp.hub.Portal.RemediationURL(env.hostID)
	if !strings.HasPrefix(link, env.base+"/remediate?") {
		t.Fatalf("remediation link %q", link)
	}

	bctx, cancelB := context.WithTimeout(browser, 2*time.Minute)
	defer cancelB()
	do(t, bctx, "open the link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#policy-disk-encrypted")))
	state := pageAttr(t, bctx, "#state", "data-state")
	resolution := pageText(t, bctx, "#policy-disk-encrypted .resolution")
	bad := pageEval[int](t, bctx, `document.querySelectorAll('.resolution script, .resolution img, [onerror], a[href^="javascript"]').length`)
	pwned := pageEval[string](t, bctx, `String(window.__pwned)`)
	screenshot(t, bctx, shots, "1-remediate-failing.png")
	if state != "NONCOMPLIANT" || !strings.Contains(resolution, "FileVault") || !strings.Contains(resolution, "Open settings") {
		t.Fatalf("page shows state %q, resolution %q", state, resolution)
	}
	if bad != 0 || pwned != "undefined" {
		t.Fatalf("malicious resolution survived: %d dangerous nodes, __pwned=%s", bad, pwned)
	}
	// Even a click on the neutralised link runs nothing.
	// The javascript: link is reduced to its text; clicking that text (or
	// any link the resolution has) runs nothing.
	if n := pageEval[int](t, bctx, `Array.from(document.querySelectorAll('.resolution a')).filter(a => !/^(https?|mailto):/.test(a.getAttribute('href') || 'x:')).length`); n != 0 {
		t.Fatalf("%d resolution links with a non-http target", n)
	}
	pageEval[bool](t, bctx, `(() => { for (const el of document.querySelectorAll('.resolution a, .resolution p')) { el.click(); } return true; })()`)
	pwned = pageEval[string](t, bctx, `String(window.__pwned)`)
	if pwned != "undefined" {
		t.Fatalf("clicking the resolution link ran script: %s", pwned)
	}

	// The user fixes the device and presses Check again: the page turns
	// compliant by itself.
	if err := env.oq.Exec(ctx, "UPDATE disk_encryption SET encrypted = 1"); err != nil {
		t.Fatal(err)
	}
	do(t, bctx, "press Check again and see the page turn compliant",
		chromedp.Navigate(link),
		chromedp.WaitVisible(chromedp.CSS("#recheck")),
		chromedp.Click(chromedp.CSS("#recheck")),
		chromedp.WaitVisible(chromedp.CSS(`#state[data-state="COMPLIANT"]`)),
		chromedp.WaitVisible(chromedp.CSS("#all-good")),
	)
	screenshot(t, bctx, shots, "2-remediate-compliant.png")

	// Without JavaScript the form posts and redirects back (plain reload).
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	u, _ := url.Parse(link)
	resp, err := noRedirect.PostForm(env.base+"/remediate/recheck", url.Values{"device_id": {env.hostID}, "token": {u.Query().Get("token")}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if loc := resp.Header.Get("Location"); resp.StatusCode != http.StatusSeeOther || !strings.Contains(loc, "rechecked=1") {
		t.Fatalf("no-JS recheck: %d %s", resp.StatusCode, loc)
	}
	// A forged cross-site form post is refused.
	req, _ := http.NewRequest("POST", env.base+"/remediate/recheck", strings.NewReader(url.Values{"device_id": {env.hostID}, "token": {u.Query().Get("token")}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", "https://evil.example")
	resp, err = noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("cross-site recheck: %d, want 403", resp.StatusCode)
	}
	// The page's headers forbid inline script and framing.
	resp, err = http.Get(link)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if c := resp.Header.Get("Content-Security-Policy"); !strings.Contains(c, "script-src 'self'") || strings.Contains(c, "unsafe-inline") {
		t.Fatalf("CSP %q", c)
	}
	if resp.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Fatalf("Referrer-Policy %q", resp.Header.Get("Referrer-Policy"))
	}

	// Tampered, expired and malformed links get a helpful page.
	key, err := portal.LoadKey("", env.dataDir)
	if err != nil {
		t.Fatal(err)
	}
	past, _ := portal.NewSigner(key, func() time.Time { return time.Now().Add(-30 * 24 * time.Hour) })
	expired, _ := past.DeviceLink(env.hostID, time.Hour)
	tok := u.Query().Get("token")
	tampered := tok[:len(tok)-2] + map[bool]string{true: "AA", false: "BB"}[!strings.HasSuffix(tok, "AA")]
	for _, c := range []struct{ name, url, title string }{
		{"tampered", env.base + "/remediate?device_id=" + env.hostID + "&token=" + tampered, "This link does not work"},
		{"expired", env.base + "/remediate?device_id=" + env.hostID + "&token=" + url.QueryEscape(expired), "This link has expired"},
		{"other-device", env.base + "/remediate?device_id=00000000-0000-4000-8000-000000000001&token=" + url.QueryEscape(tok), "This link does not work"},
		{"malformed", env.base + "/remediate?device_id=%3Cscript%3Ealert(1)%3C/script%3E", "This link is not complete"},
	} {
		do(t, bctx, c.name, chromedp.Navigate(c.url))
		title := pageText(t, bctx, "#message h1")
		if title != c.title {
			t.Errorf("%s link: page says %q, want %q", c.name, title, c.title)
		}
		screenshot(t, bctx, shots, "3-"+c.name+"-link.png")
	}
}

// The path Microsoft's buttons take: no device id, Entra sign-in, the
// user's devices, one opened. Also what the JSON API lets through.
func TestPortalSignInInBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("runs posture.ext and chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	env := startPortalEnv(t, ctx)
	browser := newBrowser(t, trustCA(t, env.idpCA))
	shots := artifactDir(t)
	bctx, cancelB := context.WithTimeout(browser, 2*time.Minute)
	defer cancelB()

	// A raw device id alone does not open the page: it asks for sign-in.
	do(t, bctx, "open a bare device id", chromedp.Navigate(env.base+"/remediate?device_id="+env.hostID), chromedp.WaitVisible(chromedp.CSS("#login")))
	loc := pageURL(t, bctx)
	if !strings.Contains(loc, "/oauth2/v2.0/authorize") {
		t.Fatalf("a bare device id went to %s, want the sign-in page", loc)
	}

	do(t, bctx, "open /remediate with no device", chromedp.Navigate(env.base+"/remediate"), chromedp.WaitVisible(chromedp.CSS("#login")))
	loc = pageURL(t, bctx)
	do(t, bctx, "sign in",
		chromedp.SendKeys(chromedp.CSS("#login"), portalUser),
		chromedp.SendKeys(chromedp.CSS("#passwd"), portalPass),
		chromedp.Click(chromedp.CSS("#idSIButton9")),
		chromedp.WaitVisible(chromedp.CSS("#devices")),
	)
	devices := pageText(t, bctx, "#devices")
	screenshot(t, bctx, shots, "1-my-devices.png")
	if !strings.Contains(devices, "ada-mac") {
		t.Fatalf("devices page lists %q", devices)
	}
	auth := env.entra.Authorizations()
	if len(auth) != 1 || auth[0].CodeChallengeMethod != "S256" || auth[0].Nonce == "" || len(auth[0].State) < 20 || auth[0].UPN != portalUser {
		t.Fatalf("sign-in request: %+v", auth)
	}
	au, _ := url.Parse(loc)
	if au.Query().Get("code_challenge") == "" || au.Query().Get("nonce") == "" || au.Query().Get("state") == "" {
		t.Fatalf("authorize URL lacks PKCE/nonce/state: %s", loc)
	}
	do(t, bctx, "open the device", chromedp.Click(chromedp.CSS("#devices a")), chromedp.WaitVisible(chromedp.CSS("#state")))
	state := pageAttr(t, bctx, "#state", "data-state")
	host := pageText(t, bctx, "#device h1")
	screenshot(t, bctx, shots, "2-device-opened.png")
	if host != "ada-mac" || state != "NONCOMPLIANT" {
		t.Fatalf("opened device %q in state %q", host, state)
	}
	// The enroll page: the hub knows the device, it has no Entra
	// registration yet, and the macOS steps are shown.
	do(t, bctx, "open /enroll for the device", chromedp.Navigate(env.base+"/enroll?device_id="+env.hostID), chromedp.WaitVisible(chromedp.CSS("#steps-darwin")))
	if known := pageText(t, bctx, "#known"); !strings.Contains(known, "ada-mac") || !strings.Contains(known, "not yet registered") {
		t.Fatalf("enroll page says %q", known)
	}
	if n := pageEval[int](t, bctx, `document.querySelectorAll('#steps-windows, #steps-linux').length`); n != 0 {
		t.Fatalf("enroll page for a Mac shows %d other platforms' steps", n)
	}
	screenshot(t, bctx, shots, "3-enroll.png")
	// The session works for the JSON API (the page's script uses it).
	apiState := pageEval[string](t, bctx, `fetch('/api/v1/portal/devices/`+env.hostID+`').then(r => r.json()).then(d => d.state)`, chromedp.EvalAwaitPromise)
	if apiState != "NONCOMPLIANT" {
		t.Fatalf("JSON API with session: state %q", apiState)
	}

	// JSON API without a link or session, or with the admin token: refused.
	for name, hdr := range map[string]string{"nothing": "", "admin bearer": "Bearer " + env.token} {
		req, _ := http.NewRequest("GET", env.base+"/api/v1/portal/devices/"+env.hostID, nil)
		if hdr != "" {
			req.Header.Set("Authorization", hdr)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(b), "ada-mac") {
			t.Errorf("JSON API with %s: %d %s", name, resp.StatusCode, b)
		}
	}

	// Another user signed in sees neither the device nor that it exists.
	jar, _ := cookiejar.New(nil)
	bob := signInHTTP(t, env, jar, "bob@contoso.example", "pw")
	resp, err := bob.Get(env.base + "/api/v1/portal/devices/" + env.hostID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound || strings.Contains(string(b), "ada-mac") {
		t.Fatalf("another user's device: %d %s", resp.StatusCode, b)
	}
	resp, err = bob.Get(env.base + "/api/v1/portal/me/devices")
	if err != nil {
		t.Fatal(err)
	}
	var mine struct {
		User    string            `json:"user"`
		Devices []json.RawMessage `json:"devices"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&mine)
	resp.Body.Close()
	if mine.User != "bob@contoso.example" || len(mine.Devices) != 0 {
		t.Fatalf("bob's devices: %+v", mine)
	}

	// A callback whose state does not match the sign-in cookie is refused.
	jar2, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar2, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err = c.Get(env.base + "/portal/signin?next=/remediate")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = c.Get(env.base + "/portal/callback?code=whatever&state=forged")
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(b), "Sign-in did not complete") {
		t.Fatalf("forged state: %d %s", resp.StatusCode, b)
	}
	if n := len(env.entra.Authorizations()); n != 2 {
		t.Fatalf("%d completed sign-ins, want 2 (ada, bob)", n)
	}
}

// trustCA makes chromium accept certificates chained to the stand-in's CA
// (and nothing else it would otherwise refuse), by the CA key's SPKI hash.
func trustCA(t *testing.T, caPEM []byte) chromedp.ExecAllocatorOption {
	t.Helper()
	blk, _ := pem.Decode(caPEM)
	if blk == nil {
		t.Fatal("stand-in CA PEM")
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return chromedp.Flag("ignore-certificate-errors-spki-list", base64.StdEncoding.EncodeToString(sum[:]))
}

// signInHTTP walks the sign-in with a plain HTTP client (form post on the
// stand-in's page) and returns a client holding the session cookie.
func signInHTTP(t *testing.T, env *portalEnv, jar http.CookieJar, user, pass string) *http.Client {
	t.Helper()
	tr := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec // the stand-in's test CA
	c := &http.Client{Jar: jar, Transport: tr}
	resp, err := c.Get(env.base + "/portal/signin?next=/remediate")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	authorize := resp.Request.URL
	form := url.Values{}
	for k, v := range authorize.Query() {
		form.Set(k, v[0])
	}
	form.Set("login", user)
	form.Set("passwd", pass)
	resp, err = c.PostForm(authorize.Scheme+"://"+authorize.Host+authorize.Path, form)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Host != strings.TrimPrefix(env.base, "http://") {
		t.Fatalf("sign-in as %s ended at %d %s", user, resp.StatusCode, resp.Request.URL)
	}
	return c
}
