package standin

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html/template"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// User is an account that can sign in on the stand-in's authorize page.
type User struct {
	UPN      string
	Password string
	// ObjectID is the user's oid (default: derived from the UPN).
	ObjectID string
	Name     string
}

// Authorization records one completed sign-in (for tests to check what the
// client sent).
type Authorization struct {
	ClientID, RedirectURI, Scope, State, Nonce string
	CodeChallenge, CodeChallengeMethod         string
	UPN                                        string
}

// oidcState is the user-facing part of the Entra stand-in: the v2.0
// authorize endpoint (a sign-in form), the authorization-code grant with
// PKCE on the token endpoint, and the signing keys of the ID tokens.
type oidcState struct {
	once   sync.Once
	key    *rsa.PrivateKey
	kid    string
	keyErr error

	mu        sync.Mutex
	users     map[string]User
	redirects map[string][]string
	codes     map[string]authCode
	done      []Authorization
}

type authCode struct {
	Authorization
	user    User
	expires time.Time
}

func (o *oidcState) init() error {
	o.once.Do(func() {
		o.key, o.keyErr = rsa.GenerateKey(rand.Reader, 2048)
		if o.keyErr == nil {
			sum := sha256.Sum256(o.key.N.Bytes())
			o.kid = base64.RawURLEncoding.EncodeToString(sum[:12])
		}
		o.users, o.redirects, o.codes = map[string]User{}, map[string][]string{}, map[string]authCode{}
	})
	return o.keyErr
}

// AddUser registers a user who can sign in.
func (e *Entra) AddUser(u User) error {
	if err := e.oidc.init(); err != nil {
		return err
	}
	if u.ObjectID == "" {
		s := sha256.Sum256([]byte(strings.ToLower(u.UPN)))
		b := s[:16]
		u.ObjectID = fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
	}
	e.oidc.mu.Lock()
	defer e.oidc.mu.Unlock()
	e.oidc.users[strings.ToLower(u.UPN)] = u
	return nil
}

// AddRedirectURI registers a redirect URI (exact match, as Entra requires)
// for an app's web platform.
func (e *Entra) AddRedirectURI(clientID, uri string) error {
	if err := e.oidc.init(); err != nil {
		return err
	}
	e.oidc.mu.Lock()
	defer e.oidc.mu.Unlock()
	e.oidc.redirects[clientID] = append(e.oidc.redirects[clientID], uri)
	return nil
}

// Authorizations lists completed sign-ins.
func (e *Entra) Authorizations() []Authorization {
	if e.oidc.init() != nil {
		return nil
	}
	e.oidc.mu.Lock()
	defer e.oidc.mu.Unlock()
	return append([]Authorization(nil), e.oidc.done...)
}

// Issuer is the v2.0 issuer of the stand-in tenant.
func (e *Entra) Issuer() string { return e.srv.URL + "/" + e.tenant + "/v2.0" }

// serveOIDC handles the OpenID Connect endpoints; false leaves the request
// to the other routes (client-credentials token requests among them).
func (e *Entra) serveOIDC(w http.ResponseWriter, r *http.Request) bool {
	parts := strings.Split(strings.Trim(r.URL.Path, "/"), "/")
	switch {
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "authorize" && parts[0] == e.tenant:
		if r.Method != http.MethodGet && r.Method != http.MethodPost {
			return false
		}
		e.serveAuthorize(w, r)
		return true
	case len(parts) == 4 && parts[1] == "discovery" && parts[2] == "v2.0" && parts[3] == "keys" && r.Method == http.MethodGet:
		e.serveKeys(w)
		return true
	case len(parts) == 4 && parts[1] == "oauth2" && parts[2] == "v2.0" && parts[3] == "token" && r.Method == http.MethodPost && parts[0] == e.tenant:
		if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "authorization_code" {
			return false
		}
		e.serveCodeToken(w, r)
		return true
	}
	return false
}

func (e *Entra) serveKeys(w http.ResponseWriter) {
	if err := e.oidc.init(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	pub := e.oidc.key.PublicKey
	writeJSON(w, http.StatusOK, map[string]any{"keys": []map[string]any{{
		"kty": "RSA", "use": "sig", "kid": e.oidc.kid, "alg": "RS256",
		"n":      base64.RawURLEncoding.EncodeToString(pub.N.Bytes()),
		"e":      base64.RawURLEncoding.EncodeToString(big.NewInt(int64(pub.E)).Bytes()),
		"issuer": e.Issuer(),
	}}})
}

var signInPage = template.Must(template.New("signin").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign in to your account</title></head>
<body><h1>Sign in</h1>
{{with .Error}}<p id="error">{{.}}</p>{{end}}
<form method="post" id="signin-form">
{{range $k, $v := .Params}}<input type="hidden" name="{{$k}}" value="{{$v}}">{{end}}
<label>Email <input type="email" name="login" id="login" value="{{.Login}}"></label>
<label>Password <input type="password" name="passwd" id="passwd"></label>
<button type="submit" id="idSIButton9">Sign in</button>
</form></body></html>`))

// serveAuthorize checks the request like Entra (registered redirect URI,
// response type, openid scope, PKCE method) and shows a sign-in form; the
// posted form signs the user in and redirects with a single-use code.
func (e *Entra) serveAuthorize(w http.ResponseWriter, r *http.Request) {
	if err := e.oidc.init(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	f := r.Form
	clientID, redirect := f.Get("client_id"), f.Get("redirect_uri")
	if _, ok := e.app(clientID); !ok {
		e.authorizeError(w, 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, e.tenant))
		return
	}
	e.oidc.mu.Lock()
	allowed := false
	for _, u := range e.oidc.redirects[clientID] {
		allowed = allowed || u == redirect
	}
	e.oidc.mu.Unlock()
	if !allowed {
		// Never redirect to an unregistered URI: show the error instead.
		e.authorizeError(w, 50011, fmt.Sprintf("The redirect URI '%s' specified in the request does not match the redirect URIs configured for the application '%s'.", redirect, clientID))
		return
	}
	back := func(kind, desc string) {
		q := url.Values{"error": {kind}, "error_description": {desc}}
		if s := f.Get("state"); s != "" {
			q.Set("state", s)
		}
		http.Redirect(w, r, redirect+"?"+q.Encode(), http.StatusFound)
	}
	if f.Get("response_type") != "code" {
		back("unsupported_response_type", "AADSTS700054: response_type '"+f.Get("response_type")+"' is not enabled for the application.")
		return
	}
	if !strings.Contains(" "+f.Get("scope")+" ", " openid ") {
		back("invalid_scope", "AADSTS70011: The provided request must include a 'openid' scope.")
		return
	}
	method := f.Get("code_challenge_method")
	if f.Get("code_challenge") != "" && method != "S256" && method != "plain" && method != "" {
		back("invalid_request", "AADSTS501491: Invalid code_challenge_method.")
		return
	}
	params := map[string]string{}
	for _, k := range []string{"client_id", "redirect_uri", "response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method", "response_mode"} {
		if v := f.Get(k); v != "" {
			params[k] = v
		}
	}
	if r.Method == http.MethodGet {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = signInPage.Execute(w, map[string]any{"Params": params, "Login": f.Get("login_hint")})
		return
	}
	login := strings.ToLower(strings.TrimSpace(r.PostForm.Get("login")))
	e.oidc.mu.Lock()
	user, ok := e.oidc.users[login]
	e.oidc.mu.Unlock()
	if !ok || subtle.ConstantTimeCompare([]byte(user.Password), []byte(r.PostForm.Get("passwd"))) != 1 {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.WriteHeader(http.StatusOK)
		_ = signInPage.Execute(w, map[string]any{"Params": params, "Login": login,
			"Error": "AADSTS50126: Error validating credentials due to invalid username or password."})
		return
	}
	if method == "" && params["code_challenge"] != "" {
		method = "plain"
	}
	code := randomToken()
	ac := authCode{Authorization: Authorization{ClientID: clientID, RedirectURI: redirect, Scope: params["scope"], State: params["state"],
		Nonce: params["nonce"], CodeChallenge: params["code_challenge"], CodeChallengeMethod: method, UPN: user.UPN},
		user: user, expires: e.now().Add(10 * time.Minute)}
	e.oidc.mu.Lock()
	e.oidc.codes[code] = ac
	e.oidc.mu.Unlock()
	q := url.Values{"code": {code}, "session_state": {randomUUID()}}
	if s := params["state"]; s != "" {
		q.Set("state", s)
	}
	http.Redirect(w, r, redirect+"?"+q.Encode(), http.StatusFound)
}

func (e *Entra) authorizeError(w http.ResponseWriter, code int, desc string) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusBadRequest)
	_, _ = fmt.Fprintf(w, "<!doctype html><title>Sign in</title><p id=\"error\">AADSTS%d: %s</p>", code, template.HTMLEscapeString(desc))
}

func randomToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// serveCodeToken redeems an authorization code: the client authenticates
// with its secret (form or basic), the code is single use, bound to the
// client and redirect URI, and the PKCE verifier must match the challenge.
func (e *Entra) serveCodeToken(w http.ResponseWriter, r *http.Request) {
	if err := e.oidc.init(); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	f := r.PostForm
	clientID, secret := f.Get("client_id"), f.Get("client_secret")
	if id, sec, ok := r.BasicAuth(); ok {
		id, _ = url.QueryUnescape(id)
		sec, _ = url.QueryUnescape(sec)
		clientID, secret = id, sec
	}
	rec := TokenRequest{ClientID: clientID, Method: "secret", Scope: f.Get("scope"), At: e.now()}
	fail := func(status int, kind string, code int, desc string) {
		rec.Error = code
		e.mu.Lock()
		e.requests = append(e.requests, rec)
		e.mu.Unlock()
		e.aadError(w, status, kind, code, desc)
	}
	app, ok := e.app(clientID)
	if !ok {
		fail(http.StatusBadRequest, "unauthorized_client", 700016, fmt.Sprintf("Application with identifier '%s' was not found in the directory '%s'.", clientID, e.tenant))
		return
	}
	matched := false
	for _, s := range app.Secrets {
		if subtle.ConstantTimeCompare([]byte(s.Value), []byte(secret)) == 1 && (s.Expires.IsZero() || e.now().Before(s.Expires)) {
			matched = true
		}
	}
	if !matched {
		fail(http.StatusUnauthorized, "invalid_client", 7000215, fmt.Sprintf("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '%s'.", clientID))
		return
	}
	code := f.Get("code")
	e.oidc.mu.Lock()
	ac, ok := e.oidc.codes[code]
	delete(e.oidc.codes, code) // single use, even when the request fails below
	e.oidc.mu.Unlock()
	if !ok || e.now().After(ac.expires) {
		fail(http.StatusBadRequest, "invalid_grant", 70008, "The provided authorization code or refresh token has expired due to inactivity. Send a new interactive authorization request for this user and resource.")
		return
	}
	if ac.ClientID != clientID {
		fail(http.StatusBadRequest, "invalid_grant", 70000, "The provided value for the 'code' parameter is not valid. The code was issued to a different client.")
		return
	}
	if f.Get("redirect_uri") != ac.RedirectURI {
		fail(http.StatusBadRequest, "invalid_grant", 500112, "The reply address does not match the reply address provided when requesting the authorization code.")
		return
	}
	if ac.CodeChallenge != "" {
		v := f.Get("code_verifier")
		want := v
		if ac.CodeChallengeMethod == "S256" {
			sum := sha256.Sum256([]byte(v))
			want = base64.RawURLEncoding.EncodeToString(sum[:])
		}
		if v == "" || subtle.ConstantTimeCompare([]byte(want), []byte(ac.CodeChallenge)) != 1 {
			fail(http.StatusBadRequest, "invalid_grant", 501481, "The Code_Verifier does not match the code_challenge supplied in the authorization request.")
			return
		}
	}
	now := e.now()
	claims := map[string]any{
		"aud": clientID, "iss": e.Issuer(), "iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"sub": ac.user.ObjectID, "oid": ac.user.ObjectID, "tid": e.tenant, "ver": "2.0",
		"preferred_username": ac.user.UPN, "name": ac.user.Name,
	}
	if ac.Nonce != "" {
		claims["nonce"] = ac.Nonce
	}
	idt, err := e.signIDToken(claims)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	e.mu.Lock()
	e.requests = append(e.requests, rec)
	e.mu.Unlock()
	e.oidc.mu.Lock()
	e.oidc.done = append(e.oidc.done, ac.Authorization)
	e.oidc.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"token_type": "Bearer", "scope": ac.Scope, "expires_in": 3599, "ext_expires_in": 3599,
		"access_token": randomToken(), "id_token": idt,
	})
}

func (e *Entra) signIDToken(claims map[string]any) (string, error) {
	hdr, _ := json.Marshal(map[string]string{"typ": "JWT", "alg": "RS256", "kid": e.oidc.kid})
	body, err := json.Marshal(claims)
	if err != nil {
		return "", err
	}
	signing := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(body)
	h := sha256.Sum256([]byte(signing))
	sig, err := rsa.SignPKCS1v15(rand.Reader, e.oidc.key, crypto.SHA256, h[:])
	if err != nil {
		return "", err
	}
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}
