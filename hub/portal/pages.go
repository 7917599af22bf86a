package portal

import (
	"context"
	"embed"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/clientip"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Options configure the pages.
type Options struct {
	// OrgName is shown in the header ("" = "IT").
	OrgName string
	// SupportURL is where users ask for help (https: or mailto:).
	SupportURL string
	// Logo replaces the default logo (PNG, SVG, JPEG...).
	Logo []byte
	// PublicURL is the portal's external base URL; it decides the sign-in
	// redirect URI and whether cookies are Secure.
	PublicURL string
	OIDC      OIDCConfig
	Logger    *slog.Logger
	// Proxies are the trusted reverse proxies whose X-Forwarded-For names
	// the client (nil: none; the peer is the client).
	Proxies *clientip.Resolver
}

// Pages renders /remediate and /enroll from PortalService answers, fetched
// over the same gRPC connection the JSON gateway uses.
type Pages struct {
	client posturev1.PortalServiceClient
	signer *Signer
	oidc   *oidcClient
	opts   Options
	secure bool
	log    *slog.Logger
	tmpl   map[string]*template.Template
	logo   []byte
	logoCT string
}

// NewPages builds the pages.
func NewPages(client posturev1.PortalServiceClient, signer *Signer, opts Options) (*Pages, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.OrgName == "" {
		opts.OrgName = "IT"
	}
	opts.PublicURL = strings.TrimRight(opts.PublicURL, "/")
	if opts.SupportURL != "" {
		if u, err := url.Parse(opts.SupportURL); err != nil || (u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "mailto") {
			return nil, &url.Error{Op: "portal support URL", URL: opts.SupportURL, Err: errBadScheme}
		}
	}
	p := &Pages{client: client, signer: signer, opts: opts, log: opts.Logger,
		secure: strings.HasPrefix(opts.PublicURL, "https://"), tmpl: map[string]*template.Template{}}
	if opts.OIDC.Enabled() {
		p.oidc = &oidcClient{cfg: opts.OIDC}
	}
	p.logo, p.logoCT = opts.Logo, http.DetectContentType(opts.Logo)
	if len(opts.Logo) == 0 {
		b, err := assetFS.ReadFile("assets/logo.svg")
		if err != nil {
			return nil, err
		}
		p.logo, p.logoCT = b, "image/svg+xml"
	} else if strings.HasPrefix(strings.TrimSpace(string(opts.Logo[:min(len(opts.Logo), 512)])), "<") {
		p.logoCT = "image/svg+xml"
	}
	funcs := template.FuncMap{
		"when":      when,
		"stateWord": stateWord,
		"stateLead": stateLead,
		"lead":      lead,
		"sevWord":   func(s string) string { return strings.ToUpper(s[:min(1, len(s))]) + s[min(1, len(s)):] },
		"platform":  platformWord,
		"html":      func(s string) template.HTML { return template.HTML(s) }, // only for sanitised resolutions
		"lower":     strings.ToLower,
	}
	base, err := template.New("base").Funcs(funcs).ParseFS(templateFS, "templates/layout.html")
	if err != nil {
		return nil, err
	}
	for _, name := range []string{"remediate", "enroll", "devices", "message"} {
		t, err := template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html")
		if err != nil {
			return nil, err
		}
		p.tmpl[name] = t
	}
	return p, nil
}

type schemeError struct{}

func (schemeError) Error() string { return "must be an http(s) or mailto URL" }

var errBadScheme = schemeError{}

// Register adds the pages to the gateway's mux.
func (p *Pages) Register(mux *runtime.ServeMux) error {
	routes := []struct {
		method, path string
		h            runtime.HandlerFunc
	}{
		{"GET", "/remediate", p.remediate},
		{"POST", "/remediate/recheck", p.recheck},
		{"GET", "/enroll", p.enroll},
		{"GET", "/portal/signin", p.signin},
		{"GET", callbackPath, p.callback},
		{"POST", "/portal/signout", p.signout},
		{"GET", "/portal/assets/{name}", p.asset},
	}
	for _, r := range routes {
		if err := mux.HandlePath(r.method, r.path, p.secured(r.h)); err != nil {
			return err
		}
	}
	return nil
}

// csp: scripts, styles and images from the hub only; nothing inline, no
// frames, no plugins, forms post only to the hub.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; " +
	"form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

func (p *Pages) secured(h runtime.HandlerFunc) runtime.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request, params map[string]string) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", csp)
		hd.Set("X-Content-Type-Options", "nosniff")
		// Link tokens ride in the URL: never send it to the sites that
		// resolutions link to.
		hd.Set("Referrer-Policy", "no-referrer")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Cache-Control", "no-store")
		if p.secure {
			hd.Set("Strict-Transport-Security", "max-age=31536000")
		}
		h(w, r, params)
	}
}

func (p *Pages) asset(w http.ResponseWriter, r *http.Request, params map[string]string) {
	name := params["name"]
	w.Header().Set("Cache-Control", "public, max-age=300")
	// Even an SVG logo opened directly must not run script on the hub's origin.
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; sandbox")
	if name == "logo" {
		w.Header().Set("Content-Type", p.logoCT)
		_, _ = w.Write(p.logo)
		return
	}
	sub, _ := fs.Sub(assetFS, "assets")
	b, err := fs.ReadFile(sub, path.Clean(name))
	if err != nil || strings.Contains(name, "/") {
		http.NotFound(w, r)
		return
	}
	switch path.Ext(name) {
	case ".css":
		w.Header().Set("Content-Type", "text/css; charset=utf-8")
	case ".js":
		w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	case ".svg":
		w.Header().Set("Content-Type", "image/svg+xml")
	default:
		http.NotFound(w, r)
		return
	}
	_, _ = w.Write(b)
}

// page is what every template gets.
type page struct {
	Org        string
	SupportURL string
	Title      string
	SignedIn   bool
	SignIn     bool // sign-in is configured
	Refresh    string
	Notice     string
	Msg        message
	Device     *posturev1.PortalDevice
	Token      string
	Blocking   []*posturev1.PortalPolicy
	Other      []*posturev1.PortalPolicy
	Devices    []deviceRow
	User       string
	Platforms  []string
	Print      string // data-fingerprint
	NextPath   string
}

func (p *Pages) render(w http.ResponseWriter, code int, name string, pg page) {
	pg.Org, pg.SupportURL, pg.SignIn = p.opts.OrgName, p.opts.SupportURL, p.oidc != nil
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(code)
	if err := p.tmpl[name].ExecuteTemplate(w, "layout", pg); err != nil {
		p.log.Warn("portal render", "page", name, "err", err)
	}
}

// callCtx forwards the session cookie and the client address to the
// PortalService, which makes every access decision.
func (p *Pages) callCtx(r *http.Request) context.Context {
	md := metadata.MD{}
	if c, err := r.Cookie(SessionCookie); err == nil {
		md.Set("cookie", (&http.Cookie{Name: SessionCookie, Value: c.Value}).String())
	}
	md.Set(clientip.Header, p.opts.Proxies.FromRequest(r))
	return metadata.NewOutgoingContext(r.Context(), md)
}

func (p *Pages) signedIn(r *http.Request) (string, bool) {
	c, err := r.Cookie(SessionCookie)
	if err != nil {
		return "", false
	}
	u, _, err := p.signer.Verify(kindSession, c.Value)
	return u, err == nil && u != ""
}

func (p *Pages) toSignIn(w http.ResponseWriter, r *http.Request, next string) {
	if p.oidc == nil {
		p.message(w, r, http.StatusUnauthorized, msgNeedLink)
		return
	}
	http.Redirect(w, r, "/portal/signin?"+url.Values{"next": {next}}.Encode(), http.StatusFound)
}

// access decides what to do with a device page request before calling the
// service: bad ids, bad or expired links and missing credentials each get
// their own page; it reports whether to go on.
func (p *Pages) access(w http.ResponseWriter, r *http.Request, pagePath string) (id, tok string, ok bool) {
	q := r.URL.Query()
	id, tok = strings.ToLower(strings.TrimSpace(q.Get("device_id"))), q.Get("token")
	if !ValidDeviceID(id) {
		p.message(w, r, http.StatusBadRequest, msgBadID)
		return "", "", false
	}
	if tok != "" {
		if err := p.signer.CheckDeviceLink(tok, id); err != nil {
			m := msgLinkInvalid
			if err == ErrExpired {
				m = msgLinkExpired
			}
			m.Next = pagePath + "?device_id=" + url.QueryEscape(id)
			p.message(w, r, http.StatusUnauthorized, m)
			return "", "", false
		}
		return id, tok, true
	}
	if _, in := p.signedIn(r); !in {
		p.toSignIn(w, r, pagePath+"?device_id="+url.QueryEscape(id))
		return "", "", false
	}
	return id, "", true
}

func (p *Pages) fetch(w http.ResponseWriter, r *http.Request, pagePath, id, tok string) (*posturev1.PortalDevice, bool) {
	d, err := p.client.GetDevice(p.callCtx(r), &posturev1.GetPortalDeviceRequest{DeviceId: id, Token: tok})
	if err == nil {
		return d, true
	}
	switch status.Code(err) {
	case codes.NotFound:
		p.message(w, r, http.StatusNotFound, msgUnknownDevice)
	case codes.Unauthenticated:
		p.toSignIn(w, r, pagePath+"?device_id="+url.QueryEscape(id))
	case codes.InvalidArgument:
		p.message(w, r, http.StatusBadRequest, msgBadID)
	default:
		p.log.Warn("portal device", "err", err)
		p.message(w, r, http.StatusServiceUnavailable, msgUnavailable)
	}
	return nil, false
}

func (p *Pages) remediate(w http.ResponseWriter, r *http.Request, _ map[string]string) {
	if r.URL.Query().Get("device_id") == "" {
		p.myDevices(w, r, "/remediate")
		return
	}
	id, tok, ok := p.access(w, r, "/remediate")
	if !ok {
		return
	}
	d, ok := p.fetch(w, r, "/remediate", id, tok)
	if !ok {
		return
	}
	_, in := p.signedIn(r)
	pg := page{Title: "Device check: " + d.GetHostname(), Device: d, Token: tok, SignedIn: in, Print: Fingerprint(d)}
	for _, pol := range d.GetPolicies() {
		if pol.GetBlocking() {
			pg.Blocking = append(pg.Blocking, pol)
		} else {
			pg.Other = append(pg.Other, pol)
		}
	}
	switch r.URL.Query().Get("rechecked") {
	case "1":
		pg.Notice = "Your device is checking itself again. This page reloads in a few seconds."
		// Without JavaScript, one plain reload shows the result.
		pg.Refresh = "4;url=" + devicePath("/remediate", id, tok)
	case "limited":
		pg.Notice = "A check was requested moments ago. Please wait a little before asking again."
	case "offline":
		pg.Notice = "Your device is not connected to the compliance service right now. Make sure it is on and online, then try again."
	}
	p.render(w, http.StatusOK, "remediate", pg)
}

func devicePath(base, id, tok string) string {
	q := url.Values{"device_id": {id}}
	if tok != "" {
		q.Set("token", tok)
	}
	return base + "?" + q.Encode()
}

// Fingerprint summarises what the remediate page shows, so its script can
// reload exactly when the JSON API says something changed. portal.js builds
// the same string from the JSON.
func Fingerprint(d *posturev1.PortalDevice) string {
	parts := make([]string, 0, len(d.GetPolicies()))
	for _, pol := range d.GetPolicies() {
		b := "0"
		if pol.GetBlocking() {
			b = "1"
		}
		parts = append(parts, pol.GetPolicyId()+":"+pol.GetStatus()+":"+b)
	}
	sort.Strings(parts)
	return d.GetState() + "|" + strings.Join(parts, ",")
}

func (p *Pages) recheck(w http.ResponseWriter, r *http.Request, _ map[string]string) {
	if !p.sameOrigin(r) {
		p.message(w, r, http.StatusForbidden, msgBadOrigin)
		return
	}
	if err := r.ParseForm(); err != nil {
		p.message(w, r, http.StatusBadRequest, msgBadID)
		return
	}
	id, tok := strings.ToLower(r.PostForm.Get("device_id")), r.PostForm.Get("token")
	if !ValidDeviceID(id) {
		p.message(w, r, http.StatusBadRequest, msgBadID)
		return
	}
	res, err := p.client.RecheckDevice(p.callCtx(r), &posturev1.RecheckPortalDeviceRequest{DeviceId: id, Token: tok})
	flag := "1"
	switch {
	case status.Code(err) == codes.ResourceExhausted:
		flag = "limited"
	case status.Code(err) == codes.Unauthenticated:
		p.toSignIn(w, r, devicePath("/remediate", id, ""))
		return
	case status.Code(err) == codes.NotFound:
		p.message(w, r, http.StatusNotFound, msgUnknownDevice)
		return
	case err != nil:
		p.log.Warn("portal recheck", "err", err)
		p.message(w, r, http.StatusServiceUnavailable, msgUnavailable)
		return
	case !res.GetDelivered():
		flag = "offline"
	}
	http.Redirect(w, r, devicePath("/remediate", id, tok)+"&rechecked="+flag, http.StatusSeeOther)
}

// sameOrigin refuses cross-site form posts (the session cookie is
// SameSite=Lax already; this also covers a link token in a forged form).
func (p *Pages) sameOrigin(r *http.Request) bool {
	if sfs := r.Header.Get("Sec-Fetch-Site"); sfs != "" && sfs != "same-origin" && sfs != "none" {
		return false
	}
	o := r.Header.Get("Origin")
	if o == "" {
		return true // not a browser, or one too old to say; SameSite still applies
	}
	u, err := url.Parse(o)
	if err != nil || o == "null" {
		return false
	}
	if p.opts.PublicURL != "" && strings.EqualFold(o, originOf(p.opts.PublicURL)) {
		return true
	}
	return strings.EqualFold(u.Host, r.Host)
}

func originOf(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}

func (p *Pages) callbackURL(r *http.Request) string {
	if p.opts.PublicURL != "" {
		return p.opts.PublicURL + callbackPath
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host + callbackPath
}

func (p *Pages) myDevices(w http.ResponseWriter, r *http.Request, pagePath string) {
	if _, in := p.signedIn(r); !in {
		if pagePath == "/enroll" {
			p.render(w, http.StatusOK, "enroll", page{Title: "Register your device", Platforms: []string{"windows", "darwin", "linux"}, NextPath: pagePath})
			return
		}
		p.toSignIn(w, r, pagePath)
		return
	}
	res, err := p.client.ListMyDevices(p.callCtx(r), &posturev1.ListMyDevicesRequest{})
	if status.Code(err) == codes.Unauthenticated {
		p.toSignIn(w, r, pagePath)
		return
	}
	if err != nil {
		p.log.Warn("portal devices", "err", err)
		p.message(w, r, http.StatusServiceUnavailable, msgUnavailable)
		return
	}
	p.render(w, http.StatusOK, "devices", page{Title: "Your devices", SignedIn: true, User: res.GetUser(), Devices: deviceRows(res.GetDevices()), NextPath: pagePath})
}

func (p *Pages) enroll(w http.ResponseWriter, r *http.Request, _ map[string]string) {
	if r.URL.Query().Get("device_id") == "" {
		p.myDevices(w, r, "/enroll")
		return
	}
	id, tok, ok := p.access(w, r, "/enroll")
	if !ok {
		return
	}
	d, ok := p.fetch(w, r, "/enroll", id, tok)
	if !ok {
		return
	}
	_, in := p.signedIn(r)
	p.render(w, http.StatusOK, "enroll", page{Title: "Register " + d.GetHostname(), Device: d, Token: tok, SignedIn: in,
		Platforms: []string{d.GetPlatform()}, NextPath: "/enroll"})
}

// deviceRow is one line of "Your devices".
type deviceRow struct {
	*posturev1.PortalDeviceSummary
	// Word and Class label the state; Blocked says IT must act (the
	// device itself cannot fix it).
	Word, Class string
	// Note explains a blocked or replaced device in plain words.
	Note string
	// Current is the hostname of the registration that replaced this one.
	Current string
	// Replaces: this is the current registration of a device also listed
	// as an earlier one.
	Replaces bool
	// Link: the device has a page (revoked hosts have none).
	Link bool
}

func deviceRows(ds []*posturev1.PortalDeviceSummary) []deviceRow {
	names := make(map[string]string, len(ds))
	current := map[string]bool{}
	for _, d := range ds {
		names[d.GetDeviceId()] = d.GetHostname()
		if cur := d.GetReplacedBy(); cur != "" {
			current[cur] = true
		}
	}
	rows := make([]deviceRow, 0, len(ds))
	for _, d := range ds {
		r := deviceRow{PortalDeviceSummary: d, Word: stateWord(d.GetState()), Class: "state-" + strings.ToLower(d.GetState()), Link: !d.GetRevoked(), Replaces: current[d.GetDeviceId()]}
		switch {
		case d.GetRevoked():
			r.Word, r.Class = "Blocked", "state-noncompliant"
			r.Note = "Your IT team removed this device from the compliance service, so it cannot open work apps. If you still use it, contact IT."
		case d.GetCause() == "device_conflict":
			r.Word, r.Class = "Blocked: IT review", "state-noncompliant"
			r.Note = "More than one registration claims this device's work account link, so access is blocked until IT reviews it. There is nothing to fix on the device: contact IT."
		case d.GetCause() == "device_revoked":
			r.Word, r.Class = "Blocked", "state-noncompliant"
			r.Note = "This device's work account link belongs to a registration your IT team removed, so access is blocked. Contact IT to get access back."
		}
		if cur := d.GetReplacedBy(); cur != "" {
			r.Current = names[cur]
			if r.Current == "" {
				r.Current = "a newer registration"
			}
		}
		rows = append(rows, r)
	}
	return rows
}

func when(t interface{ AsTime() time.Time }) string {
	if t == nil {
		return ""
	}
	tt := t.AsTime()
	if tt.IsZero() || tt.Unix() == 0 {
		return ""
	}
	return tt.UTC().Format("2 Jan 2006, 15:04 UTC")
}

func stateWord(s string) string {
	switch s {
	case "COMPLIANT":
		return "Meets requirements"
	case "NONCOMPLIANT":
		return "Needs attention"
	case "GRACE":
		return "Fix soon"
	}
	return "Status unknown"
}

func stateLead(s string) string {
	switch s {
	case "COMPLIANT":
		return "Your device meets your organisation's requirements. You can close this page and sign in again."
	case "NONCOMPLIANT":
		return "Your device does not meet your organisation's requirements, so access to work apps is blocked. Follow the steps below, then press Check again."
	case "GRACE":
		return "Your device still has access, but something needs fixing before the date shown below, or access will be blocked."
	}
	return "We have not heard from this device recently. Make sure it is switched on and connected to the internet, then press Check again."
}

// lead is stateLead, except where the device cannot fix its state itself.
func lead(state, cause string) string {
	switch cause {
	case "device_conflict":
		return "More than one registration claims this device's work account link, so access to work apps is blocked until your IT team reviews it. There is nothing to fix on the device: contact IT."
	case "device_revoked":
		return "This device's work account link belongs to a registration your IT team removed, so access to work apps is blocked. Contact IT to get access back."
	}
	return stateLead(state)
}

func platformWord(s string) string {
	switch s {
	case "darwin":
		return "Mac"
	case "windows":
		return "Windows PC"
	case "linux":
		return "Linux computer"
	}
	return "device"
}
