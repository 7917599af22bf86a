package graph

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	gosync "sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/cloud"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	abstractions "github.com/microsoft/kiota-abstractions-go"
	absser "github.com/microsoft/kiota-abstractions-go/serialization"
	kauth "github.com/microsoft/kiota-authentication-azure-go"
	khttp "github.com/microsoft/kiota-http-go"
	jsonser "github.com/microsoft/kiota-serialization-json-go"
	msgraphgocore "github.com/microsoftgraph/msgraph-sdk-go-core"
	"github.com/microsoftgraph/msgraph-sdk-go/deviceswithdeviceid"
	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/models/odataerrors"

	hubsync "github.com/posture-dev/posture/hub/sync"
)

// Name is the sink's name.
const Name = "graph"

// MaxBatch is Graph's $batch limit.
const MaxBatch = 20

// change is one device's desired state.
type change struct {
	DeviceID  string // Entra device id (a GUID)
	Compliant bool
}

// status is the result kind of one change.
type status int

const (
	applied status = iota + 1 // Graph accepted the write
	retry                     // not applied yet; try again after RetryAfter
	failed                    // will not succeed as sent
)

func (s status) String() string {
	switch s {
	case applied:
		return "applied"
	case retry:
		return "retry"
	case failed:
		return "failed"
	}
	return "unknown"
}

// outcome is the detailed result for one change; Apply maps it onto the
// sync worker's Outcome.
type outcome struct {
	DeviceID   string
	Status     status
	HTTPStatus int           // last HTTP status seen for the item, 0 if none
	RetryAfter time.Duration // for retry
	// Code is Graph's error code ("device_not_found" for a 404,
	// "Authorization_RequestDenied", "TooManyRequests", "AADSTS7000222"...).
	Code    string
	Message string
	// Health is set when the cause is integration-wide (bad credential,
	// missing permission, unreachable).
	Health Health
}

// Sink writes compliance verdicts to Graph device extension attributes.
type Sink struct {
	cfg     Config
	ep      Endpoints
	scope   string
	cred    *renewableCredential
	adapter abstractions.RequestAdapter
	base    *http.Transport
	log     *slog.Logger
	sleep   func(context.Context, time.Duration) error

	credKind string // "client secret" or "certificate"

	hmu         gosync.Mutex
	credExpires time.Time                     // guarded: RefreshSecretExpiry updates it
	osCache     map[string]string             // deviceId → operatingSystem, for WindowsMDM
	info        map[string]hubsync.DeviceInfo // seen by Read, until DeviceInfo takes it
	health      HealthStatus
}

var sdkOptions = msgraphgocore.GraphClientOptions{GraphServiceLibraryVersion: "1.89.0"}

// New validates cfg and builds the credential and Graph clients. It makes
// no network call (see TestConnection).
func New(cfg Config) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	c := cfg.withDefaults()
	ep, err := c.endpoints()
	if err != nil {
		return nil, err
	}
	gu, err := url.Parse(ep.GraphBaseURL)
	if err != nil {
		return nil, fmt.Errorf("graph: base url: %w", err)
	}
	s := &Sink{cfg: c, ep: ep, log: c.Logger.With("sink", Name, "tenant", c.TenantID), sleep: sleepCtx}
	// The scope names the Graph resource, not the host requests go to: a
	// proxy or private endpoint is not a resource Entra knows (AADSTS500011).
	s.scope = ep.GraphResource + "/.default"

	base, err := baseTransport(c.ExtraCAPEM)
	if err != nil {
		return nil, err
	}
	s.base = base
	copts := azcore.ClientOptions{
		Cloud:     cloud.Configuration{ActiveDirectoryAuthorityHost: ep.AuthorityHost, Services: map[cloud.ServiceName]cloud.ServiceConfiguration{}},
		Transport: &http.Client{Transport: base, Timeout: 30 * time.Second},
		// Token failures surface as integration health; the sync worker
		// retries later, so do not stall a batch for long here.
		Retry: policy.RetryOptions{MaxRetries: 2, RetryDelay: 500 * time.Millisecond, MaxRetryDelay: 2 * time.Second},
	}
	// Without this, a custom authority makes MSAL ask login.microsoftonline.com
	// whether the authority is valid before every first token.
	disableDiscovery := c.Cloud == CloudCustom
	var build func() (azcore.TokenCredential, error)
	if c.ClientSecret != "" {
		s.credKind = "client secret"
		s.credExpires = c.SecretExpiresAt
		build = func() (azcore.TokenCredential, error) {
			return azidentity.NewClientSecretCredential(c.TenantID, c.ClientID, c.ClientSecret,
				&azidentity.ClientSecretCredentialOptions{ClientOptions: copts, DisableInstanceDiscovery: disableDiscovery})
		}
	} else {
		certs, key, err := azidentity.ParseCertificates(c.Certificate, []byte(c.CertificatePassword))
		if err != nil {
			return nil, fmt.Errorf("graph: certificate (PEM with certificate and unencrypted key, or PFX with its password): %w", err)
		}
		s.credKind = "certificate"
		s.credExpires = certs[0].NotAfter
		build = func() (azcore.TokenCredential, error) {
			return azidentity.NewClientCertificateCredential(c.TenantID, c.ClientID, certs, key,
				&azidentity.ClientCertificateCredentialOptions{ClientOptions: copts, DisableInstanceDiscovery: disableDiscovery})
		}
	}
	if s.cred, err = newRenewableCredential(build); err != nil {
		return nil, fmt.Errorf("graph: credential: %w", err)
	}

	// The allowed-hosts list must name the Graph host, or the provider
	// silently sends requests without a token.
	auth, err := kauth.NewAzureIdentityAuthenticationProviderWithScopesAndValidHosts(s.cred, []string{s.scope}, []string{gu.Hostname()})
	if err != nil {
		return nil, fmt.Errorf("graph: auth provider: %w", err)
	}
	httpClient := &http.Client{
		Transport: khttp.NewCustomTransportWithParentTransport(base, s.middleware()...),
		Timeout:   c.RequestTimeout,
		// Never follow a redirect with a bearer token attached.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	pnf := absser.NewParseNodeFactoryRegistry()
	pnf.ContentTypeAssociatedFactories["application/json"] = jsonser.NewJsonParseNodeFactory()
	swf := absser.NewSerializationWriterFactoryRegistry()
	swf.ContentTypeAssociatedFactories["application/json"] = jsonser.NewJsonSerializationWriterFactory()
	adapter, err := msgraphgocore.NewGraphRequestAdapterBaseWithParseNodeFactoryAndSerializationWriterFactoryAndHttpClient(auth, sdkOptions, pnf, swf, httpClient)
	if err != nil {
		return nil, fmt.Errorf("graph: request adapter: %w", err)
	}
	adapter.SetBaseUrl(ep.GraphBaseURL)
	s.adapter = adapter
	return s, nil
}

// middleware is the fixed pipeline, outermost first (jsonErrors last, next
// to the wire, so everything above sees Graph-shaped errors; tokenRetry
// inside retry, so a re-sent request gets a fresh token too). Compression runs
// before retry so a retried request re-sends the same compressed bytes; in
// kiota's default (map-ordered, so random) list the retry handler can run
// outside compression and send a body that no longer matches its headers.
func (s *Sink) middleware() []khttp.Middleware {
	mws := []khttp.Middleware{
		msgraphgocore.NewGraphTelemetryHandler(&sdkOptions),
		khttp.NewParametersNameDecodingHandler(),
		khttp.NewUserAgentHandler(),
	}
	if !s.cfg.DisableCompression {
		mws = append(mws, khttp.NewCompressionHandler())
	}
	return append(mws, &retryMiddleware{
		maxRetries: s.cfg.MaxRetries,
		maxWait:    s.cfg.MaxInlineWait,
		sleep:      func(ctx context.Context, d time.Duration) error { return s.sleep(ctx, d) },
	}, &tokenRetry{cred: s.cred, scope: s.scope}, jsonErrors{})
}

func baseTransport(extraCA []byte) (*http.Transport, error) {
	t := http.DefaultTransport.(*http.Transport).Clone()
	pool, err := x509.SystemCertPool()
	if err != nil || pool == nil {
		pool = x509.NewCertPool()
	}
	if len(extraCA) > 0 && !pool.AppendCertsFromPEM(extraCA) {
		return nil, errors.New("graph: extra trusted CA holds no PEM certificate")
	}
	t.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return t, nil
}

// Name implements the sync sink interface.
func (s *Sink) Name() string { return Name }

// AttributeName is "extensionAttributeN".
func (s *Sink) AttributeName() string { return fmt.Sprintf("extensionAttribute%d", s.cfg.Attribute) }

// Value is the attribute value written for a verdict.
func (s *Sink) Value(compliant bool) string {
	if compliant {
		return s.cfg.CompliantValue
	}
	return s.cfg.NoncompliantValue
}

// WithLowPriority marks calls made with ctx as background traffic
// (x-ms-throttle-priority: Low), which Graph throttles first. It is the
// sync worker's marker; Read always uses it.
func WithLowPriority(ctx context.Context) context.Context { return hubsync.WithLowPriority(ctx) }

func lowPriority(ctx context.Context) bool { return hubsync.IsLowPriority(ctx) }

func (s *Sink) headers(ctx context.Context) *abstractions.RequestHeaders {
	h := abstractions.NewRequestHeaders()
	if lowPriority(ctx) {
		h.Add("x-ms-throttle-priority", "Low")
	}
	return h
}

var reGUID = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

func (s *Sink) deviceBuilder(id string) *deviceswithdeviceid.DevicesWithDeviceIdRequestBuilder {
	return deviceswithdeviceid.NewDevicesWithDeviceIdRequestBuilderInternal(map[string]string{"baseurl": s.adapter.GetBaseUrl()}, s.adapter, &id)
}

func (s *Sink) patchBody(compliant, windows bool) models.Deviceable {
	ea := models.NewOnPremisesExtensionAttributes()
	v := s.Value(compliant)
	setters := [...]func(*string){ea.SetExtensionAttribute1, ea.SetExtensionAttribute2, ea.SetExtensionAttribute3,
		ea.SetExtensionAttribute4, ea.SetExtensionAttribute5, ea.SetExtensionAttribute6, ea.SetExtensionAttribute7,
		ea.SetExtensionAttribute8, ea.SetExtensionAttribute9, ea.SetExtensionAttribute10, ea.SetExtensionAttribute11,
		ea.SetExtensionAttribute12, ea.SetExtensionAttribute13, ea.SetExtensionAttribute14, ea.SetExtensionAttribute15}
	setters[s.cfg.Attribute-1](&v)
	d := models.NewDevice()
	// v1.0's device model has no typed extensionAttributes property.
	d.SetAdditionalData(map[string]any{"extensionAttributes": ea})
	if windows {
		managed := true
		d.SetIsCompliant(&compliant)
		d.SetIsManaged(&managed)
	}
	return d
}

// windowsDevices returns which of ids are Windows devices, for the
// WindowsMDM route. Operating systems are read once (a $batch of GETs) and
// cached; a device whose read fails is treated as not Windows this time
// and gets the attribute only.
func (s *Sink) windowsDevices(ctx context.Context, ids []string) map[string]bool {
	out := map[string]bool{}
	if !s.cfg.WindowsMDM {
		return out
	}
	var unknown []string
	s.hmu.Lock()
	for _, id := range ids {
		if os, ok := s.osCache[id]; ok {
			out[id] = isWindows(os)
		} else {
			unknown = append(unknown, id)
		}
	}
	s.hmu.Unlock()
	for start := 0; start < len(unknown); start += MaxBatch {
		chunk := unknown[start:min(start+MaxBatch, len(unknown))]
		reqs := make([]*abstractions.RequestInformation, len(chunk))
		for j, id := range chunk {
			ri, err := s.deviceBuilder(id).ToGetRequestInformation(ctx, &deviceswithdeviceid.DevicesWithDeviceIdRequestBuilderGetRequestConfiguration{
				Headers:         s.headers(ctx),
				QueryParameters: &deviceswithdeviceid.DevicesWithDeviceIdRequestBuilderGetQueryParameters{Select: []string{"id", "operatingSystem"}},
			})
			if err == nil {
				reqs[j] = ri
			}
		}
		for j, r := range s.runBatch(ctx, reqs, false) {
			if reqs[j] == nil || r.outcome != nil || r.status != http.StatusOK {
				continue
			}
			os := str(r.body["operatingSystem"])
			s.hmu.Lock()
			if s.osCache == nil {
				s.osCache = map[string]string{}
			}
			s.osCache[chunk[j]] = os
			s.hmu.Unlock()
			out[chunk[j]] = isWindows(os)
		}
	}
	return out
}

func isWindows(os string) bool { return strings.HasPrefix(strings.ToLower(os), "windows") }

// apply writes each change's attribute value: a single PATCH for one
// change, $batch requests of up to 20 otherwise. Throttled (429) and failed
// (5xx) items are re-sent within the call per their Retry-After while the
// total wait stays under MaxInlineWait; what is left comes back as Retry.
// Outcomes are returned in the order of changes.
func (s *Sink) apply(ctx context.Context, changes []change) []outcome {
	out := make([]outcome, len(changes))
	var todo []int
	for i, c := range changes {
		out[i].DeviceID = c.DeviceID
		if !reGUID.MatchString(c.DeviceID) {
			out[i].Status, out[i].Code = failed, "invalid_device_id"
			out[i].Message = fmt.Sprintf("%q is not an Entra device id (a GUID)", c.DeviceID)
			continue
		}
		todo = append(todo, i)
	}
	var ids []string
	for _, i := range todo {
		ids = append(ids, changes[i].DeviceID)
	}
	windows := s.windowsDevices(ctx, ids)
	if len(todo) == 1 {
		i := todo[0]
		_, err := s.deviceBuilder(changes[i].DeviceID).Patch(ctx, s.patchBody(changes[i].Compliant, windows[changes[i].DeviceID]),
			&deviceswithdeviceid.DevicesWithDeviceIdRequestBuilderPatchRequestConfiguration{Headers: s.headers(ctx)})
		if err != nil {
			out[i] = s.outcomeFromError(changes[i].DeviceID, err, true)
		} else {
			out[i].Status = applied
		}
		return out
	}
	for start := 0; start < len(todo); start += MaxBatch {
		chunk := todo[start:min(start+MaxBatch, len(todo))]
		reqs := make([]*abstractions.RequestInformation, len(chunk))
		for j, i := range chunk {
			ri, err := s.deviceBuilder(changes[i].DeviceID).ToPatchRequestInformation(ctx, s.patchBody(changes[i].Compliant, windows[changes[i].DeviceID]),
				&deviceswithdeviceid.DevicesWithDeviceIdRequestBuilderPatchRequestConfiguration{Headers: s.headers(ctx)})
			if err != nil {
				out[i] = outcome{DeviceID: changes[i].DeviceID, Status: failed, Code: "request_build_failed", Message: err.Error()}
				continue
			}
			reqs[j] = ri
		}
		results := s.runBatch(ctx, reqs, true)
		for j, i := range chunk {
			if reqs[j] == nil {
				continue
			}
			r := results[j]
			if r.outcome != nil {
				out[i] = *r.outcome
				out[i].DeviceID = changes[i].DeviceID
				continue
			}
			out[i] = s.outcomeFromItem(changes[i].DeviceID, r, true)
		}
	}
	return out
}

// itemResult is one $batch item's final answer, or an outcome when the
// item could not get one (whole batch failed, retries exhausted).
type itemResult struct {
	status  int
	headers map[string]string
	body    map[string]any
	outcome *outcome
}

// runBatch sends reqs (nil entries skipped) as one $batch and re-sends
// throttled or failed items while retries and MaxInlineWait allow.
func (s *Sink) runBatch(ctx context.Context, reqs []*abstractions.RequestInformation, write bool) []itemResult {
	res := make([]itemResult, len(reqs))
	var todo []int
	for j, r := range reqs {
		if r != nil {
			todo = append(todo, j)
		}
	}
	var waited time.Duration
	for attempt := 0; len(todo) > 0; attempt++ {
		items, err := s.sendBatch(ctx, reqs, todo)
		if err != nil {
			o := s.outcomeFromError("", err, write)
			for _, j := range todo {
				oc := o
				res[j] = itemResult{outcome: &oc}
			}
			return res
		}
		var again []int
		var wait time.Duration
		for _, j := range todo {
			it := items[j]
			res[j] = it
			if retryableStatus(it.status) {
				again = append(again, j)
				d, ok := parseRetryAfter(headerValue(it.headers, "Retry-After"), time.Now())
				if !ok {
					d = backoff(attempt)
				}
				wait = max(wait, d)
			}
		}
		if len(again) == 0 {
			return res
		}
		if attempt >= s.cfg.MaxRetries || waited+wait > s.cfg.MaxInlineWait || !fitsDeadline(ctx, wait) {
			for _, j := range again {
				ge := itemError(res[j])
				if !ge.HasRetry {
					ge.RetryAfter = backoff(attempt)
				}
				res[j].outcome = &outcome{Status: retry, HTTPStatus: ge.Status, RetryAfter: ge.RetryAfter, Code: ge.Code, Message: ge.Message}
			}
			return res
		}
		s.log.Debug("graph: re-sending batch items", "items", len(again), "wait", wait, "attempt", attempt+1)
		if err := s.sleep(ctx, wait); err != nil {
			for _, j := range again {
				res[j].outcome = &outcome{Status: retry, RetryAfter: wait, Code: "canceled", Message: err.Error()}
			}
			return res
		}
		waited += wait
		todo = again
	}
	return res
}

func (s *Sink) sendBatch(ctx context.Context, reqs []*abstractions.RequestInformation, todo []int) (map[int]itemResult, error) {
	batch := msgraphgocore.NewBatchRequest(s.adapter)
	ids := make(map[string]int, len(todo))
	for _, j := range todo {
		// AddBatchRequestStep takes the request by value but keeps its maps; copy
		// the path parameters so re-sends stay independent.
		ri := *reqs[j]
		item, err := batch.AddBatchRequestStep(ri)
		if err != nil {
			return nil, fmt.Errorf("graph: batch item: %w", err)
		}
		ids[deref(item.GetId())] = j
	}
	ri := abstractions.NewRequestInformation()
	ri.Method = abstractions.POST
	ri.UrlTemplate = "{+baseurl}/$batch"
	ri.PathParameters["baseurl"] = s.adapter.GetBaseUrl()
	if err := ri.SetContentFromParsable(ctx, s.adapter, "application/json", batch); err != nil {
		return nil, fmt.Errorf("graph: batch body: %w", err)
	}
	ri.Headers.AddAll(s.headers(ctx))
	resp, err := s.adapter.Send(ctx, ri, msgraphgocore.CreateBatchResponseDiscriminator,
		abstractions.ErrorMappings{"XXX": odataerrors.CreateODataErrorFromDiscriminatorValue})
	if err != nil {
		return nil, err
	}
	br, ok := resp.(msgraphgocore.BatchResponse)
	if !ok || br == nil {
		return nil, errors.New("graph: $batch returned no body")
	}
	out := make(map[int]itemResult, len(todo))
	for _, it := range br.GetResponses() {
		j, ok := ids[deref(it.GetId())]
		if !ok || it.GetStatus() == nil {
			continue
		}
		out[j] = itemResult{status: int(*it.GetStatus()), headers: it.GetHeaders(), body: it.GetBody()}
	}
	for _, j := range todo {
		if _, ok := out[j]; !ok {
			out[j] = itemResult{status: http.StatusBadGateway, body: map[string]any{"error": map[string]any{"code": "missing_batch_response", "message": "$batch answer has no response for this item"}}}
		}
	}
	return out, nil
}

func headerValue(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

// itemError reads a $batch item's error body.
func itemError(r itemResult) graphError {
	ge := graphError{Status: r.status}
	if e, ok := r.body["error"].(map[string]any); ok {
		ge.Code, ge.Message = str(e["code"]), str(e["message"])
	}
	ge.RetryAfter, ge.HasRetry = parseRetryAfter(headerValue(r.headers, "Retry-After"), time.Now())
	return ge
}

func (s *Sink) outcomeFromItem(deviceID string, r itemResult, write bool) outcome {
	if r.status >= 200 && r.status < 300 {
		return outcome{DeviceID: deviceID, Status: applied}
	}
	return s.outcomeFromGraph(deviceID, itemError(r), write)
}

func (s *Sink) outcomeFromGraph(deviceID string, ge graphError, write bool) outcome {
	o := outcome{DeviceID: deviceID, Code: ge.Code, Message: ge.Message, HTTPStatus: ge.Status}
	switch {
	case ge.Status == http.StatusNotFound && ge.Code != "Request_ResourceNotFound" && ge.Code != "ResourceNotFound" && ge.Code != "":
		// Not Graph's "no such object": a proxy or a wrong base URL. Every
		// device would fail alike, so do not dead-letter them one by one.
		o.Status, o.RetryAfter, o.Health, o.Code = retry, time.Minute, HealthUnreachable, "http_404"
		o.Message = fmt.Sprintf("%s answered 404 without a Graph error (%s); check the Graph base URL", s.ep.GraphBaseURL, ge.Message)
	case ge.Status == http.StatusNotFound:
		o.Status, o.Code = failed, "device_not_found"
		o.Message = fmt.Sprintf("no device with deviceId %s in tenant %s (%s)", deviceID, s.cfg.TenantID, ge.Message)
	case ge.Status == http.StatusForbidden:
		he := permissionHealth(ge, write)
		o.Status, o.Health, o.Message = failed, he.Health, he.Message
		if write && s.cfg.WindowsMDM {
			o.Message += "; or, with WindowsMDM on, the app is not an approved Windows MDM app (only those may write isCompliant/isManaged): turn WindowsMDM off"
		}
	case ge.Status == http.StatusUnauthorized:
		o.Status, o.Health = failed, HealthAuthFailed
		o.Message = "Graph rejected the access token: " + ge.Message
	case retryableStatus(ge.Status):
		o.Status, o.RetryAfter = retry, ge.RetryAfter
		if !ge.HasRetry {
			o.RetryAfter = backoff(0)
		}
	default:
		o.Status = failed
		if o.Code == "" {
			o.Code = fmt.Sprintf("http_%d", ge.Status)
		}
	}
	return o
}

// outcomeFromError classifies an error from a whole request.
func (s *Sink) outcomeFromError(deviceID string, err error, write bool) outcome {
	if he := classifyTokenError(err, s.cfg.ClientID, s.cfg.TenantID); he != nil {
		if he.Health == HealthUnreachable {
			return outcome{DeviceID: deviceID, Status: retry, RetryAfter: time.Minute, Health: he.Health, Code: "unreachable", Message: he.Message}
		}
		return outcome{DeviceID: deviceID, Status: failed, Health: he.Health, Code: he.Code, Message: he.Message}
	}
	if ge, ok := fromAPIError(err); ok && ge.Status != 0 {
		return s.outcomeFromGraph(deviceID, ge, write)
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return outcome{DeviceID: deviceID, Status: retry, RetryAfter: backoff(0), Code: "canceled", Message: err.Error()}
	}
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	if errors.As(err, &uae) || errors.As(err, &hne) {
		return outcome{DeviceID: deviceID, Status: retry, RetryAfter: time.Minute, Health: HealthUnreachable, Code: "tls_untrusted",
			Message: "TLS certificate not trusted (add the CA to the integration's extra trusted CA): " + err.Error()}
	}
	return outcome{DeviceID: deviceID, Status: retry, RetryAfter: backoff(1), Health: HealthUnreachable, Code: "unreachable", Message: err.Error()}
}

// Read implements the sync worker's Reader for reconcile, as low priority
// $batch GETs: each device's extensionAttributeN mapped back to
// DesiredCompliant / DesiredNoncompliant, "" when unset or holding another
// value. Devices Graph does not know are absent from the map. An
// integration-wide failure returns a *HealthError; other per-item failures
// are joined into the error while the map holds the devices that were read.
func (s *Sink) Read(ctx context.Context, deviceIDs []string) (map[string]string, error) {
	ctx = WithLowPriority(ctx)
	got := make(map[string]string, len(deviceIDs))
	var errs []error
	var ids []string
	for _, id := range deviceIDs {
		if reGUID.MatchString(id) {
			ids = append(ids, id)
		} else {
			errs = append(errs, fmt.Errorf("graph: %q is not an Entra device id", id))
		}
	}
	attr := s.AttributeName()
	for start := 0; start < len(ids); start += MaxBatch {
		chunk := ids[start:min(start+MaxBatch, len(ids))]
		reqs := make([]*abstractions.RequestInformation, len(chunk))
		for j, id := range chunk {
			ri, err := s.deviceBuilder(id).ToGetRequestInformation(ctx, &deviceswithdeviceid.DevicesWithDeviceIdRequestBuilderGetRequestConfiguration{
				Headers: s.headers(ctx),
				QueryParameters: &deviceswithdeviceid.DevicesWithDeviceIdRequestBuilderGetQueryParameters{
					Select: []string{"id", "deviceId", "extensionAttributes", "displayName", "operatingSystem"}},
			})
			if err != nil {
				errs = append(errs, fmt.Errorf("graph: read %s: %w", id, err))
				continue
			}
			reqs[j] = ri
		}
		for j, r := range s.runBatch(ctx, reqs, false) {
			if reqs[j] == nil {
				continue
			}
			id := chunk[j]
			if r.outcome != nil {
				o := r.outcome
				if o.Health != "" {
					s.setHealth(o.Health, o.Code, o.Message)
					return got, &HealthError{Health: o.Health, Code: o.Code, Message: o.Message}
				}
				errs = append(errs, fmt.Errorf("graph: read %s: %s %s", id, o.Code, o.Message))
				continue
			}
			switch {
			case r.status == http.StatusOK:
				got[id] = s.desiredFrom(attributeFrom(r.body, attr))
				s.hmu.Lock()
				if s.info == nil {
					s.info = map[string]hubsync.DeviceInfo{}
				}
				s.info[id] = hubsync.DeviceInfo{DisplayName: str(r.body["displayName"]), OperatingSystem: str(r.body["operatingSystem"])}
				s.hmu.Unlock()
			case r.status == http.StatusNotFound:
				// absent: the caller sees the device is gone
			default:
				o := s.outcomeFromItem(id, r, false)
				if o.Health != "" {
					s.setHealth(o.Health, o.Code, o.Message)
					return got, &HealthError{Health: o.Health, Code: o.Code, Message: o.Message}
				}
				errs = append(errs, fmt.Errorf("graph: read %s: %s %s", id, o.Code, o.Message))
			}
		}
	}
	if len(got) > 0 {
		s.setHealth(HealthOK, "", "")
	}
	return got, errors.Join(errs...)
}

// DeviceInfo implements hub/sync's InfoReader: the display name and
// operating system Graph gave for a device in the last Read.
func (s *Sink) DeviceInfo(deviceID string) (hubsync.DeviceInfo, bool) {
	s.hmu.Lock()
	defer s.hmu.Unlock()
	in, ok := s.info[deviceID]
	delete(s.info, deviceID)
	return in, ok
}

func attributeFrom(body map[string]any, attr string) string {
	ea, _ := body["extensionAttributes"].(map[string]any)
	return str(ea[attr])
}

// str reads a string from msgraph-sdk-go-core's untyped batch bodies, which
// hold *string for JSON strings.
func str(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case *string:
		return deref(s)
	}
	return ""
}

// desiredFrom maps an attribute value back to the sync worker's desired state.
func (s *Sink) desiredFrom(v string) string {
	switch v {
	case s.cfg.CompliantValue:
		return hubsync.DesiredCompliant
	case s.cfg.NoncompliantValue:
		return hubsync.DesiredNoncompliant
	}
	return ""
}

// fitsDeadline: waiting d still leaves time for the re-send before ctx ends.
func fitsDeadline(ctx context.Context, d time.Duration) bool {
	dl, ok := ctx.Deadline()
	return !ok || time.Until(dl) > d+time.Second
}

// credentialPause is how long a tenant is paused after a credential
// failure; an administrator has to act, and TestConnection says what to do.
const credentialPause = 5 * time.Minute

// MaxBatch implements the sync worker's BatchSizer.
func (s *Sink) MaxBatch() int { return MaxBatch }

// Apply implements the sync worker's Sink. Outcomes map as: written → OK;
// 429 still throttled after in-call retries → Throttled (with Retry-After);
// 5xx, timeouts, unreachable → Retry; credential failures (AADSTS…, 401) →
// Throttled for a few minutes (the whole tenant waits for an administrator);
// device not found, bad request, missing permission → Permanent.
func (s *Sink) Apply(ctx context.Context, changes []hubsync.Change) []hubsync.Outcome {
	var in []change
	var attrs []int
	low := false
	for i, c := range changes {
		low = low || c.LowPriority
		if c.Kind == hubsync.KindRevokeSessions {
			continue
		}
		attrs = append(attrs, i)
		in = append(in, change{DeviceID: c.DeviceID, Compliant: c.Desired == hubsync.DesiredCompliant})
	}
	if low {
		ctx = hubsync.WithLowPriority(ctx)
	}
	out := make([]hubsync.Outcome, len(changes))
	var res []outcome
	if len(in) > 0 {
		res = s.apply(ctx, in)
		for j, o := range res {
			out[attrs[j]] = toSyncOutcome(o)
		}
	}
	for i, c := range changes {
		if c.Kind == hubsync.KindRevokeSessions {
			o := s.revokeSessions(ctx, c.Subject)
			out[i] = toSyncOutcome(o)
			res = append(res, o)
		}
	}
	s.noteHealth(res)
	return out
}

func toSyncOutcome(o outcome) hubsync.Outcome {
	so := hubsync.Outcome{RetryAfter: o.RetryAfter, Code: o.Code, Message: o.Message}
	switch {
	case o.Status == applied:
		so.Kind = hubsync.OutcomeOK
	case o.Status == retry && o.HTTPStatus == http.StatusTooManyRequests:
		so.Kind = hubsync.OutcomeThrottled
	case o.Status == retry:
		so.Kind = hubsync.OutcomeRetry
	case o.Health != "" && o.Health != HealthPermissionMissing:
		so.Kind = hubsync.OutcomeThrottled
		so.RetryAfter = credentialPause
	default:
		so.Kind = hubsync.OutcomePermanent
	}
	if so.Kind != hubsync.OutcomeOK && so.Code == "" {
		so.Code = o.Status.String()
	}
	return so
}
