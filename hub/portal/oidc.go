package portal

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// OIDCConfig is the Entra app the hub signs users in with (a confidential
// client: the code is exchanged with the client secret, plus PKCE).
type OIDCConfig struct {
	// Issuer, e.g. https://login.microsoftonline.com/<tenant>/v2.0.
	Issuer       string
	ClientID     string
	ClientSecret string
	// HTTPClient reaches the issuer (e.g. trusting a private CA); nil = default.
	HTTPClient *http.Client
}

// Enabled reports whether sign-in is configured.
func (c OIDCConfig) Enabled() bool { return c.Issuer != "" && c.ClientID != "" && c.ClientSecret != "" }

const (
	signinCookie = "posture_signin"
	signinTTL    = 10 * time.Minute
	sessionTTL   = 8 * time.Hour
	callbackPath = "/portal/callback"
)

// oidcClient discovers the provider on first use (so the hub starts while
// the identity provider is unreachable) and caches it.
type oidcClient struct {
	cfg OIDCConfig

	mu       sync.Mutex
	provider *oidc.Provider
}

func (c *oidcClient) ctx(ctx context.Context) context.Context {
	if c.cfg.HTTPClient != nil {
		return oidc.ClientContext(ctx, c.cfg.HTTPClient)
	}
	return ctx
}

func (c *oidcClient) get(ctx context.Context) (*oidc.Provider, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.provider != nil {
		return c.provider, nil
	}
	p, err := oidc.NewProvider(c.ctx(ctx), c.cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("discover %s: %w", c.cfg.Issuer, err)
	}
	c.provider = p
	return p, nil
}

func (c *oidcClient) oauth(p *oidc.Provider, redirect string) *oauth2.Config {
	return &oauth2.Config{
		ClientID: c.cfg.ClientID, ClientSecret: c.cfg.ClientSecret, Endpoint: p.Endpoint(),
		RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "profile", "email"},
	}
}

func randomString() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// safeNext keeps the post-sign-in redirect on the portal's own pages.
func safeNext(next string) string {
	if (strings.HasPrefix(next, "/remediate") || strings.HasPrefix(next, "/enroll")) &&
		!strings.ContainsAny(next, "\\\r\n") {
		return next
	}
	return "/remediate"
}

// signin starts the authorization code flow with PKCE, state and nonce,
// which the callback checks against a signed, short-lived cookie.
func (p *Pages) signin(w http.ResponseWriter, r *http.Request, _ map[string]string) {
	if p.oidc == nil {
		p.message(w, r, http.StatusNotFound, msgNoSignIn)
		return
	}
	prov, err := p.oidc.get(r.Context())
	if err != nil {
		p.log.Warn("portal sign-in: discovery", "err", err)
		p.message(w, r, http.StatusBadGateway, msgIdPDown)
		return
	}
	state, nonce, verifier := randomString(), randomString(), oauth2.GenerateVerifier()
	next := safeNext(r.URL.Query().Get("next"))
	val, _ := p.signer.Sign(kindSignIn, strings.Join([]string{state, nonce, verifier, next}, " "), signinTTL)
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: val, Path: callbackPath, MaxAge: int(signinTTL / time.Second),
		HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode})
	u := p.oidc.oauth(prov, p.callbackURL(r)).AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier))
	http.Redirect(w, r, u, http.StatusFound)
}

var errSignIn = errors.New("sign-in failed")

// callback checks state, exchanges the code (with the PKCE verifier and the
// client secret), verifies the ID token (signature, issuer, audience,
// expiry) and its nonce, and starts a session for the user.
func (p *Pages) callback(w http.ResponseWriter, r *http.Request, _ map[string]string) {
	if p.oidc == nil {
		p.message(w, r, http.StatusNotFound, msgNoSignIn)
		return
	}
	user, next, err := p.finishSignIn(r)
	// The sign-in cookie is single use, whatever happened.
	http.SetCookie(w, &http.Cookie{Name: signinCookie, Value: "", Path: callbackPath, MaxAge: -1, HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode})
	if err != nil {
		p.log.Warn("portal sign-in refused", "source", p.opts.Proxies.FromRequest(r), "err", err)
		p.message(w, r, http.StatusBadRequest, msgSignInFailed)
		return
	}
	val, _ := p.signer.Sign(kindSession, user, sessionTTL)
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: val, Path: "/", MaxAge: int(sessionTTL / time.Second),
		HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode})
	p.log.Info("portal sign-in", "user", user, "source", p.opts.Proxies.FromRequest(r))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (p *Pages) finishSignIn(r *http.Request) (string, string, error) {
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		return "", "", fmt.Errorf("%w: identity provider said %s: %s", errSignIn, e, q.Get("error_description"))
	}
	c, err := r.Cookie(signinCookie)
	if err != nil {
		return "", "", fmt.Errorf("%w: no sign-in cookie (expired, or another browser)", errSignIn)
	}
	raw, _, err := p.signer.Verify(kindSignIn, c.Value)
	if err != nil {
		return "", "", fmt.Errorf("%w: sign-in cookie: %w", errSignIn, err)
	}
	parts := strings.Split(raw, " ")
	if len(parts) != 4 {
		return "", "", fmt.Errorf("%w: sign-in cookie malformed", errSignIn)
	}
	state, nonce, verifier, next := parts[0], parts[1], parts[2], parts[3]
	if subtle.ConstantTimeCompare([]byte(q.Get("state")), []byte(state)) != 1 {
		return "", "", fmt.Errorf("%w: state does not match", errSignIn)
	}
	prov, err := p.oidc.get(r.Context())
	if err != nil {
		return "", "", err
	}
	ctx := p.oidc.ctx(r.Context())
	tok, err := p.oidc.oauth(prov, p.callbackURL(r)).Exchange(ctx, q.Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return "", "", fmt.Errorf("%w: code exchange: %w", errSignIn, err)
	}
	rawID, ok := tok.Extra("id_token").(string)
	if !ok || rawID == "" {
		return "", "", fmt.Errorf("%w: no id_token in the token response", errSignIn)
	}
	idt, err := prov.Verifier(&oidc.Config{ClientID: p.oidc.cfg.ClientID}).Verify(ctx, rawID)
	if err != nil {
		return "", "", fmt.Errorf("%w: id token: %w", errSignIn, err)
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(nonce)) != 1 {
		return "", "", fmt.Errorf("%w: nonce does not match", errSignIn)
	}
	var claims struct {
		PreferredUsername string `json:"preferred_username"`
		UPN               string `json:"upn"`
	}
	if err := idt.Claims(&claims); err != nil {
		return "", "", fmt.Errorf("%w: claims: %w", errSignIn, err)
	}
	user := claims.PreferredUsername
	if user == "" {
		user = claims.UPN
	}
	if user == "" {
		return "", "", fmt.Errorf("%w: the token names no user (preferred_username/upn)", errSignIn)
	}
	return user, next, nil
}

func (p *Pages) signout(w http.ResponseWriter, r *http.Request, _ map[string]string) {
	if !p.sameOrigin(r) {
		p.message(w, r, http.StatusForbidden, msgBadOrigin)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: SessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: p.secure, SameSite: http.SameSiteLaxMode})
	p.message(w, r, http.StatusOK, msgSignedOut)
}
