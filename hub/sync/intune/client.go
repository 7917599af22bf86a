// Package intune is the Intune device-compliance-partner sink: the partner
// app (multi-tenant, onboarded by Microsoft) activates itself in a customer
// tenant, keeps a heartbeat, creates one partner compliance policy per
// platform assigned to an Entra group, and uploads device inventory and
// compliance as asynchronous data upload messages. Intune then marks the
// Entra device compliant or not, which is what "Require device to be marked
// as compliant" Conditional Access policies read.
//
// It speaks plain net/http with azidentity tokens: msgraph-sdk-go has no
// client for the partner endpoints, and the few Graph reads it needs
// (service principal endpoints, users, groups) are simple GETs.
package intune

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
)

// IntuneAppID is the appId of the Intune service principal whose
// endPoints name the partner services of a tenant.
const IntuneAppID = "0000000a-0000-0000-c000-000000000000"

// Provider names of the partner endpoints on the Intune service principal.
const (
	ProviderTenantSync = "PartnerTenantDataSyncService"
	ProviderDeviceSync = "PartnerDeviceDataSyncService"
)

// API versions of the partner services.
const (
	TenantAPIVersion = "1.6"
	DeviceAPIVersion = "1.2"
)

// DiscoveryTTL is how long discovered endpoints are used before asking again.
const DiscoveryTTL = 24 * time.Hour

// Cloud endpoints: authority, Graph base URL, Intune resource, and the
// Graph resource (the token scope: never derived from the base URL, which
// may be a proxy or private endpoint).
type endpoints struct{ authority, graph, intune, graphResource string }

var clouds = map[string]endpoints{
	"public":    {"https://login.microsoftonline.com/", "https://graph.microsoft.com/v1.0", "https://api.manage.microsoft.com/", "https://graph.microsoft.com"},
	"usgov":     {"https://login.microsoftonline.us/", "https://graph.microsoft.us/v1.0", "https://api.manage.microsoft.us/", "https://graph.microsoft.us"},
	"usgov-dod": {"https://login.microsoftonline.us/", "https://dod-graph.microsoft.us/v1.0", "https://api.manage.microsoft.us/", "https://dod-graph.microsoft.us"},
	"china":     {"https://login.chinacloudapi.cn/", "https://microsoftgraph.chinacloudapi.cn/v1.0", "https://api.manage.microsoft.cn/", "https://microsoftgraph.chinacloudapi.cn"},
}

// Config describes one partner integration (the partner app in one
// customer tenant).
type Config struct {
	Cloud         string // public | usgov | usgov-dod | china | custom
	AuthorityHost string // custom only
	GraphBaseURL  string // custom only, e.g. https://127.0.0.1:4443/v1.0
	ExtraCAPEM    []byte
	// IntuneResource overrides the Intune API resource (default per cloud:
	// https://api.manage.microsoft.com/ for public and custom).
	IntuneResource string
	// GraphResource overrides the Graph resource tokens for Graph calls are
	// asked for (custom cloud; default https://graph.microsoft.com).
	GraphResource string

	TenantID            string
	ClientID            string
	ClientSecret        string
	Certificate         []byte
	CertificatePassword string

	// PortalURL is the hub's public base URL: Intune sends users to
	// PortalURL/enroll and PortalURL/remediate.
	PortalURL string
	// Platforms get a partner compliance policy each; default macos, windows.
	Platforms []string
	// Group is the Entra group (object id or display name) the policies are
	// assigned to; empty = policies are created but not assigned.
	Group string

	// State persists what Intune holds across restarts (required).
	State StateStore
	// Devices describes hosts for inventory entities (required for Apply).
	Devices Devices

	// PollInterval between upload status reads (default 1s); PollTimeout
	// bounds one Apply's wait for completion (default 15s).
	PollInterval time.Duration
	PollTimeout  time.Duration
	// HeartbeatEvery (default 15m).
	HeartbeatEvery time.Duration

	Logger *slog.Logger
	Now    func() time.Time
}

// StateStore loads and saves the integration's partner state.
type StateStore interface {
	LoadState(ctx context.Context) (State, error)
	SaveState(ctx context.Context, s State) error
}

// Device is what an inventory entity carries about a host.
type Device struct {
	Name, OS, OSVersion, UPN string
	LastSeen                 time.Time
}

// Devices looks hosts up by id.
type Devices interface {
	Device(ctx context.Context, hostID string) (Device, error)
}

// Client talks to Graph and the partner services of one tenant.
type Client struct {
	cfg  Config
	ep   endpoints
	http *http.Client

	credMu sync.Mutex
	cred   azcore.TokenCredential
	copts  azcore.ClientOptions

	mu        sync.Mutex
	discovery discovered
	users     map[string]userEntry
}

type discovered struct {
	tenantSync, deviceSync string
	at                     time.Time
}

type userEntry struct {
	id string
	at time.Time
}

// userTTL bounds how long a UPN → object id mapping is trusted.
const userTTL = 6 * time.Hour

// NewClient validates cfg (no network).
func NewClient(cfg Config) (*Client, error) {
	if cfg.Cloud == "" {
		cfg.Cloud = "public"
	}
	var ep endpoints
	if cfg.Cloud == "custom" {
		if !strings.HasPrefix(cfg.AuthorityHost, "https://") || !strings.HasPrefix(cfg.GraphBaseURL, "https://") {
			return nil, errors.New("intune: a custom cloud needs https authority host and Graph base URL")
		}
		ep = endpoints{cfg.AuthorityHost, strings.TrimRight(cfg.GraphBaseURL, "/"), clouds["public"].intune, clouds["public"].graphResource}
	} else {
		var ok bool
		if ep, ok = clouds[cfg.Cloud]; !ok {
			return nil, fmt.Errorf("intune: unknown cloud %q", cfg.Cloud)
		}
	}
	if cfg.IntuneResource != "" {
		ep.intune = cfg.IntuneResource
	}
	if cfg.Cloud == "custom" && cfg.GraphResource != "" {
		ep.graphResource = strings.TrimRight(cfg.GraphResource, "/")
	}
	if cfg.TenantID == "" || cfg.ClientID == "" {
		return nil, errors.New("intune: tenant id and client id are required")
	}
	if (cfg.ClientSecret == "") == (len(cfg.Certificate) == 0) {
		return nil, errors.New("intune: give a client secret or a certificate")
	}
	if cfg.PortalURL != "" {
		u, err := url.Parse(cfg.PortalURL)
		if err != nil || u.Scheme != "https" || u.Host == "" {
			return nil, fmt.Errorf("intune: portal url %q: want the hub's public https URL", cfg.PortalURL)
		}
	}
	if len(cfg.Platforms) == 0 {
		cfg.Platforms = []string{"macos", "windows"}
	}
	for _, p := range cfg.Platforms {
		if _, ok := platformCodes[p]; !ok {
			return nil, fmt.Errorf("intune: platform %q not macos, windows, ios or android", p)
		}
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = time.Second
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 15 * time.Second
	}
	if cfg.HeartbeatEvery <= 0 {
		cfg.HeartbeatEvery = 15 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if len(cfg.ExtraCAPEM) > 0 {
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(cfg.ExtraCAPEM) {
			return nil, errors.New("intune: extra CA holds no PEM certificate")
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	c := &Client{cfg: cfg, ep: ep, http: hc, users: map[string]userEntry{}}
	c.copts = azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: ep.authority, Services: map[cloud.ServiceName]cloud.ServiceConfiguration{}},
		Transport: hc,
	}
	if _, err := c.newCredential(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Client) newCredential() (azcore.TokenCredential, error) {
	// A custom authority is not in Microsoft's instance list: without this
	// azidentity asks login.microsoftonline.com first.
	noDiscovery := c.cfg.Cloud == "custom"
	var cred azcore.TokenCredential
	var err error
	if c.cfg.ClientSecret != "" {
		cred, err = azidentity.NewClientSecretCredential(c.cfg.TenantID, c.cfg.ClientID, c.cfg.ClientSecret,
			&azidentity.ClientSecretCredentialOptions{ClientOptions: c.copts, DisableInstanceDiscovery: noDiscovery})
	} else {
		certs, key, perr := azidentity.ParseCertificates(c.cfg.Certificate, []byte(c.cfg.CertificatePassword))
		if perr != nil {
			return nil, fmt.Errorf("intune: certificate: %w", perr)
		}
		cred, err = azidentity.NewClientCertificateCredential(c.cfg.TenantID, c.cfg.ClientID, certs, key,
			&azidentity.ClientCertificateCredentialOptions{ClientOptions: c.copts, DisableInstanceDiscovery: noDiscovery})
	}
	if err != nil {
		return nil, fmt.Errorf("intune: credential: %w", err)
	}
	c.credMu.Lock()
	c.cred = cred
	c.credMu.Unlock()
	return cred, nil
}

// scope of a resource: "<resource>/.default" — for the Intune resource,
// whose id ends in "/", that is the double slash Microsoft requires
// (https://api.manage.microsoft.com//.default).
func scope(resource string) string { return resource + "/.default" }

func (c *Client) graphResource() string { return c.ep.graphResource }

func (c *Client) token(ctx context.Context, resource string) (string, error) {
	c.credMu.Lock()
	cred := c.cred
	c.credMu.Unlock()
	tk, err := cred.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{scope(resource)}})
	if err != nil {
		return "", &Error{Status: 0, Code: "token", Message: err.Error()}
	}
	return tk.Token, nil
}

// Error is a failed call: HTTP status and Microsoft's error code/message.
type Error struct {
	Status     int
	Code       string
	Message    string
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("intune: %s: %s", e.Code, e.Message)
	}
	return fmt.Sprintf("intune: HTTP %d %s: %s", e.Status, e.Code, e.Message)
}

// response is a completed exchange.
type response struct {
	status int
	body   []byte
	header http.Header
}

// do sends one request with a token for resource. A 401 is retried once
// with a freshly acquired token (Intune rejects some just-issued tokens,
// and an expired or revoked one needs replacing): the credential, and so
// its token cache, is rebuilt.
func (c *Client) do(ctx context.Context, resource, method, u string, body any) (response, error) {
	var raw []byte
	if body != nil {
		var err error
		if raw, err = json.Marshal(body); err != nil {
			return response{}, err
		}
	}
	for attempt := 0; ; attempt++ {
		tok, err := c.token(ctx, resource)
		if err != nil {
			return response{}, err
		}
		req, err := http.NewRequestWithContext(ctx, method, u, bytes.NewReader(raw))
		if err != nil {
			return response{}, err
		}
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Accept", "application/json")
		if body != nil {
			req.Header.Set("Content-Type", "application/json")
		}
		req.Header.Set("client-request-id", newGUID())
		resp, err := c.http.Do(req)
		if err != nil {
			return response{}, &Error{Code: "unreachable", Message: err.Error()}
		}
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
		resp.Body.Close()
		if resp.StatusCode == http.StatusUnauthorized && attempt == 0 {
			c.cfg.Logger.DebugContext(ctx, "intune: 401, retrying once with a fresh token", "url", u)
			if _, err := c.newCredential(); err != nil {
				return response{}, err
			}
			continue
		}
		r := response{status: resp.StatusCode, body: b, header: resp.Header}
		if resp.StatusCode >= 400 {
			return r, httpError(resp, b, c.cfg.Now())
		}
		return r, nil
	}
}

func httpError(resp *http.Response, body []byte, now time.Time) *Error {
	e := &Error{Status: resp.StatusCode, Code: strconv.Itoa(resp.StatusCode), Message: strings.TrimSpace(string(body))}
	var od struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		ODataError struct {
			Code    string `json:"code"`
			Message struct {
				Value string `json:"value"`
			} `json:"message"`
		} `json:"odata.error"`
	}
	if json.Unmarshal(body, &od) == nil {
		switch {
		case od.Error.Code != "":
			e.Code, e.Message = od.Error.Code, od.Error.Message
		case od.ODataError.Code != "":
			e.Code, e.Message = od.ODataError.Code, od.ODataError.Message.Value
		}
	}
	if v := resp.Header.Get("Retry-After"); v != "" {
		if f, err := strconv.ParseFloat(v, 64); err == nil && f > 0 {
			e.RetryAfter = time.Duration(f * float64(time.Second))
		} else if t, err := http.ParseTime(v); err == nil && t.After(now) {
			e.RetryAfter = t.Sub(now)
		}
	}
	if len(e.Message) > 512 {
		e.Message = e.Message[:512]
	}
	return e
}

// Endpoints returns the tenant's partner service URLs, discovered from the
// Intune service principal and cached DiscoveryTTL.
func (c *Client) Endpoints(ctx context.Context) (tenantSync, deviceSync string, err error) {
	c.mu.Lock()
	d := c.discovery
	c.mu.Unlock()
	if d.tenantSync != "" && c.cfg.Now().Sub(d.at) < DiscoveryTTL {
		return d.tenantSync, d.deviceSync, nil
	}
	u := c.ep.graph + "/servicePrincipals?$filter=" + url.QueryEscape("appId eq '"+IntuneAppID+"'") + "&$select=appId,endpoints"
	r, err := c.do(ctx, c.graphResource(), http.MethodGet, u, nil)
	if err != nil {
		return "", "", fmt.Errorf("discover Intune endpoints: %w", err)
	}
	var list struct {
		Value []struct {
			AppID     string `json:"appId"`
			Endpoints []struct {
				ProviderName string `json:"providerName"`
				URI          string `json:"uri"`
			} `json:"endpoints"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		return "", "", fmt.Errorf("discover Intune endpoints: %w", err)
	}
	for _, sp := range list.Value {
		for _, e := range sp.Endpoints {
			switch e.ProviderName {
			case ProviderTenantSync:
				d.tenantSync = strings.TrimRight(e.URI, "/")
			case ProviderDeviceSync:
				d.deviceSync = strings.TrimRight(e.URI, "/")
			}
		}
	}
	if d.tenantSync == "" || d.deviceSync == "" {
		return "", "", &Error{Code: "endpoints_missing", Message: "the Intune service principal lists no " + ProviderTenantSync + " / " + ProviderDeviceSync +
			" endpoint: is Intune licensed in this tenant and the partner app onboarded by Microsoft?"}
	}
	d.at = c.cfg.Now()
	c.mu.Lock()
	c.discovery = d
	c.mu.Unlock()
	return d.tenantSync, d.deviceSync, nil
}

// UserID maps a user principal name to the user's Entra object id
// (GET /users('{upn}')), cached.
func (c *Client) UserID(ctx context.Context, upn string) (string, error) {
	key := strings.ToLower(upn)
	c.mu.Lock()
	e, ok := c.users[key]
	c.mu.Unlock()
	if ok && c.cfg.Now().Sub(e.at) < userTTL {
		return e.id, nil
	}
	u := c.ep.graph + "/users('" + url.PathEscape(strings.ReplaceAll(upn, "'", "''")) + "')?$select=id"
	r, err := c.do(ctx, c.graphResource(), http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	var user struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal(r.body, &user); err != nil || user.ID == "" {
		return "", fmt.Errorf("user %s: no id in answer", upn)
	}
	c.mu.Lock()
	c.users[key] = userEntry{id: user.ID, at: c.cfg.Now()}
	c.mu.Unlock()
	return user.ID, nil
}

// GroupID resolves a group given by object id or display name.
func (c *Client) GroupID(ctx context.Context, ref string) (string, error) {
	if isGUID(ref) {
		return strings.ToLower(ref), nil
	}
	u := c.ep.graph + "/groups?$filter=" + url.QueryEscape("displayName eq '"+strings.ReplaceAll(ref, "'", "''")+"'") + "&$select=id,displayName"
	r, err := c.do(ctx, c.graphResource(), http.MethodGet, u, nil)
	if err != nil {
		return "", fmt.Errorf("group %q: %w", ref, err)
	}
	var list struct {
		Value []struct {
			ID string `json:"id"`
		} `json:"value"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		return "", fmt.Errorf("group %q: %w", ref, err)
	}
	switch len(list.Value) {
	case 0:
		return "", fmt.Errorf("group %q: no Entra group has that name", ref)
	case 1:
		return list.Value[0].ID, nil
	}
	return "", fmt.Errorf("group %q: %d groups have that name; give the object id", ref, len(list.Value))
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		if i == 8 || i == 13 || i == 18 || i == 23 {
			if r != '-' {
				return false
			}
		} else if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
			return false
		}
	}
	return true
}
