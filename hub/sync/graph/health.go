package graph

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"
)

// Health is an integration's health state, derived from token and Graph
// errors, for the admin API to show.
type Health string

// Health states.
const (
	HealthOK                 Health = "ok"
	HealthSecretExpired      Health = "secret_expired"      // AADSTS7000222
	HealthSecretInvalid      Health = "secret_invalid"      // AADSTS7000215
	HealthAppNotFound        Health = "app_not_found"       // AADSTS700016
	HealthCertificateInvalid Health = "certificate_invalid" // AADSTS700027
	HealthTenantNotFound     Health = "tenant_not_found"    // AADSTS90002
	HealthResourceNotFound   Health = "resource_not_found"  // AADSTS500011
	HealthPermissionMissing  Health = "permission_missing"  // Graph 403 Authorization_RequestDenied
	HealthAuthFailed         Health = "auth_failed"         // any other token error
	HealthUnreachable        Health = "unreachable"         // network, DNS, TLS
)

// HealthError is an integration-wide failure: retrying single devices
// cannot help until an administrator fixes the app registration.
type HealthError struct {
	Health Health
	// Code is the service's code: "AADSTS7000222", "Authorization_RequestDenied"...
	Code string
	// Message says what is wrong and what to do.
	Message string
	Err     error
}

func (e *HealthError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("graph: %s (%s): %s", e.Health, e.Code, e.Message)
	}
	return fmt.Sprintf("graph: %s: %s", e.Health, e.Message)
}

func (e *HealthError) Unwrap() error { return e.Err }

var reAADSTS = regexp.MustCompile(`AADSTS(\d+)`)

// aadstsHealth maps an AADSTS code to a health state and advice.
func aadstsHealth(code int, clientID, tenantID string) (Health, string) {
	switch code {
	case 7000222:
		return HealthSecretExpired, fmt.Sprintf("the client secret of app %s has expired; create a new secret in Entra (App registrations → Certificates & secrets) and update the integration", clientID)
	case 7000215:
		return HealthSecretInvalid, fmt.Sprintf("the client secret is not valid for app %s; paste the secret's Value (not its Secret ID)", clientID)
	case 700016:
		return HealthAppNotFound, fmt.Sprintf("app %s was not found in tenant %s; check the client id and tenant id, and that the app is consented in that tenant", clientID, tenantID)
	case 700027:
		return HealthCertificateInvalid, fmt.Sprintf("the certificate is not registered on app %s, or has expired; upload its public certificate under Certificates & secrets", clientID)
	case 500011:
		return HealthResourceNotFound, "Entra knows no resource by the name the token was requested for; with --cloud custom, --graph-resource must name the Graph resource of the cloud behind the base URL (https://graph.microsoft.com for the public cloud), not the proxy's or private endpoint's URL"
	case 90002:
		return HealthTenantNotFound, fmt.Sprintf("tenant %s does not exist in this cloud; check the tenant id and the cloud", tenantID)
	}
	return HealthAuthFailed, "the token request was refused"
}

// classifyTokenError turns a credential error into a HealthError.
func classifyTokenError(err error, clientID, tenantID string) *HealthError {
	if err == nil {
		return nil
	}
	var he *HealthError
	if errors.As(err, &he) {
		return he
	}
	var afe *azidentity.AuthenticationFailedError
	if errors.As(err, &afe) {
		code, desc := 0, ""
		if afe.RawResponse != nil && afe.RawResponse.Body != nil {
			// Payload buffers the body, so Error() can still print it.
			if b, rerr := runtime.Payload(afe.RawResponse); rerr == nil {
				var body struct {
					Desc  string `json:"error_description"`
					Codes []int  `json:"error_codes"`
				}
				if json.Unmarshal(b, &body) == nil {
					desc = body.Desc
					if len(body.Codes) > 0 {
						code = body.Codes[0]
					}
				}
			}
		}
		if code == 0 {
			code = firstAADSTS(err.Error())
		}
		if code != 0 {
			h, advice := aadstsHealth(code, clientID, tenantID)
			msg := advice
			if h == HealthAuthFailed && desc != "" {
				msg = advice + ": " + firstLine(desc)
			}
			return &HealthError{Health: h, Code: "AADSTS" + strconv.Itoa(code), Message: msg, Err: err}
		}
		if afe.RawResponse == nil {
			// No answer from Entra at all: DNS, TCP or TLS failed (MSAL drops
			// the cause, so TestConnection probes the authority to say which).
			return &HealthError{Health: HealthUnreachable, Message: "the authority could not be reached: " + firstLine(err.Error()), Err: err}
		}
		return &HealthError{Health: HealthAuthFailed, Message: "the token request was refused: " + firstLine(err.Error()), Err: err}
	}
	if code := firstAADSTS(err.Error()); code != 0 {
		h, advice := aadstsHealth(code, clientID, tenantID)
		return &HealthError{Health: h, Code: "AADSTS" + strconv.Itoa(code), Message: advice, Err: err}
	}
	return nil
}

func firstAADSTS(s string) int {
	if m := reAADSTS.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		return n
	}
	return 0
}

func firstLine(s string) string {
	if i := strings.IndexAny(s, "\r\n"); i >= 0 {
		return s[:i]
	}
	return s
}

// graphError is a Graph error response, direct or from a $batch item.
type graphError struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
	HasRetry   bool
}

// fromODataError extracts status, code, message and Retry-After.
func fromAPIError(err error) (graphError, bool) {
	var oe *odataerrors.ODataError
	if errors.As(err, &oe) {
		ge := graphError{Status: oe.ResponseStatusCode}
		if m := oe.GetErrorEscaped(); m != nil {
			ge.Code = deref(m.GetCode())
			ge.Message = deref(m.GetMessage())
		}
		if oe.ResponseHeaders != nil {
			ge.RetryAfter, ge.HasRetry = retryAfterFrom(oe.ResponseHeaders)
		}
		return ge, true
	}
	var ae *abstractions.ApiError
	if errors.As(err, &ae) {
		ge := graphError{Status: ae.ResponseStatusCode, Message: ae.Message}
		if ae.ResponseHeaders != nil {
			ge.RetryAfter, ge.HasRetry = retryAfterFrom(ae.ResponseHeaders)
		}
		return ge, true
	}
	return graphError{}, false
}

func retryAfterFrom(h *abstractions.ResponseHeaders) (time.Duration, bool) {
	for _, k := range h.ListKeys() {
		if strings.EqualFold(k, "Retry-After") {
			if v := h.Get(k); len(v) > 0 {
				return parseRetryAfter(v[0], time.Now())
			}
		}
	}
	return 0, false
}

// parseRetryAfter reads delta-seconds (fractions allowed, as Graph sends
// them) or an HTTP date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if f, err := strconv.ParseFloat(v, 64); err == nil {
		if f < 0 || f != f { // negative or NaN
			return 0, false
		}
		if f > 24*3600 {
			f = 24 * 3600
		}
		return time.Duration(f * float64(time.Second)), true
	}
	for _, layout := range []string{time.RFC1123, time.RFC1123Z, time.RFC850, time.ANSIC} {
		if t, err := time.Parse(layout, v); err == nil {
			d := t.Sub(now)
			if d < 0 {
				d = 0
			}
			return d, true
		}
	}
	return 0, false
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// permissionHealth builds the HealthError for a Graph 403.
func permissionHealth(ge graphError, write bool) *HealthError {
	need := "Device.Read.All (or Device.ReadWrite.All)"
	if write {
		need = "Device.ReadWrite.All"
	}
	return &HealthError{
		Health:  HealthPermissionMissing,
		Code:    ge.Code,
		Message: fmt.Sprintf("Graph refused the call (%s: %s): grant the application permission %s to the app and grant admin consent", ge.Code, ge.Message, need),
	}
}

// HealthStatus is the latest health evidence a Sink has seen.
type HealthStatus struct {
	Health  Health
	Code    string
	Message string
	At      time.Time // zero: no call made yet
}

// Health returns the latest health evidence: OK after a successful call, or
// the last integration-wide failure (credential, permission, unreachable).
func (s *Sink) Health() HealthStatus {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	return s.health
}

func (s *Sink) setHealth(h Health, code, msg string) {
	s.hmu.Lock()
	changed := s.health.Health != h || s.health.Message != msg
	if s.health.Health != h {
		s.log.Info("graph: integration health changed", "from", s.health.Health, "to", h, "code", code, "message", msg)
	}
	s.health = HealthStatus{Health: h, Code: code, Message: msg, At: time.Now()}
	st := s.health
	s.hmu.Unlock()
	if changed && s.cfg.OnHealth != nil {
		s.cfg.OnHealth(st)
	}
}

// noteHealth records what a batch of outcomes says about the integration.
func (s *Sink) noteHealth(res []outcome) {
	for _, o := range res {
		if o.Health != "" {
			s.setHealth(o.Health, o.Code, o.Message)
			return
		}
	}
	for _, o := range res {
		if o.Status == applied {
			s.setHealth(HealthOK, "", "")
			return
		}
	}
}

// HealthFromCode maps an outcome Code (as stored with a dead letter) to the
// integration health it implies, or "" when it is about one device only.
func HealthFromCode(code string) Health {
	if code == "Authorization_RequestDenied" {
		return HealthPermissionMissing
	}
	if n := firstAADSTS(code); n != 0 {
		h, _ := aadstsHealth(n, "", "")
		return h
	}
	switch code {
	case "InvalidAuthenticationToken":
		return HealthAuthFailed
	case "unreachable", "tls_untrusted":
		return HealthUnreachable
	}
	return ""
}
