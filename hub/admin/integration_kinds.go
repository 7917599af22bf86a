package admin

import (
	"context"
	"encoding/json"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
)

// PartnerControl is optionally implemented by Integrations: the
// intune-partner operations and state (hub/integrations behind it).
type PartnerControl interface {
	Deprovision(ctx context.Context, id string) error
	PartnerStatus(in store.Integration) *posturev1.PartnerStatus
}

// HostScoper is optionally implemented by Integrations: a host's Entra
// group scope per integration.
type HostScoper interface {
	HostScopes(ctx context.Context, h store.Host) ([]*posturev1.HostScope, error)
}

// kindSettings are the settings JSON keys the admin API maps to fields;
// hub/integrations decodes them per kind (and refuses unknown keys).
type kindSettings struct {
	URL         string   `json:"url,omitempty"`
	PortalURL   string   `json:"portal_url,omitempty"`
	Platforms   []string `json:"platforms,omitempty"`
	GroupRef    string   `json:"group,omitempty"`
	ScopeGroups []string `json:"scope_groups,omitempty"`
}

// settingsFromProto builds the kind's settings from the API fields.
func settingsFromProto(p *posturev1.Integration) []byte {
	var ks kindSettings
	switch p.GetKind() {
	case store.IntegrationKindWebhook:
		ks.URL = strings.TrimSpace(p.GetWebhookUrl())
	case store.IntegrationKindPartner:
		ks.PortalURL = strings.TrimRight(strings.TrimSpace(p.GetPortalUrl()), "/")
		ks.Platforms = p.GetPartnerPlatforms()
		ks.GroupRef = strings.TrimSpace(p.GetPartnerGroup())
	}
	for _, g := range p.GetScopeGroups() {
		if g = strings.ToLower(strings.TrimSpace(g)); g != "" {
			ks.ScopeGroups = append(ks.ScopeGroups, g)
		}
	}
	b, _ := json.Marshal(ks) // plain strings: cannot fail
	return b
}

// kindFieldsToProto copies the kind's settings and state out; graph-only
// fields are cleared on other kinds (they mean nothing there).
func (s *Server) kindFieldsToProto(in store.Integration, pi *posturev1.Integration) {
	var ks kindSettings
	_ = json.Unmarshal(in.Settings, &ks) // validated on write
	pi.ScopeGroups = ks.ScopeGroups
	if in.Kind == "" || in.Kind == store.IntegrationKindGraph {
		return
	}
	pi.ExtensionAttribute, pi.CompliantValue, pi.NoncompliantValue = 0, "", ""
	pi.WebhookUrl, pi.PortalUrl, pi.PartnerPlatforms, pi.PartnerGroup = ks.URL, ks.PortalURL, ks.Platforms, ks.GroupRef
	if pc, ok := s.cfg.Integrations.(PartnerControl); ok && in.Kind == store.IntegrationKindPartner {
		pi.PartnerStatus = pc.PartnerStatus(in)
	}
}

func (s *Server) DeprovisionIntegration(ctx context.Context, req *posturev1.DeprovisionIntegrationRequest) (*posturev1.Integration, error) {
	if err := s.needIntegrations(); err != nil {
		return nil, err
	}
	in, err := s.cfg.Store.GetIntegration(ctx, req.GetId())
	if err != nil {
		return nil, storeErr("integration "+req.GetId(), err)
	}
	pc, ok := s.cfg.Integrations.(PartnerControl)
	if in.Kind != store.IntegrationKindPartner || !ok {
		return nil, status.Errorf(codes.FailedPrecondition, "integration %s is a %s integration: only intune-partner integrations are provisioned", in.ID, in.Kind)
	}
	if err := pc.Deprovision(ctx, in.ID); err != nil {
		return nil, status.Errorf(codes.Unavailable, "deprovision: %v", err)
	}
	s.audit(ctx, "integration deprovisioned", "id", in.ID, "tenant", in.TenantID)
	return s.GetIntegration(ctx, &posturev1.GetIntegrationRequest{Id: in.ID})
}

// ConsentLinker is optionally implemented by Integrations: admin consent links.
type ConsentLinker interface {
	ConsentURL(ctx context.Context, id string) (link, redirect string, expires time.Time, err error)
}

func (s *Server) GetAdminConsentUrl(ctx context.Context, req *posturev1.GetAdminConsentUrlRequest) (*posturev1.AdminConsentUrl, error) {
	cl, ok := s.cfg.Integrations.(ConsentLinker)
	if !ok {
		return nil, status.Error(codes.Unimplemented, "admin consent is not configured on this hub")
	}
	if _, err := s.cfg.Store.GetIntegration(ctx, req.GetId()); err != nil {
		return nil, storeErr("integration "+req.GetId(), err)
	}
	link, redirect, exp, err := cl.ConsentURL(ctx, req.GetId())
	if err != nil {
		return nil, status.Errorf(codes.FailedPrecondition, "%v", err)
	}
	s.audit(ctx, "admin consent link made", "id", req.GetId())
	return &posturev1.AdminConsentUrl{Url: link, RedirectUri: redirect, ExpiresAt: ts(exp)}, nil
}
