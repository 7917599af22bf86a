package graph

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/microsoftgraph/msgraph-sdk-go/applicationswithappid"
	"github.com/microsoftgraph/msgraph-sdk-go/devices"
)

// ExpiryWarning says the integration's credential expires soon.
type ExpiryWarning struct {
	Credential string // "client secret" or "certificate"
	ExpiresAt  time.Time
	DaysLeft   int
	// Threshold is the warning level crossed: 30, 14, 7, or 0 once expired.
	Threshold int
	Message   string
}

// ExpiryThreshold returns the warning level (30, 14, 7, or 0 = expired)
// reached by a credential expiring at expires, or ok=false when there is
// nothing to warn about yet (or the expiry is unknown).
func ExpiryThreshold(expires, now time.Time) (threshold int, ok bool) {
	if expires.IsZero() {
		return 0, false
	}
	left := expires.Sub(now)
	switch {
	case left <= 0:
		return 0, true
	case left <= 7*24*time.Hour:
		return 7, true
	case left <= 14*24*time.Hour:
		return 14, true
	case left <= 30*24*time.Hour:
		return 30, true
	}
	return 0, false
}

// CredentialExpiry is the credential kind and its expiry (certificate
// NotAfter, or the secret expiry given at setup; zero when unknown).
func (s *Sink) CredentialExpiry() (kind string, expires time.Time) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return s.credKind, s.credExpires
}

// RefreshSecretExpiry reads the app registration (GET
// /applications(appId='…'), needs Application.Read.All) and takes the
// expiry of the client secret in use, recognised by its hint (the first
// three characters, which Entra keeps). It works when the app is registered
// in the integration's own tenant.
func (s *Sink) RefreshSecretExpiry(ctx context.Context) (time.Time, error) {
	if s.credKind != "client secret" {
		return time.Time{}, errors.New("graph: the integration uses a certificate; its expiry is the certificate's NotAfter")
	}
	app, err := applicationswithappid.NewApplicationsWithAppIdRequestBuilderInternal(
		map[string]string{"baseurl": s.adapter.GetBaseUrl()}, s.adapter, &s.cfg.ClientID).Get(WithLowPriority(ctx),
		&applicationswithappid.ApplicationsWithAppIdRequestBuilderGetRequestConfiguration{
			Headers:         s.headers(WithLowPriority(ctx)),
			QueryParameters: &applicationswithappid.ApplicationsWithAppIdRequestBuilderGetQueryParameters{Select: []string{"appId", "passwordCredentials"}},
		})
	if err != nil {
		o := s.outcomeFromError("", err, false)
		return time.Time{}, fmt.Errorf("graph: reading app %s: %s %s", s.cfg.ClientID, o.Code, o.Message)
	}
	hint := s.cfg.ClientSecret
	if len(hint) > 3 {
		hint = hint[:3]
	}
	now := time.Now()
	var best time.Time
	for _, pc := range app.GetPasswordCredentials() {
		end := pc.GetEndDateTime()
		if deref(pc.GetHint()) != hint || end == nil {
			continue
		}
		// Several secrets can share a hint: warn about the soonest one still valid.
		if end.After(now) && (best.IsZero() || end.Before(best)) {
			best = *end
		} else if best.IsZero() && !end.After(now) {
			best = *end
		}
	}
	if best.IsZero() {
		return time.Time{}, fmt.Errorf("graph: app %s has no client secret starting %q", s.cfg.ClientID, hint)
	}
	s.hmu.Lock()
	s.credExpires = best
	s.hmu.Unlock()
	return best, nil
}

// ExpiryWarning returns a warning when the credential expires within 30
// days (or has expired), else nil.
func (s *Sink) ExpiryWarning(now time.Time) *ExpiryWarning {
	kind, expires := s.CredentialExpiry()
	th, ok := ExpiryThreshold(expires, now)
	if !ok {
		return nil
	}
	days := int(math.Ceil(expires.Sub(now).Hours() / 24))
	w := &ExpiryWarning{Credential: kind, ExpiresAt: expires, DaysLeft: max(days, 0), Threshold: th}
	if th == 0 {
		w.Message = fmt.Sprintf("the %s of app %s expired on %s; Entra refuses it: add a new one and update the integration", kind, s.cfg.ClientID, expires.UTC().Format(time.DateOnly))
	} else {
		w.Message = fmt.Sprintf("the %s of app %s expires in %d days (%s); add a new one and update the integration before then", kind, s.cfg.ClientID, w.DaysLeft, expires.UTC().Format(time.DateOnly))
	}
	return w
}

// ConnectionReport is the answer of TestConnection.
type ConnectionReport struct {
	OK     bool
	Health Health
	// TokenOK: Entra issued an access token.
	TokenOK bool
	// Roles are the application permissions in the token (nil if unreadable).
	Roles []string
	// ReadOK: Graph answered a device read.
	ReadOK bool
	// RevokeSessions: the token carries User.RevokeSessions.All (or a
	// broader user write role), which session revocation needs.
	RevokeSessions bool
	// SampleDeviceID is the device read (empty when the tenant has none).
	SampleDeviceID string
	// Problems each say exactly what is missing and how to fix it.
	Problems []string
	Warnings []string
}

// TestConnection gets a token, reads one device, and reports what is missing.
func (s *Sink) TestConnection(ctx context.Context) ConnectionReport {
	rep := ConnectionReport{Health: HealthOK}
	tok, err := s.cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{s.scope}, EnableCAE: true})
	if err != nil {
		if he := classifyTokenError(err, s.cfg.ClientID, s.cfg.TenantID); he != nil {
			rep.Health = he.Health
			rep.Problems = append(rep.Problems, fmt.Sprintf("token: %s (%s)", he.Message, he.Code))
		} else {
			rep.Health = HealthUnreachable
			rep.Problems = append(rep.Problems, fmt.Sprintf("token: cannot reach the authority %s: %v", s.ep.AuthorityHost, err))
		}
		if rep.Health == HealthUnreachable {
			rep.Problems[len(rep.Problems)-1] = "token: " + s.probeAuthority(ctx)
		}
		if rep.Health == HealthSecretExpired {
			// Entra's word beats the expiry date typed at setup.
			rep.Warnings = append(rep.Warnings, fmt.Sprintf("Entra says the client secret of app %s has expired: add a new one and update the integration", s.cfg.ClientID))
		} else if w := s.ExpiryWarning(time.Now()); w != nil {
			rep.Warnings = append(rep.Warnings, w.Message)
		}
		s.setHealth(rep.Health, "", strings.Join(rep.Problems, "; "))
		return rep
	}
	rep.TokenOK = true
	if roles, ok := tokenRoles(tok.Token); ok {
		rep.Roles = roles
		rep.RevokeSessions = canRevoke(roles)
		if !slices.Contains(roles, "Device.ReadWrite.All") {
			rep.Health = HealthPermissionMissing
			granted := "none"
			if len(roles) > 0 {
				granted = strings.Join(roles, ", ")
			}
			rep.Problems = append(rep.Problems, fmt.Sprintf(
				"permission: the app's token lacks the application permission Device.ReadWrite.All (granted: %s); add it under API permissions → Microsoft Graph → Application permissions and grant admin consent", granted))
		}
	}

	top := int32(1)
	// The Internal constructor with path parameters: a builder made from a
	// raw URL sends that URL verbatim and drops every query option.
	res, err := devices.NewDevicesRequestBuilderInternal(map[string]string{"baseurl": s.adapter.GetBaseUrl()}, s.adapter).Get(WithLowPriority(ctx),
		&devices.DevicesRequestBuilderGetRequestConfiguration{
			Headers: s.headers(WithLowPriority(ctx)),
			QueryParameters: &devices.DevicesRequestBuilderGetQueryParameters{
				Top: &top, Select: []string{"id", "deviceId", "extensionAttributes"},
			},
		})
	if err != nil {
		o := s.outcomeFromError("", err, false)
		if o.Health != "" {
			rep.Health = o.Health
		} else if rep.Health == HealthOK {
			rep.Health = HealthUnreachable
		}
		switch {
		case o.Health == HealthPermissionMissing:
			rep.Problems = append(rep.Problems, "read: Graph refused to list devices ("+o.Code+"): grant the application permission Device.ReadWrite.All (or at least Device.Read.All) and grant admin consent")
		default:
			rep.Problems = append(rep.Problems, fmt.Sprintf("read: listing devices at %s failed: %s %s", s.ep.GraphBaseURL, o.Code, o.Message))
		}
	} else {
		rep.ReadOK = true
		if vals := res.GetValue(); len(vals) > 0 {
			d := vals[0]
			rep.SampleDeviceID = deref(d.GetDeviceId())
			if cur := additionalAttribute(d.GetAdditionalData(), s.AttributeName()); cur != "" && cur != s.cfg.CompliantValue && cur != s.cfg.NoncompliantValue {
				rep.Warnings = append(rep.Warnings, fmt.Sprintf("device %s has %s = %q, a value posture does not write: another tool may already use this attribute", rep.SampleDeviceID, s.AttributeName(), cur))
			}
		} else {
			rep.Warnings = append(rep.Warnings, "the tenant has no devices yet: nothing to write until devices register")
		}
	}
	if s.credKind == "client secret" && (slices.Contains(rep.Roles, "Application.Read.All") || slices.Contains(rep.Roles, "Application.ReadWrite.All")) {
		if _, err := s.RefreshSecretExpiry(ctx); err != nil {
			rep.Warnings = append(rep.Warnings, "secret expiry: "+err.Error())
		}
	}
	if w := s.ExpiryWarning(time.Now()); w != nil {
		rep.Warnings = append(rep.Warnings, w.Message)
	}
	rep.OK = len(rep.Problems) == 0
	s.setHealth(rep.Health, "", strings.Join(rep.Problems, "; "))
	return rep
}

// additionalAttribute digs extensionAttributes.<attr> out of kiota's
// untyped additional data.
func additionalAttribute(ad map[string]any, attr string) string {
	raw, ok := ad["extensionAttributes"]
	if !ok {
		return ""
	}
	type rawer interface{ GetRawValue() (any, error) }
	if r, ok := raw.(rawer); ok {
		v, err := r.GetRawValue()
		if err != nil {
			return ""
		}
		raw = v
	}
	m, _ := raw.(map[string]any)
	switch v := m[attr].(type) {
	case string:
		return v
	case *string:
		return deref(v)
	}
	return ""
}

// tokenRoles reads the roles claim of a JWT access token without verifying
// it (it came straight from Entra; this is only for the report).
func tokenRoles(tok string) ([]string, bool) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, false
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil, false
	}
	var claims struct {
		Roles *[]string `json:"roles"`
	}
	if err := json.Unmarshal(b, &claims); err != nil {
		return nil, false
	}
	if claims.Roles == nil {
		return []string{}, true // a Graph app token without roles has no permissions
	}
	return *claims.Roles, true
}

// probeAuthority fetches the tenant's OpenID configuration directly to say
// why the authority is unreachable (MSAL hides the transport error).
func (s *Sink) probeAuthority(ctx context.Context) string {
	u := s.ep.AuthorityHost + url.PathEscape(s.cfg.TenantID) + "/v2.0/.well-known/openid-configuration"
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Sprintf("cannot reach the authority %s: %v", s.ep.AuthorityHost, err)
	}
	resp, err := (&http.Client{Transport: s.base}).Do(req)
	if err != nil {
		var uae x509.UnknownAuthorityError
		var cve *tls.CertificateVerificationError
		if errors.As(err, &uae) || errors.As(err, &cve) {
			return fmt.Sprintf("cannot reach the authority %s: its TLS certificate is not trusted (%v); add the issuing CA to the integration's extra trusted CA", s.ep.AuthorityHost, err)
		}
		return fmt.Sprintf("cannot reach the authority %s: %v", s.ep.AuthorityHost, err)
	}
	_ = resp.Body.Close()
	return fmt.Sprintf("the authority %s answered %s for %s; check the cloud and authority host", s.ep.AuthorityHost, resp.Status, u)
}
