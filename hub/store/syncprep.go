package store

import (
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Shared, SQL-free checks and defaults for the sync.go contract, so both
// backends accept and refuse exactly the same input.

// Outbox row states (SyncItem.State).
const (
	SyncPending = "pending"
	SyncDone    = "done"
	SyncDead    = "dead"
)

// Desired states of an outbox row (the values of compliance.Desired; this
// package cannot import hub/compliance).
const (
	desiredCompliant    = "compliant"
	desiredNoncompliant = "noncompliant"
)

// Defaults of an integration.
const (
	IntegrationKindGraph     = "graph"
	IntegrationKindWebhook   = "webhook"
	IntegrationKindPartner   = "intune-partner"
	CloudPublic              = "public"
	DefaultCompliantValue    = "Compliant"
	DefaultNoncompliantValue = "Non-compliant"
)

// The dead-letter code and reason of pending rows of a deleted integration.
const (
	CodeIntegrationDeleted   = "integration_deleted"
	ReasonIntegrationDeleted = "integration deleted"
)

// FactKey names a fact query in PolicyChange.ID: the name, or name:platform
// for a platform-specific query.
func FactKey(f FactQuery) string {
	if f.Platform == "" {
		return f.Name
	}
	return f.Name + ":" + f.Platform
}

// ValidateFacts checks fact queries: a name and a query each, no (name,
// platform) twice.
func ValidateFacts(fs []FactQuery) error {
	seen := map[string]bool{}
	for i, f := range fs {
		switch {
		case strings.TrimSpace(f.Name) == "":
			return fmt.Errorf("fact query #%d: empty name: %w", i+1, ErrInvalid)
		case strings.TrimSpace(f.Query) == "":
			return fmt.Errorf("fact query %q: empty query: %w", FactKey(f), ErrInvalid)
		case seen[FactKey(f)]:
			return fmt.Errorf("fact query %q: listed twice: %w", FactKey(f), ErrInvalid)
		}
		seen[FactKey(f)] = true
	}
	return nil
}

// SortFacts returns a copy sorted by name, then platform (the stored order).
func SortFacts(fs []FactQuery) []FactQuery {
	out := slices.Clone(fs)
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Platform < out[j].Platform
	})
	return out
}

// planFacts compares a requested fact set with the stored one; replace is
// true when they differ.
func planFacts(cur, req []FactQuery) (changes []PolicyChange, replace bool) {
	old := make(map[string]FactQuery, len(cur))
	for _, f := range cur {
		old[FactKey(f)] = f
	}
	inReq := map[string]bool{}
	for _, f := range req {
		k := FactKey(f)
		inReq[k] = true
		prev, ok := old[k]
		switch {
		case !ok:
			changes = append(changes, PolicyChange{Kind: KindFact, ID: k, Action: ActionAdded})
			replace = true
		case prev.Query != f.Query:
			changes = append(changes, PolicyChange{Kind: KindFact, ID: k, Action: ActionChanged, Fields: []string{"query"}})
			replace = true
		default:
			changes = append(changes, PolicyChange{Kind: KindFact, ID: k, Action: ActionUnchanged})
		}
	}
	for _, f := range cur {
		if k := FactKey(f); !inReq[k] {
			changes = append(changes, PolicyChange{Kind: KindFact, ID: k, Action: ActionRemoved})
			replace = true
		}
	}
	return changes, replace
}

// PrepareExemption checks an exemption and fills created-at = now.
func PrepareExemption(e Exemption, now time.Time) (Exemption, error) {
	switch {
	case strings.TrimSpace(e.ID) == "":
		return e, fmt.Errorf("exemption: empty id: %w", ErrInvalid)
	case e.HostID == "":
		return e, fmt.Errorf("exemption %q: empty host id: %w", e.ID, ErrInvalid)
	case e.ExpiresAt.IsZero():
		return e, fmt.Errorf("exemption %q: no expiry (exemptions always end): %w", e.ID, ErrInvalid)
	}
	if e.CreatedAt.IsZero() {
		e.CreatedAt = now
	}
	e.CreatedAt = StoredTime(e.CreatedAt)
	e.ExpiresAt = StoredTime(e.ExpiresAt)
	return e, nil
}

// ValidVerdictState reports whether s is a verdict state the store accepts.
func ValidVerdictState(s string) bool {
	switch s {
	case "COMPLIANT", "NONCOMPLIANT", "GRACE", "UNKNOWN":
		return true
	}
	return false
}

// PrepareVerdict checks a verdict and its outbox rows before SaveVerdict
// writes anything: it returns v as stored (Version = prevVersion+1,
// updated-at defaulted to now, times in stored form) and the rows sorted by
// device key, the order in which every backend locks device rows.
func PrepareVerdict(v Verdict, prevVersion int64, rows []OutboxRow, now time.Time) (Verdict, []OutboxRow, error) {
	switch {
	case v.HostID == "":
		return v, nil, fmt.Errorf("verdict: empty host id: %w", ErrInvalid)
	case !ValidVerdictState(v.State):
		return v, nil, fmt.Errorf("verdict of host %q: state %q: %w", v.HostID, v.State, ErrInvalid)
	case v.Desired != "" && v.Desired != desiredCompliant && v.Desired != desiredNoncompliant:
		return v, nil, fmt.Errorf("verdict of host %q: desired %q: %w", v.HostID, v.Desired, ErrInvalid)
	case prevVersion < 0:
		return v, nil, fmt.Errorf("verdict of host %q: previous version %d: %w", v.HostID, prevVersion, ErrInvalid)
	}
	for i, r := range rows {
		if err := ValidateOutboxRow(r); err != nil {
			return v, nil, fmt.Errorf("verdict of host %q: row #%d: %w", v.HostID, i+1, err)
		}
	}
	if v.UpdatedAt.IsZero() {
		v.UpdatedAt = now
	}
	v.UpdatedAt = StoredTime(v.UpdatedAt)
	v.NextTransition = StoredTimePtr(v.NextTransition)
	v.Version = prevVersion + 1
	if len(v.Reasons) == 0 {
		v.Reasons = nil
	}
	sorted := slices.Clone(rows)
	sort.SliceStable(sorted, func(i, j int) bool {
		a, b := sorted[i], sorted[j]
		if a.IntegrationID != b.IntegrationID {
			return a.IntegrationID < b.IntegrationID
		}
		return a.DeviceID < b.DeviceID
	})
	return v, sorted, nil
}

// ValidateOutboxRow applies hub/sync's rules for a change: an integration, a
// device, a desired state and a created-at time.
func ValidateOutboxRow(r OutboxRow) error {
	switch {
	case r.IntegrationID == "":
		return fmt.Errorf("outbox row without integration id: %w", ErrInvalid)
	case r.DeviceID == "":
		return fmt.Errorf("outbox row without device id: %w", ErrInvalid)
	case r.Desired != desiredCompliant && r.Desired != desiredNoncompliant:
		return fmt.Errorf("outbox row: invalid desired state %q: %w", r.Desired, ErrInvalid)
	case r.CreatedAt.IsZero():
		return fmt.Errorf("outbox row without created-at: %w", ErrInvalid)
	case r.Kind != "" && r.Kind != OutboxRevokeSessions:
		return fmt.Errorf("outbox row: invalid kind %q: %w", r.Kind, ErrInvalid)
	case r.Kind == OutboxRevokeSessions && r.Subject == "":
		return fmt.Errorf("outbox row: session revocation without a user: %w", ErrInvalid)
	}
	return nil
}

// ValidCloud reports whether c names a Microsoft cloud.
func ValidCloud(c string) bool {
	switch c {
	case "public", "usgov", "usgov-dod", "china", "custom":
		return true
	}
	return false
}

// PrepareIntegration checks an integration and fills defaults: kind graph,
// the public cloud, the default attribute values, created-at and updated-at
// = now. Sealed bytes are kept as given (hub/secrets sealed them).
func PrepareIntegration(in Integration, now time.Time) (Integration, error) {
	if in.Kind == "" {
		in.Kind = IntegrationKindGraph
	}
	if in.Cloud == "" {
		in.Cloud = CloudPublic
	}
	if in.CompliantValue == "" {
		in.CompliantValue = DefaultCompliantValue
	}
	if in.NoncompliantValue == "" {
		in.NoncompliantValue = DefaultNoncompliantValue
	}
	bad := func(format string, args ...any) (Integration, error) {
		return in, fmt.Errorf("integration %q: %s: %w", in.ID, fmt.Sprintf(format, args...), ErrInvalid)
	}
	switch in.Kind {
	case IntegrationKindGraph, IntegrationKindPartner:
	case IntegrationKindWebhook:
		// No tenant or app: the credential is the signing secret.
		in.TenantID, in.ClientID, in.CredentialKind = "", "", "secret"
	default:
		return bad("kind %q not graph, intune-partner or webhook", in.Kind)
	}
	if in.Kind != IntegrationKindGraph && in.ExtensionAttribute == 0 {
		in.ExtensionAttribute = 1 // graph-only column, unused by other kinds
	}
	if len(in.Settings) == 0 {
		in.Settings = []byte("{}")
	}
	in.SinkState = nil // SetIntegrationSinkState's alone
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(in.Settings, &obj); err != nil || obj == nil {
		return bad("settings are not a JSON object")
	}
	switch {
	case strings.TrimSpace(in.ID) == "":
		return in, fmt.Errorf("integration: empty id: %w", ErrInvalid)
	case !ValidCloud(in.Cloud):
		return bad("cloud %q not public, usgov, usgov-dod, china or custom", in.Cloud)
	case in.Cloud == "custom" && (in.AuthorityHost == "" || in.GraphBaseURL == ""):
		return bad("a custom cloud needs an authority host and a Graph base URL")
	case in.TenantID == "" && in.Kind != IntegrationKindWebhook:
		return bad("empty tenant id")
	case in.ClientID == "" && in.Kind != IntegrationKindWebhook:
		return bad("empty client id")
	case in.CredentialKind != "secret" && in.CredentialKind != "certificate":
		return bad("credential kind %q not secret or certificate", in.CredentialKind)
	case len(in.SealedCredential) == 0:
		return bad("no credential")
	case in.ExtensionAttribute < 1 || in.ExtensionAttribute > 15:
		return bad("extension attribute %d not 1-15", in.ExtensionAttribute)
	case in.CompliantValue == in.NoncompliantValue:
		return bad("compliant and non-compliant values are both %q", in.CompliantValue)
	}
	seen := map[string]bool{}
	for _, t := range in.Teams {
		if t == "" || seen[t] {
			return bad("team %q empty or listed twice", t)
		}
		seen[t] = true
	}
	in.Teams = slices.Clone(in.Teams)
	sort.Strings(in.Teams)
	if len(in.Teams) == 0 {
		in.Teams = nil
	}
	if len(in.SealedCertPassword) == 0 {
		in.SealedCertPassword = nil
	}
	if in.CreatedAt.IsZero() {
		in.CreatedAt = now
	}
	if in.UpdatedAt.IsZero() {
		in.UpdatedAt = now
	}
	in.CreatedAt = StoredTime(in.CreatedAt)
	in.UpdatedAt = StoredTime(in.UpdatedAt)
	in.SecretExpiresAt = StoredTimePtr(in.SecretExpiresAt)
	in.CertNotAfter = StoredTimePtr(in.CertNotAfter)
	in.HealthCheckedAt = StoredTimePtr(in.HealthCheckedAt)
	return in, nil
}

// ValidSyncState reports whether s is a state ListSyncItems accepts ("" =
// pending and dead).
func ValidSyncState(s string) bool {
	return s == "" || s == SyncPending || s == SyncDone || s == SyncDead
}
