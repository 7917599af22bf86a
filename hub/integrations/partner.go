package integrations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
	"github.com/posture-dev/posture/hub/sync/graph"
	"github.com/posture-dev/posture/hub/sync/intune"
)

// PartnerSettings are an intune-partner integration's settings.
type PartnerSettings struct {
	PortalURL   string   `json:"portal_url,omitempty"`
	Platforms   []string `json:"platforms,omitempty"`
	Group       string   `json:"group,omitempty"`
	ScopeGroups []string `json:"scope_groups,omitempty"` // see scope.go
}

// PartnerDefaults apply to every partner integration.
type PartnerDefaults struct {
	// PortalURL is the hub's public base URL (--public-url), used when an
	// integration names none.
	PortalURL      string
	HeartbeatEvery time.Duration
	PollInterval   time.Duration
}

// SetPartnerDefaults sets what partner integrations fall back to.
func (r *Registry) SetPartnerDefaults(d PartnerDefaults) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.partner = d
}

// PartnerStore is what partner sinks keep their state in.
type PartnerStore interface {
	SetIntegrationSinkState(ctx context.Context, id string, state []byte) error
}

func (r *Registry) preparePartner(in *store.Integration, cred Credential) error {
	if cred.Empty() {
		if len(in.SealedCredential) == 0 {
			return errors.New("a client secret or a certificate is required")
		}
		var err error
		if cred, err = r.open(*in); err != nil {
			return err
		}
	}
	if cred.ClientSecret != "" && len(cred.Certificate) > 0 {
		return errors.New("give a client secret or a certificate, not both")
	}
	var set PartnerSettings
	if err := DecodeSettings(*in, &set); err != nil {
		return err
	}
	// Normalised settings: sorted unique platforms, so a reorder is no change.
	seen := map[string]bool{}
	var plats []string
	for _, p := range set.Platforms {
		p = strings.ToLower(strings.TrimSpace(p))
		if p != "" && !seen[p] {
			seen[p] = true
			plats = append(plats, p)
		}
	}
	sort.Strings(plats)
	set.Platforms = plats
	b, _ := json.Marshal(set)
	in.Settings = b
	if _, err := r.partnerSink(*in, cred); err != nil {
		return err
	}
	in.CompliantValue, in.NoncompliantValue = graph.DefaultCompliantValue, graph.DefaultNoncompliantValue
	if in.ExtensionAttribute == 0 {
		in.ExtensionAttribute = 1 // graph-only column
	}
	if cred.ClientSecret != "" {
		in.CredentialKind = CredentialSecret
		sealed, err := r.keys.Seal([]byte(cred.ClientSecret), aad(in.ID))
		if err != nil {
			return err
		}
		in.SealedCredential, in.SealedCertPassword, in.CertNotAfter = []byte(sealed), nil, nil
		return nil
	}
	in.CredentialKind = CredentialCertificate
	sealed, err := r.keys.Seal(cred.Certificate, aad(in.ID))
	if err != nil {
		return err
	}
	in.SealedCredential, in.SealedCertPassword = []byte(sealed), nil
	if cred.CertificatePassword != "" {
		pw, err := r.keys.Seal([]byte(cred.CertificatePassword), aad(in.ID+"/password"))
		if err != nil {
			return err
		}
		in.SealedCertPassword = []byte(pw)
	}
	return nil
}

func (r *Registry) partnerSink(in store.Integration, cred Credential) (*intune.Sink, error) {
	var set PartnerSettings
	if err := DecodeSettings(in, &set); err != nil {
		return nil, err
	}
	r.mu.Lock()
	def, hs := r.partner, r.hosts
	r.mu.Unlock()
	if set.PortalURL == "" {
		set.PortalURL = def.PortalURL
	}
	cfg := intune.Config{
		Cloud: in.Cloud, AuthorityHost: in.AuthorityHost, GraphBaseURL: in.GraphBaseURL, GraphResource: in.GraphResource, TenantID: in.TenantID, ClientID: in.ClientID,
		ClientSecret: cred.ClientSecret, Certificate: cred.Certificate, CertificatePassword: cred.CertificatePassword,
		PortalURL: set.PortalURL, Platforms: set.Platforms, Group: set.Group,
		State: partnerState{r: r, id: in.ID}, HeartbeatEvery: def.HeartbeatEvery, PollInterval: def.PollInterval,
		Logger: r.log.With("integration", in.ID),
	}
	if strings.TrimSpace(in.ExtraCAPEM) != "" {
		cfg.ExtraCAPEM = []byte(in.ExtraCAPEM)
	}
	if hs != nil {
		cfg.Devices = partnerDevices{hs}
	}
	return intune.New(cfg, intune.Generation(in.UpdatedAt.UTC().Format(time.RFC3339Nano)))
}

// partnerState keeps a partner sink's state in its integration row.
type partnerState struct {
	r  *Registry
	id string
}

func (p partnerState) LoadState(ctx context.Context) (intune.State, error) {
	in, err := p.r.st.GetIntegration(ctx, p.id)
	if err != nil {
		return intune.State{}, err
	}
	return DecodePartnerState(in)
}

func (p partnerState) SaveState(ctx context.Context, s intune.State) error {
	ps, ok := p.r.st.(PartnerStore)
	if !ok {
		return errors.New("integrations: the store cannot keep sink state")
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	return ps.SetIntegrationSinkState(ctx, p.id, b)
}

// DecodePartnerState reads a partner integration's saved state.
func DecodePartnerState(in store.Integration) (intune.State, error) {
	var s intune.State
	if len(in.SinkState) > 0 {
		if err := json.Unmarshal(in.SinkState, &s); err != nil {
			return s, fmt.Errorf("integration %s: sink state: %w", in.ID, err)
		}
	}
	if s.Activation == "" {
		s.Activation = intune.ActivationNone
	}
	return s, nil
}

// partnerDevices describes hosts for inventory entities.
type partnerDevices struct{ st HostStore }

func (d partnerDevices) Device(ctx context.Context, id string) (intune.Device, error) {
	h, err := d.st.GetHost(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return intune.Device{}, nil
	}
	if err != nil {
		return intune.Device{}, err
	}
	os := h.OSName
	if os == "" {
		os = h.Platform
	}
	return intune.Device{Name: h.Hostname, OS: os, OSVersion: h.OSVersion, UPN: h.EffectiveUserPrincipalName(), LastSeen: h.LastSeenAt}, nil
}

// partner returns the live sink of a partner integration.
func (r *Registry) partnerOf(ctx context.Context, id string) (*intune.Sink, store.Integration, error) {
	in, err := r.st.GetIntegration(ctx, id)
	if err != nil {
		return nil, in, err
	}
	if in.Kind != KindPartner {
		return nil, in, fmt.Errorf("integration %s is a %s integration", id, in.Kind)
	}
	s, err := r.Sink(ctx, id)
	if err != nil {
		return nil, in, err
	}
	ps, ok := s.(*intune.Sink)
	if !ok {
		return nil, in, fmt.Errorf("integration %s: not a partner sink", id)
	}
	return ps, in, nil
}

// Deprovision tells Intune a partner integration stops.
func (r *Registry) Deprovision(ctx context.Context, id string) error {
	s, _, err := r.partnerOf(ctx, id)
	if err != nil {
		return err
	}
	_, err = s.Deprovision(ctx)
	return err
}

// MaintainPartners runs activation, policies and the heartbeat of every
// partner integration (each step only when its saved state says so), and
// records the outcome as the integration's health.
func (r *Registry) MaintainPartners(ctx context.Context) {
	ins, err := r.st.ListIntegrations(ctx)
	if err != nil {
		r.log.Warn("list integrations", "err", err)
		return
	}
	for _, in := range ins {
		if in.Kind != KindPartner {
			continue
		}
		s, _, err := r.partnerOf(ctx, in.ID)
		if err != nil {
			r.log.Warn("partner integration", "integration", in.ID, "err", err)
			continue
		}
		st, err := s.Maintain(ctx)
		health, msg := string(graph.HealthOK), "activated; heartbeat "+st.LastHeartbeatAt.Format(time.RFC3339)
		if err != nil {
			health, msg = string(healthNotActivated), err.Error()
		} else if st.HeartbeatError != "" {
			health, msg = string(graph.HealthUnreachable), "heartbeat: "+st.HeartbeatError
		}
		if in.Health != health || (err != nil && in.HealthMessage != msg) || err == nil {
			if err := r.st.SetIntegrationHealth(ctx, in.ID, health, msg, r.now()); err != nil && !errors.Is(err, store.ErrNotFound) {
				r.log.Warn("record integration health", "integration", in.ID, "err", err)
			}
		}
	}
}

// RunPartners calls MaintainPartners every interval until ctx ends.
func (r *Registry) RunPartners(ctx context.Context, every time.Duration) {
	r.MaintainPartners(ctx)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.MaintainPartners(ctx)
		}
	}
}

var _ hubsync.Sink = (*intune.Sink)(nil)

// healthNotActivated: a partner integration Intune has not activated (or
// that cannot reach Intune); the message says why.
const healthNotActivated graph.Health = "not_activated"
