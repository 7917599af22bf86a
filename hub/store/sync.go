package store

import (
	"context"
	"time"
)

// This file is the contract for verdicts, exemptions, integrations and fact
// queries (issue 3). The sync outbox itself is hub/sync's Outbox, Enqueuer
// and DeviceStates interfaces (hub/store cannot import hub/sync: it would be
// an import cycle), which both backends also implement, checked by
// hub/sync/outboxtest.

// Exemption excuses a host from a policy (PolicyID "" = every policy) until
// ExpiresAt. Exemptions always end.
type Exemption struct {
	ID        string
	HostID    string
	PolicyID  string
	Reason    string
	CreatedBy string
	CreatedAt time.Time
	ExpiresAt time.Time
}

// Exemptions keeps exemptions.
type Exemptions interface {
	// CreateExemption fails with ErrNotFound when the host does not exist.
	CreateExemption(ctx context.Context, e Exemption) error
	// ListExemptions lists a host's exemptions ("" = all hosts), expired ones
	// included (callers filter by time), ordered by CreatedAt.
	ListExemptions(ctx context.Context, hostID string) ([]Exemption, error)
	DeleteExemption(ctx context.Context, id string) error
}

// Verdict is a host's stored compliance verdict. Reasons is the
// JSON-encoded []compliance.Reason (opaque to the store).
type Verdict struct {
	HostID         string
	State          string // COMPLIANT | NONCOMPLIANT | GRACE | UNKNOWN
	Cause          string
	Desired        string // compliant | noncompliant | "" (no write)
	Reasons        []byte
	NextTransition *time.Time
	UpdatedAt      time.Time
	// Version increases on every save; SaveVerdict compares it (optimistic
	// concurrency between replicas).
	Version int64
}

// OutboxRow is one desired device state to write, enqueued with a verdict.
// It mirrors hub/sync.Change.
type OutboxRow struct {
	IntegrationID string
	TenantID      string
	DeviceID      string
	HostID        string
	Desired       string
	Verdict       string
	CreatedAt     time.Time
	// Kind is "" for the device attribute write, OutboxRevokeSessions to
	// revoke the sign-in sessions of the user Subject (a UPN).
	Kind    string
	Subject string
}

// OutboxRevokeSessions is the outbox row kind that revokes a user's
// sign-in sessions (hub/sync.KindRevokeSessions).
const OutboxRevokeSessions = "revoke_sessions"

// Verdicts keeps verdicts.
type Verdicts interface {
	// GetVerdict returns ErrNotFound for a host never evaluated.
	GetVerdict(ctx context.Context, hostID string) (Verdict, error)
	ListVerdicts(ctx context.Context) ([]Verdict, error)
	// SaveVerdict stores v (with Version = prevVersion+1) only if the stored
	// version is still prevVersion (0: no row yet), and in the same
	// transaction enqueues rows (hub/sync's Enqueue semantics: outbox row +
	// sync_device upsert). A lost race returns an error wrapping ErrConflict
	// and writes nothing, so one transition is enqueued once however many
	// replicas evaluate it.
	SaveVerdict(ctx context.Context, v Verdict, prevVersion int64, rows []OutboxRow) error
	// DueVerdicts lists hosts whose NextTransition is at or before now.
	DueVerdicts(ctx context.Context, now time.Time, limit int) ([]string, error)
}

// Integration is a sink: Microsoft Graph (kind "graph"), the Intune
// compliance-partner API ("intune-partner") or a signed webhook ("webhook").
type Integration struct {
	ID            string
	Name          string
	Kind          string
	Cloud         string // public | usgov | usgov-dod | china | custom
	AuthorityHost string // custom only
	GraphBaseURL  string // custom only
	ExtraCAPEM    string // custom only
	// GraphResource is the resource tokens are asked for, custom only ("" =
	// the public Graph resource); never derived from GraphBaseURL.
	GraphResource string
	TenantID      string
	ClientID      string
	// CredentialKind is "secret" or "certificate"; SealedCredential is the
	// secret or the PEM/PFX, encrypted by hub/secrets (never stored plain).
	CredentialKind     string
	SealedCredential   []byte
	SealedCertPassword []byte
	SecretExpiresAt    *time.Time
	CertNotAfter       *time.Time
	ExtensionAttribute int
	CompliantValue     string
	NoncompliantValue  string
	Teams              []string // empty = every team
	Health             string
	HealthMessage      string
	HealthCheckedAt    *time.Time
	CreatedAt          time.Time
	UpdatedAt          time.Time
	// Settings are the kind's own options (a JSON object; webhook URL,
	// partner portal URLs, platforms, group scope), decoded by
	// hub/integrations. Empty = {}.
	Settings []byte
	// SinkState is what the sink keeps about the remote side (a JSON
	// object): written only by SetIntegrationSinkState, ignored by Create
	// and Update.
	SinkState []byte
}

// Integrations keeps integrations.
type Integrations interface {
	CreateIntegration(ctx context.Context, in Integration) error
	// UpdateIntegration replaces every field but ID, CreatedAt and health.
	UpdateIntegration(ctx context.Context, in Integration) error
	GetIntegration(ctx context.Context, id string) (Integration, error)
	ListIntegrations(ctx context.Context) ([]Integration, error)
	DeleteIntegration(ctx context.Context, id string) error
	SetIntegrationHealth(ctx context.Context, id, health, message string, at time.Time) error
	// SetIntegrationSinkState replaces the sink's state (a JSON object)
	// without touching UpdatedAt.
	SetIntegrationSinkState(ctx context.Context, id string, state []byte) error
}

// DeviceCheck is what Graph said about a host's Entra device when
// reconcile last read it, and how that disagrees with the host's facts.
type DeviceCheck struct {
	HostID          string
	IntegrationID   string
	DeviceID        string
	DisplayName     string
	OperatingSystem string
	// Mismatch says what disagrees ("" = the device matches the host).
	Mismatch  string
	CheckedAt time.Time
}

// DeviceChecks keeps the latest device check per host.
type DeviceChecks interface {
	// SaveDeviceCheck replaces the host's check (it goes with the host).
	SaveDeviceCheck(ctx context.Context, c DeviceCheck) error
	// GetDeviceCheck returns ErrNotFound for a host never checked.
	GetDeviceCheck(ctx context.Context, hostID string) (DeviceCheck, error)
}

// FactQuery finds a host fact such as "entra_device_id".
type FactQuery struct {
	Name     string
	Platform string // "" = every platform
	Query    string
}

// SyncItem is an outbox row as the admin API shows it.
type SyncItem struct {
	ID            int64
	IntegrationID string
	HostID        string
	DeviceID      string
	Desired       string
	Verdict       string
	State         string // pending | done | dead
	Attempts      int
	CreatedAt     time.Time
	NextAt        time.Time
	Code          string
	Error         string
	Kind          string // "" (device attribute) or OutboxRevokeSessions
	Subject       string
}

// SyncItems lets admins see and retry outbox rows.
type SyncItems interface {
	// ListSyncItems lists rows in a state ("" = pending and dead), newest
	// first, optionally of one integration.
	ListSyncItems(ctx context.Context, state, integrationID string, limit int) ([]SyncItem, error)
	// RetrySyncItem makes a dead row pending again (attempts 0, due now), or
	// a pending row waiting out a backoff or pause due now (attempts kept;
	// a row due earlier stays so). A done row is ErrInvalid.
	RetrySyncItem(ctx context.Context, id int64, now time.Time) (SyncItem, error)
	// ResumeSyncItems makes every pending row of an integration that waits
	// past now due at now (attempts and last error kept), after its
	// credential or configuration was fixed, and returns how many.
	ResumeSyncItems(ctx context.Context, integrationID string, now time.Time) (int, error)
	// PruneSyncItems deletes done rows created before `before` (dead rows are
	// kept: they are what an admin must see) and returns how many went.
	// Pending rows, rows of a device that holds a lease (live or expired but
	// not yet released) and the device states (sync_device: last written and
	// desired) are never touched. It deletes in bounded chunks, each its own
	// short transaction, so a huge backlog holds no long lock; on an error
	// the count is what earlier chunks deleted. A zero `before` is ErrInvalid.
	PruneSyncItems(ctx context.Context, before time.Time) (int, error)
}

// PruneChunk is how many outbox rows PruneSyncItems deletes per statement
// (and transaction).
const PruneChunk = 5000

// Facts keeps fact queries; they are replaced as a set by ApplyPolicies
// (ApplyRequest.Facts, when not nil).
type Facts interface {
	ListFactQueries(ctx context.Context) ([]FactQuery, error)
}
