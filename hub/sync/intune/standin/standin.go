// Package standin is a local stand-in of the Intune device-compliance
// partner endpoints and of the Graph reads a partner needs (the Intune
// service principal's endPoints, users, groups), for tests and the demo.
// It is as strict as the real services where it matters:
//
//   - partner endpoints take only tokens for the Intune resource
//     (https://api.manage.microsoft.com/), Graph paths only Graph tokens;
//     expired or revoked tokens get 401, and freshly issued tokens can be
//     rejected once (Intune does that while a token propagates);
//   - upload messages are processed asynchronously: the first status read
//     says Pending, a later one Completed or Failed;
//   - activation can answer 200 without provisioning; an unregistered
//     platform's policy creation answers an empty 204; an existing policy 409;
//   - faults can be injected per path.
//
// Tokens come from the Entra stand-in of hub/sync/graph/standin.
package standin

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	graphstandin "github.com/posture-dev/posture/hub/sync/graph/standin"
)

// IntuneResource is the audience partner tokens must carry.
const IntuneResource = "https://api.manage.microsoft.com/"

// Upload is one processed compliance entity: what Intune would now hold.
type Upload struct {
	MessageID       string
	DeviceID        string
	UserID          string
	DeviceName      string
	ComplianceState string // compliant | notCompliant
	At              time.Time
}

// Policy is a partner compliance policy.
type Policy struct {
	ID, Name, Platform string
	Groups             []string
}

// Fault answers matching requests with Status (and Body) Times times.
type Fault struct {
	Method     string // "" = any
	PathPart   string // substring of the path, e.g. "PartnerTenantHeartbeat"
	Status     int
	Body       string
	RetryAfter string
	Times      int
}

// Counts are how often each partner operation was called.
type Counts struct {
	Activations, Deprovisions, Heartbeats, PolicyCreates, PolicyConflicts, Assigns, Uploads, StatusReads, Rejected401 int
}

// Intune is the stand-in.
type Intune struct {
	srv    *httptest.Server
	entra  *graphstandin.Entra
	tenant string
	log    *slog.Logger

	mu              sync.Mutex
	partnerApp      string
	provisioned     int
	enrollURL       string
	remediateURL    string
	lastHeartbeat   time.Time
	platforms       map[string]bool // registered for the partner
	policies        map[string]*Policy
	users           map[string]string // upn (lower) → object id
	groups          map[string]string // id → display name
	members         map[string][]Member
	memberReads     int
	devices         map[string]bool // device ids with inventory
	messages        map[string]*message
	uploads         []Upload
	faults          []Fault
	counts          Counts
	fakeOK          int             // activations answered 200 without provisioning
	rejectFresh     int             // fresh tokens to reject on first use
	seenTokens      map[string]bool // tokens used at least once
	failNextMessage int
	paths           []string
}

type message struct {
	id     string
	msg    rawMessage
	reads  int
	status string
	errors []entityError
}

type rawMessage struct {
	ID       string `json:"Id"`
	Entities []struct {
		EntityType     int       `json:"EntityType"`
		DeviceID       string    `json:"DeviceId"`
		LastUpdateTime time.Time `json:"LastUpdateTime"`
		Payload        struct {
			DeviceName      string `json:"DeviceName"`
			UserID          string `json:"UserId"`
			ComplianceState string `json:"ComplianceState"`
			OperatingSystem string `json:"OperatingSystem"`
		} `json:"Payload"`
	} `json:"Entities"`
}

type entityError struct {
	DeviceID string `json:"DeviceId"`
	Code     string `json:"Code"`
	Message  string `json:"Message"`
}

// Options for New.
type Options struct {
	// PartnerClientID is the onboarded partner app; other apps are refused.
	PartnerClientID string
	// Platforms registered for the partner (macOS, windows10, iOS, android);
	// default macOS and windows10.
	Platforms []string
	Addr      string // "" = 127.0.0.1:0
	Log       *slog.Logger
}

// New starts the stand-in on loopback HTTPS with a certificate from ca;
// tokens are checked against entra.
func New(ca *graphstandin.CA, entra *graphstandin.Entra, opts Options) (*Intune, error) {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if len(opts.Platforms) == 0 {
		opts.Platforms = []string{"macOS", "windows10"}
	}
	in := &Intune{entra: entra, tenant: entra.Tenant(), log: opts.Log, partnerApp: opts.PartnerClientID,
		platforms: map[string]bool{}, policies: map[string]*Policy{}, users: map[string]string{}, groups: map[string]string{},
		devices: map[string]bool{}, members: map[string][]Member{}, messages: map[string]*message{}, seenTokens: map[string]bool{}}
	for _, p := range opts.Platforms {
		in.platforms[p] = true
	}
	addr := opts.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	cert, err := ca.ServerCertificate(host)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(in.serve))
	srv.Listener.Close()
	srv.Listener = ln
	srv.Config.ErrorLog = slog.NewLogLogger(opts.Log.Handler(), slog.LevelDebug)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	srv.StartTLS()
	in.srv = srv
	return in, nil
}

// URL is the server's base URL.
func (in *Intune) URL() string { return in.srv.URL }

// GraphBaseURL is the Graph base URL to configure (a custom cloud).
func (in *Intune) GraphBaseURL() string { return in.srv.URL + "/v1.0" }

// Close stops the server.
func (in *Intune) Close() { in.srv.Close() }

// AddUser adds a directory user.
func (in *Intune) AddUser(upn, objectID string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.users[strings.ToLower(upn)] = objectID
}

// AddGroup adds a group.
func (in *Intune) AddGroup(id, name string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.groups[id] = name
}

// Member is a direct member of a group: a device (by its deviceId), a
// user (by UPN) or another group (nested: its members count transitively).
type Member struct {
	DeviceID, UPN, GroupID string
}

// AddMember adds a direct member to a group.
func (in *Intune) AddMember(groupID string, m Member) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.members[groupID] = append(in.members[groupID], m)
}

// MemberReads counts transitive member page reads.
func (in *Intune) MemberReads() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.memberReads
}

// transitive lists a group's members through nested groups.
func (in *Intune) transitive(groupID string, seen map[string]bool) []Member {
	if seen[groupID] {
		return nil
	}
	seen[groupID] = true
	var out []Member
	for _, m := range in.members[groupID] {
		if m.GroupID != "" {
			out = append(out, in.transitive(m.GroupID, seen)...)
			continue
		}
		out = append(out, m)
	}
	return out
}

// memberPage is small so clients must follow @odata.nextLink.
const memberPage = 2

func (in *Intune) serveMembers(w http.ResponseWriter, r *http.Request, groupID, cast string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.memberReads++
	if _, ok := in.groups[groupID]; !ok {
		odataError(w, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", groupID))
		return
	}
	var vals []any
	for _, m := range in.transitive(groupID, map[string]bool{}) {
		switch {
		case cast == "microsoft.graph.device" && m.DeviceID != "":
			vals = append(vals, map[string]any{"@odata.type": "#microsoft.graph.device", "id": "obj-" + m.DeviceID, "deviceId": m.DeviceID})
		case cast == "microsoft.graph.user" && m.UPN != "":
			vals = append(vals, map[string]any{"@odata.type": "#microsoft.graph.user", "id": "obj-" + m.UPN, "userPrincipalName": m.UPN})
		}
	}
	skip := 0
	fmt.Sscan(r.URL.Query().Get("$skiptoken"), &skip)
	end := min(skip+memberPage, len(vals))
	if skip > len(vals) {
		skip = len(vals)
	}
	body := map[string]any{"value": append([]any{}, vals[skip:end]...)}
	if end < len(vals) {
		q := r.URL.Query()
		q.Set("$skiptoken", fmt.Sprint(end))
		body["@odata.nextLink"] = in.srv.URL + r.URL.Path + "?" + q.Encode()
	}
	writeJSON(w, http.StatusOK, body)
}

// InjectFault adds a fault.
func (in *Intune) InjectFault(f Fault) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.faults = append(in.faults, f)
}

// AnswerNotProvisioned makes the next n activations answer 200 with a body
// that says the tenant is not provisioned.
func (in *Intune) AnswerNotProvisioned(n int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.fakeOK = n
}

// RejectFreshTokens rejects the first use of the next n tokens with 401.
func (in *Intune) RejectFreshTokens(n int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.rejectFresh = n
}

// FailNextMessages makes the next n upload messages fail when processed.
func (in *Intune) FailNextMessages(n int) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.failNextMessage = n
}

// Counts returns the call counters.
func (in *Intune) Counts() Counts {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.counts
}

// Provisioned returns the tenant's provisioned value and portal URLs.
func (in *Intune) Provisioned() (int, string, string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.provisioned, in.enrollURL, in.remediateURL
}

// LastHeartbeat is when the partner last sent a heartbeat.
func (in *Intune) LastHeartbeat() time.Time {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.lastHeartbeat
}

// Policies returns the partner compliance policies by platform.
func (in *Intune) Policies() map[string]Policy {
	in.mu.Lock()
	defer in.mu.Unlock()
	out := map[string]Policy{}
	for _, p := range in.policies {
		cp := *p
		cp.Groups = append([]string(nil), p.Groups...)
		out[p.Platform] = cp
	}
	return out
}

// UploadsFor returns the processed compliance records of a device, in order.
func (in *Intune) UploadsFor(deviceID string) []Upload {
	in.mu.Lock()
	defer in.mu.Unlock()
	var out []Upload
	for _, u := range in.uploads {
		if strings.EqualFold(u.DeviceID, deviceID) {
			out = append(out, u)
		}
	}
	return out
}

// Compliance is the state Intune holds for a device ("" = none).
func (in *Intune) Compliance(deviceID string) string {
	us := in.UploadsFor(deviceID)
	if len(us) == 0 {
		return ""
	}
	return us[len(us)-1].ComplianceState
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func odataError(w http.ResponseWriter, status int, code, msg string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{"code": code, "message": msg}})
}

var (
	reTenant    = regexp.MustCompile(`^/TenantSync/PartnerTenants\(guid'([0-9a-fA-F-]{36})'\)$`)
	reHeartbeat = regexp.MustCompile(`^/TenantSync/PartnerTenantHeartbeat\(guid'([0-9a-fA-F-]{36})'\)$`)
	rePolicies  = regexp.MustCompile(`^/TenantSync/PartnerCompliancePolicies$`)
	reAssign    = regexp.MustCompile(`^/TenantSync/PartnerCompliancePolicies\(guid'([0-9a-fA-F-]{36})'\)/Assign$`)
	reMessage   = regexp.MustCompile(`^/DeviceSync/DataUploadMessages\(guid'([0-9a-fA-F-]{36})'\)$`)
	reUser      = regexp.MustCompile(`^/v1\.0/users\('([^']*)'\)$`)
	reMembers   = regexp.MustCompile(`^/v1\.0/groups/([0-9a-fA-F-]{36})/transitiveMembers/(microsoft\.graph\.(?:device|user))$`)
)

func partnerOrGraph(path string) bool {
	return strings.HasPrefix(path, "/v1.0/") || strings.HasPrefix(path, "/TenantSync/") || strings.HasPrefix(path, "/DeviceSync/")
}

func (in *Intune) serve(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	// The control endpoint (demo, out-of-process checks) and unknown paths
	// need no token.
	switch {
	case path == "/_standin/state" && r.Method == http.MethodGet:
		in.mu.Lock()
		body := map[string]any{"provisioned": in.provisioned, "enrollmentUrl": in.enrollURL, "remediationUrl": in.remediateURL,
			"lastHeartbeat": in.lastHeartbeat, "counts": in.counts, "uploads": append([]Upload{}, in.uploads...)}
		in.mu.Unlock()
		body["policies"] = in.Policies()
		writeJSON(w, http.StatusOK, body)
		return
	}
	if !partnerOrGraph(path) {
		odataError(w, http.StatusNotFound, "ResourceNotFound", "no route for "+r.Method+" "+path)
		return
	}
	in.mu.Lock()
	in.paths = append(in.paths, r.Method+" "+path)
	for i, f := range in.faults {
		if f.Times > 0 && (f.Method == "" || f.Method == r.Method) && strings.Contains(path, f.PathPart) {
			in.faults[i].Times--
			in.mu.Unlock()
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			w.WriteHeader(f.Status)
			io.WriteString(w, f.Body)
			return
		}
	}
	in.mu.Unlock()
	partner := strings.HasPrefix(path, "/TenantSync/") || strings.HasPrefix(path, "/DeviceSync/")
	if !in.auth(w, r, partner) {
		return
	}
	if partner {
		want := "1.6"
		if strings.HasPrefix(path, "/DeviceSync/") {
			want = "1.2"
		}
		if v := r.URL.Query().Get("api-version"); v != want {
			odataError(w, http.StatusBadRequest, "InvalidApiVersion", fmt.Sprintf("api-version %q is not supported here; use %s", v, want))
			return
		}
	}
	switch {
	case path == "/v1.0/servicePrincipals" && r.Method == http.MethodGet:
		in.serveServicePrincipals(w, r)
	case reUser.MatchString(path) && r.Method == http.MethodGet:
		in.serveUser(w, reUser.FindStringSubmatch(path)[1])
	case reMembers.MatchString(path) && r.Method == http.MethodGet:
		m := reMembers.FindStringSubmatch(path)
		in.serveMembers(w, r, strings.ToLower(m[1]), m[2])
	case path == "/v1.0/groups" && r.Method == http.MethodGet:
		in.serveGroups(w, r)
	case reTenant.MatchString(path) && r.Method == http.MethodPut:
		in.serveTenant(w, r, reTenant.FindStringSubmatch(path)[1])
	case reHeartbeat.MatchString(path) && r.Method == http.MethodPut:
		in.serveHeartbeat(w, reHeartbeat.FindStringSubmatch(path)[1])
	case rePolicies.MatchString(path) && r.Method == http.MethodPost:
		in.servePolicyCreate(w, r)
	case reAssign.MatchString(path) && r.Method == http.MethodPost:
		in.serveAssign(w, r, reAssign.FindStringSubmatch(path)[1])
	case reMessage.MatchString(path) && r.Method == http.MethodPut:
		in.serveUpload(w, r, strings.ToLower(reMessage.FindStringSubmatch(path)[1]))
	case reMessage.MatchString(path) && r.Method == http.MethodGet:
		in.serveStatus(w, strings.ToLower(reMessage.FindStringSubmatch(path)[1]))
	default:
		odataError(w, http.StatusNotFound, "ResourceNotFound", "no route for "+r.Method+" "+path)
	}
}

// auth checks the bearer token's issuer, app and audience.
func (in *Intune) auth(w http.ResponseWriter, r *http.Request, partner bool) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	reject := func(msg string) bool {
		in.mu.Lock()
		in.counts.Rejected401++
		in.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		odataError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", msg)
		return false
	}
	if !ok || tok == "" {
		return reject("Access token is empty.")
	}
	client, aud, ok := in.entra.Authorize(tok)
	if !ok {
		return reject("Lifetime validation failed, the token is expired or was revoked.")
	}
	// Like Graph: tokens name the Graph resource, whatever host serves it.
	const graphAud, graphAppID = "https://graph.microsoft.com", "00000003-0000-0000-c000-000000000000"
	switch {
	case partner && aud != IntuneResource:
		return reject(fmt.Sprintf("Access token validation failure. Invalid audience %q: partner endpoints take tokens for %s.", aud, IntuneResource))
	case !partner && strings.TrimRight(aud, "/") != graphAud && aud != graphAppID:
		return reject(fmt.Sprintf("Access token validation failure. Invalid audience %q.", aud))
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if partner && in.partnerApp != "" && client != in.partnerApp {
		odataError(w, http.StatusForbidden, "Forbidden", "the app "+client+" is not an onboarded compliance partner")
		return false
	}
	if !in.seenTokens[tok] {
		in.seenTokens[tok] = true
		if in.rejectFresh > 0 && partner {
			in.rejectFresh--
			in.counts.Rejected401++
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			odataError(w, http.StatusUnauthorized, "InvalidAuthenticationToken", "The token is not yet valid for this service.")
			return false
		}
	}
	return true
}

func (in *Intune) serveServicePrincipals(w http.ResponseWriter, r *http.Request) {
	f := r.URL.Query().Get("$filter")
	if f != "appId eq '0000000a-0000-0000-c000-000000000000'" {
		writeJSON(w, http.StatusOK, map[string]any{"value": []any{}})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"value": []any{map[string]any{
		"appId": "0000000a-0000-0000-c000-000000000000", "displayName": "Microsoft Intune",
		"endpoints": []any{
			map[string]any{"providerName": "PartnerTenantDataSyncService", "uri": in.srv.URL + "/TenantSync"},
			map[string]any{"providerName": "PartnerDeviceDataSyncService", "uri": in.srv.URL + "/DeviceSync"},
			map[string]any{"providerName": "SomethingElse", "uri": in.srv.URL + "/Other"},
		},
	}}})
}

func (in *Intune) serveUser(w http.ResponseWriter, upn string) {
	upn, _ = url.PathUnescape(upn)
	in.mu.Lock()
	id, ok := in.users[strings.ToLower(strings.ReplaceAll(upn, "''", "'"))]
	in.mu.Unlock()
	if !ok {
		odataError(w, http.StatusNotFound, "Request_ResourceNotFound", fmt.Sprintf("Resource '%s' does not exist or one of its queried reference-property objects are not present.", upn))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "userPrincipalName": upn})
}

func (in *Intune) serveGroups(w http.ResponseWriter, r *http.Request) {
	f := r.URL.Query().Get("$filter")
	name, ok := strings.CutPrefix(f, "displayName eq '")
	if !ok || !strings.HasSuffix(name, "'") {
		odataError(w, http.StatusBadRequest, "Request_UnsupportedQuery", "unsupported filter")
		return
	}
	name = strings.ReplaceAll(strings.TrimSuffix(name, "'"), "''", "'")
	in.mu.Lock()
	var out []any
	for id, n := range in.groups {
		if n == name {
			out = append(out, map[string]any{"id": id, "displayName": n})
		}
	}
	in.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{"value": append([]any{}, out...)})
}

func (in *Intune) serveTenant(w http.ResponseWriter, r *http.Request, tenant string) {
	if !strings.EqualFold(tenant, in.tenant) {
		odataError(w, http.StatusForbidden, "Forbidden", "the token's tenant is not "+tenant)
		return
	}
	var body struct {
		Provisioned           int    `json:"Provisioned"`
		PartnerEnrollmentURL  string `json:"PartnerEnrollmentUrl"`
		PartnerRemediationURL string `json:"PartnerRemediationUrl"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		odataError(w, http.StatusBadRequest, "BadRequest", "body: "+err.Error())
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	switch body.Provisioned {
	case 1:
		for _, u := range []string{body.PartnerEnrollmentURL, body.PartnerRemediationURL} {
			if pu, err := url.Parse(u); err != nil || pu.Scheme != "https" || pu.Host == "" {
				odataError(w, http.StatusBadRequest, "BadRequest", "PartnerEnrollmentUrl and PartnerRemediationUrl must be absolute https URLs")
				return
			}
		}
		in.counts.Activations++
		if in.fakeOK > 0 {
			in.fakeOK--
			writeJSON(w, http.StatusOK, map[string]any{"Provisioned": 0, "Message": "Tenant provisioning is in progress; the partner is not yet enabled for this tenant."})
			return
		}
		in.provisioned, in.enrollURL, in.remediateURL = 1, body.PartnerEnrollmentURL, body.PartnerRemediationURL
	case 2:
		in.counts.Deprovisions++
		in.provisioned = 2
	default:
		odataError(w, http.StatusBadRequest, "BadRequest", "Provisioned must be 1 or 2")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"Provisioned": in.provisioned, "PartnerEnrollmentUrl": in.enrollURL, "PartnerRemediationUrl": in.remediateURL})
}

func (in *Intune) serveHeartbeat(w http.ResponseWriter, tenant string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	if !strings.EqualFold(tenant, in.tenant) || in.provisioned != 1 {
		odataError(w, http.StatusForbidden, "Forbidden", "the partner is not provisioned in tenant "+tenant)
		return
	}
	in.counts.Heartbeats++
	in.lastHeartbeat = time.Now()
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (in *Intune) servePolicyCreate(w http.ResponseWriter, r *http.Request) {
	var body struct {
		ID       string `json:"Id"`
		Name     string `json:"Name"`
		Platform string `json:"Platform"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.ID == "" || body.Platform == "" {
		odataError(w, http.StatusBadRequest, "BadRequest", "Id and Platform are required")
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.provisioned != 1 {
		odataError(w, http.StatusForbidden, "Forbidden", "the partner is not provisioned")
		return
	}
	in.counts.PolicyCreates++
	if !in.platforms[body.Platform] {
		w.WriteHeader(http.StatusNoContent) // Intune's silent answer for an unregistered platform
		return
	}
	id := strings.ToLower(body.ID)
	if _, ok := in.policies[id]; ok {
		in.counts.PolicyConflicts++
		odataError(w, http.StatusConflict, "Conflict", "a partner compliance policy with this id exists")
		return
	}
	for _, p := range in.policies {
		if p.Platform == body.Platform {
			in.counts.PolicyConflicts++
			odataError(w, http.StatusConflict, "Conflict", "the partner already has a policy for "+body.Platform)
			return
		}
	}
	in.policies[id] = &Policy{ID: id, Name: body.Name, Platform: body.Platform}
	writeJSON(w, http.StatusCreated, map[string]any{"Id": id, "Name": body.Name, "Platform": body.Platform})
}

func (in *Intune) serveAssign(w http.ResponseWriter, r *http.Request, id string) {
	var body struct {
		GroupIDs []string `json:"GroupIds"`
	}
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || len(body.GroupIDs) == 0 {
		odataError(w, http.StatusBadRequest, "BadRequest", "GroupIds is required")
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	p, ok := in.policies[strings.ToLower(id)]
	if !ok {
		odataError(w, http.StatusNotFound, "ResourceNotFound", "no policy "+id)
		return
	}
	for _, g := range body.GroupIDs {
		if _, ok := in.groups[g]; !ok {
			odataError(w, http.StatusBadRequest, "BadRequest", "group "+g+" does not exist")
			return
		}
	}
	in.counts.Assigns++
	p.Groups = append([]string(nil), body.GroupIDs...)
	w.WriteHeader(http.StatusNoContent)
}

func (in *Intune) serveUpload(w http.ResponseWriter, r *http.Request, id string) {
	var m rawMessage
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(&m); err != nil || !strings.EqualFold(m.ID, id) || len(m.Entities) == 0 {
		odataError(w, http.StatusBadRequest, "BadRequest", "the body must be a message whose Id matches the URL, with entities")
		return
	}
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.provisioned != 1 {
		odataError(w, http.StatusForbidden, "Forbidden", "the partner is not provisioned in this tenant")
		return
	}
	if _, dup := in.messages[id]; dup {
		odataError(w, http.StatusConflict, "Conflict", "message "+id+" was uploaded already")
		return
	}
	in.counts.Uploads++
	in.messages[id] = &message{id: id, msg: m, status: "Pending"}
	w.WriteHeader(http.StatusAccepted)
}

// serveStatus processes a message on its second status read: the first
// always says Pending, as Intune's queue does.
func (in *Intune) serveStatus(w http.ResponseWriter, id string) {
	in.mu.Lock()
	defer in.mu.Unlock()
	in.counts.StatusReads++
	m, ok := in.messages[id]
	if !ok {
		odataError(w, http.StatusNotFound, "ResourceNotFound", "no message "+id)
		return
	}
	m.reads++
	if m.status == "Pending" && m.reads >= 2 {
		in.process(m)
	}
	writeJSON(w, http.StatusOK, map[string]any{"Id": m.id, "Status": m.status, "Errors": append([]entityError{}, m.errors...)})
}

// process applies a message as Intune would: entities must be ordered by
// LastUpdateTime, compliance needs the device's inventory, user ids must
// exist.
func (in *Intune) process(m *message) {
	if in.failNextMessage > 0 {
		in.failNextMessage--
		m.status, m.errors = "Failed", []entityError{{Code: "InternalError", Message: "processing failed (injected)"}}
		return
	}
	ents := m.msg.Entities
	if !sort.SliceIsSorted(ents, func(a, b int) bool { return ents[a].LastUpdateTime.Before(ents[b].LastUpdateTime) }) {
		m.status, m.errors = "Failed", []entityError{{Code: "InvalidOrder", Message: "entities are not ordered by LastUpdateTime"}}
		return
	}
	userIDs := map[string]bool{}
	for _, id := range in.users {
		userIDs[id] = true
	}
	for _, e := range ents {
		dev := strings.ToLower(e.DeviceID)
		if e.Payload.UserID != "" && !userIDs[e.Payload.UserID] {
			m.errors = append(m.errors, entityError{DeviceID: e.DeviceID, Code: "UserNotFound", Message: "user " + e.Payload.UserID + " is not in the tenant"})
			continue
		}
		switch e.EntityType {
		case 1:
			in.devices[dev] = true
		case 4:
			if !in.devices[dev] {
				m.errors = append(m.errors, entityError{DeviceID: e.DeviceID, Code: "DeviceNotFound", Message: "no inventory for the device"})
				continue
			}
			if e.Payload.ComplianceState != "compliant" && e.Payload.ComplianceState != "notCompliant" {
				m.errors = append(m.errors, entityError{DeviceID: e.DeviceID, Code: "InvalidState", Message: "ComplianceState " + e.Payload.ComplianceState})
				continue
			}
			in.uploads = append(in.uploads, Upload{MessageID: m.id, DeviceID: dev, UserID: e.Payload.UserID,
				ComplianceState: e.Payload.ComplianceState, At: e.LastUpdateTime})
		default:
			m.errors = append(m.errors, entityError{DeviceID: e.DeviceID, Code: "InvalidEntityType", Message: fmt.Sprint("EntityType ", e.EntityType)})
		}
	}
	m.status = "Completed"
}
