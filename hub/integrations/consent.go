package integrations

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// ConsentCallbackPath is where Entra sends the admin back after the admin
// consent prompt; it lives on the hub's public URL.
const ConsentCallbackPath = "/integrations/consent/callback"

// ConsentTTL bounds how long an admin consent link can be used.
const ConsentTTL = 30 * time.Minute

// Health values the consent flow records.
const (
	HealthConsentGranted = "consent_granted"
	HealthConsentRefused = "consent_refused"
)

var authorities = map[string]string{
	"public": "https://login.microsoftonline.com/", "usgov": "https://login.microsoftonline.us/",
	"usgov-dod": "https://login.microsoftonline.us/", "china": "https://login.chinacloudapi.cn/",
}

// consentState is sealed into the state parameter: tamper-proof, bound to
// one integration and tenant, and expiring, so no server-side storage is
// needed and another replica can check it.
type consentState struct {
	ID      string `json:"i"`
	Tenant  string `json:"t"`
	Expires int64  `json:"e"`
	Nonce   string `json:"n"`
}

var consentAAD = []byte("posture admin consent state")

// ConsentURL builds the admin consent link of an integration: the tenant's
// admin grants the app's permissions there, and Entra redirects to
// publicURL + ConsentCallbackPath.
func (r *Registry) ConsentURL(ctx context.Context, id, publicURL string) (link, redirect string, expires time.Time, err error) {
	in, err := r.st.GetIntegration(ctx, id)
	if err != nil {
		return "", "", time.Time{}, err
	}
	if in.Kind == KindWebhook {
		return "", "", time.Time{}, errors.New("a webhook integration has no Entra app to consent to")
	}
	pu, err := url.Parse(publicURL)
	if publicURL == "" || err != nil || pu.Scheme != "https" || pu.Host == "" {
		return "", "", time.Time{}, errors.New("the hub needs its public https URL (--public-url) to receive the consent redirect")
	}
	authority := authorities[in.Cloud]
	if in.Cloud == "custom" {
		authority = in.AuthorityHost
	}
	if authority == "" {
		return "", "", time.Time{}, fmt.Errorf("integration %s: no authority for cloud %q", id, in.Cloud)
	}
	nonce := make([]byte, 16)
	if _, err := rand.Read(nonce); err != nil {
		return "", "", time.Time{}, err
	}
	expires = r.now().Add(ConsentTTL)
	raw, _ := json.Marshal(consentState{ID: in.ID, Tenant: strings.ToLower(in.TenantID), Expires: expires.Unix(), Nonce: hex.EncodeToString(nonce)})
	state, err := r.keys.Seal(raw, consentAAD)
	if err != nil {
		return "", "", time.Time{}, err
	}
	redirect = strings.TrimRight(publicURL, "/") + ConsentCallbackPath
	q := url.Values{"client_id": {in.ClientID}, "state": {state}, "redirect_uri": {redirect}}
	link = strings.TrimRight(authority, "/") + "/" + url.PathEscape(in.TenantID) + "/adminconsent?" + q.Encode()
	return link, redirect, expires, nil
}

// ConsentOutcome is what a consent redirect said.
type ConsentOutcome struct {
	IntegrationID string
	Granted       bool
	// Message is Microsoft's error and description on a refusal.
	Message string
}

// HandleConsent checks a consent redirect's state and records the outcome
// as the integration's health (a refusal with Microsoft's error text).
func (r *Registry) HandleConsent(ctx context.Context, q url.Values) (ConsentOutcome, error) {
	raw, err := r.keys.Open(q.Get("state"), consentAAD)
	if err != nil {
		return ConsentOutcome{}, errors.New("the state parameter is not one this hub issued")
	}
	var st consentState
	if err := json.Unmarshal(raw, &st); err != nil {
		return ConsentOutcome{}, errors.New("the state parameter is malformed")
	}
	if r.now().Unix() > st.Expires {
		return ConsentOutcome{}, errors.New("the consent link expired: ask for a new one")
	}
	in, err := r.st.GetIntegration(ctx, st.ID)
	if err != nil {
		return ConsentOutcome{}, fmt.Errorf("integration %s: %w", st.ID, err)
	}
	if !strings.EqualFold(in.TenantID, st.Tenant) {
		return ConsentOutcome{}, errors.New("the integration's tenant changed since the link was made")
	}
	out := ConsentOutcome{IntegrationID: in.ID}
	if e := q.Get("error"); e != "" {
		out.Message = strings.TrimSpace(e + ": " + q.Get("error_description"))
		if len(out.Message) > 1024 {
			out.Message = out.Message[:1024]
		}
		err = r.st.SetIntegrationHealth(ctx, in.ID, HealthConsentRefused, "admin consent refused: "+out.Message, r.now())
		return out, err
	}
	// Entra answers admin_consent=True and the tenant that consented.
	if !strings.EqualFold(q.Get("admin_consent"), "true") {
		return ConsentOutcome{}, errors.New("the redirect says neither consent nor an error")
	}
	if t := q.Get("tenant"); t != "" && !strings.EqualFold(t, in.TenantID) {
		return ConsentOutcome{}, fmt.Errorf("consent came from tenant %s, not the integration's %s", t, in.TenantID)
	}
	out.Granted = true
	err = r.st.SetIntegrationHealth(ctx, in.ID, HealthConsentGranted, "admin consent granted; run the connection test", r.now())
	return out, err
}

var consentPage = template.Must(template.New("consent").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>posture: admin consent</title></head>
<body><h1>{{.Title}}</h1><p>{{.Text}}</p></body></html>
`))

// ConsentHandler serves ConsentCallbackPath.
func (r *Registry) ConsentHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Referrer-Policy", "no-referrer")
		w.Header().Set("Content-Security-Policy", "default-src 'none'")
		out, err := r.HandleConsent(req.Context(), req.URL.Query())
		page := struct{ Title, Text string }{}
		switch {
		case err != nil:
			w.WriteHeader(http.StatusBadRequest)
			page.Title, page.Text = "Consent not recorded", err.Error()
			r.log.Warn("admin consent redirect refused", "err", err)
		case out.Granted:
			page.Title, page.Text = "Consent granted", "The integration may now use its permissions. You can close this page."
			r.log.Info("admin consent granted", "integration", out.IntegrationID)
		default:
			page.Title, page.Text = "Consent refused", "Microsoft said: "+out.Message
			r.log.Warn("admin consent refused", "integration", out.IntegrationID, "error", out.Message)
		}
		_ = consentPage.Execute(w, page)
	})
}
