// Package portal serves the end-user pages Microsoft sends blocked users to
// (/remediate and /enroll), the PortalService behind them (JSON at
// /api/v1/portal/...), signed per-device links and Entra sign-in.
//
// Who may see a device: a device id in a URL is not a secret (it is
// guessable from logs, screenshots and shared links), so it never opens a
// page by itself. A call is allowed for one device when it carries either
//   - a valid, unexpired signed link token for that device id (HMAC-SHA256
//     under the hub's portal key; the extension and webhooks hand these out), or
//   - a portal session (OpenID Connect sign-in with Entra) whose user
//     (preferred_username / upn) is the device's user principal name (an admin's override, else the
//     reported one).
//
// Anything else is sent to sign-in. The admin bearer token is not accepted.
package portal

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/clientip"
	"github.com/posture-dev/posture/hub/compliance"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/verdicts"
)

// SessionCookie holds a signed-in user's session.
const SessionCookie = "posture_session"

// Store is what the portal reads.
type Store interface {
	GetHost(ctx context.Context, id string) (store.Host, error)
	HostsOfUser(ctx context.Context, upn string, limit int) ([]store.HostVerdict, error)
	ListPolicies(ctx context.Context) ([]store.Policy, error)
	LatestResults(ctx context.Context, hostID string) ([]store.Result, error)
	GetVerdict(ctx context.Context, hostID string) (store.Verdict, error)
}

// Rechecker reaches a host's stream wherever it is.
type Rechecker interface {
	Recheck(ctx context.Context, hostID string, policyIDs []string) bool
	Connected(hostID string) bool
}

// Limit is a token bucket: Burst requests at once, then one per Every.
type Limit struct {
	Burst int
	Every time.Duration
}

// ServiceConfig wires a Service.
type ServiceConfig struct {
	Store  Store
	Signer *Signer
	Router Rechecker
	Logger *slog.Logger
	Now    func() time.Time
	// PublicURL is the portal's external base URL (e.g. https://hub.example.com);
	// without it hosts get no remediation link.
	PublicURL string
	// LinkTTL is how long a device link stays valid (default 7 days).
	LinkTTL time.Duration
	// RecheckPerDevice and RecheckPerAddr bound rechecks (defaults: 5 at
	// once then 1 per 10 s per device; 20 then 1 per 3 s per client address).
	RecheckPerDevice, RecheckPerAddr Limit
	// Proxies are the trusted reverse proxies (nil: none) for calls that
	// reach the service directly over TCP.
	Proxies *clientip.Resolver
}

// Service implements posturev1.PortalServiceServer.
type Service struct {
	posturev1.UnimplementedPortalServiceServer
	cfg              ServiceConfig
	byDevice, byAddr *limiter
}

// NewService returns a Service with defaults filled in.
func NewService(cfg ServiceConfig) *Service {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.LinkTTL <= 0 {
		cfg.LinkTTL = 7 * 24 * time.Hour
	}
	if cfg.RecheckPerDevice.Burst <= 0 {
		cfg.RecheckPerDevice = Limit{Burst: 5, Every: 10 * time.Second}
	}
	if cfg.RecheckPerAddr.Burst <= 0 {
		cfg.RecheckPerAddr = Limit{Burst: 20, Every: 3 * time.Second}
	}
	cfg.PublicURL = strings.TrimRight(cfg.PublicURL, "/")
	return &Service{cfg: cfg, byDevice: newLimiter(cfg.RecheckPerDevice, cfg.Now), byAddr: newLimiter(cfg.RecheckPerAddr, cfg.Now)}
}

var uuidRE = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// ValidDeviceID reports whether id has the shape of a hub host id.
func ValidDeviceID(id string) bool { return uuidRE.MatchString(id) }

// errNoDevice is one answer for "no such device" and "not yours", so the
// API is no oracle for which ids exist.
var errNoDevice = status.Error(codes.NotFound, "no device you may see has this id")

// authorize returns the host when the call may see it.
func (s *Service) authorize(ctx context.Context, deviceID, token string) (store.Host, error) {
	if !ValidDeviceID(deviceID) {
		return store.Host{}, status.Error(codes.InvalidArgument, "device_id is not a device id")
	}
	deviceID = strings.ToLower(deviceID)
	if token != "" {
		if err := s.cfg.Signer.CheckDeviceLink(token, deviceID); err != nil {
			if errors.Is(err, ErrExpired) {
				return store.Host{}, status.Error(codes.Unauthenticated, "the link has expired")
			}
			return store.Host{}, status.Error(codes.Unauthenticated, "the link is not valid")
		}
		h, err := s.cfg.Store.GetHost(ctx, deviceID)
		if err != nil {
			return store.Host{}, s.storeErr(err)
		}
		return h, nil
	}
	user, ok := s.sessionUser(ctx)
	if !ok {
		return store.Host{}, status.Error(codes.Unauthenticated, "sign in, or open the link from your device")
	}
	h, err := s.cfg.Store.GetHost(ctx, deviceID)
	if err != nil {
		return store.Host{}, s.storeErr(err)
	}
	if !ownedBy(h, user) {
		return store.Host{}, errNoDevice
	}
	return h, nil
}

func ownedBy(h store.Host, user string) bool {
	return ownsUPN(h, user) && !h.Revoked()
}

// ownsUPN: the host's effective user principal name is user's, ignoring
// ASCII case, exactly as store.Hosts.HostsOfUser matches.
func ownsUPN(h store.Host, user string) bool {
	upn := h.EffectiveUserPrincipalName()
	return user != "" && upn != "" && store.FoldUPN(upn) == store.FoldUPN(user)
}

func (s *Service) storeErr(err error) error {
	if errors.Is(err, store.ErrNotFound) {
		return errNoDevice
	}
	s.cfg.Logger.Warn("portal store", "err", err)
	return status.Error(codes.Unavailable, "the hub cannot read its store right now; try again shortly")
}

// sessionUser reads the session cookie (forwarded by grpc-gateway as
// grpcgateway-cookie, or sent as cookie by the pages and gRPC callers).
func (s *Service) sessionUser(ctx context.Context) (string, bool) {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, key := range []string{"grpcgateway-cookie", "cookie"} {
		for _, line := range md.Get(key) {
			cs, err := http.ParseCookie(line)
			if err != nil {
				continue
			}
			for _, c := range cs {
				if c.Name != SessionCookie {
					continue
				}
				if user, _, err := s.cfg.Signer.Verify(kindSession, c.Value); err == nil && user != "" {
					return user, true
				}
			}
		}
	}
	return "", false
}

// clientAddr is the caller's IP, what the per-address recheck limit keys
// on: the peer's, or - when the call came through the hub's own gateway or
// pages on its unix socket - the HTTP client's as they resolved it (behind
// trusted proxies, from X-Forwarded-For; see package clientip).
func (s *Service) clientAddr(ctx context.Context) string {
	if a := clientip.Host(s.cfg.Proxies.FromContext(ctx)); a != "" {
		return a
	}
	return "unknown"
}

// GetDevice returns one device's state and failing policies.
func (s *Service) GetDevice(ctx context.Context, req *posturev1.GetPortalDeviceRequest) (*posturev1.PortalDevice, error) {
	h, err := s.authorize(ctx, req.GetDeviceId(), req.GetToken())
	if err != nil {
		return nil, err
	}
	return s.device(ctx, h)
}

func (s *Service) device(ctx context.Context, h store.Host) (*posturev1.PortalDevice, error) {
	d := &posturev1.PortalDevice{
		DeviceId: h.ID, Hostname: h.Hostname, Platform: h.Platform, State: string(compliance.Unknown),
		LastSeenAt: ts(h.LastSeenAt), RegisteredWithEntra: h.EffectiveEntraDeviceID() != "",
		Connected: s.cfg.Router != nil && s.cfg.Router.Connected(h.ID),
	}
	v, err := s.cfg.Store.GetVerdict(ctx, h.ID)
	switch {
	case err == nil:
		d.State, d.Cause, d.EvaluatedAt = v.State, v.Cause, ts(v.UpdatedAt)
	case errors.Is(err, store.ErrNotFound):
		d.Cause = compliance.CauseNoResults
	default:
		return nil, s.storeErr(err)
	}
	reasons, err := verdicts.DecodeReasons(v)
	if err != nil {
		return nil, status.Error(codes.Internal, "cannot read the verdict")
	}
	pols, err := s.cfg.Store.ListPolicies(ctx)
	if err != nil {
		return nil, s.storeErr(err)
	}
	byID := make(map[string]store.Policy, len(pols))
	for _, p := range pols {
		byID[p.ID] = p
	}
	results, err := s.cfg.Store.LatestResults(ctx, h.ID)
	if err != nil {
		return nil, s.storeErr(err)
	}
	checked := make(map[string]store.Result, len(results))
	for _, r := range results {
		checked[r.PolicyID] = r
	}
	seen := map[string]bool{}
	add := func(id, st, severity string, blocking bool, grace time.Time) {
		p, ok := byID[id]
		if !ok || seen[id] {
			return
		}
		seen[id] = true
		pp := &posturev1.PortalPolicy{
			PolicyId: id, Name: p.Name, Severity: severity, Status: st, Blocking: blocking,
			ResolutionMarkdown: p.Resolution, ResolutionHtml: RenderMarkdown(p.Resolution),
		}
		if pp.Name == "" {
			pp.Name = id
		}
		if !grace.IsZero() {
			pp.GraceDeadline = timestamppb.New(grace)
		}
		if r, ok := checked[id]; ok {
			pp.LastCheckedAt = ts(r.EvaluatedAt)
		}
		d.Policies = append(d.Policies, pp)
	}
	for _, r := range reasons {
		add(r.PolicyID, r.Status, r.Severity, r.Blocking, r.GraceDeadline)
	}
	// Failing policies that do not gate access still need fixing.
	for _, r := range results {
		if p, ok := byID[r.PolicyID]; ok && r.Status == store.StatusFail && p.AppliesTo(h.Platform, h.Team) && r.Revision == p.Revision {
			add(r.PolicyID, r.Status, p.Severity, false, time.Time{})
		}
	}
	sort.SliceStable(d.Policies, func(i, j int) bool {
		a, b := d.Policies[i], d.Policies[j]
		if a.Blocking != b.Blocking {
			return a.Blocking
		}
		return a.Name < b.Name
	})
	return d, nil
}

// RecheckDevice asks the device to run its policies now.
func (s *Service) RecheckDevice(ctx context.Context, req *posturev1.RecheckPortalDeviceRequest) (*posturev1.RecheckPortalDeviceResponse, error) {
	h, err := s.authorize(ctx, req.GetDeviceId(), req.GetToken())
	if err != nil {
		return nil, err
	}
	addr := s.clientAddr(ctx)
	if ok, wait := s.byAddr.allow(addr); !ok {
		return nil, status.Errorf(codes.ResourceExhausted, "too many rechecks from your network; try again in %d seconds", secondsCeil(wait))
	}
	if ok, wait := s.byDevice.allow(h.ID); !ok {
		return nil, status.Errorf(codes.ResourceExhausted, "this device was just rechecked; try again in %d seconds", secondsCeil(wait))
	}
	delivered := s.cfg.Router != nil && s.cfg.Router.Recheck(ctx, h.ID, nil)
	s.cfg.Logger.Info("portal recheck", "host", h.ID, "delivered", delivered, "source", addr)
	return &posturev1.RecheckPortalDeviceResponse{Delivered: delivered}, nil
}

// maxMyDevices bounds one user's list: hosts report their own user
// principal name, so hosts claiming one user must not make that user's page
// unbounded.
const maxMyDevices = 200

// ListMyDevices lists the signed-in user's devices: one indexed store query
// for the hosts whose effective user principal name is the user's, with
// their verdicts. Each device shows its real state:
//   - revoked: listed (it is the user's, and blocked) with no page; contact IT;
//   - device_conflict / device_revoked: the verdict's cause, so the page can
//     say it is blocked pending IT review (the other host is never named);
//   - re-enrolled into another team (a duplicate): both registrations are
//     the user's hosts and both are listed, the earlier one naming the
//     current one (the newest live registration of the same hardware), so the
//     user knows which entry counts. Only hosts in this list are related, so
//     a duplicate never reveals another user's host.
func (s *Service) ListMyDevices(ctx context.Context, _ *posturev1.ListMyDevicesRequest) (*posturev1.ListMyDevicesResponse, error) {
	user, ok := s.sessionUser(ctx)
	if !ok {
		return nil, status.Error(codes.Unauthenticated, "sign in to see your devices")
	}
	hvs, err := s.cfg.Store.HostsOfUser(ctx, user, maxMyDevices+1)
	if err != nil {
		return nil, s.storeErr(err)
	}
	if len(hvs) > maxMyDevices {
		s.cfg.Logger.Warn("portal: more hosts name one user than the list shows", "user", user, "shown", maxMyDevices)
		hvs = hvs[:maxMyDevices]
	}
	mine := make(map[string]store.Host, len(hvs))
	for _, hv := range hvs {
		// The store matched already; checking again costs nothing and keeps
		// another user's host off this page whatever a backend returns.
		if ownsUPN(hv.Host, user) {
			mine[hv.Host.ID] = hv.Host
		}
	}
	replacedBy := currentRegistrations(mine)
	out := &posturev1.ListMyDevicesResponse{User: user}
	for _, hv := range hvs {
		h, ok := mine[hv.Host.ID]
		if !ok {
			continue
		}
		sum := &posturev1.PortalDeviceSummary{DeviceId: h.ID, Hostname: h.Hostname, Platform: h.Platform,
			State: string(compliance.Unknown), Cause: compliance.CauseNoResults, LastSeenAt: ts(h.LastSeenAt),
			Revoked: h.Revoked(), ReplacedBy: replacedBy[h.ID]}
		if v := hv.Verdict; v != nil {
			sum.State, sum.Cause = v.State, v.Cause
		}
		if h.Revoked() {
			// Whatever verdict was stored last, a revoked host is blocked.
			sum.State, sum.Cause = string(compliance.Noncompliant), compliance.CauseRevoked
		}
		out.Devices = append(out.Devices, sum)
	}
	// By hostname (the store's order); a current registration before the
	// earlier ones it replaced, then revoked hosts.
	rank := func(d *posturev1.PortalDeviceSummary) int {
		switch {
		case d.GetRevoked():
			return 2
		case d.GetReplacedBy() != "":
			return 1
		}
		return 0
	}
	sort.SliceStable(out.Devices, func(i, j int) bool {
		a, b := out.Devices[i], out.Devices[j]
		if a.Hostname != b.Hostname {
			return a.Hostname < b.Hostname
		}
		return rank(a) < rank(b)
	})
	return out, nil
}

// currentRegistrations maps each earlier registration among hosts (all one
// user's) to the current one: a live host enrolled as a duplicate of it
// (re-enrolled into another team), following chains to the newest; when
// several live duplicates share an original, the latest enrolled wins.
func currentRegistrations(hosts map[string]store.Host) map[string]string {
	next := map[string]store.Host{}
	for _, h := range hosts {
		orig, ok := hosts[h.DuplicateOf]
		if h.DuplicateOf == "" || !ok || h.Revoked() || orig.Revoked() {
			continue
		}
		if cur, seen := next[orig.ID]; !seen || h.EnrolledAt.After(cur.EnrolledAt) ||
			(h.EnrolledAt.Equal(cur.EnrolledAt) && h.ID > cur.ID) {
			next[orig.ID] = h
		}
	}
	out := make(map[string]string, len(next))
	for id := range next {
		cur := next[id]
		for range len(hosts) { // a chain is at most every host long (and never loops)
			n, ok := next[cur.ID]
			if !ok || n.ID == id {
				break
			}
			cur = n
		}
		out[id] = cur.ID
	}
	return out
}

// RemediationURL is the signed /remediate link of a device ("" without a
// public URL).
func (s *Service) RemediationURL(deviceID string) (string, time.Time) {
	if s.cfg.PublicURL == "" {
		return "", time.Time{}
	}
	tok, exp := s.cfg.Signer.DeviceLink(deviceID, s.cfg.LinkTTL)
	q := url.Values{"device_id": {deviceID}, "token": {tok}}
	return s.cfg.PublicURL + "/remediate?" + q.Encode(), exp
}

// DeviceStatus is what the hub tells a host about itself (after Hello and
// on every verdict change).
func (s *Service) DeviceStatus(ctx context.Context, hostID string) (*posturev1.DeviceStatus, error) {
	st := &posturev1.DeviceStatus{Verdict: string(compliance.Unknown)}
	v, err := s.cfg.Store.GetVerdict(ctx, hostID)
	switch {
	case err == nil:
		st.Verdict, st.EvaluatedAt = v.State, ts(v.UpdatedAt)
	case !errors.Is(err, store.ErrNotFound):
		return nil, fmt.Errorf("verdict: %w", err)
	}
	if u, exp := s.RemediationURL(hostID); u != "" {
		st.RemediationUrl, st.RemediationUrlExpiresAt = u, timestamppb.New(exp)
	}
	return st, nil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func secondsCeil(d time.Duration) int {
	s := int((d + time.Second - 1) / time.Second)
	if s < 1 {
		s = 1
	}
	return s
}

// limiter is a token bucket per key; idle keys are dropped.
type limiter struct {
	lim Limit
	now func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	tokens float64
	at     time.Time
}

func newLimiter(l Limit, now func() time.Time) *limiter {
	return &limiter{lim: l, now: now, buckets: map[string]*bucket{}}
}

func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buckets) > 10000 {
		for k, b := range l.buckets {
			if now.Sub(b.at) > time.Duration(l.lim.Burst)*l.lim.Every {
				delete(l.buckets, k)
			}
		}
	}
	b, ok := l.buckets[key]
	if !ok {
		b = &bucket{tokens: float64(l.lim.Burst), at: now}
		l.buckets[key] = b
	}
	if l.lim.Every > 0 {
		b.tokens += float64(now.Sub(b.at)) / float64(l.lim.Every)
		if b.tokens > float64(l.lim.Burst) {
			b.tokens = float64(l.lim.Burst)
		}
	}
	b.at = now
	if b.tokens >= 1 {
		b.tokens--
		return true, 0
	}
	return false, time.Duration((1 - b.tokens) * float64(l.lim.Every))
}
