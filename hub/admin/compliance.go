package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/compliance"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/verdicts"
)

// Verdicts is the verdict engine as the admin API drives it.
type Verdicts interface {
	Notify(hostID string, force bool)
	NotifyAll(ctx context.Context, force bool) error
	// NotifyDevice queues every host naming the Entra device.
	NotifyDevice(ctx context.Context, deviceID string) error
}

// notifyDevice re-evaluates the hosts naming a device whose claims changed.
func (s *Server) notifyDevice(ctx context.Context, deviceID string) {
	if s.cfg.Verdicts == nil || deviceID == "" {
		return
	}
	if err := s.cfg.Verdicts.NotifyDevice(ctx, deviceID); err != nil {
		s.cfg.Logger.Warn("re-evaluate device claimants", "device", deviceID, "err", err)
	}
}

// Integrations checks, seals and tests integration credentials (backed by
// hub/integrations; an interface so this package stays free of the Graph SDK).
type Integrations interface {
	// Prepare validates in with its credential and seals it into in; an
	// empty credential keeps the sealed one in `in`.
	Prepare(in *store.Integration, secret string, cert []byte, certPassword string) error
	Test(ctx context.Context, id string) (TestReport, error)
	Warnings(in store.Integration, now time.Time) []string
}

// TestReport is the outcome of an integration's connection test.
type TestReport struct {
	OK, TokenOK, ReadOK bool
	Health, Message     string
	// RevokeSessions: the app holds User.RevokeSessions.All.
	RevokeSessions bool
}

func (s *Server) notifyAll(ctx context.Context, force bool) {
	if s.cfg.Verdicts == nil {
		return
	}
	if err := s.cfg.Verdicts.NotifyAll(ctx, force); err != nil {
		s.cfg.Logger.Warn("re-evaluate verdicts", "err", err)
	}
}

// --- verdicts on hosts ---

func (s *Server) verdictProto(ctx context.Context, hostID string, names map[string]string) (*posturev1.Verdict, error) {
	v, err := s.cfg.Store.GetVerdict(ctx, hostID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeErr("verdict", err)
	}
	pv := &posturev1.Verdict{State: v.State, Cause: v.Cause, Desired: v.Desired, UpdatedAt: ts(v.UpdatedAt)}
	if v.NextTransition != nil {
		pv.NextTransition = ts(*v.NextTransition)
	}
	reasons, err := verdicts.DecodeReasons(v)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "%v", err)
	}
	for _, r := range reasons {
		vr := &posturev1.VerdictReason{
			PolicyId: r.PolicyID, PolicyName: names[r.PolicyID], Status: statusProto(r.Status), Severity: r.Severity,
			Blocking: r.Blocking, Exempt: r.Exempt, Allowed: r.Allowed,
		}
		if !r.GraceDeadline.IsZero() {
			vr.GraceDeadline = ts(r.GraceDeadline)
		}
		pv.Reasons = append(pv.Reasons, vr)
	}
	return pv, nil
}

func statusProto(s string) posturev1.ResultStatus {
	switch s {
	case store.StatusPass:
		return posturev1.ResultStatus_RESULT_STATUS_PASS
	case store.StatusFail:
		return posturev1.ResultStatus_RESULT_STATUS_FAIL
	case store.StatusError:
		return posturev1.ResultStatus_RESULT_STATUS_ERROR
	}
	return posturev1.ResultStatus_RESULT_STATUS_UNSPECIFIED // no result of the current revision
}

// UnmappedReason says why no sink can key on a host ("" if one can).
func UnmappedReason(h store.Host) string {
	switch {
	case h.EffectiveEntraDeviceID() != "":
		return ""
	case h.IdentityAt == nil:
		return "the host has not reported its Entra registration yet (its fact queries run once it is connected)"
	default:
		return "the host's fact queries found no Entra registration: join or register the device in Entra, " +
			"or set its id with `posture-hub hosts set-entra-id`"
	}
}

// --- teams ---

// --- exemptions ---

func exemptionProto(e store.Exemption) *posturev1.Exemption {
	return &posturev1.Exemption{
		Id: e.ID, HostId: e.HostID, PolicyId: e.PolicyID, Reason: e.Reason,
		ExpiresAt: ts(e.ExpiresAt), CreatedAt: ts(e.CreatedAt), CreatedBy: e.CreatedBy,
	}
}

func (s *Server) ListExemptions(ctx context.Context, req *posturev1.ListExemptionsRequest) (*posturev1.ListExemptionsResponse, error) {
	es, err := s.cfg.Store.ListExemptions(ctx, req.GetHostId())
	if err != nil {
		return nil, storeErr("exemptions", err)
	}
	resp := &posturev1.ListExemptionsResponse{}
	for _, e := range es {
		resp.Exemptions = append(resp.Exemptions, exemptionProto(e))
	}
	return resp, nil
}

// maxExemption keeps exemptions from becoming permanent by another name.
const maxExemption = 366 * 24 * time.Hour

func (s *Server) CreateExemption(ctx context.Context, req *posturev1.CreateExemptionRequest) (*posturev1.Exemption, error) {
	now := s.cfg.Now()
	if req.GetExpiresAt() == nil {
		return nil, status.Error(codes.InvalidArgument, "expires_at is required: exemptions always end")
	}
	exp := req.GetExpiresAt().AsTime()
	if !exp.After(now) || exp.Sub(now) > maxExemption {
		return nil, status.Error(codes.InvalidArgument, "expires_at must be in the future and within a year")
	}
	if strings.TrimSpace(req.GetReason()) == "" {
		return nil, status.Error(codes.InvalidArgument, "reason is required (it is shown to auditors)")
	}
	if req.GetPolicyId() != "" {
		if _, err := s.cfg.Store.GetPolicy(ctx, req.GetPolicyId()); err != nil {
			return nil, storeErr("policy "+req.GetPolicyId(), err)
		}
	}
	e := store.Exemption{
		ID: newID(), HostID: req.GetHostId(), PolicyID: req.GetPolicyId(), Reason: strings.TrimSpace(req.GetReason()),
		CreatedAt: now, ExpiresAt: exp, CreatedBy: callerName(ctx),
	}
	if err := s.cfg.Store.CreateExemption(ctx, e); err != nil {
		return nil, storeErr("host "+req.GetHostId(), err)
	}
	s.audit(ctx, "exemption created", "host", e.HostID, "policy", e.PolicyID, "until", exp)
	if s.cfg.Verdicts != nil {
		s.cfg.Verdicts.Notify(e.HostID, false)
	}
	return exemptionProto(e), nil
}

func (s *Server) DeleteExemption(ctx context.Context, req *posturev1.DeleteExemptionRequest) (*posturev1.DeleteExemptionResponse, error) {
	if err := s.cfg.Store.DeleteExemption(ctx, req.GetId()); err != nil {
		return nil, storeErr("exemption "+req.GetId(), err)
	}
	s.audit(ctx, "exemption deleted", "id", req.GetId())
	s.notifyAll(ctx, false)
	return &posturev1.DeleteExemptionResponse{}, nil
}

func callerName(ctx context.Context) string {
	if t, ok := Caller(ctx); ok {
		return t.Name
	}
	return ""
}

// --- identity ---

func (s *Server) SetHostEntraDeviceId(ctx context.Context, req *posturev1.SetHostEntraDeviceIdRequest) (*posturev1.Host, error) {
	id := strings.TrimSpace(req.GetEntraDeviceId())
	if id != "" && !isGUID(id) {
		return nil, status.Error(codes.InvalidArgument, "entra_device_id must be a GUID like 3fa85f64-5717-4562-b3fc-2c963f66afa6, or empty to clear the override")
	}
	before, err := s.cfg.Store.GetHost(ctx, req.GetId())
	if err != nil {
		return nil, storeErr("host "+req.GetId(), err)
	}
	if err := s.cfg.Store.SetHostEntraOverride(ctx, req.GetId(), strings.ToLower(id)); err != nil {
		return nil, storeErr("host "+req.GetId(), err)
	}
	// The admin's pick settles a conflict: every claimant of the old and
	// the new device re-checks.
	s.notifyDevice(ctx, before.EffectiveEntraDeviceID())
	s.notifyDevice(ctx, before.EntraDeviceID)
	s.notifyDevice(ctx, strings.ToLower(id))
	s.audit(ctx, "entra device id override set", "host", req.GetId(), "device", id)
	if s.cfg.Verdicts != nil {
		s.cfg.Verdicts.Notify(req.GetId(), true) // the (new) device needs its state written
	}
	return s.GetHost(ctx, &posturev1.GetHostRequest{Id: req.GetId()})
}

// maxUPN matches what the hub keeps of a reported user principal name.
const maxUPN = 256

// SetHostUserPrincipalName sets (or clears, with "") the admin's override
// of the user the host reports: the one the Intune partner sink maps to an
// Entra user, whose sessions are revoked and who may see the device in the
// portal. The host is re-checked and its state rewritten for the new user.
func (s *Server) SetHostUserPrincipalName(ctx context.Context, req *posturev1.SetHostUserPrincipalNameRequest) (*posturev1.Host, error) {
	upn := strings.TrimSpace(req.GetUserPrincipalName())
	if upn != "" {
		if len(upn) > maxUPN || strings.ContainsFunc(upn, func(r rune) bool { return r <= ' ' || r == 0x7f }) ||
			strings.Count(upn, "@") != 1 || strings.HasPrefix(upn, "@") || strings.HasSuffix(upn, "@") {
			return nil, status.Error(codes.InvalidArgument, "user_principal_name must look like user@example.com (at most 256 characters, no spaces), or be empty to clear the override")
		}
	}
	before, err := s.cfg.Store.GetHost(ctx, req.GetId())
	if err != nil {
		return nil, storeErr("host "+req.GetId(), err)
	}
	if err := s.cfg.Store.SetHostUPNOverride(ctx, req.GetId(), upn); err != nil {
		return nil, storeErr("host "+req.GetId(), err)
	}
	auditChange(ctx, &posturev1.SetHostUserPrincipalNameRequest{Id: before.ID, UserPrincipalName: before.UserPrincipalNameOverride},
		&posturev1.SetHostUserPrincipalNameRequest{Id: before.ID, UserPrincipalName: upn})
	s.audit(ctx, "user principal name override set", "host", req.GetId(), "upn", upn)
	if s.cfg.Verdicts != nil {
		s.cfg.Verdicts.Notify(req.GetId(), true) // the sinks write the device again for the new user
	}
	return s.GetHost(ctx, &posturev1.GetHostRequest{Id: req.GetId()})
}

func isGUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i, r := range s {
		switch i {
		case 8, 13, 18, 23:
			if r != '-' {
				return false
			}
		default:
			if !strings.ContainsRune("0123456789abcdefABCDEF", r) {
				return false
			}
		}
	}
	return true
}

func (s *Server) ListUnmappedHosts(ctx context.Context, _ *posturev1.ListUnmappedHostsRequest) (*posturev1.ListUnmappedHostsResponse, error) {
	hosts, err := s.cfg.Store.ListHosts(ctx, store.HostFilter{})
	if err != nil {
		return nil, storeErr("hosts", err)
	}
	names, err := s.policyNames(ctx)
	if err != nil {
		return nil, err
	}
	resp := &posturev1.ListUnmappedHostsResponse{}
	for _, h := range hosts {
		if h.Revoked() {
			continue
		}
		if UnmappedReason(h) == "" {
			claim, err := s.deviceClaim(ctx, h)
			if err != nil {
				return nil, err
			}
			if claim.State == compliance.ClaimOwner {
				continue
			}
		}
		ph, err := s.hostProto(ctx, h, names, false)
		if err != nil {
			return nil, err
		}
		resp.Hosts = append(resp.Hosts, ph)
	}
	return resp, nil
}

// --- integrations ---

func (s *Server) integrationProto(in store.Integration) *posturev1.Integration {
	pi := &posturev1.Integration{
		Id: in.ID, Name: in.Name, Kind: in.Kind, Cloud: in.Cloud, AuthorityHost: in.AuthorityHost,
		GraphBaseUrl: in.GraphBaseURL, GraphResource: in.GraphResource, ExtraCaPem: in.ExtraCAPEM, TenantId: in.TenantID, ClientId: in.ClientID,
		CredentialKind: in.CredentialKind, ExtensionAttribute: int32(in.ExtensionAttribute),
		CompliantValue: in.CompliantValue, NoncompliantValue: in.NoncompliantValue, Teams: in.Teams,
		Health: in.Health, HealthMessage: in.HealthMessage, CreatedAt: ts(in.CreatedAt), UpdatedAt: ts(in.UpdatedAt),
		SecretExpiresAt: tsPtr(in.SecretExpiresAt), CertificateNotAfter: tsPtr(in.CertNotAfter),
		HealthCheckedAt: tsPtr(in.HealthCheckedAt),
	}
	if s.cfg.Integrations != nil {
		pi.Warnings = s.cfg.Integrations.Warnings(in, s.cfg.Now())
		s.kindFieldsToProto(in, pi)
	}
	return pi // credentials are write-only: never copied out
}

func integrationFromProto(p *posturev1.Integration) store.Integration {
	in := store.Integration{
		ID: p.GetId(), Name: strings.TrimSpace(p.GetName()), Kind: p.GetKind(), Cloud: p.GetCloud(),
		AuthorityHost: strings.TrimSpace(p.GetAuthorityHost()), GraphBaseURL: strings.TrimSpace(p.GetGraphBaseUrl()),
		GraphResource: strings.TrimSpace(p.GetGraphResource()),
		ExtraCAPEM:    p.GetExtraCaPem(), TenantID: strings.TrimSpace(p.GetTenantId()), ClientID: strings.TrimSpace(p.GetClientId()),
		ExtensionAttribute: int(p.GetExtensionAttribute()), CompliantValue: p.GetCompliantValue(),
		NoncompliantValue: p.GetNoncompliantValue(), Teams: p.GetTeams(), Settings: settingsFromProto(p),
	}
	if p.GetCloud() == "" {
		in.Cloud = "public"
	}
	if p.GetSecretExpiresAt() != nil {
		t := p.GetSecretExpiresAt().AsTime()
		in.SecretExpiresAt = &t
	}
	return in
}

func (s *Server) ListIntegrations(ctx context.Context, _ *posturev1.ListIntegrationsRequest) (*posturev1.ListIntegrationsResponse, error) {
	ins, err := s.cfg.Store.ListIntegrations(ctx)
	if err != nil {
		return nil, storeErr("integrations", err)
	}
	resp := &posturev1.ListIntegrationsResponse{}
	for _, in := range ins {
		resp.Integrations = append(resp.Integrations, s.integrationProto(in))
	}
	return resp, nil
}

func (s *Server) GetIntegration(ctx context.Context, req *posturev1.GetIntegrationRequest) (*posturev1.Integration, error) {
	in, err := s.cfg.Store.GetIntegration(ctx, req.GetId())
	if err != nil {
		return nil, storeErr("integration "+req.GetId(), err)
	}
	return s.integrationProto(in), nil
}

func (s *Server) needIntegrations() error {
	if s.cfg.Integrations == nil {
		return status.Error(codes.Unimplemented, "integrations are not configured on this hub")
	}
	return nil
}

func (s *Server) CreateIntegration(ctx context.Context, req *posturev1.CreateIntegrationRequest) (*posturev1.Integration, error) {
	if err := s.needIntegrations(); err != nil {
		return nil, err
	}
	p := req.GetIntegration()
	if p == nil {
		return nil, status.Error(codes.InvalidArgument, "integration is required")
	}
	in := integrationFromProto(p)
	if in.Name == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	in.ID = newID()
	now := s.cfg.Now()
	in.CreatedAt, in.UpdatedAt = now, now
	if err := s.cfg.Integrations.Prepare(&in, p.GetClientSecret(), p.GetCertificate(), p.GetCertificatePassword()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if err := s.cfg.Store.CreateIntegration(ctx, in); err != nil {
		return nil, storeErr("integration", err)
	}
	s.audit(ctx, "integration created", "id", in.ID, "name", in.Name, "tenant", in.TenantID, "attribute", in.ExtensionAttribute)
	// Every covered device needs its current state written once.
	s.notifyAll(ctx, true)
	return s.integrationProto(in), nil
}

func (s *Server) UpdateIntegration(ctx context.Context, req *posturev1.UpdateIntegrationRequest) (*posturev1.Integration, error) {
	if err := s.needIntegrations(); err != nil {
		return nil, err
	}
	p := req.GetIntegration()
	if p == nil || p.GetId() == "" {
		return nil, status.Error(codes.InvalidArgument, "integration.id is required")
	}
	old, err := s.cfg.Store.GetIntegration(ctx, p.GetId())
	if err != nil {
		return nil, storeErr("integration "+p.GetId(), err)
	}
	auditTarget(ctx, "integration/"+p.GetId())
	if paths := req.GetUpdateMask().GetPaths(); len(paths) > 0 {
		if p, err = mergeIntegration(s.integrationProto(old), p, paths); err != nil {
			return nil, err
		}
	}
	if p.GetKind() != "" && p.GetKind() != old.Kind {
		return nil, status.Errorf(codes.InvalidArgument, "the kind of integration %s is %s: create a new integration for another kind", old.ID, old.Kind)
	}
	if p.GetKind() == "" {
		p = proto.CloneOf(p)
		p.Kind = old.Kind
	}
	in := integrationFromProto(p)
	if in.Name == "" {
		in.Name = old.Name
	}
	in.CreatedAt, in.UpdatedAt = old.CreatedAt, s.cfg.Now()
	in.CredentialKind, in.SealedCredential, in.SealedCertPassword = old.CredentialKind, old.SealedCredential, old.SealedCertPassword
	in.CertNotAfter = old.CertNotAfter
	if in.SecretExpiresAt == nil && p.GetClientSecret() == "" {
		in.SecretExpiresAt = old.SecretExpiresAt
	}
	if err := s.cfg.Integrations.Prepare(&in, p.GetClientSecret(), p.GetCertificate(), p.GetCertificatePassword()); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if err := s.cfg.Store.UpdateIntegration(ctx, in); err != nil {
		return nil, storeErr("integration "+in.ID, err)
	}
	s.audit(ctx, "integration updated", "id", in.ID, "credential_replaced", p.GetClientSecret() != "" || len(p.GetCertificate()) > 0)
	auditChange(ctx, s.integrationProto(old), s.integrationProto(in))
	// The change may be the fix for what paused the integration: resume it
	// now rather than at the end of the pause.
	s.resume(ctx, in.ID)
	// A new attribute, new values or new teams: write every device again.
	s.notifyAll(ctx, true)
	in.Health, in.HealthMessage, in.HealthCheckedAt = old.Health, old.HealthMessage, old.HealthCheckedAt
	return s.integrationProto(in), nil
}

func (s *Server) DeleteIntegration(ctx context.Context, req *posturev1.DeleteIntegrationRequest) (*posturev1.DeleteIntegrationResponse, error) {
	if err := s.cfg.Store.DeleteIntegration(ctx, req.GetId()); err != nil {
		return nil, storeErr("integration "+req.GetId(), err)
	}
	s.audit(ctx, "integration deleted", "id", req.GetId())
	return &posturev1.DeleteIntegrationResponse{}, nil
}

func (s *Server) TestIntegration(ctx context.Context, req *posturev1.TestIntegrationRequest) (*posturev1.TestIntegrationResponse, error) {
	if err := s.needIntegrations(); err != nil {
		return nil, err
	}
	if _, err := s.cfg.Store.GetIntegration(ctx, req.GetId()); err != nil {
		return nil, storeErr("integration "+req.GetId(), err)
	}
	rep, err := s.cfg.Integrations.Test(ctx, req.GetId())
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	if rep.OK {
		s.resume(ctx, req.GetId())
	}
	return &posturev1.TestIntegrationResponse{Ok: rep.OK, TokenOk: rep.TokenOK, DeviceReadOk: rep.ReadOK, Health: rep.Health,
		Message: rep.Message, RevokeSessionsPermitted: rep.RevokeSessions}, nil
}

func (s *Server) ResumeIntegration(ctx context.Context, req *posturev1.ResumeIntegrationRequest) (*posturev1.ResumeIntegrationResponse, error) {
	if _, err := s.cfg.Store.GetIntegration(ctx, req.GetId()); err != nil {
		return nil, storeErr("integration "+req.GetId(), err)
	}
	if s.cfg.SyncResume == nil {
		return nil, status.Error(codes.Unimplemented, "sync is not running on this hub")
	}
	n, err := s.cfg.SyncResume(ctx, req.GetId())
	if err != nil {
		return nil, storeErr("resume integration "+req.GetId(), err)
	}
	s.audit(ctx, "integration resumed", "id", req.GetId(), "requeued", n)
	return &posturev1.ResumeIntegrationResponse{Requeued: int32(n)}, nil
}

// resume ends an integration's pause and makes the rows it held back due.
func (s *Server) resume(ctx context.Context, integrationID string) {
	if s.cfg.SyncResume == nil {
		return
	}
	n, err := s.cfg.SyncResume(ctx, integrationID)
	if err != nil {
		s.cfg.Logger.Warn("resume integration", "integration", integrationID, "err", err)
		return
	}
	s.cfg.Logger.Info("integration resumed", "integration", integrationID, "requeued", n)
}

// --- sync items ---

func syncItemProto(it store.SyncItem) *posturev1.SyncItem {
	return &posturev1.SyncItem{
		Id: it.ID, IntegrationId: it.IntegrationID, HostId: it.HostID, DeviceId: it.DeviceID, Desired: it.Desired,
		Verdict: it.Verdict, State: it.State, Attempts: int32(it.Attempts), CreatedAt: ts(it.CreatedAt),
		NextAttemptAt: ts(it.NextAt), ErrorCode: it.Code, Error: it.Error, Kind: it.Kind, Subject: it.Subject,
	}
}

func (s *Server) ListSyncItems(ctx context.Context, req *posturev1.ListSyncItemsRequest) (*posturev1.ListSyncItemsResponse, error) {
	switch req.GetState() {
	case "", "pending", "dead", "done":
	default:
		return nil, status.Error(codes.InvalidArgument, "state must be pending, dead or done")
	}
	limit := int(req.GetLimit())
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	items, err := s.cfg.Store.ListSyncItems(ctx, req.GetState(), req.GetIntegrationId(), limit)
	if err != nil {
		return nil, storeErr("sync items", err)
	}
	resp := &posturev1.ListSyncItemsResponse{}
	for _, it := range items {
		resp.Items = append(resp.Items, syncItemProto(it))
	}
	return resp, nil
}

func (s *Server) RetrySyncItem(ctx context.Context, req *posturev1.RetrySyncItemRequest) (*posturev1.SyncItem, error) {
	it, err := s.cfg.Store.RetrySyncItem(ctx, req.GetId(), s.cfg.Now())
	if err != nil {
		return nil, storeErr(fmt.Sprintf("sync item %d", req.GetId()), err)
	}
	s.audit(ctx, "sync item retried", "id", it.ID, "device", it.DeviceID)
	// The item may be held back by its integration's pause: end it.
	s.resume(ctx, it.IntegrationID)
	if s.cfg.SyncNotify != nil {
		s.cfg.SyncNotify()
	}
	return syncItemProto(it), nil
}

// integrationWritable are the Integration fields an update may name.
var integrationWritable = map[string]bool{
	"id": true, "name": true, "kind": true, "cloud": true, "authority_host": true, "graph_base_url": true,
	"extra_ca_pem": true, "tenant_id": true, "client_id": true, "client_secret": true, "certificate": true,
	"certificate_password": true, "secret_expires_at": true, "extension_attribute": true,
	"compliant_value": true, "noncompliant_value": true, "teams": true,
}

// mergeIntegration copies the fields named by paths from patch onto cur (the
// stored integration as the API shows it, which holds no credential).
func mergeIntegration(cur, patch *posturev1.Integration, paths []string) (*posturev1.Integration, error) {
	dst, src := cur.ProtoReflect(), patch.ProtoReflect()
	fields := dst.Descriptor().Fields()
	for _, path := range paths {
		if !integrationWritable[path] {
			return nil, status.Errorf(codes.InvalidArgument, "update_mask: %q is not a writable integration field", path)
		}
		f := fields.ByName(protoreflect.Name(path))
		if src.Has(f) {
			dst.Set(f, src.Get(f))
		} else {
			dst.Clear(f)
		}
	}
	if cur.GetClientSecret() != "" || len(cur.GetCertificate()) > 0 {
		if !slices.Contains(paths, "secret_expires_at") {
			cur.SecretExpiresAt = nil // the old expiry belonged to the old credential
		}
	}
	return cur, nil
}
