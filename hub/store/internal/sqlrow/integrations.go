package sqlrow

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/posture-dev/posture/hub/store"
)

// IntegrationCols are the columns of Integration, in IntegrationArgs order.
const IntegrationCols = `id, name, kind, cloud, authority_host, graph_base_url, extra_ca_pem, tenant_id,
	client_id, credential_kind, sealed_credential, sealed_cert_password, secret_expires_at, cert_not_after,
	extension_attribute, compliant_value, noncompliant_value, teams, health, health_message,
	health_checked_at, created_at, updated_at, settings, sink_state, graph_resource`

// Integration is a row of integrations.
type Integration struct {
	ID                 string   `db:"id"`
	Name               string   `db:"name"`
	Kind               string   `db:"kind"`
	Cloud              string   `db:"cloud"`
	AuthorityHost      string   `db:"authority_host"`
	GraphBaseURL       string   `db:"graph_base_url"`
	ExtraCAPEM         string   `db:"extra_ca_pem"`
	TenantID           string   `db:"tenant_id"`
	ClientID           string   `db:"client_id"`
	CredentialKind     string   `db:"credential_kind"`
	SealedCredential   []byte   `db:"sealed_credential"`
	SealedCertPassword []byte   `db:"sealed_cert_password"`
	SecretExpiresAt    NullTime `db:"secret_expires_at"`
	CertNotAfter       NullTime `db:"cert_not_after"`
	ExtensionAttribute int      `db:"extension_attribute"`
	CompliantValue     string   `db:"compliant_value"`
	NoncompliantValue  string   `db:"noncompliant_value"`
	Teams              string   `db:"teams"`
	Health             string   `db:"health"`
	HealthMessage      string   `db:"health_message"`
	HealthCheckedAt    NullTime `db:"health_checked_at"`
	CreatedAt          Time     `db:"created_at"`
	UpdatedAt          Time     `db:"updated_at"`
	Settings           string   `db:"settings"`
	SinkState          string   `db:"sink_state"`
	GraphResource      string   `db:"graph_resource"`
}

// Integration converts the row.
func (r Integration) Integration() (store.Integration, error) {
	in := store.Integration{ID: r.ID, Name: r.Name, Kind: r.Kind, Cloud: r.Cloud, AuthorityHost: r.AuthorityHost,
		GraphBaseURL: r.GraphBaseURL, ExtraCAPEM: r.ExtraCAPEM, TenantID: r.TenantID, ClientID: r.ClientID,
		CredentialKind: r.CredentialKind, SealedCredential: r.SealedCredential,
		SealedCertPassword: r.SealedCertPassword, SecretExpiresAt: r.SecretExpiresAt.Ptr(),
		CertNotAfter: r.CertNotAfter.Ptr(), ExtensionAttribute: r.ExtensionAttribute,
		CompliantValue: r.CompliantValue, NoncompliantValue: r.NoncompliantValue, Health: r.Health,
		HealthMessage: r.HealthMessage, HealthCheckedAt: r.HealthCheckedAt.Ptr(),
		CreatedAt: r.CreatedAt.T(), UpdatedAt: r.UpdatedAt.T(), GraphResource: r.GraphResource,
		Settings: []byte(r.Settings), SinkState: []byte(r.SinkState)}
	if err := json.Unmarshal([]byte(r.Teams), &in.Teams); err != nil {
		return store.Integration{}, fmt.Errorf("integration %q: teams: %w", r.ID, err)
	}
	if len(in.Teams) == 0 {
		in.Teams = nil
	}
	if len(in.SealedCertPassword) == 0 {
		in.SealedCertPassword = nil
	}
	return in, nil
}

// IntegrationArgs are the values of IntegrationCols in order.
func IntegrationArgs(in store.Integration, d Dialect) ([]any, error) {
	teams, err := json.Marshal(NonNil(in.Teams))
	if err != nil {
		return nil, fmt.Errorf("integration %q: teams: %w", in.ID, err)
	}
	return []any{in.ID, in.Name, in.Kind, in.Cloud, in.AuthorityHost, in.GraphBaseURL, in.ExtraCAPEM,
		in.TenantID, in.ClientID, in.CredentialKind, in.SealedCredential, in.SealedCertPassword,
		d.TimePtr(in.SecretExpiresAt), d.TimePtr(in.CertNotAfter), in.ExtensionAttribute, in.CompliantValue,
		in.NoncompliantValue, string(teams), in.Health, in.HealthMessage, d.TimePtr(in.HealthCheckedAt),
		d.Time(in.CreatedAt), d.Time(in.UpdatedAt), JSONObject(in.Settings), JSONObject(in.SinkState), in.GraphResource}, nil
}

// ListIntegrations returns every integration sorted by id.
func ListIntegrations(ctx context.Context, q Querier) ([]store.Integration, error) {
	var rows []Integration
	if err := q.SelectContext(ctx, &rows, `SELECT `+IntegrationCols+` FROM integrations ORDER BY id`); err != nil {
		return nil, fmt.Errorf("list integrations: %w", err)
	}
	out := make([]store.Integration, 0, len(rows))
	for _, r := range rows {
		in, err := r.Integration()
		if err != nil {
			return nil, err
		}
		out = append(out, in)
	}
	return out, nil
}

// JSONObject is b as stored: "{}" when empty.
func JSONObject(b []byte) string {
	if len(b) == 0 {
		return "{}"
	}
	return string(b)
}
