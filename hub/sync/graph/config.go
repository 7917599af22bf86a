// Package graph is the Microsoft Graph sink: it writes each device's
// compliance verdict into an Entra device extension attribute
// (PATCH /devices(deviceId='…') with extensionAttributes, $batch of up to 20)
// using msgraph-sdk-go and azidentity, and reads the attribute back for
// reconcile. It is the only package in the repository that imports
// msgraph-sdk-go; it imports only the sub-packages it needs (devices,
// deviceswithdeviceid, models, models/odataerrors, msgraph-sdk-go-core),
// never the root package.
//
// A *Sink implements hub/sync's Sink, Reader and BatchSizer. Build one per
// integration and keep it (azidentity caches the access token inside it):
//
//	s, err := graph.New(graph.Config{Cloud: graph.CloudPublic, TenantID: t, ClientID: c,
//		ClientSecret: secret, Attribute: 3})
//	outs := s.Apply(ctx, changes)     // ≤ 20 hub/sync Changes → one Outcome each
//	held, err := s.Read(ctx, ids)     // reconcile, x-ms-throttle-priority: Low
//	rep := s.TestConnection(ctx)      // token + one device read + what is missing
//
// The HTTP pipeline is built here in a fixed order (telemetry, parameter
// name decoding, user agent, gzip compression, then retry) rather than
// taken from kiota's defaults, whose order is random and whose retry
// handler truncates fractional Retry-After values.
package graph

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"
)

// Cloud names a Microsoft cloud.
type Cloud string

// Supported clouds.
const (
	CloudPublic   Cloud = "public"
	CloudUSGov    Cloud = "usgov"     // US Government L4 (GCC High)
	CloudUSGovDoD Cloud = "usgov-dod" // US Government L5 (DoD)
	CloudChina    Cloud = "china"     // operated by 21Vianet
	CloudCustom   Cloud = "custom"    // explicit hosts (air-gapped clouds, stand-ins)
)

// Endpoints are a cloud's authority host, Graph base URL and Graph
// resource. The resource is what tokens are requested for (scope
// <resource>/.default); it is not derived from the base URL, which may
// point at a proxy or private endpoint.
type Endpoints struct {
	AuthorityHost string // e.g. https://login.microsoftonline.com/
	GraphBaseURL  string // e.g. https://graph.microsoft.com/v1.0
	GraphResource string // e.g. https://graph.microsoft.com
}

// PublicGraphResource is the public cloud's Graph resource identifier, the
// default resource of a custom cloud.
const PublicGraphResource = "https://graph.microsoft.com"

// KnownEndpoints returns the endpoints of a national cloud.
func KnownEndpoints(c Cloud) (Endpoints, bool) {
	switch c {
	case CloudPublic, "":
		return Endpoints{"https://login.microsoftonline.com/", "https://graph.microsoft.com/v1.0", PublicGraphResource}, true
	case CloudUSGov:
		return Endpoints{"https://login.microsoftonline.us/", "https://graph.microsoft.us/v1.0", "https://graph.microsoft.us"}, true
	case CloudUSGovDoD:
		return Endpoints{"https://login.microsoftonline.us/", "https://dod-graph.microsoft.us/v1.0", "https://dod-graph.microsoft.us"}, true
	case CloudChina:
		return Endpoints{"https://login.chinacloudapi.cn/", "https://microsoftgraph.chinacloudapi.cn/v1.0", "https://microsoftgraph.chinacloudapi.cn"}, true
	}
	return Endpoints{}, false
}

// Default attribute values.
const (
	DefaultCompliantValue    = "Compliant"
	DefaultNoncompliantValue = "Non-compliant"
)

// Config describes one Graph integration.
type Config struct {
	Cloud Cloud
	// AuthorityHost and GraphBaseURL are required for CloudCustom and ignored otherwise.
	AuthorityHost string
	GraphBaseURL  string
	// GraphResource is the resource tokens are requested for, custom cloud
	// only (default PublicGraphResource). Change it only when the custom
	// cloud's Graph is a national cloud's (https://graph.microsoft.us...) or
	// an air-gapped cloud's own resource — never to a proxy's URL.
	GraphResource string
	// ExtraCAPEM holds additional trusted root certificates (PEM), added to
	// the system pool for both the authority and Graph.
	ExtraCAPEM []byte

	TenantID string
	ClientID string

	// Exactly one credential: ClientSecret, or Certificate (PEM holding the
	// certificate and its unencrypted private key, or a PFX/PKCS#12 file with
	// CertificatePassword).
	ClientSecret        string
	Certificate         []byte
	CertificatePassword string
	// SecretExpiresAt is the client secret's expiry as given at setup
	// (zero: unknown); it drives the 30/14/7-day warnings. When the app
	// holds Application.Read.All, TestConnection / RefreshSecretExpiry read
	// the real expiry from the app registration instead.
	SecretExpiresAt time.Time

	// Attribute is N in extensionAttributeN, 1..15.
	Attribute int
	// Values written; empty means the defaults. Never written as null/empty.
	CompliantValue    string
	NoncompliantValue string

	// WindowsMDM: the app is an approved Windows MDM app, which Graph lets
	// write isCompliant / isManaged. Windows devices then also get
	// isCompliant (and isManaged = true) in the same PATCH as the attribute.
	// The sink learns each device's operatingSystem with one read and
	// caches it.
	WindowsMDM bool

	// DisableCompression turns off gzip request bodies.
	DisableCompression bool
	// MaxRetries bounds re-sends of throttled (429) or failed (5xx) requests
	// and batch items within one call (default 3).
	MaxRetries int
	// MaxInlineWait bounds the total time one call waits on Retry-After
	// before handing the item back to the caller as "retry later" (default 10s).
	MaxInlineWait time.Duration
	// RequestTimeout bounds one HTTP exchange including its retries (default 60s).
	RequestTimeout time.Duration

	Logger *slog.Logger
	// OnHealth, when set, is called (outside any lock) after every change
	// of the health evidence, so it can be recorded at once.
	OnHealth func(HealthStatus)
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.Cloud == "" {
		out.Cloud = CloudPublic
	}
	if out.CompliantValue == "" {
		out.CompliantValue = DefaultCompliantValue
	}
	if out.NoncompliantValue == "" {
		out.NoncompliantValue = DefaultNoncompliantValue
	}
	if out.MaxRetries == 0 {
		out.MaxRetries = 3
	}
	if out.MaxInlineWait == 0 {
		out.MaxInlineWait = 10 * time.Second
	}
	if out.RequestTimeout == 0 {
		out.RequestTimeout = 60 * time.Second
	}
	if out.Logger == nil {
		out.Logger = slog.Default()
	}
	return out
}

// endpoints resolves and validates the cloud's endpoints.
func (c *Config) endpoints() (Endpoints, error) {
	if c.Cloud == CloudCustom {
		ep := Endpoints{AuthorityHost: strings.TrimSpace(c.AuthorityHost), GraphBaseURL: strings.TrimRight(strings.TrimSpace(c.GraphBaseURL), "/"),
			GraphResource: strings.TrimRight(strings.TrimSpace(c.GraphResource), "/")}
		if ep.GraphResource == "" {
			ep.GraphResource = PublicGraphResource
		}
		if strings.HasSuffix(ep.GraphResource, "/.default") {
			return Endpoints{}, fmt.Errorf("graph: the Graph resource is an identifier such as %s, without /.default", PublicGraphResource)
		}
		for _, f := range []struct{ name, v string }{{"authority host", ep.AuthorityHost}, {"Graph base URL", ep.GraphBaseURL}} {
			u, err := url.Parse(f.v)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				return Endpoints{}, fmt.Errorf("graph: custom cloud needs an https %s, got %q", f.name, f.v)
			}
		}
		if !strings.HasSuffix(ep.AuthorityHost, "/") {
			ep.AuthorityHost += "/"
		}
		return ep, nil
	}
	ep, ok := KnownEndpoints(c.Cloud)
	if !ok {
		return Endpoints{}, fmt.Errorf("graph: unknown cloud %q (want public, usgov, usgov-dod, china or custom)", c.Cloud)
	}
	return ep, nil
}

// Validate reports every problem with the configuration at once.
func (c *Config) Validate() error {
	d := c.withDefaults()
	var errs []error
	if _, err := d.endpoints(); err != nil {
		errs = append(errs, err)
	}
	if strings.TrimSpace(d.TenantID) == "" {
		errs = append(errs, errors.New("graph: tenant id is required"))
	}
	if strings.TrimSpace(d.ClientID) == "" {
		errs = append(errs, errors.New("graph: client id is required"))
	}
	switch {
	case d.ClientSecret != "" && len(d.Certificate) > 0:
		errs = append(errs, errors.New("graph: give a client secret or a certificate, not both"))
	case d.ClientSecret == "" && len(d.Certificate) == 0:
		errs = append(errs, errors.New("graph: a client secret or a certificate is required"))
	}
	if d.Attribute < 1 || d.Attribute > 15 {
		errs = append(errs, fmt.Errorf("graph: extension attribute must be 1..15, got %d", d.Attribute))
	}
	if strings.TrimSpace(d.CompliantValue) == "" || strings.TrimSpace(d.NoncompliantValue) == "" {
		errs = append(errs, errors.New("graph: attribute values must not be blank"))
	}
	if d.CompliantValue == d.NoncompliantValue {
		errs = append(errs, errors.New("graph: compliant and non-compliant values must differ"))
	}
	for _, v := range []string{d.CompliantValue, d.NoncompliantValue} {
		if len(v) > 1024 {
			errs = append(errs, errors.New("graph: attribute values are limited to 1024 characters"))
		}
	}
	if len(d.ExtraCAPEM) > 0 {
		if !x509.NewCertPool().AppendCertsFromPEM(d.ExtraCAPEM) {
			errs = append(errs, errors.New("graph: extra trusted CA holds no PEM certificate"))
		}
	}
	if d.MaxRetries < 0 || d.MaxInlineWait < 0 || d.RequestTimeout < 0 {
		errs = append(errs, errors.New("graph: retry and timeout settings must not be negative"))
	}
	return errors.Join(errs...)
}
