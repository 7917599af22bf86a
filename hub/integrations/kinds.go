package integrations

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/posture-dev/posture/hub/store"
	hubsync "github.com/posture-dev/posture/hub/sync"
	"github.com/posture-dev/posture/hub/sync/graph"
	"github.com/posture-dev/posture/hub/sync/intune"
	"github.com/posture-dev/posture/hub/sync/webhook"
	"github.com/posture-dev/posture/hub/verdicts"
)

// Sink kinds beyond graph.
const (
	KindWebhook = store.IntegrationKindWebhook
	KindPartner = store.IntegrationKindPartner
)

// WebhookSettings are a webhook integration's settings.
type WebhookSettings struct {
	URL string `json:"url"`
}

// HostStore is what webhook events read about a host.
type HostStore interface {
	GetHost(ctx context.Context, id string) (store.Host, error)
	GetVerdict(ctx context.Context, hostID string) (store.Verdict, error)
	GetPolicy(ctx context.Context, id string) (store.Policy, error)
}

// SetHosts gives webhook sinks the host names and failing policies they
// send (without it events carry ids only).
func (r *Registry) SetHosts(hs HostStore) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hosts = hs
}

// DecodeSettings reads an integration's settings into v.
func DecodeSettings(in store.Integration, v any) error {
	if len(in.Settings) == 0 {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(in.Settings)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("integration %s: settings: %w", in.ID, err)
	}
	return nil
}

// prepareOther validates and seals a non-graph integration.
func (r *Registry) prepareOther(in *store.Integration, cred Credential) error {
	switch in.Kind {
	case KindWebhook:
		if cred.Empty() {
			if len(in.SealedCredential) == 0 {
				return errors.New("a webhook needs a signing secret (client_secret)")
			}
			var err error
			if cred, err = r.open(*in); err != nil {
				return err
			}
		}
		if len(cred.Certificate) > 0 {
			return errors.New("a webhook is signed with a shared secret, not a certificate")
		}
		if _, err := r.buildWebhook(*in, cred); err != nil {
			return err
		}
		// Graph-only fields mean nothing here: keep them empty, not stale.
		in.TenantID, in.ClientID, in.AuthorityHost, in.GraphBaseURL, in.ExtraCAPEM = "", "", "", "", ""
		in.CompliantValue, in.NoncompliantValue, in.ExtensionAttribute = graph.DefaultCompliantValue, graph.DefaultNoncompliantValue, 1
		in.CredentialKind = CredentialSecret
		sealed, err := r.keys.Seal([]byte(cred.ClientSecret), aad(in.ID))
		if err != nil {
			return err
		}
		in.SealedCredential, in.SealedCertPassword, in.CertNotAfter = []byte(sealed), nil, nil
		return nil
	case KindPartner:
		return r.preparePartner(in, cred)
	}
	return fmt.Errorf("kind %q is not supported (want graph, intune-partner or webhook)", in.Kind)
}

func (r *Registry) buildWebhook(in store.Integration, cred Credential) (*webhook.Sink, error) {
	var set WebhookSettings
	if err := DecodeSettings(in, &set); err != nil {
		return nil, err
	}
	r.mu.Lock()
	hs := r.hosts
	r.mu.Unlock()
	cfg := webhook.Config{URL: set.URL, Secret: []byte(cred.ClientSecret), Logger: r.log.With("integration", in.ID)}
	if hs != nil {
		cfg.Hosts = hostInfo{hs}
	}
	return webhook.New(cfg)
}

// buildOther makes a fresh sink of a non-graph integration.
func (r *Registry) buildOther(in store.Integration) (hubsync.Sink, error) {
	cred, err := r.open(in)
	if err != nil {
		return nil, err
	}
	switch in.Kind {
	case KindWebhook:
		return r.buildWebhook(in, cred)
	case KindPartner:
		return r.partnerSink(in, cred)
	}
	return nil, fmt.Errorf("integration %s: kind %q is not supported", in.ID, in.Kind)
}

// testOther checks a non-graph integration: a signed ping for a webhook.
func (r *Registry) testOther(ctx context.Context, in store.Integration) (graph.ConnectionReport, error) {
	s, err := r.buildOther(in)
	if err != nil {
		return graph.ConnectionReport{}, err
	}
	rep := graph.ConnectionReport{Health: graph.HealthOK, OK: true, TokenOK: true, ReadOK: true}
	switch s := s.(type) {
	case *webhook.Sink:
		o := s.Apply(ctx, []hubsync.Change{{OutboxID: 0, IntegrationID: in.ID, DeviceID: "00000000-0000-0000-0000-000000000000",
			Desired: hubsync.DesiredCompliant, Verdict: "TEST", CreatedAt: r.now()}})[0]
		if o.Kind != hubsync.OutcomeOK {
			rep = graph.ConnectionReport{Health: graph.HealthUnreachable, TokenOK: true,
				Problems: []string{fmt.Sprintf("test event refused: %s %s", o.Code, o.Message)}}
		}
	case *intune.Sink:
		// Discovery, activation (its answer's body checked), the group,
		// the policies and a heartbeat when due.
		if _, err := s.Maintain(ctx); err != nil {
			rep = graph.ConnectionReport{Health: healthNotActivated, Problems: []string{err.Error()}}
		}
	case testable:
		rep = s.TestConnection(ctx)
	}
	msg := strings.Join(rep.Problems, "; ")
	if rep.OK {
		msg = "connection test passed"
	}
	if err := r.st.SetIntegrationHealth(ctx, in.ID, string(rep.Health), msg, r.now()); err != nil {
		return rep, err
	}
	return rep, nil
}

type testable interface {
	TestConnection(ctx context.Context) graph.ConnectionReport
}

// hostInfo reads a host's name and failing policies for webhook events.
type hostInfo struct{ st HostStore }

func (h hostInfo) HostInfo(ctx context.Context, id string) (webhook.HostInfo, error) {
	host, err := h.st.GetHost(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return webhook.HostInfo{}, nil
	}
	if err != nil {
		return webhook.HostInfo{}, err
	}
	out := webhook.HostInfo{Hostname: host.Hostname}
	v, err := h.st.GetVerdict(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return out, nil
	}
	if err != nil {
		return webhook.HostInfo{}, err
	}
	reasons, err := verdicts.DecodeReasons(v)
	if err != nil {
		return webhook.HostInfo{}, err
	}
	for _, rs := range reasons {
		if rs.Exempt || rs.Status == "" {
			continue
		}
		fp := webhook.FailingPolicy{ID: rs.PolicyID, Severity: rs.Severity, Blocking: rs.Blocking}
		if p, err := h.st.GetPolicy(ctx, rs.PolicyID); err == nil {
			fp.Name = p.Name
		}
		out.FailingPolicies = append(out.FailingPolicies, fp)
	}
	return out, nil
}
