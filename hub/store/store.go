// Package store declares what the hub keeps and the small interfaces over it.
// Two backends implement them: hub/store/sqlite (embedded default) and
// hub/store/postgres (production, many replicas). hub/store/storetest is the
// conformance suite both must pass.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Errors every backend returns (wrapped) so callers can map them to API codes.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("conflict")
	// ErrRevoked: the host is revoked and may not re-enroll until deleted.
	ErrRevoked = errors.New("host revoked")
)

// Result statuses as stored.
const (
	StatusPass  = "PASS"
	StatusFail  = "FAIL"
	StatusError = "ERROR"
)

// DefaultTeam is the team of hosts and secrets created without one.
const DefaultTeam = "default"

// Host is an enrolled device.
type Host struct {
	ID             string
	Team           string
	Hostname       string
	Platform       string // darwin | windows | linux
	OSPlatform     string // os_version.platform
	OSName         string
	OSVersion      string
	OsqueryVersion string
	HardwareSerial string
	HardwareUUID   string // matches a re-enrolling host to its record
	HardwareModel  string
	ExtVersion     string

	EntraDeviceID         string // as reported by the host's fact queries
	EntraDeviceIDOverride string // set by an admin; wins when not empty
	UserPrincipalName     string // as reported by the host's fact queries
	// UserPrincipalNameOverride is set by an admin; wins when not empty.
	UserPrincipalNameOverride string
	// IdentityAt is when the host last reported its identity facts (set by
	// SetHostIdentity even when they were empty: the host looked and found no
	// Entra registration); nil = never reported.
	IdentityAt *time.Time

	EnrolledAt   time.Time
	LastSeenAt   time.Time
	CertSerial   string
	CertNotAfter time.Time
	RevokedAt    *time.Time

	// DuplicateOf names the host that already held this hardware UUID when
	// this one enrolled with another team's secret ("" = not a duplicate).
	DuplicateOf string
	// ReenrolledAt is the last enroll that reused this host (same hardware
	// UUID, same team; nil = never) and ReenrollCount how many there were.
	// Each re-enroll retires the host's earlier certificates.
	ReenrolledAt  *time.Time
	ReenrollCount int
}

// Revoked reports whether the host was revoked.
func (h Host) Revoked() bool { return h.RevokedAt != nil }

// EffectiveEntraDeviceID is the id sinks key on.
func (h Host) EffectiveEntraDeviceID() string {
	if h.EntraDeviceIDOverride != "" {
		return h.EntraDeviceIDOverride
	}
	return h.EntraDeviceID
}

// EffectiveUserPrincipalName is the user sinks, session revocation and the
// portal go by: the admin's override, else the reported one.
func (h Host) EffectiveUserPrincipalName() string {
	if h.UserPrincipalNameOverride != "" {
		return h.UserPrincipalNameOverride
	}
	return h.UserPrincipalName
}

// HostFilter narrows ListHosts. Zero value lists all.
type HostFilter struct {
	Team string
}

// Hosts keeps enrolled devices.
type Hosts interface {
	// EnrollHost creates the host, or re-enrolls an existing one. With a
	// HardwareUUID, a host of the same team holding it is refreshed (facts,
	// enrolled-at, certificate cleared until SetHostCert, ReenrolledAt set to
	// the enroll time, ReenrollCount bumped) and returned with its old ID;
	// a host never changes team here. When only a host of another team holds
	// it, a new host with DuplicateOf set to that host is created. A revoked
	// host of the same team, or a revoked original, yields ErrRevoked and
	// changes nothing. A returned host with ReenrolledAt set was re-enrolled
	// by this call (new hosts never have it).
	EnrollHost(ctx context.Context, h Host) (Host, error)
	GetHost(ctx context.Context, id string) (Host, error)
	ListHosts(ctx context.Context, f HostFilter) ([]Host, error)
	// UpdateHostFacts stores facts from a Hello (not team, cert, identity or
	// the hardware UUID, which is fixed at enrollment).
	UpdateHostFacts(ctx context.Context, h Host) error
	// SetHostIdentity stores the Entra device id and UPN reported by the host
	// (empty values too) and sets IdentityAt to now.
	SetHostIdentity(ctx context.Context, id, entraDeviceID, upn string) error
	// SetHostEntraOverride sets (or clears, with "") the admin override.
	SetHostEntraOverride(ctx context.Context, id, entraDeviceID string) error
	// SetHostUPNOverride sets (or clears, with "") the admin's user
	// principal name override; a re-enroll keeps it.
	SetHostUPNOverride(ctx context.Context, id, upn string) error
	SetHostCert(ctx context.Context, id, serial string, notAfter time.Time) error
	// TouchHost coalesces last-seen; it never moves last-seen backwards.
	TouchHost(ctx context.Context, id string, seen time.Time) error
	RevokeHost(ctx context.Context, id string, at time.Time) (Host, error)
	// DeleteHost removes the host with its results, history, verdict and
	// exemptions (its outbox rows stay: they are history).
	DeleteHost(ctx context.Context, id string) error
	// HostsByEntraDeviceID lists every host (revoked too) that reports the
	// device id or has it as its override, sorted by id.
	HostsByEntraDeviceID(ctx context.Context, deviceID string) ([]Host, error)
	// HostsOfUser lists the hosts (revoked ones and duplicates too) whose
	// effective user principal name (the admin's override, else the
	// reported one) equals upn ignoring ASCII case, each with its stored
	// verdict, sorted by hostname then id; at most limit (<= 0: all). An
	// empty upn matches nothing. Entra UPNs are ASCII and case-insensitive;
	// folding only ASCII keeps both backends alike whatever their locale.
	HostsOfUser(ctx context.Context, upn string, limit int) ([]HostVerdict, error)
}

// HostVerdict is a host with its stored verdict (nil: none computed yet).
type HostVerdict struct {
	Host    Host
	Verdict *Verdict
}

// FoldUPN is the key HostsOfUser compares: upn with ASCII letters lowered.
func FoldUPN(upn string) string {
	b := []byte(upn)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// ErrSuperseded: the caller spoke for a host with a certificate of an
// earlier enrollment (see WithEnrollment).
var ErrSuperseded = errors.New("host re-enrolled since this certificate was issued")

type enrollmentKey struct{}

// WithEnrollment marks ctx as speaking for the host enrollment whose
// ReenrollCount was n. RecordResults under such a ctx refuses with
// ErrSuperseded, inside its transaction, once the host was re-enrolled:
// a stream opened with an older certificate cannot write a result, on
// whichever replica it is connected.
func WithEnrollment(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, enrollmentKey{}, n)
}

// Enrollment returns the value set by WithEnrollment.
func Enrollment(ctx context.Context) (int, bool) {
	n, ok := ctx.Value(enrollmentKey{}).(int)
	return n, ok
}

// CheckEnrollment returns ErrSuperseded when ctx speaks for an enrollment
// other than the stored reenrollCount.
func CheckEnrollment(ctx context.Context, hostID string, reenrollCount int) error {
	if n, ok := Enrollment(ctx); ok && n != reenrollCount {
		return fmt.Errorf("host %q: %w", hostID, ErrSuperseded)
	}
	return nil
}

// Policy is a compliance check. A host passes when Query returns a row.
type Policy struct {
	ID                string
	Name              string
	Query             string
	Description       string
	Resolution        string   // Markdown for end users
	Platforms         []string // empty = all
	Severity          string   // low | medium | high | critical
	ConditionalAccess bool
	GracePeriod       time.Duration
	Team              string // empty = every team
	Revision          int64  // bumped when Query changes
	CreatedAt         time.Time
	UpdatedAt         time.Time
}

// AppliesTo reports whether the policy runs on a host of that platform/team.
func (p Policy) AppliesTo(platform, team string) bool {
	if p.Team != "" && p.Team != team {
		return false
	}
	if len(p.Platforms) == 0 {
		return true
	}
	for _, pl := range p.Platforms {
		if pl == platform {
			return true
		}
	}
	return false
}

// TeamSettings drive verdicts for a team's hosts.
type TeamSettings struct {
	ConditionalAccess  bool
	MaxAllowedSeverity string // "" | low | medium | high
	ErrorsAsFailures   bool
	StaleAfter         time.Duration // 0 = default (24h)
	// MissedReports: a host with no result batch for this many of its
	// policy intervals is UNKNOWN (0 = default, 3).
	MissedReports int
	// RevokeSessions: a transition to NONCOMPLIANT caused by a policy at
	// or above RevokeSessionsMinSeverity (low|medium|high|critical, "" =
	// high) also revokes the device user's sign-in sessions.
	RevokeSessions            bool
	RevokeSessionsMinSeverity string
}

// Team groups hosts, secrets and policies.
type Team struct {
	Name     string
	Settings TeamSettings
}

// PolicyChange says what an apply did (or would do) to one policy or team.
type PolicyChange struct {
	Kind     string // "fact" | "policy" | "team"
	ID       string
	Action   string // added | changed | removed | unchanged
	Fields   []string
	Revision int64
}

// Change actions.
const (
	ActionAdded     = "added"
	ActionChanged   = "changed"
	ActionRemoved   = "removed"
	ActionUnchanged = "unchanged"
)

// ApplyRequest is one atomic apply of a policy tree.
type ApplyRequest struct {
	Policies []Policy
	Teams    []Team
	DryRun   bool
	// Prune deletes policies (not teams) missing from the request.
	Prune bool
	// Facts, when not nil, replaces the stored fact queries as a set (an
	// empty non-nil slice removes them all); nil keeps them.
	Facts []FactQuery
	At    time.Time
}

// Policies keeps policies and teams.
type Policies interface {
	// ApplyPolicies applies all or nothing. Revision starts at 1 and is bumped
	// when the query changes; other field changes keep it. Changes come
	// sorted by kind then id.
	ApplyPolicies(ctx context.Context, req ApplyRequest) ([]PolicyChange, error)
	ListPolicies(ctx context.Context) ([]Policy, error)
	GetPolicy(ctx context.Context, id string) (Policy, error)
	DeletePolicy(ctx context.Context, id string) error
	ListTeams(ctx context.Context) ([]Team, error)
	// GetTeam returns ErrNotFound for a team never applied; callers then use
	// default settings.
	GetTeam(ctx context.Context, name string) (Team, error)
	// PolicySetVersion changes whenever any policy, team or fact query
	// changes; agents
	// compare it to know their set is current.
	PolicySetVersion(ctx context.Context) (string, error)
}

// Result is the latest outcome of one policy on one host.
type Result struct {
	HostID      string
	PolicyID    string
	Revision    int64
	Status      string // PASS | FAIL | ERROR
	Error       string
	EvaluatedAt time.Time
	Duration    time.Duration
	// StatusSince is when the status last changed (set by the store).
	StatusSince time.Time
}

// HistoryEntry is written only when a (host, policy) status changes.
type HistoryEntry struct {
	HostID      string
	PolicyID    string
	Revision    int64
	Status      string
	Error       string
	EvaluatedAt time.Time
}

// RecordOutcome says what RecordResults did.
type RecordOutcome struct {
	Changed []Result // results whose status changed (history rows written)
	Updated int      // latest rows inserted or updated
	Stale   int      // ignored: older than the stored result, or an old revision
	Unknown int      // ignored: policy no longer exists
}

// PolicyCounts are maintained as results change, never by scanning.
type PolicyCounts struct {
	PolicyID string
	Passing  int
	Failing  int
	Errors   int
}

// Results keeps the latest result per (host, policy) and status history.
type Results interface {
	// RecordResults applies one batch in one transaction: per result, if its
	// revision is the policy's current one and it is newer than the stored
	// result, upsert it; write a history row only if the status changed. The
	// host's last-seen is coalesced to seen. Re-applying a batch changes
	// nothing.
	RecordResults(ctx context.Context, hostID string, rs []Result, seen time.Time) (RecordOutcome, error)
	LatestResults(ctx context.Context, hostID string) ([]Result, error)
	History(ctx context.Context, hostID, policyID string, limit int) ([]HistoryEntry, error)
	PolicyCounts(ctx context.Context) ([]PolicyCounts, error)
}

// EnrollSecret lets hosts of a team enroll. Only a hash is stored.
type EnrollSecret struct {
	ID          string
	Team        string
	Description string
	Hash        []byte // SHA-256 of the secret (secrets are 256-bit random)
	CreatedAt   time.Time
	ExpiresAt   *time.Time
	RevokedAt   *time.Time
	LastUsedAt  *time.Time
}

// Usable reports whether the secret may enroll a host at t.
func (s EnrollSecret) Usable(t time.Time) bool {
	return s.RevokedAt == nil && (s.ExpiresAt == nil || t.Before(*s.ExpiresAt))
}

// EnrollSecrets keeps enroll secrets.
type EnrollSecrets interface {
	CreateEnrollSecret(ctx context.Context, s EnrollSecret) error
	// FindEnrollSecret looks a secret up by hash (any state: callers check Usable).
	FindEnrollSecret(ctx context.Context, hash []byte) (EnrollSecret, error)
	ListEnrollSecrets(ctx context.Context) ([]EnrollSecret, error)
	RevokeEnrollSecret(ctx context.Context, id string, at time.Time) (EnrollSecret, error)
	MarkEnrollSecretUsed(ctx context.Context, id string, at time.Time) error
}

// Token roles, weakest first.
const (
	RoleObserver   = "observer"
	RoleMaintainer = "maintainer"
	RoleAdmin      = "admin"
)

// APIToken authenticates admin API calls. Only a hash is stored.
type APIToken struct {
	ID         string
	Name       string
	Role       string
	Hash       []byte // SHA-256 of the token (tokens are 256-bit random)
	CreatedAt  time.Time
	ExpiresAt  *time.Time
	RevokedAt  *time.Time
	LastUsedAt *time.Time
}

// Usable reports whether the token may be used at t.
func (t APIToken) Usable(at time.Time) bool {
	return t.RevokedAt == nil && (t.ExpiresAt == nil || at.Before(*t.ExpiresAt))
}

// Tokens keeps API tokens.
type Tokens interface {
	CreateAPIToken(ctx context.Context, t APIToken) error
	FindAPIToken(ctx context.Context, hash []byte) (APIToken, error)
	ListAPITokens(ctx context.Context) ([]APIToken, error)
	RevokeAPIToken(ctx context.Context, id string, at time.Time) (APIToken, error)
	// TouchAPIToken coalesces last-used.
	TouchAPIToken(ctx context.Context, id string, at time.Time) error
}

// Store is everything the hub keeps.
type Store interface {
	Hosts
	Policies
	Results
	EnrollSecrets
	Tokens
	Exemptions
	Verdicts
	Integrations
	Facts
	SyncItems
	Reporting
	DeviceChecks
	Audit
	Ping(ctx context.Context) error
	Close() error
}

// HostHealth is what an agent last said about itself (AgentHealth).
type HostHealth struct {
	OsqueryOK  bool // osqueryd answers queries
	SpoolOK    bool // results can be persisted to the on-disk spool
	Detail     string
	SpoolDepth int       // spooled batches not yet acked
	At         time.Time // when the hub received it
	// What the spool dropped when it compacted at its byte cap, since it
	// was created: results in all, and the status transitions among them
	// (gaps in the host's history). Shown only; never part of Healthy or
	// the verdict. At most MaxSpoolDropped each.
	SpoolDroppedResults, SpoolDroppedTransitions uint64
}

// MaxSpoolDropped bounds the stored drop counters (both backends keep them
// as signed 64-bit integers).
const MaxSpoolDropped = 1<<63 - 1

// Healthy reports whether the agent can run policies and persist results.
func (h HostHealth) Healthy() bool { return h.OsqueryOK && h.SpoolOK }

// HostReporting is how a host reports: its cadence, its own health, and
// which replica holds its stream. The zero value is a host that never
// connected since reporting was tracked.
type HostReporting struct {
	HostID string
	// ReportInterval is the policy interval the hub last sent the host (0 =
	// never sent).
	ReportInterval time.Duration
	// LastReportAt is when the host's last result batch was committed.
	LastReportAt time.Time
	// Health is nil until the agent first reports it.
	Health *HostHealth
	// StreamReplica holds the host's stream ("" = none); StreamHeartbeat is
	// that replica's last heartbeat (zero if it never sent one). Replicas
	// heartbeat periodically, so an old heartbeat means the replica died.
	StreamReplica   string
	StreamHeartbeat time.Time
}

// ConnectedAt reports whether the host had a live stream at now, given how
// old a heartbeat may be.
func (r HostReporting) ConnectedAt(now time.Time, ttl time.Duration) bool {
	return r.StreamReplica != "" && !r.StreamHeartbeat.IsZero() && now.Sub(r.StreamHeartbeat) < ttl
}

// Reporting keeps HostReporting. RecordResults moves LastReportAt forward
// itself, in the batch's transaction.
type Reporting interface {
	GetHostReporting(ctx context.Context, hostID string) (HostReporting, error)
	// ListHostReporting returns every host's reporting that has a row, by
	// host id.
	ListHostReporting(ctx context.Context) (map[string]HostReporting, error)
	SetHostReportInterval(ctx context.Context, hostID string, d time.Duration) error
	SetHostHealth(ctx context.Context, hostID string, h HostHealth) error
	// SetHostStream records that replica holds the host's stream, as of at.
	SetHostStream(ctx context.Context, hostID, replica string, at time.Time) error
	// ClearHostStream forgets the stream if it is still the one replica
	// recorded at since (a newer stream of the host, on any replica, stays).
	ClearHostStream(ctx context.Context, hostID, replica string, since time.Time) error
	// HeartbeatStreams records that replica is alive at at: every stream
	// it holds counts as connected while its heartbeat is fresh.
	HeartbeatStreams(ctx context.Context, replica string, at time.Time) error
}

// AuditEvent is one admin action as the audit log keeps it. Before and After
// are JSON with every secret redacted; nothing else in an event is secret.
type AuditEvent struct {
	ID        int64 // set by the store, increasing
	At        time.Time
	Actor     string // token name, or "local" for the CLI reading the store
	ActorRole string // the token's role ("admin" for local)
	Action    string // the method, e.g. "UpdateTeam", or "tokens create"
	Target    string // what it acted on, e.g. "team/default"
	Source    string // the client's address, when known
	Result    string // "ok" or the gRPC code, e.g. "PermissionDenied"
	Error     string // the error text when Result is not ok
	Before    string // JSON of the settings before a change ("" if none)
	After     string // JSON of the settings after a change ("" if none)
}

// AuditFilter selects audit events; zero fields select everything.
type AuditFilter struct {
	Actor  string
	Action string
	Since  time.Time
	// Limit caps the events returned, newest first (<= 0: DefaultAuditLimit).
	Limit int
}

// DefaultAuditLimit is how many events ListAuditEvents returns by default.
const DefaultAuditLimit = 100

// Audit is the admin audit log: append only.
type Audit interface {
	// RecordAuditEvent appends e (its ID is assigned by the store).
	RecordAuditEvent(ctx context.Context, e AuditEvent) error
	// ListAuditEvents returns matching events newest first.
	ListAuditEvents(ctx context.Context, f AuditFilter) ([]AuditEvent, error)
}

// Audit actors and results that are not a token's name or a gRPC code.
const (
	// AuditActorLocal is the CLI working on the store directly (e.g. token
	// creation before any token exists).
	AuditActorLocal = "local"
	// AuditActorHub is the hub acting on its own (e.g. a host re-enrolled).
	AuditActorHub = "hub"
	// AuditOK is the result of an action that succeeded.
	AuditOK = "ok"
)
