package standin

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Device is a directory device object as far as the stand-in models it.
type Device struct {
	ID                  string            `json:"id"`
	DeviceID            string            `json:"deviceId"`
	DisplayName         string            `json:"displayName"`
	OperatingSystem     string            `json:"operatingSystem"`
	ExtensionAttributes map[string]string `json:"extensionAttributes"` // "extensionAttribute1".."15"; absent = null
	IsCompliant         *bool             `json:"isCompliant"`
	IsManaged           *bool             `json:"isManaged"`
}

// Write records one property a PATCH set on a device.
type Write struct {
	DeviceID  string    `json:"deviceId"`
	Attribute string    `json:"attribute"` // e.g. "extensionAttribute3", "isCompliant"
	Value     *string   `json:"value"`
	At        time.Time `json:"at"`
	Priority  string    `json:"priority,omitempty"` // x-ms-throttle-priority
	Batched   bool      `json:"batched"`
	ClientID  string    `json:"clientId"`
}

// FaultScope says where a fault applies.
type FaultScope string

const (
	// ScopeRequest faults hit whole HTTP requests to /v1.0 (a $batch fails as one).
	ScopeRequest FaultScope = "request"
	// ScopeItem faults hit single device operations, direct or inside a $batch.
	ScopeItem FaultScope = "item"
)

// Fault is an injected failure or delay.
type Fault struct {
	Scope FaultScope `json:"scope"`
	// DeviceID limits an item fault to one device ("" = any device).
	DeviceID string `json:"deviceId,omitempty"`
	// Method limits the fault to GET or PATCH ("" = any).
	Method string `json:"method,omitempty"`
	// Status to answer (429, 500, 503, 403...); 0 = only delay, then serve.
	Status int `json:"status,omitempty"`
	// RetryAfter is sent verbatim as the Retry-After header (e.g. "0.25").
	RetryAfter string `json:"retryAfter,omitempty"`
	// Delay before answering; the request's context still cancels it.
	Delay time.Duration `json:"delay,omitempty"`
	// Times the fault fires; 0 = until cleared.
	Times int `json:"times,omitempty"`
}

// Graph is the Microsoft Graph stand-in.
type Graph struct {
	srv   *httptest.Server
	entra *Entra
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	devices  []*Device // insertion order, for stable listing
	byDevID  map[string]*Device
	writes   []Write
	faults   []*Fault
	requests int
	gzipped  int
	batches  int
	low      int

	// resource is the audience an access token must carry (like Graph,
	// which refuses a token issued for another resource).
	resource    string
	log2        []Request
	rejected    map[string]bool
	users       []*DirectoryUser
	revocations []Revocation
}

// Request is one HTTP request as it came over the wire (top level; $batch
// items are not split out).
type Request struct {
	Method   string
	Path     string
	RawQuery string
	Token    string // the bearer token sent
	// Batched: an item of a $batch (Token is the $batch request's).
	Batched bool
}

// DirectoryUser is a directory user as far as session revocation needs one.
type DirectoryUser struct {
	ID                string `json:"id"`
	UserPrincipalName string `json:"userPrincipalName"`
}

// Revocation records one successful POST /users/{id}/revokeSignInSessions.
type Revocation struct {
	UserID   string
	UPN      string
	ClientID string
	At       time.Time
}

// PermUserRevokeSessionsAll is the least-privileged application permission
// for POST /users/{id}/revokeSignInSessions.
const PermUserRevokeSessionsAll = "User.RevokeSessions.All"

// DefaultResource is the resource identifier the Graph stand-in accepts
// tokens for unless SetResource says otherwise.
const DefaultResource = "https://graph.microsoft.com"

// graphAppID is Microsoft Graph's application id, a resource identifier
// equivalent to its URI.
const graphAppID = "00000003-0000-0000-c000-000000000000"

// SetResource sets the audience access tokens must carry.
func (g *Graph) SetResource(res string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.resource = res
}

// Requests returns every request to /v1.0 seen so far, in order.
func (g *Graph) Requests() []Request {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Request(nil), g.log2...)
}

// RejectToken makes Graph answer 401 InvalidAuthenticationToken to a
// token that is otherwise valid (as after a revocation or key rollover).
func (g *Graph) RejectToken(tok string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.rejected == nil {
		g.rejected = map[string]bool{}
	}
	g.rejected[tok] = true
}

// AddUser adds a directory user (ID is generated when empty).
func (g *Graph) AddUser(u DirectoryUser) DirectoryUser {
	g.mu.Lock()
	defer g.mu.Unlock()
	if u.ID == "" {
		u.ID = randomUUID()
	}
	cp := u
	g.users = append(g.users, &cp)
	return cp
}

// Revocations returns every session revocation made so far.
func (g *Graph) Revocations() []Revocation {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Revocation(nil), g.revocations...)
}

// NewGraph starts a Graph stand-in that accepts access tokens issued by entra.
func NewGraph(ca *CA, entra *Entra, addr string, log *slog.Logger) (*Graph, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	g := &Graph{entra: entra, log: log, now: time.Now, byDevID: map[string]*Device{}, resource: DefaultResource}
	srv, err := startTLS(ca, addr, http.HandlerFunc(g.serve), log)
	if err != nil {
		return nil, err
	}
	g.srv = srv
	return g, nil
}

// URL is the Graph base URL including the version (https://host:port/v1.0).
func (g *Graph) URL() string { return g.srv.URL + "/v1.0" }

// Root is the server root (where /_standin/ lives).
func (g *Graph) Root() string { return g.srv.URL }

// Close stops the server.
func (g *Graph) Close() { g.srv.Close() }

// AddDevice seeds a device; an empty ID gets a random object id.
func (g *Graph) AddDevice(d Device) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cp := d
	if cp.ID == "" {
		cp.ID = randomUUID()
	}
	cp.ExtensionAttributes = map[string]string{}
	for k, v := range d.ExtensionAttributes {
		cp.ExtensionAttributes[k] = v
	}
	if old, ok := g.byDevID[strings.ToLower(cp.DeviceID)]; ok {
		*old = cp
		return
	}
	g.devices = append(g.devices, &cp)
	g.byDevID[strings.ToLower(cp.DeviceID)] = &cp
}

// Device returns a copy of the device with that deviceId.
func (g *Graph) Device(deviceID string) (Device, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, ok := g.byDevID[strings.ToLower(deviceID)]
	if !ok {
		return Device{}, false
	}
	return copyDevice(d), true
}

// Attribute returns extensionAttributeN of a device ("" and false when unset).
func (g *Graph) Attribute(deviceID string, n int) (string, bool) {
	d, ok := g.Device(deviceID)
	if !ok {
		return "", false
	}
	v, ok := d.ExtensionAttributes[fmt.Sprintf("extensionAttribute%d", n)]
	return v, ok
}

// SetAttribute changes an attribute behind the sink's back (drift), without
// recording a write.
func (g *Graph) SetAttribute(deviceID string, n int, value string) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	d, ok := g.byDevID[strings.ToLower(deviceID)]
	if ok {
		d.ExtensionAttributes[fmt.Sprintf("extensionAttribute%d", n)] = value
	}
	return ok
}

// Devices returns copies of all devices in insertion order.
func (g *Graph) Devices() []Device {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Device, 0, len(g.devices))
	for _, d := range g.devices {
		out = append(out, copyDevice(d))
	}
	return out
}

// Writes returns every recorded property write.
func (g *Graph) Writes() []Write {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]Write(nil), g.writes...)
}

// WritesFor returns the recorded writes for one device.
func (g *Graph) WritesFor(deviceID string) []Write {
	var out []Write
	for _, w := range g.Writes() {
		if strings.EqualFold(w.DeviceID, deviceID) {
			out = append(out, w)
		}
	}
	return out
}

// Stats are request counters.
type Stats struct {
	Requests    int // HTTP requests to /v1.0
	Gzipped     int // ... whose body was gzip-encoded
	Batches     int // ... that were $batch calls
	LowPriority int // ... sent with x-ms-throttle-priority: Low
}

// Stats reports request counters.
func (g *Graph) Stats() Stats {
	g.mu.Lock()
	defer g.mu.Unlock()
	return Stats{Requests: g.requests, Gzipped: g.gzipped, Batches: g.batches, LowPriority: g.low}
}

// InjectFault adds a fault; faults are checked in the order added.
func (g *Graph) InjectFault(f Fault) {
	g.mu.Lock()
	defer g.mu.Unlock()
	cp := f
	if cp.Scope == "" {
		cp.Scope = ScopeItem
	}
	g.faults = append(g.faults, &cp)
}

// ClearFaults removes all faults.
func (g *Graph) ClearFaults() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.faults = nil
}

func copyDevice(d *Device) Device {
	cp := *d
	cp.ExtensionAttributes = make(map[string]string, len(d.ExtensionAttributes))
	for k, v := range d.ExtensionAttributes {
		cp.ExtensionAttributes[k] = v
	}
	return cp
}

// takeFault returns the first matching fault and consumes one firing.
func (g *Graph) takeFault(scope FaultScope, method, deviceID string) *Fault {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, f := range g.faults {
		if f.Scope != scope || (f.Method != "" && !strings.EqualFold(f.Method, method)) ||
			(f.DeviceID != "" && !strings.EqualFold(f.DeviceID, deviceID)) {
			continue
		}
		cp := *f
		if f.Times > 0 {
			f.Times--
			if f.Times == 0 {
				g.faults = append(g.faults[:i], g.faults[i+1:]...)
			}
		}
		return &cp
	}
	return nil
}

// response is what a handler produces, so $batch items and direct requests
// share one code path.
type response struct {
	status  int
	headers map[string]string
	body    any // nil = no body
}

func (g *Graph) serve(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, "/_standin/") {
		g.serveControl(w, r)
		return
	}
	if !strings.HasPrefix(r.URL.Path, "/v1.0/") {
		writeResponse(w, odataError(http.StatusBadRequest, "BadRequest", "Invalid version: "+strings.Split(strings.TrimPrefix(r.URL.Path, "/"), "/")[0]))
		return
	}
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	g.mu.Lock()
	g.log2 = append(g.log2, Request{Method: r.Method, Path: r.URL.Path, RawQuery: r.URL.RawQuery, Token: tok})
	g.requests++
	if strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		g.gzipped++
	}
	if strings.EqualFold(r.Header.Get("x-ms-throttle-priority"), "low") {
		g.low++
	}
	g.mu.Unlock()

	body, err := readBody(r)
	if err != nil {
		writeResponse(w, odataError(http.StatusBadRequest, "BadRequest", err.Error()))
		return
	}
	if f := g.takeFault(ScopeRequest, r.Method, ""); f != nil {
		if res, done := g.applyFault(r, f); done {
			writeResponse(w, res)
			return
		}
	}
	app, res := g.authenticate(r.Header.Get("Authorization"))
	if res != nil {
		writeResponse(w, *res)
		return
	}
	path := strings.TrimPrefix(r.URL.Path, "/v1.0")
	if path == "/$batch" && r.Method == http.MethodPost {
		g.mu.Lock()
		g.batches++
		g.mu.Unlock()
		writeResponse(w, g.batch(r, app, body))
		return
	}
	writeResponse(w, g.route(r, app, r.Method, path, r.URL.Query(), body, r.Header.Get("x-ms-throttle-priority"), false))
}

// applyFault delays and/or answers per the fault; done=false means carry on.
func (g *Graph) applyFault(r *http.Request, f *Fault) (response, bool) {
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return odataError(http.StatusServiceUnavailable, "ServiceUnavailable", "client went away"), true
		}
	}
	if f.Status == 0 {
		return response{}, false
	}
	res := faultResponse(f)
	return res, true
}

func faultResponse(f *Fault) response {
	var res response
	switch {
	case f.Status == http.StatusTooManyRequests:
		res = odataError(f.Status, "TooManyRequests", "Too many requests.")
	case f.Status == http.StatusForbidden:
		res = odataError(f.Status, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
	case f.Status >= 500:
		res = odataError(f.Status, "ServiceUnavailable", fmt.Sprintf("Injected server error %d.", f.Status))
	default:
		res = odataError(f.Status, "BadRequest", fmt.Sprintf("Injected error %d.", f.Status))
	}
	if f.RetryAfter != "" {
		res.headers["Retry-After"] = f.RetryAfter
	}
	return res
}

func (g *Graph) authenticate(authz string) (*App, *response) {
	tok, ok := strings.CutPrefix(authz, "Bearer ")
	if !ok || tok == "" {
		r := odataError(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token is empty.")
		return nil, &r
	}
	g.mu.Lock()
	res, rejected := g.resource, g.rejected[tok]
	g.mu.Unlock()
	app, ok := g.entra.authorize(tok, res)
	if !ok {
		app, ok = g.entra.authorize(tok, graphAppID)
	}
	if !ok || rejected {
		r := odataError(http.StatusUnauthorized, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience.")
		return nil, &r
	}
	return app, nil
}

func hasPerm(app *App, perms ...string) bool {
	for _, p := range app.Permissions {
		for _, want := range perms {
			if p == want {
				return true
			}
		}
	}
	return false
}

var (
	reAppByAppID = regexp.MustCompile(`^/applications\(appId='([^']*)'\)$`)
	reByDeviceID = regexp.MustCompile(`^/devices\(deviceId='([^']*)'\)$`)
	reByObjectID = regexp.MustCompile(`^/devices/([0-9A-Fa-f-]{36})$`)
	// {id} is the object id or the userPrincipalName (path-escaped).
	reRevokeSessions = regexp.MustCompile(`^/users/([^/]+)/revokeSignInSessions$`)
)

// route serves one device operation (direct or a $batch item).
func (g *Graph) route(r *http.Request, app *App, method, path string, q url.Values, body []byte, priority string, batched bool) response {
	if path == "/devices" && method == http.MethodGet {
		if !hasPerm(app, PermDeviceReadAll, PermDeviceReadWriteAll) {
			return denied()
		}
		return g.list(q)
	}
	if m := reAppByAppID.FindStringSubmatch(path); m != nil && method == http.MethodGet {
		return g.application(app, m[1])
	}
	if m := reRevokeSessions.FindStringSubmatch(path); m != nil {
		if method != http.MethodPost {
			return odataError(http.StatusMethodNotAllowed, "Request_BadRequest", "Method not allowed.")
		}
		return g.revokeSessions(app, m[1])
	}
	var dev *Device
	var key string
	faultKey := ""
	if m := reByDeviceID.FindStringSubmatch(path); m != nil {
		key = m[1]
		g.mu.Lock()
		dev = g.byDevID[strings.ToLower(key)]
		g.mu.Unlock()
	} else if m := reByObjectID.FindStringSubmatch(path); m != nil {
		key = m[1]
		g.mu.Lock()
		for _, d := range g.devices {
			if strings.EqualFold(d.ID, key) {
				dev = d
			}
		}
		g.mu.Unlock()
	} else {
		return odataError(http.StatusBadRequest, "BadRequest", fmt.Sprintf("Resource not found for the segment '%s'.", strings.TrimPrefix(path, "/")))
	}
	g.mu.Lock()
	if dev != nil {
		faultKey = dev.DeviceID
	} else {
		faultKey = key
	}
	g.mu.Unlock()
	if f := g.takeFault(ScopeItem, method, faultKey); f != nil {
		if res, done := g.applyFault(r, f); done {
			return res
		}
	}
	switch method {
	case http.MethodGet:
		if !hasPerm(app, PermDeviceReadAll, PermDeviceReadWriteAll) {
			return denied()
		}
		if dev == nil {
			return notFound(key)
		}
		g.mu.Lock()
		out := render(dev, selectFields(q.Get("$select")))
		g.mu.Unlock()
		out["@odata.context"] = g.srv.URL + "/v1.0/$metadata#devices/$entity"
		return response{status: http.StatusOK, headers: jsonHeaders(), body: out}
	case http.MethodPatch:
		if !hasPerm(app, PermDeviceReadWriteAll) {
			return denied()
		}
		if dev == nil {
			return notFound(key)
		}
		return g.patch(app, dev, body, priority, batched)
	default:
		return odataError(http.StatusMethodNotAllowed, "Request_BadRequest", "Method not allowed.")
	}
}

func denied() response {
	return odataError(http.StatusForbidden, "Authorization_RequestDenied", "Insufficient privileges to complete the operation.")
}

func notFound(key string) response {
	return odataError(http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", key))
}

func (g *Graph) patch(app *App, dev *Device, body []byte, priority string, batched bool) response {
	var in map[string]json.RawMessage
	if err := json.Unmarshal(body, &in); err != nil {
		return odataError(http.StatusBadRequest, "BadRequest", "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.")
	}
	type set struct {
		attr string
		val  *string
	}
	var sets []set
	for k, raw := range in {
		switch k {
		case "@odata.type":
		case "extensionAttributes":
			var ea map[string]*string
			if err := json.Unmarshal(raw, &ea); err != nil {
				return odataError(http.StatusBadRequest, "Request_BadRequest", "Invalid value for property 'extensionAttributes'.")
			}
			for ak, av := range ea {
				if ak == "@odata.type" {
					continue
				}
				n, err := strconv.Atoi(strings.TrimPrefix(ak, "extensionAttribute"))
				if !strings.HasPrefix(ak, "extensionAttribute") || err != nil || n < 1 || n > 15 {
					return odataError(http.StatusBadRequest, "Request_BadRequest", fmt.Sprintf("Property '%s' does not exist on type 'microsoft.graph.onPremisesExtensionAttributes'.", ak))
				}
				sets = append(sets, set{ak, av})
			}
		case "isCompliant", "isManaged":
			if !app.MDM {
				return denied()
			}
			var b *bool
			if err := json.Unmarshal(raw, &b); err != nil || b == nil {
				return odataError(http.StatusBadRequest, "Request_BadRequest", fmt.Sprintf("Invalid value for property '%s'.", k))
			}
			s := strconv.FormatBool(*b)
			sets = append(sets, set{k, &s})
		default:
			return odataError(http.StatusBadRequest, "Request_BadRequest", fmt.Sprintf("Property '%s' is read-only or does not exist on type 'microsoft.graph.device'.", k))
		}
	}
	sort.Slice(sets, func(i, j int) bool { return sets[i].attr < sets[j].attr })
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.now()
	for _, s := range sets {
		switch s.attr {
		case "isCompliant", "isManaged":
			b := *s.val == "true"
			if s.attr == "isCompliant" {
				dev.IsCompliant = &b
			} else {
				dev.IsManaged = &b
			}
		default:
			if s.val == nil {
				delete(dev.ExtensionAttributes, s.attr)
			} else {
				dev.ExtensionAttributes[s.attr] = *s.val
			}
		}
		var v *string
		if s.val != nil {
			vv := *s.val
			v = &vv
		}
		g.writes = append(g.writes, Write{DeviceID: dev.DeviceID, Attribute: s.attr, Value: v, At: now, Priority: priority, Batched: batched, ClientID: app.ClientID})
	}
	g.log.Debug("graph stand-in: patch", "device", dev.DeviceID, "props", len(sets))
	return response{status: http.StatusNoContent, headers: map[string]string{}}
}

var (
	reFilterEq = regexp.MustCompile(`^\s*deviceId\s+eq\s+'([^']*)'\s*$`)
	reFilterIn = regexp.MustCompile(`^\s*deviceId\s+in\s+\(([^)]*)\)\s*$`)
)

func (g *Graph) list(q url.Values) response {
	var want map[string]bool
	if f := q.Get("$filter"); f != "" {
		want = map[string]bool{}
		if m := reFilterEq.FindStringSubmatch(f); m != nil {
			want[strings.ToLower(m[1])] = true
		} else if m := reFilterIn.FindStringSubmatch(f); m != nil {
			items := strings.Split(m[1], ",")
			if len(items) > 15 {
				return odataError(http.StatusBadRequest, "Request_UnsupportedQuery", "Too many child clauses specified in search filter expression containing 'OR' operators: 16. Max allowed: 15.")
			}
			for _, it := range items {
				it = strings.TrimSpace(it)
				if len(it) < 2 || it[0] != '\'' || it[len(it)-1] != '\'' {
					return odataError(http.StatusBadRequest, "Request_UnsupportedQuery", "Invalid filter clause: "+f)
				}
				want[strings.ToLower(it[1:len(it)-1])] = true
			}
		} else {
			return odataError(http.StatusBadRequest, "Request_UnsupportedQuery", "Unsupported or invalid query filter clause specified for property 'deviceId' of resource 'Device'.")
		}
	}
	top := 100
	if t := q.Get("$top"); t != "" {
		n, err := strconv.Atoi(t)
		if err != nil || n < 1 || n > 999 {
			return odataError(http.StatusBadRequest, "Request_BadRequest", "Invalid page size specified: '"+t+"'. Must be between 1 and 999 inclusive.")
		}
		top = n
	}
	skip := 0
	if s := q.Get("$skiptoken"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 0 {
			return odataError(http.StatusBadRequest, "Request_BadRequest", "Invalid skip token.")
		}
		skip = n
	}
	fields := selectFields(q.Get("$select"))
	g.mu.Lock()
	defer g.mu.Unlock()
	var matched []*Device
	for _, d := range g.devices {
		if want == nil || want[strings.ToLower(d.DeviceID)] {
			matched = append(matched, d)
		}
	}
	out := map[string]any{"@odata.context": g.srv.URL + "/v1.0/$metadata#devices"}
	vals := []map[string]any{}
	for i := skip; i < len(matched) && i < skip+top; i++ {
		vals = append(vals, render(matched[i], fields))
	}
	out["value"] = vals
	if skip+top < len(matched) {
		nq := url.Values{}
		for k, v := range q {
			nq[k] = v
		}
		nq.Set("$skiptoken", strconv.Itoa(skip+top))
		out["@odata.nextLink"] = g.srv.URL + "/v1.0/devices?" + nq.Encode()
	}
	return response{status: http.StatusOK, headers: jsonHeaders(), body: out}
}

func selectFields(sel string) map[string]bool {
	if sel == "" {
		return nil
	}
	m := map[string]bool{"id": true}
	for _, f := range strings.Split(sel, ",") {
		m[strings.TrimSpace(f)] = true
	}
	return m
}

// render produces the JSON form of a device; callers hold g.mu.
func render(d *Device, fields map[string]bool) map[string]any {
	ea := map[string]any{}
	for i := 1; i <= 15; i++ {
		k := fmt.Sprintf("extensionAttribute%d", i)
		if v, ok := d.ExtensionAttributes[k]; ok {
			ea[k] = v
		} else {
			ea[k] = nil
		}
	}
	all := map[string]any{
		"id":                  d.ID,
		"deviceId":            d.DeviceID,
		"displayName":         d.DisplayName,
		"operatingSystem":     d.OperatingSystem,
		"accountEnabled":      true,
		"extensionAttributes": ea,
		"isCompliant":         d.IsCompliant,
		"isManaged":           d.IsManaged,
	}
	if fields == nil {
		return all
	}
	out := map[string]any{}
	for k := range fields {
		if v, ok := all[k]; ok {
			out[k] = v
		}
	}
	return out
}

type batchRequestItem struct {
	ID      string            `json:"id"`
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
}

func (g *Graph) batch(r *http.Request, app *App, body []byte) response {
	var in struct {
		Requests []batchRequestItem `json:"requests"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return odataError(http.StatusBadRequest, "BadRequest", "Invalid batch payload format.")
	}
	if len(in.Requests) == 0 {
		return odataError(http.StatusBadRequest, "BadRequest", "Invalid batch payload format.")
	}
	if len(in.Requests) > 20 {
		return odataError(http.StatusBadRequest, "BadRequest", "Number of batch requests in payload exceeds the limit of 20.")
	}
	outerPriority := r.Header.Get("x-ms-throttle-priority")
	seen := map[string]bool{}
	responses := make([]map[string]any, 0, len(in.Requests))
	for _, it := range in.Requests {
		if it.ID == "" || seen[it.ID] {
			return odataError(http.StatusBadRequest, "BadRequest", "Batch request ids must be present and unique.")
		}
		seen[it.ID] = true
		u, err := url.Parse(it.URL)
		if err != nil || !strings.HasPrefix(u.Path, "/") {
			responses = append(responses, batchItemResponse(it.ID, odataError(http.StatusBadRequest, "BadRequest", "Invalid request URL.")))
			continue
		}
		method := strings.ToUpper(it.Method)
		if (method == http.MethodPatch || method == http.MethodPost) && headerValue(it.Headers, "Content-Type") == "" {
			responses = append(responses, batchItemResponse(it.ID, odataError(http.StatusBadRequest, "BadRequest", "Content-Type header is required for requests with a body.")))
			continue
		}
		g.mu.Lock()
		g.log2 = append(g.log2, Request{Method: method, Path: u.Path, RawQuery: u.RawQuery, Batched: true,
			Token: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")})
		g.mu.Unlock()
		prio := headerValue(it.Headers, "x-ms-throttle-priority")
		if prio == "" {
			prio = outerPriority
		}
		var itemBody []byte
		if len(it.Body) > 0 && string(it.Body) != "null" {
			itemBody = it.Body
		}
		responses = append(responses, batchItemResponse(it.ID, g.route(r, app, method, strings.TrimPrefix(u.Path, "/v1.0"), u.Query(), itemBody, prio, true)))
	}
	return response{status: http.StatusOK, headers: jsonHeaders(), body: map[string]any{"responses": responses}}
}

func batchItemResponse(id string, res response) map[string]any {
	m := map[string]any{"id": id, "status": res.status, "headers": res.headers}
	if res.body != nil {
		m["body"] = res.body
	}
	return m
}

func headerValue(h map[string]string, name string) string {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v
		}
	}
	return ""
}

func jsonHeaders() map[string]string {
	return map[string]string{"Content-Type": "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"}
}

func odataError(status int, code, msg string) response {
	now := time.Now().UTC().Format("2006-01-02T15:04:05")
	return response{
		status:  status,
		headers: map[string]string{"Content-Type": "application/json"},
		body: map[string]any{"error": map[string]any{
			"code":    code,
			"message": msg,
			"innerError": map[string]any{
				"date":              now,
				"request-id":        randomUUID(),
				"client-request-id": randomUUID(),
			},
		}},
	}
}

func writeResponse(w http.ResponseWriter, res response) {
	for k, v := range res.headers {
		w.Header().Set(k, v)
	}
	if res.body == nil {
		w.WriteHeader(res.status)
		return
	}
	b, err := json.Marshal(res.body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.WriteHeader(res.status)
	_, _ = w.Write(b)
}

// readBody reads the request body, inflating gzip (Graph accepts
// Content-Encoding: gzip request bodies; the SDK's compression handler sends them).
func readBody(r *http.Request) ([]byte, error) {
	if r.Body == nil {
		return nil, nil
	}
	raw, err := io.ReadAll(io.LimitReader(r.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("reading body: %w", err)
	}
	if !strings.EqualFold(r.Header.Get("Content-Encoding"), "gzip") {
		return raw, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("body is not valid gzip: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(zr, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("body is not valid gzip: %w", err)
	}
	return out, nil
}

// serveControl is the unauthenticated loopback control surface the demo and
// out-of-process tests use.
func (g *Graph) serveControl(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.URL.Path == "/_standin/devices" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"devices": g.Devices()})
	case r.URL.Path == "/_standin/devices" && r.Method == http.MethodPost:
		var ds []Device
		if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&ds); err != nil {
			http.Error(w, "body must be a JSON array of devices: "+err.Error(), http.StatusBadRequest)
			return
		}
		for _, d := range ds {
			if d.DeviceID == "" {
				http.Error(w, "every device needs a deviceId", http.StatusBadRequest)
				return
			}
		}
		for _, d := range ds {
			g.AddDevice(d)
		}
		writeJSON(w, http.StatusOK, map[string]any{"added": len(ds)})
	case r.URL.Path == "/_standin/writes" && r.Method == http.MethodGet:
		writeJSON(w, http.StatusOK, map[string]any{"writes": g.Writes()})
	case r.URL.Path == "/_standin/faults" && r.Method == http.MethodPost:
		// Same fields as Fault, plus "delayMs" for people typing curl.
		var in struct {
			Fault
			DelayMS int64 `json:"delayMs"`
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 1<<20)).Decode(&in); err != nil {
			http.Error(w, "body must be a JSON fault: "+err.Error(), http.StatusBadRequest)
			return
		}
		f := in.Fault
		if in.DelayMS > 0 {
			f.Delay = time.Duration(in.DelayMS) * time.Millisecond
		}
		if f.Scope != "" && f.Scope != ScopeItem && f.Scope != ScopeRequest {
			http.Error(w, "scope must be \"item\" or \"request\"", http.StatusBadRequest)
			return
		}
		g.InjectFault(f)
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	case r.URL.Path == "/_standin/faults" && r.Method == http.MethodDelete:
		g.ClearFaults()
		writeJSON(w, http.StatusOK, map[string]any{"ok": true})
	default:
		http.NotFound(w, r)
	}
}

// PermApplicationReadAll lets an app read application registrations
// (used to learn when its own client secret expires).
const PermApplicationReadAll = "Application.Read.All"

// application serves GET /applications(appId='…'): the registration's
// password credentials (hint + endDateTime, never the secret) and key
// credentials.
func (g *Graph) application(caller *App, appID string) response {
	if !hasPerm(caller, PermApplicationReadAll, "Application.ReadWrite.All") {
		return denied()
	}
	a, ok := g.entra.app(appID)
	if !ok {
		return notFound(appID)
	}
	var pw []map[string]any
	for i, sec := range a.Secrets {
		end := sec.Expires
		if end.IsZero() {
			end = time.Now().AddDate(2, 0, 0) // Entra secrets always expire
		}
		hint := sec.Value
		if len(hint) > 3 {
			hint = hint[:3]
		}
		pw = append(pw, map[string]any{"keyId": fmt.Sprintf("00000000-0000-4000-8000-%012d", i+1), "displayName": fmt.Sprintf("secret %d", i+1),
			"hint": hint, "endDateTime": end.UTC().Format(time.RFC3339), "startDateTime": end.AddDate(-2, 0, 0).UTC().Format(time.RFC3339)})
	}
	var keys []map[string]any
	for i, c := range a.Certificates {
		keys = append(keys, map[string]any{"keyId": fmt.Sprintf("00000000-0000-4000-9000-%012d", i+1), "type": "AsymmetricX509Cert", "usage": "Verify",
			"displayName": "CN=" + c.Subject.CommonName, "endDateTime": c.NotAfter.UTC().Format(time.RFC3339)})
	}
	body := map[string]any{
		"@odata.context":      g.srv.URL + "/v1.0/$metadata#applications/$entity",
		"id":                  randomUUID(),
		"appId":               a.ClientID,
		"displayName":         "posture",
		"passwordCredentials": pw,
		"keyCredentials":      keys,
	}
	return response{status: http.StatusOK, headers: jsonHeaders(), body: body}
}

// revokeSessions serves POST /users/{id|upn}/revokeSignInSessions: it needs
// User.RevokeSessions.All (or a broader user write role) in the token, and
// answers 404 for a user the directory does not hold.
func (g *Graph) revokeSessions(app *App, key string) response {
	if !hasPerm(app, PermUserRevokeSessionsAll, "User.ReadWrite.All", "Directory.ReadWrite.All") {
		return denied()
	}
	if k, err := url.PathUnescape(key); err == nil {
		key = k
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, u := range g.users {
		if strings.EqualFold(u.ID, key) || strings.EqualFold(u.UserPrincipalName, key) {
			g.revocations = append(g.revocations, Revocation{UserID: u.ID, UPN: u.UserPrincipalName, ClientID: app.ClientID, At: g.now()})
			return response{status: http.StatusOK, headers: jsonHeaders(), body: map[string]any{
				"@odata.context": g.srv.URL + "/v1.0/$metadata#Edm.Boolean", "value": true}}
		}
	}
	return notFound(key)
}
