package standin

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1" //nolint:gosec // x5t is defined as a SHA-1 thumbprint
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"time"
)

// Permission names the stand-in understands (Graph application roles).
const (
	PermDeviceReadWriteAll = "Device.ReadWrite.All"
	PermDeviceReadAll      = "Device.Read.All"
)

// Secret is a client secret registered on an App.
type Secret struct {
	Value string
	// Expires is when Entra stops accepting the secret (zero: never).
	Expires time.Time
}

// App is an application registration in the stand-in tenant.
type App struct {
	ClientID string
	Secrets  []Secret
	// Certificates whose keys may sign client assertions.
	Certificates []*x509.Certificate
	// Permissions are the application roles granted and consented.
	Permissions []string
	// MDM marks an approved MDM app, the only kind Graph lets write
	// isCompliant / isManaged.
	MDM bool
}

// TokenRequest records one call to the token endpoint.
type TokenRequest struct {
	ClientID string
	Method   string // "secret" or "certificate"
	Scope    string
	// Error is the AADSTS code returned, 0 when a token was issued.
	Error int
	At    time.Time
}

// Entra is the Microsoft Entra ID stand-in: OpenID discovery and the v2.0
// token endpoint (client credentials with a secret or a certificate
// assertion), answering errors with Entra's AADSTS bodies.
type Entra struct {
	srv    *httptest.Server
	tenant string
	log    *slog.Logger
	now    func() time.Time

	mu       sync.Mutex
	apps     map[string]*App
	tokens   map[string]issuedToken
	requests []TokenRequest
	unknown  []string
	tokenKey []byte
	paths    []string
	// resources are the resource identifiers (without /.default) a token
	// may be issued for; like Entra, anything else is AADSTS500011.
	resources []string
	oidc      oidcState // sign-in endpoints (oidc.go)
}

type issuedToken struct {
	clientID string
	audience string // the resource the token was issued for
	expires  time.Time
}

// GraphResources are the Microsoft Graph (and Intune API) resource identifiers of the
// national clouds (and Graph's application id), the only resources the
// stand-in issues tokens for unless told otherwise (SetResources).
var GraphResources = []string{
	"https://graph.microsoft.com",
	"https://graph.microsoft.us",
	"https://dod-graph.microsoft.us",
	"https://microsoftgraph.chinacloudapi.cn",
	"00000003-0000-0000-c000-000000000000",
	// The Intune API (the compliance-partner stand-in's resource).
	"https://api.manage.microsoft.com/",
	"https://api.manage.microsoft.us/",
	"https://api.manage.microsoft.cn/",
}

// NewEntra starts an Entra stand-in for tenant on a loopback HTTPS listener
// whose certificate is issued by ca. Use addr "" for a random port.
func NewEntra(ca *CA, tenant, addr string, log *slog.Logger) (*Entra, error) {
	if tenant == "" {
		return nil, errors.New("standin: tenant id is required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	e := &Entra{tenant: tenant, log: log, now: time.Now, apps: map[string]*App{}, tokens: map[string]issuedToken{}, tokenKey: make([]byte, 32),
		resources: append([]string(nil), GraphResources...)}
	if _, err := rand.Read(e.tokenKey); err != nil {
		return nil, fmt.Errorf("standin: %w", err)
	}
	srv, err := startTLS(ca, addr, http.HandlerFunc(e.serve), log)
	if err != nil {
		return nil, err
	}
	e.srv = srv
	return e, nil
}

// URL is the authority host URL (e.g. https://127.0.0.1:41234/), the value
// of a custom cloud's authority host.
func (e *Entra) URL() string { return e.srv.URL + "/" }

// Tenant is the tenant id the stand-in serves.
func (e *Entra) Tenant() string { return e.tenant }

// Close stops the server.
func (e *Entra) Close() { e.srv.Close() }

// RegisterApp adds or replaces an application registration.
func (e *Entra) RegisterApp(app App) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a := app
	a.Secrets = append([]Secret(nil), app.Secrets...)
	a.Certificates = append([]*x509.Certificate(nil), app.Certificates...)
	a.Permissions = append([]string(nil), app.Permissions...)
	e.apps[app.ClientID] = &a
}

// SetPermissions replaces the roles granted to an app; already issued tokens
// see the change at once (the Graph stand-in checks roles per request).
func (e *Entra) SetPermissions(clientID string, perms ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if a, ok := e.apps[clientID]; ok {
		a.Permissions = append([]string(nil), perms...)
	}
}

// SetResources replaces the resource identifiers tokens are issued for.
func (e *Entra) SetResources(resources ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.resources = append([]string(nil), resources...)
}

// knownResource reports whether res (a scope without /.default) names a
// resource of the tenant. Entra ignores a trailing slash.
func (e *Entra) knownResource(res string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, r := range e.resources {
		if strings.EqualFold(strings.TrimRight(r, "/"), strings.TrimRight(res, "/")) {
			return true
		}
	}
	return false
}

// RevokeTokens forgets every issued access token.
func (e *Entra) RevokeTokens() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.tokens = map[string]issuedToken{}
}

// TokenRequests returns every token request seen so far.
func (e *Entra) TokenRequests() []TokenRequest {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]TokenRequest(nil), e.requests...)
}

// UnknownPaths lists requests the stand-in had no route for (useful when a
// client library starts calling a new discovery endpoint).
func (e *Entra) UnknownPaths() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.unknown...)
}

// Paths lists every request seen ("METHOD /path"), e.g. to check that a
// client with instance discovery disabled never asks /common/discovery/instance.
func (e *Entra) Paths() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.paths...)
}

// app returns a copy of a registration.
func (e *Entra) app(clientID string) (App, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.apps[clientID]
	if !ok {
		return App{}, false
	}
	cp := *a
	cp.Secrets = append([]Secret(nil), a.Secrets...)
	cp.Certificates = append([]*x509.Certificate(nil), a.Certificates...)
	return cp, true
}

// authorize resolves a bearer token issued for audience to the app's
// current registration.
func (e *Entra) authorize(token, audience string) (*App, bool) {
	return e.authorizeFor(token, func(aud string) bool {
		return strings.EqualFold(strings.TrimRight(aud, "/"), strings.TrimRight(audience, "/"))
	})
}

// authorizeAny resolves a bearer token whatever its audience (the caller
// checks it).
func (e *Entra) authorizeAny(token string) (*App, bool) {
	return e.authorizeFor(token, func(string) bool { return true })
}

func (e *Entra) authorizeFor(token string, audOK func(string) bool) (*App, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tokens[token]
	if !ok || e.now().After(t.expires) || !audOK(t.audience) {
		return nil, false
	}
	a, ok := e.apps[t.clientID]
	if !ok {
		return nil, false
	}
	cp := *a
	cp.Permissions = append([]string(nil), a.Permissions...)
	return &cp, true
}

func (e *Entra) serve(w http.ResponseWriter, r *http.Request) {
	e.mu.Lock()
	e.paths = append(e.paths, r.Method+" "+r.URL.Path)
	e.mu.Unlock()
	if e.serveOIDC(w, r) {
		return
	}
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 4 && parts[1] == "v2.0" && parts[2] == ".well-known" && parts[3] == "openid-configuration" && r.Method == http.MethodGet:
		e.serveDiscovery(w, parts[0])
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token" && r.Method == http.MethodPost:
		e.serveToken(w, r, parts[0])
	case r.URL.Path == "/_standin/apps" && r.Method == http.MethodPost:
		e.serveRegister(w, r)
	case r.URL.Path == "/common/discovery/instance" && r.Method == http.MethodGet:
		// Only reached when a client forgot DisableInstanceDiscovery; answer
		// like Entra so such a client still works against the stand-in.
		tenantDisc := e.srv.URL + "/" + e.tenant + "/v2.0/.well-known/openid-configuration"
		writeJSON(w, http.StatusOK, map[string]any{
			"tenant_discovery_endpoint": tenantDisc,
			"api-version":               "1.1",
			"metadata":                  []map[string]any{{"preferred_network": hostOf(e.srv.URL), "preferred_cache": hostOf(e.srv.URL), "aliases": []string{hostOf(e.srv.URL)}}},
		})
	default:
		e.mu.Lock()
		e.unknown = append(e.unknown, r.Method+" "+r.URL.Path)
		e.mu.Unlock()
		e.log.Warn("entra stand-in: unknown path", "method", r.Method, "path", r.URL.Path)
		http.NotFound(w, r)
	}
}

func hostOf(u string) string {
	return strings.TrimPrefix(strings.TrimPrefix(u, "https://"), "http://")
}

func (e *Entra) serveDiscovery(w http.ResponseWriter, tenant string) {
	if tenant != e.tenant && tenant != "organizations" && tenant != "common" {
		e.aadError(w, http.StatusBadRequest, "invalid_tenant", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	base := e.srv.URL + "/" + e.tenant
	writeJSON(w, http.StatusOK, map[string]any{
		"token_endpoint":                        base + "/oauth2/v2.0/token",
		"token_endpoint_auth_methods_supported": []string{"client_secret_post", "private_key_jwt", "client_secret_basic"},
		"jwks_uri":                              base + "/discovery/v2.0/keys",
		"response_modes_supported":              []string{"query", "fragment", "form_post"},
		"subject_types_supported":               []string{"pairwise"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"response_types_supported":              []string{"code", "id_token", "code id_token", "id_token token"},
		"scopes_supported":                      []string{"openid", "profile", "email", "offline_access"},
		"issuer":                                base + "/v2.0",
		"request_uri_parameter_supported":       false,
		"authorization_endpoint":                base + "/oauth2/v2.0/authorize",
		"device_authorization_endpoint":         base + "/oauth2/v2.0/devicecode",
		"end_session_endpoint":                  base + "/oauth2/v2.0/logout",
		"tenant_region_scope":                   "NA",
		"cloud_instance_name":                   "microsoftonline.com",
	})
}

func (e *Entra) serveToken(w http.ResponseWriter, r *http.Request, tenant string) {
	if err := r.ParseForm(); err != nil {
		e.aadError(w, http.StatusBadRequest, "invalid_request", 900144, "The request body must contain the following parameter: 'grant_type'.")
		return
	}
	clientID := r.PostForm.Get("client_id")
	rec := TokenRequest{ClientID: clientID, Scope: r.PostForm.Get("scope"), At: e.now()}
	fail := func(status int, kind string, code int, desc string) {
		rec.Error = code
		e.mu.Lock()
		e.requests = append(e.requests, rec)
		e.mu.Unlock()
		e.aadError(w, status, kind, code, desc)
	}
	if tenant != e.tenant {
		fail(http.StatusBadRequest, "invalid_request", 90002,
			fmt.Sprintf("Tenant '%s' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud.", tenant))
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		fail(http.StatusBadRequest, "unsupported_grant_type", 70003, fmt.Sprintf("The app requested an unsupported grant type '%s'.", gt))
		return
	}
	// MSAL adds the OIDC scopes (openid profile offline_access) to the
	// resource's /.default scope; Entra ignores them for client credentials.
	resource := ""
	for _, sc := range strings.Fields(rec.Scope) {
		if strings.HasSuffix(sc, "/.default") {
			resource = sc
		}
	}
	if resource == "" {
		fail(http.StatusBadRequest, "invalid_scope", 1002012,
			fmt.Sprintf("The provided value for scope %s is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", rec.Scope))
		return
	}
	if res := strings.TrimSuffix(resource, "/.default"); !e.knownResource(res) {
		fail(http.StatusBadRequest, "invalid_resource", 500011,
			fmt.Sprintf("The resource principal named %s was not found in the tenant named %s. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You might have sent your authentication request to the wrong tenant.", res, e.tenant))
		return
	}
	e.mu.Lock()
	app, ok := e.apps[clientID]
	var appCopy App
	if ok {
		appCopy = *app
	}
	e.mu.Unlock()
	if !ok {
		fail(http.StatusBadRequest, "unauthorized_client", 700016,
			fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.", clientID, e.tenant))
		return
	}
	now := e.now()
	switch {
	case r.PostForm.Get("client_secret") != "":
		rec.Method = "secret"
		given := r.PostForm.Get("client_secret")
		matched := false
		for _, s := range appCopy.Secrets {
			if subtle.ConstantTimeCompare([]byte(s.Value), []byte(given)) == 1 {
				matched = true
				if !s.Expires.IsZero() && now.After(s.Expires) {
					fail(http.StatusUnauthorized, "invalid_client", 7000222,
						fmt.Sprintf("The provided client secret keys for app '%s' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds.", clientID))
					return
				}
			}
		}
		if !matched {
			fail(http.StatusUnauthorized, "invalid_client", 7000215,
				fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
			return
		}
	case r.PostForm.Get("client_assertion") != "":
		rec.Method = "certificate"
		if t := r.PostForm.Get("client_assertion_type"); t != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" {
			fail(http.StatusBadRequest, "invalid_request", 50027, fmt.Sprintf("Invalid client_assertion_type '%s'.", t))
			return
		}
		endpoint := e.srv.URL + "/" + e.tenant + "/oauth2/v2.0/token"
		if code, desc := checkAssertion(r.PostForm.Get("client_assertion"), clientID, endpoint, appCopy.Certificates, now); code != 0 {
			fail(http.StatusUnauthorized, "invalid_client", code, desc)
			return
		}
	default:
		fail(http.StatusUnauthorized, "invalid_client", 7000218,
			"The request body must contain the following parameter: 'client_assertion' or 'client_secret'.")
		return
	}
	aud := strings.TrimSuffix(resource, "/.default")
	tok := e.accessToken(clientID, aud, appCopy.Permissions, now)
	e.mu.Lock()
	e.tokens[tok] = issuedToken{clientID: clientID, audience: aud, expires: now.Add(time.Hour)}
	e.requests = append(e.requests, rec)
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type":     "Bearer",
		"expires_in":     3599,
		"ext_expires_in": 3599,
		"access_token":   tok,
	})
}

// checkAssertion verifies a client assertion JWT the way Entra does: the
// header's thumbprint names a registered certificate, the signature verifies
// with its key, and aud/iss/sub/exp/nbf are right. It returns an AADSTS code
// and description, or 0.
func checkAssertion(assertion, clientID, endpoint string, certs []*x509.Certificate, now time.Time) (int, string) {
	segs := strings.Split(assertion, ".")
	if len(segs) != 3 {
		return 700025, "Client is public so neither 'client_assertion' nor 'client_secret' should be presented."
	}
	var hdr struct {
		Alg     string `json:"alg"`
		X5t     string `json:"x5t"`
		X5tS256 string `json:"x5t#S256"`
	}
	var claims struct {
		Aud any         `json:"aud"`
		Iss string      `json:"iss"`
		Sub string      `json:"sub"`
		Exp json.Number `json:"exp"`
		Nbf json.Number `json:"nbf"`
		Jti string      `json:"jti"`
	}
	if err := decodeSegment(segs[0], &hdr); err != nil {
		return 50012, "Client assertion header could not be parsed."
	}
	if err := decodeSegment(segs[1], &claims); err != nil {
		return 50012, "Client assertion payload could not be parsed."
	}
	var cert *x509.Certificate
	for _, c := range certs {
		s1 := sha1.Sum(c.Raw) //nolint:gosec
		s256 := sha256.Sum256(c.Raw)
		if (hdr.X5t != "" && thumbprintEqual(hdr.X5t, s1[:])) || (hdr.X5tS256 != "" && thumbprintEqual(hdr.X5tS256, s256[:])) {
			cert = c
			break
		}
	}
	if cert == nil {
		return 700027, fmt.Sprintf("The certificate with identifier used to sign the client assertion is not registered on application. [Reason - The key was not found., Thumbprint of key used by client: '%s']", strings.ToUpper(hex.EncodeToString(thumbBytes(hdr.X5t, hdr.X5tS256))))
	}
	sig, err := base64.RawURLEncoding.DecodeString(segs[2])
	if err != nil {
		return 700027, "Client assertion contains an invalid signature. [Reason - The signature could not be decoded.]"
	}
	if err := verifySignature(hdr.Alg, cert.PublicKey, []byte(segs[0]+"."+segs[1]), sig); err != nil {
		return 700027, fmt.Sprintf("Client assertion contains an invalid signature. [Reason - %v.]", err)
	}
	if now.After(cert.NotAfter) || now.Before(cert.NotBefore) {
		return 700027, "Client assertion contains an invalid signature. [Reason - The key used is expired.]"
	}
	if !audienceMatches(claims.Aud, endpoint) {
		return 700021, fmt.Sprintf("Client assertion audience claim does not match Realm issuer. Expected '%s'.", endpoint)
	}
	if claims.Iss != clientID || claims.Sub != clientID {
		return 700023, "Client assertion issuer and subject must both be the client id."
	}
	exp, errExp := claims.Exp.Int64()
	if errExp != nil || now.After(time.Unix(exp, 0).Add(5*time.Minute)) {
		return 700024, "Client assertion is not within its valid time range."
	}
	if nbf, err := claims.Nbf.Int64(); err == nil && now.Add(5*time.Minute).Before(time.Unix(nbf, 0)) {
		return 700024, "Client assertion is not within its valid time range."
	}
	return 0, ""
}

func audienceMatches(aud any, endpoint string) bool {
	switch v := aud.(type) {
	case string:
		return v == endpoint
	case []any:
		for _, a := range v {
			if s, ok := a.(string); ok && s == endpoint {
				return true
			}
		}
	}
	return false
}

func thumbBytes(x5t, x5tS256 string) []byte {
	for _, s := range []string{x5tS256, x5t} {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding} {
			if b, err := enc.DecodeString(s); err == nil && s != "" {
				return b
			}
		}
	}
	return nil
}

// thumbprintEqual accepts the standard or URL-safe base64 forms (MSAL uses
// standard, the JOSE spec says URL-safe).
func thumbprintEqual(enc string, want []byte) bool {
	for _, e := range []*base64.Encoding{base64.StdEncoding, base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding} {
		if b, err := e.DecodeString(enc); err == nil && subtle.ConstantTimeCompare(b, want) == 1 {
			return true
		}
	}
	return false
}

func verifySignature(alg string, pub any, signed, sig []byte) error {
	switch alg {
	case "RS256", "PS256":
		k, ok := pub.(*rsa.PublicKey)
		if !ok {
			return fmt.Errorf("algorithm %s does not match the certificate key", alg)
		}
		h := sha256.Sum256(signed)
		if alg == "RS256" {
			return rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig)
		}
		return rsa.VerifyPSS(k, crypto.SHA256, h[:], sig, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
	case "ES256":
		k, ok := pub.(*ecdsa.PublicKey)
		if !ok || len(sig) != 64 {
			return fmt.Errorf("algorithm %s does not match the certificate key", alg)
		}
		h := sha256.Sum256(signed)
		if !ecdsa.Verify(k, h[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
			return errors.New("signature does not verify")
		}
		return nil
	default:
		return fmt.Errorf("unsupported algorithm %q", alg)
	}
}

func decodeSegment(seg string, v any) error {
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	d := json.NewDecoder(strings.NewReader(string(b)))
	d.UseNumber()
	return d.Decode(v)
}

// aadError writes an error body shaped like Entra's.
func (e *Entra) aadError(w http.ResponseWriter, status int, kind string, code int, desc string) {
	trace, corr := randomUUID(), randomUUID()
	ts := e.now().UTC().Format("2006-01-02 15:04:05Z")
	writeJSON(w, status, map[string]any{
		"error":             kind,
		"error_description": fmt.Sprintf("AADSTS%d: %s Trace ID: %s Correlation ID: %s Timestamp: %s", code, desc, trace, corr, ts),
		"error_codes":       []int{code},
		"timestamp":         ts,
		"trace_id":          trace,
		"correlation_id":    corr,
		"error_uri":         e.srv.URL + "/error?code=" + fmt.Sprint(code),
	})
}

// accessToken mints a JWT-shaped token carrying the claims clients look at
// (aud, tid, appid, roles). Its signature is an HMAC under a per-process
// key: only the Graph stand-in consumes it, by lookup.
func (e *Entra) accessToken(clientID, aud string, roles []string, now time.Time) string {
	hdr, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "HS256"})
	claims := map[string]any{
		"aud": aud, "iss": e.srv.URL + "/" + e.tenant + "/v2.0", "tid": e.tenant,
		"appid": clientID, "azp": clientID, "sub": clientID, "oid": clientID,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(), "uti": randomUUID(),
	}
	if len(roles) > 0 {
		claims["roles"] = roles
	}
	body, _ := json.Marshal(claims)
	signing := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	mac := hmac.New(sha256.New, e.tokenKey)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func randomUUID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// AppSpec is the JSON form of an App for the control endpoint
// POST /_standin/apps (and the msstandin command).
type AppSpec struct {
	ClientID string `json:"clientId"`
	Secrets  []struct {
		Value   string    `json:"value"`
		Expires time.Time `json:"expires,omitempty"`
	} `json:"secrets,omitempty"`
	// CertificatesPEM holds the public certificates allowed to sign assertions.
	CertificatesPEM string   `json:"certificatesPem,omitempty"`
	Permissions     []string `json:"permissions"`
	MDM             bool     `json:"mdm,omitempty"`
}

// App converts the spec, parsing its certificates.
func (s AppSpec) App() (App, error) {
	if s.ClientID == "" {
		return App{}, errors.New("standin: clientId is required")
	}
	a := App{ClientID: s.ClientID, Permissions: s.Permissions, MDM: s.MDM}
	for _, sec := range s.Secrets {
		a.Secrets = append(a.Secrets, Secret{Value: sec.Value, Expires: sec.Expires})
	}
	rest := []byte(s.CertificatesPEM)
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return App{}, fmt.Errorf("standin: certificate: %w", err)
		}
		a.Certificates = append(a.Certificates, c)
	}
	return a, nil
}

func (e *Entra) serveRegister(w http.ResponseWriter, r *http.Request) {
	var spec AppSpec
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&spec); err != nil {
		http.Error(w, "body must be a JSON app: "+err.Error(), http.StatusBadRequest)
		return
	}
	app, err := spec.App()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	e.RegisterApp(app)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true})
}
