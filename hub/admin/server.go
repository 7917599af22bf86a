// Package admin serves AdminService: hosts, policies, teams, enroll secrets
// and API tokens, over gRPC (and REST through the gateway).
package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/compliance"
	"github.com/posture-dev/posture/hub/policy"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/tokens"
)

// Streams is what the admin API needs from the agent stream registry.
type Streams interface {
	Connected(hostID string) bool
	Send(hostID string, m *posturev1.HubMessage) bool
	Disable(hostID, reason string) bool
	PoliciesChanged()
}

// Config wires a Server.
type Config struct {
	Store   store.Store
	Streams Streams
	Logger  *slog.Logger
	Now     func() time.Time
	// Verdicts re-evaluates hosts after changes (nil: none).
	Verdicts Verdicts
	// Integrations seals and tests credentials (nil: integration writes refused).
	Integrations Integrations
	// SyncNotify wakes the sync worker (nil: it polls).
	SyncNotify func()
	// StreamTTL: a stream held by another replica counts as connected
	// while that replica's heartbeat is younger than this (default 45 s).
	StreamTTL time.Duration
	// SyncResume ends an integration's pause and makes the rows it held
	// back due now (nil: they wait out the pause).
	SyncResume func(ctx context.Context, integrationID string) (int, error)
}

// Server implements posturev1.AdminServiceServer.
type Server struct {
	posturev1.UnimplementedAdminServiceServer
	cfg Config
}

// New returns a Server.
func New(cfg Config) *Server {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StreamTTL <= 0 {
		cfg.StreamTTL = DefaultStreamTTL
	}
	return &Server{cfg: cfg}
}

// storeErr maps store errors to gRPC codes.
func storeErr(what string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return status.Errorf(codes.NotFound, "%s not found", what)
	case errors.Is(err, store.ErrConflict):
		return status.Errorf(codes.AlreadyExists, "%s: %v", what, err)
	case errors.Is(err, store.ErrInvalid):
		return status.Errorf(codes.InvalidArgument, "%s: %v", what, err)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	default:
		return status.Errorf(codes.Internal, "%s: %v", what, err)
	}
}

func (s *Server) audit(ctx context.Context, action string, args ...any) {
	who := "unknown"
	if t, ok := Caller(ctx); ok {
		who = t.Name
	}
	s.cfg.Logger.Info("admin: "+action, append([]any{"by", who}, args...)...)
}

// --- hosts ---

func (s *Server) ListHosts(ctx context.Context, req *posturev1.ListHostsRequest) (*posturev1.ListHostsResponse, error) {
	hosts, err := s.cfg.Store.ListHosts(ctx, store.HostFilter{Team: req.GetTeam()})
	if err != nil {
		return nil, storeErr("hosts", err)
	}
	names, err := s.policyNames(ctx)
	if err != nil {
		return nil, err
	}
	reps, err := s.cfg.Store.ListHostReporting(ctx)
	if err != nil {
		return nil, storeErr("host reporting", err)
	}
	resp := &posturev1.ListHostsResponse{}
	for _, h := range hosts {
		ph, err := s.hostProto(ctx, h, names, req.GetIncludeResults())
		if err != nil {
			return nil, err
		}
		s.addReporting(ph, reps[h.ID])
		resp.Hosts = append(resp.Hosts, ph)
	}
	return resp, nil
}

func (s *Server) GetHost(ctx context.Context, req *posturev1.GetHostRequest) (*posturev1.Host, error) {
	h, err := s.cfg.Store.GetHost(ctx, req.GetId())
	if err != nil {
		return nil, storeErr("host "+req.GetId(), err)
	}
	names, err := s.policyNames(ctx)
	if err != nil {
		return nil, err
	}
	ph, err := s.hostProto(ctx, h, names, true)
	if err != nil {
		return nil, err
	}
	rep, err := s.cfg.Store.GetHostReporting(ctx, h.ID)
	if err != nil {
		return nil, storeErr("host reporting", err)
	}
	s.addReporting(ph, rep)
	return ph, nil
}

func (s *Server) RevokeHost(ctx context.Context, req *posturev1.RevokeHostRequest) (*posturev1.Host, error) {
	h, err := s.cfg.Store.RevokeHost(ctx, req.GetId(), s.cfg.Now())
	if err != nil {
		return nil, storeErr("host "+req.GetId(), err)
	}
	s.cfg.Streams.Disable(h.ID, "host revoked by an admin")
	s.audit(ctx, "host revoked", "host", h.ID, "hostname", h.Hostname)
	if s.cfg.Verdicts != nil {
		s.cfg.Verdicts.Notify(h.ID, true)
	}
	// Its device stays blocked for any other claimant.
	s.notifyDevice(ctx, h.EffectiveEntraDeviceID())
	names, err := s.policyNames(ctx)
	if err != nil {
		return nil, err
	}
	return s.hostProto(ctx, h, names, false)
}

func (s *Server) DeleteHost(ctx context.Context, req *posturev1.DeleteHostRequest) (*posturev1.DeleteHostResponse, error) {
	before, err := s.cfg.Store.GetHost(ctx, req.GetId())
	if err != nil {
		return nil, storeErr("host "+req.GetId(), err)
	}
	if err := s.cfg.Store.DeleteHost(ctx, req.GetId()); err != nil {
		return nil, storeErr("host "+req.GetId(), err)
	}
	// A deleted host no longer claims (or blocks) its device.
	s.notifyDevice(ctx, before.EffectiveEntraDeviceID())
	s.cfg.Streams.Disable(req.GetId(), "host deleted by an admin")
	s.audit(ctx, "host deleted", "host", req.GetId())
	return &posturev1.DeleteHostResponse{}, nil
}

func (s *Server) RecheckHost(ctx context.Context, req *posturev1.RecheckHostRequest) (*posturev1.RecheckHostResponse, error) {
	if _, err := s.cfg.Store.GetHost(ctx, req.GetId()); err != nil {
		return nil, storeErr("host "+req.GetId(), err)
	}
	rc := &posturev1.Recheck{PolicyIds: req.GetPolicyIds(), All: len(req.GetPolicyIds()) == 0}
	ok := s.cfg.Streams.Send(req.GetId(), &posturev1.HubMessage{Msg: &posturev1.HubMessage_Recheck{Recheck: rc}})
	return &posturev1.RecheckHostResponse{Delivered: ok}, nil
}

func (s *Server) policyNames(ctx context.Context) (map[string]string, error) {
	ps, err := s.cfg.Store.ListPolicies(ctx)
	if err != nil {
		return nil, storeErr("policies", err)
	}
	m := make(map[string]string, len(ps))
	for _, p := range ps {
		m[p.ID] = p.Name
	}
	return m, nil
}

func (s *Server) hostProto(ctx context.Context, h store.Host, names map[string]string, withResults bool) (*posturev1.Host, error) {
	ph := &posturev1.Host{
		Id:   h.ID,
		Team: h.Team,
		Facts: &posturev1.HostFacts{
			Hostname: h.Hostname, Platform: h.Platform, OsPlatform: h.OSPlatform, OsName: h.OSName,
			OsVersion: h.OSVersion, OsqueryVersion: h.OsqueryVersion, HardwareSerial: h.HardwareSerial,
			HardwareUuid: h.HardwareUUID, HardwareModel: h.HardwareModel, ExtensionVersion: h.ExtVersion,
		},
		EntraDeviceId:             h.EffectiveEntraDeviceID(),
		EntraDeviceIdOverride:     h.EntraDeviceIDOverride,
		UserPrincipalName:         h.EffectiveUserPrincipalName(),
		UserPrincipalNameOverride: h.UserPrincipalNameOverride,
		EnrolledAt:                ts(h.EnrolledAt),
		LastSeenAt:                ts(h.LastSeenAt),
		CertificateNotAfter:       ts(h.CertNotAfter),
		Revoked:                   h.Revoked(),
		Connected:                 s.cfg.Streams.Connected(h.ID),
		UnmappedReason:            UnmappedReason(h),
	}
	v, err := s.verdictProto(ctx, h.ID, names)
	if err != nil {
		return nil, err
	}
	ph.Verdict = v
	if hs, ok := s.cfg.Integrations.(HostScoper); ok {
		if ph.Scopes, err = hs.HostScopes(ctx, h); err != nil {
			return nil, storeErr("host scopes", err)
		}
	}
	if h.RevokedAt != nil {
		ph.RevokedAt = ts(*h.RevokedAt)
	}
	ph.DuplicateOf, ph.ReenrolledAt, ph.ReenrollCount = h.DuplicateOf, tsPtr(h.ReenrolledAt), int32(h.ReenrollCount)
	claim, err := s.deviceClaim(ctx, h)
	if err != nil {
		return nil, err
	}
	ph.EntraClaim, ph.EntraClaimHosts, ph.EntraClaimReason = claim.State, claim.Others, claim.Reason()
	if withResults {
		switch c, err := s.cfg.Store.GetDeviceCheck(ctx, h.ID); {
		case err == nil:
			ph.EntraCheck = &posturev1.EntraDeviceCheck{IntegrationId: c.IntegrationID, DisplayName: c.DisplayName,
				OperatingSystem: c.OperatingSystem, Mismatch: c.Mismatch, CheckedAt: ts(c.CheckedAt)}
		case !errors.Is(err, store.ErrNotFound):
			return nil, storeErr("device check", err)
		}
	}
	rs, err := s.cfg.Store.LatestResults(ctx, h.ID)
	if err != nil {
		return nil, storeErr("results", err)
	}
	for _, r := range rs {
		var st posturev1.ResultStatus
		switch r.Status {
		case store.StatusPass:
			ph.Passing++
			st = posturev1.ResultStatus_RESULT_STATUS_PASS
		case store.StatusFail:
			ph.Failing++
			st = posturev1.ResultStatus_RESULT_STATUS_FAIL
		case store.StatusError:
			ph.Errors++
			st = posturev1.ResultStatus_RESULT_STATUS_ERROR
		}
		if withResults {
			ph.Results = append(ph.Results, &posturev1.HostResult{
				PolicyId: r.PolicyID, PolicyName: names[r.PolicyID], Revision: r.Revision, Status: st,
				Error: r.Error, EvaluatedAt: ts(r.EvaluatedAt), Duration: durationpb.New(r.Duration),
				StatusSince: ts(r.StatusSince),
			})
		}
	}
	return ph, nil
}

func ts(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

func tsPtr(t *time.Time) *timestamppb.Timestamp {
	if t == nil {
		return nil
	}
	return ts(*t)
}

// --- policies and teams ---

func (s *Server) ListPolicies(ctx context.Context, req *posturev1.ListPoliciesRequest) (*posturev1.ListPoliciesResponse, error) {
	ps, err := s.cfg.Store.ListPolicies(ctx)
	if err != nil {
		return nil, storeErr("policies", err)
	}
	counts, err := s.counts(ctx)
	if err != nil {
		return nil, err
	}
	resp := &posturev1.ListPoliciesResponse{}
	for _, p := range ps {
		if req.GetTeam() != "" && p.Team != "" && p.Team != req.GetTeam() {
			continue
		}
		resp.Policies = append(resp.Policies, PolicyProto(p, counts[p.ID]))
	}
	return resp, nil
}

func (s *Server) GetPolicy(ctx context.Context, req *posturev1.GetPolicyRequest) (*posturev1.Policy, error) {
	p, err := s.cfg.Store.GetPolicy(ctx, req.GetId())
	if err != nil {
		return nil, storeErr("policy "+req.GetId(), err)
	}
	counts, err := s.counts(ctx)
	if err != nil {
		return nil, err
	}
	return PolicyProto(p, counts[p.ID]), nil
}

func (s *Server) counts(ctx context.Context) (map[string]store.PolicyCounts, error) {
	cs, err := s.cfg.Store.PolicyCounts(ctx)
	if err != nil {
		return nil, storeErr("policy counts", err)
	}
	m := make(map[string]store.PolicyCounts, len(cs))
	for _, c := range cs {
		m[c.PolicyID] = c
	}
	return m, nil
}

// PolicyProto converts a stored policy with its host counts.
func PolicyProto(p store.Policy, c store.PolicyCounts) *posturev1.Policy {
	pp := policy.PolicyToProto(p)
	pp.Passing, pp.Failing, pp.Errors = int32(c.Passing), int32(c.Failing), int32(c.Errors)
	return pp
}

func (s *Server) ApplyPolicies(ctx context.Context, req *posturev1.ApplyPoliciesRequest) (*posturev1.ApplyPoliciesResponse, error) {
	ps := make([]store.Policy, 0, len(req.GetPolicies()))
	for _, p := range req.GetPolicies() {
		ps = append(ps, policy.PolicyFromProto(p))
	}
	tms := make([]store.Team, 0, len(req.GetTeams()))
	for _, t := range req.GetTeams() {
		tms = append(tms, policy.TeamFromProto(t))
	}
	// The API is reachable without the CLI: the hub applies the linter's
	// rules itself.
	if err := policy.ValidateApply(ps, tms); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if errs := policy.ValidateFactQueries(req.GetFacts()); len(errs) > 0 {
		return nil, status.Errorf(codes.InvalidArgument, "%v", errs)
	}
	if !req.GetDryRun() {
		if err := s.checkApplyRelax(ctx, ps, tms, req.GetPrune()); err != nil {
			return nil, err
		}
	}
	var facts []store.FactQuery // nil keeps the stored fact queries
	for _, f := range req.GetFacts() {
		facts = append(facts, store.FactQuery{Name: f.GetName(), Platform: f.GetPlatform(), Query: strings.TrimSpace(f.GetQuery())})
	}
	changes, err := s.cfg.Store.ApplyPolicies(ctx, store.ApplyRequest{
		Policies: ps, Teams: tms, Facts: facts, DryRun: req.GetDryRun(), Prune: req.GetPrune(), At: s.cfg.Now(),
	})
	if err != nil {
		return nil, storeErr("apply", err)
	}
	resp := &posturev1.ApplyPoliciesResponse{DryRun: req.GetDryRun()}
	changed := 0
	for _, c := range changes {
		resp.Changes = append(resp.Changes, &posturev1.Change{
			Kind: c.Kind, Id: c.ID, Action: actionProto(c.Action), Fields: c.Fields, Revision: c.Revision,
		})
		if c.Action != store.ActionUnchanged {
			changed++
		}
	}
	// The request can be megabytes of SQL: the audit log keeps what changed.
	auditTarget(ctx, "policies")
	auditChange(ctx, nil, resp)
	if !req.GetDryRun() && changed > 0 {
		s.cfg.Streams.PoliciesChanged()
		s.notifyAll(ctx, false)
		s.audit(ctx, "policies applied", "changes", changed, "prune", req.GetPrune())
	}
	return resp, nil
}

func actionProto(a string) posturev1.ChangeAction {
	switch a {
	case store.ActionAdded:
		return posturev1.ChangeAction_CHANGE_ACTION_ADDED
	case store.ActionChanged:
		return posturev1.ChangeAction_CHANGE_ACTION_CHANGED
	case store.ActionRemoved:
		return posturev1.ChangeAction_CHANGE_ACTION_REMOVED
	case store.ActionUnchanged:
		return posturev1.ChangeAction_CHANGE_ACTION_UNCHANGED
	}
	return posturev1.ChangeAction_CHANGE_ACTION_UNSPECIFIED
}

func (s *Server) DeletePolicy(ctx context.Context, req *posturev1.DeletePolicyRequest) (*posturev1.DeletePolicyResponse, error) {
	old, err := s.cfg.Store.GetPolicy(ctx, req.GetId())
	if err != nil {
		return nil, storeErr("policy "+req.GetId(), err)
	}
	if err := needAdmin(ctx, "policy "+req.GetId(), removalRelaxes(old)); err != nil {
		return nil, err
	}
	if err := s.cfg.Store.DeletePolicy(ctx, req.GetId()); err != nil {
		return nil, storeErr("policy "+req.GetId(), err)
	}
	s.cfg.Streams.PoliciesChanged()
	s.notifyAll(ctx, false)
	s.audit(ctx, "policy deleted", "policy", req.GetId())
	return &posturev1.DeletePolicyResponse{}, nil
}

func (s *Server) ListTeams(ctx context.Context, _ *posturev1.ListTeamsRequest) (*posturev1.ListTeamsResponse, error) {
	ts, err := s.cfg.Store.ListTeams(ctx)
	if err != nil {
		return nil, storeErr("teams", err)
	}
	resp := &posturev1.ListTeamsResponse{}
	for _, t := range ts {
		resp.Teams = append(resp.Teams, policy.TeamToProto(t))
	}
	return resp, nil
}

// --- enroll secrets ---

func secretProto(s store.EnrollSecret) *posturev1.EnrollSecret {
	return &posturev1.EnrollSecret{
		Id: s.ID, Team: s.Team, Description: s.Description, CreatedAt: ts(s.CreatedAt),
		ExpiresAt: tsPtr(s.ExpiresAt), RevokedAt: tsPtr(s.RevokedAt), LastUsedAt: tsPtr(s.LastUsedAt),
	}
}

func (s *Server) ListEnrollSecrets(ctx context.Context, _ *posturev1.ListEnrollSecretsRequest) (*posturev1.ListEnrollSecretsResponse, error) {
	ss, err := s.cfg.Store.ListEnrollSecrets(ctx)
	if err != nil {
		return nil, storeErr("enroll secrets", err)
	}
	resp := &posturev1.ListEnrollSecretsResponse{}
	for _, x := range ss {
		resp.EnrollSecrets = append(resp.EnrollSecrets, secretProto(x))
	}
	return resp, nil
}

func (s *Server) CreateEnrollSecret(ctx context.Context, req *posturev1.CreateEnrollSecretRequest) (*posturev1.CreateEnrollSecretResponse, error) {
	team := strings.TrimSpace(req.GetTeam())
	if team == "" {
		team = store.DefaultTeam
	}
	if err := policy.ValidateApply(nil, []store.Team{{Name: team, Settings: verdictsDefault}}); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "team: %v", err)
	}
	now := s.cfg.Now()
	es, err := NewEnrollSecret(team, req.GetDescription(), now, req.GetExpiresAt())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if err := s.cfg.Store.CreateEnrollSecret(ctx, es.Stored); err != nil {
		return nil, storeErr("enroll secret", err)
	}
	s.audit(ctx, "enroll secret created", "id", es.Stored.ID, "team", team)
	return &posturev1.CreateEnrollSecretResponse{Secret: es.Plain, EnrollSecret: secretProto(es.Stored)}, nil
}

// NewSecret is a freshly made secret: the plain text is shown once.
type NewSecret struct {
	Plain  string
	Stored store.EnrollSecret
}

// NewEnrollSecret makes an enroll secret for a team.
func NewEnrollSecret(team, description string, now time.Time, expires *timestamppb.Timestamp) (NewSecret, error) {
	plain, hash := tokens.New(tokens.EnrollSecretPrefix)
	es := store.EnrollSecret{ID: newID(), Team: team, Description: strings.TrimSpace(description), Hash: hash, CreatedAt: now}
	if expires != nil {
		t := expires.AsTime()
		if !t.After(now) {
			return NewSecret{}, errors.New("expires_at is in the past")
		}
		es.ExpiresAt = &t
	}
	return NewSecret{Plain: plain, Stored: es}, nil
}

func (s *Server) RevokeEnrollSecret(ctx context.Context, req *posturev1.RevokeEnrollSecretRequest) (*posturev1.EnrollSecret, error) {
	es, err := s.cfg.Store.RevokeEnrollSecret(ctx, req.GetId(), s.cfg.Now())
	if err != nil {
		return nil, storeErr("enroll secret "+req.GetId(), err)
	}
	s.audit(ctx, "enroll secret revoked", "id", es.ID)
	return secretProto(es), nil
}

// verdictsDefault only makes a team name checkable on its own.
var verdictsDefault = store.TeamSettings{ConditionalAccess: true}

// --- API tokens ---

func tokenProto(t store.APIToken) *posturev1.ApiToken {
	return &posturev1.ApiToken{
		Id: t.ID, Name: t.Name, Role: t.Role, CreatedAt: ts(t.CreatedAt),
		ExpiresAt: tsPtr(t.ExpiresAt), RevokedAt: tsPtr(t.RevokedAt), LastUsedAt: tsPtr(t.LastUsedAt),
	}
}

func (s *Server) ListApiTokens(ctx context.Context, _ *posturev1.ListApiTokensRequest) (*posturev1.ListApiTokensResponse, error) {
	ts, err := s.cfg.Store.ListAPITokens(ctx)
	if err != nil {
		return nil, storeErr("tokens", err)
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].CreatedAt.Before(ts[j].CreatedAt) })
	resp := &posturev1.ListApiTokensResponse{}
	for _, t := range ts {
		resp.ApiTokens = append(resp.ApiTokens, tokenProto(t))
	}
	return resp, nil
}

func (s *Server) CreateApiToken(ctx context.Context, req *posturev1.CreateApiTokenRequest) (*posturev1.CreateApiTokenResponse, error) {
	nt, err := NewAPIToken(req.GetName(), req.GetRole(), s.cfg.Now(), req.GetExpiresAt())
	if err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if err := s.cfg.Store.CreateAPIToken(ctx, nt.Stored); err != nil {
		return nil, storeErr("token", err)
	}
	s.audit(ctx, "api token created", "id", nt.Stored.ID, "name", nt.Stored.Name, "role", nt.Stored.Role)
	return &posturev1.CreateApiTokenResponse{Token: nt.Plain, ApiToken: tokenProto(nt.Stored)}, nil
}

// NewToken is a freshly made API token: the plain text is shown once.
type NewToken struct {
	Plain  string
	Stored store.APIToken
}

// NewAPIToken makes a token (also used by the CLI's bootstrap command).
func NewAPIToken(name, role string, now time.Time, expires *timestamppb.Timestamp) (NewToken, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return NewToken{}, errors.New("name is empty")
	}
	if _, ok := roleRank[role]; !ok {
		return NewToken{}, fmt.Errorf("role %q is not admin, maintainer or observer", role)
	}
	plain, hash := tokens.New(tokens.APITokenPrefix)
	t := store.APIToken{ID: newID(), Name: name, Role: role, Hash: hash, CreatedAt: now}
	if expires != nil {
		e := expires.AsTime()
		if !e.After(now) {
			return NewToken{}, errors.New("expires_at is in the past")
		}
		t.ExpiresAt = &e
	}
	return NewToken{Plain: plain, Stored: t}, nil
}

func (s *Server) RevokeApiToken(ctx context.Context, req *posturev1.RevokeApiTokenRequest) (*posturev1.ApiToken, error) {
	t, err := s.cfg.Store.RevokeAPIToken(ctx, req.GetId(), s.cfg.Now())
	if err != nil {
		return nil, storeErr("token "+req.GetId(), err)
	}
	s.audit(ctx, "api token revoked", "id", t.ID, "name", t.Name)
	return tokenProto(t), nil
}

// deviceClaim resolves the host's claim on its Entra device as the verdict
// engine does.
func (s *Server) deviceClaim(ctx context.Context, h store.Host) (compliance.DeviceClaim, error) {
	claimants, err := s.cfg.Store.HostsByEntraDeviceID(ctx, h.EffectiveEntraDeviceID())
	if err != nil {
		return compliance.DeviceClaim{}, storeErr("device claimants", err)
	}
	return compliance.ResolveDevice(h, claimants), nil
}
