package compliance

import (
	"sort"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// State is a host's compliance state.
type State string

// States.
const (
	Compliant    State = "COMPLIANT"
	Noncompliant State = "NONCOMPLIANT"
	Grace        State = "GRACE"
	Unknown      State = "UNKNOWN"
)

// Causes say which precedence rule decided a verdict (see the package doc).
const (
	CauseRevoked    = "revoked"
	CauseCADisabled = "ca_disabled"
	CauseStale      = "stale"
	CauseUnhealthy  = "unhealthy"
	CauseSilent     = "silent"
	CauseFailing    = "failing"
	CauseNoResults  = "no_results"
	CauseGrace      = "grace"
	CausePassing    = "passing"
	// CauseDeviceConflict: another host claims the same Entra device.
	CauseDeviceConflict = "device_conflict"
	// CauseDeviceRevoked: a revoked host claimed the same Entra device.
	CauseDeviceRevoked = "device_revoked"
)

// StatusMissing marks a Reason for a conditional-access policy that has no
// result of its current revision.
const StatusMissing = "MISSING"

// DefaultStaleAfter applies when a team's StaleAfter is zero.
const DefaultStaleAfter = 24 * time.Hour

// DefaultMissedReports applies when a team's MissedReports is zero: with the
// default 60 s policy interval a host silent for 3 minutes is UNKNOWN.
const DefaultMissedReports = 3

// Values Desired returns, as written to sinks.
const (
	DesiredCompliant    = "compliant"
	DesiredNoncompliant = "noncompliant"
)

// Exemption exempts a host from one policy (or all, with PolicyID "") until
// ExpiresAt (zero = never). The caller passes the host's exemptions; expired
// ones are ignored here, so passing them is harmless.
type Exemption struct {
	PolicyID  string
	ExpiresAt time.Time
	Reason    string
}

// Input is everything a verdict depends on.
type Input struct {
	Host     store.Host
	Settings store.TeamSettings
	// Policies may be the whole set: those not applying to the host's
	// platform and team are ignored.
	Policies []store.Policy
	// Results are the host's latest results (one per policy).
	Results    []store.Result
	Exemptions []Exemption
	// Reporting is the host's cadence and self-reported health (zero value:
	// never sent a policy interval, never reported health).
	Reporting store.HostReporting
	Now       time.Time
	// Device is the host's claim on its Entra device (ResolveDevice).
	Device DeviceClaim
}

// Reason describes one conditional-access policy that is not passing.
type Reason struct {
	PolicyID string
	Status   string // FAIL | ERROR | MISSING
	Error    string // the result's error text, for ERROR
	Severity string
	// Counted: the result counts as a failure (FAIL, or ERROR when the team
	// counts errors as failures).
	Counted bool
	// Allowed: severity at or below the team's maximum allowed severity.
	Allowed bool
	// Exempt: an unexpired exemption is what keeps the failure from
	// blocking (not set on Allowed failures, where it changes nothing).
	Exempt      bool
	ExemptUntil time.Time // zero = no expiry
	InGrace     bool
	// GraceDeadline is set whenever the policy has a grace period and the
	// failure is counted, also once it has passed.
	GraceDeadline time.Time
	Blocking      bool
	Since         time.Time // StatusSince of the result
}

// Verdict is the outcome of Evaluate.
type Verdict struct {
	State State
	Cause string
	// Reasons lists every conditional-access policy that is failing, erroring
	// or missing, sorted by policy id. Empty for revoked, CA-off and stale
	// hosts (those rules do not look at results).
	Reasons []Reason
	// NextTransition is the earliest moment after Now at which the verdict
	// (state or reasons) changes without a new result: a grace deadline, an
	// exemption expiry or the host going stale. Zero if none.
	NextTransition time.Time
}

// Blocking returns the reasons that block.
func (v Verdict) Blocking() []Reason {
	var out []Reason
	for _, r := range v.Reasons {
		if r.Blocking {
			out = append(out, r)
		}
	}
	return out
}

var severityRank = map[string]int{"low": 1, "medium": 2, "high": 3, "critical": 4}

// ValidSeverity reports whether s is a policy severity.
func ValidSeverity(s string) bool { _, ok := severityRank[s]; return ok }

// ValidMaxAllowedSeverity reports whether s is a team's maximum allowed
// severity: "", low, medium or high.
func ValidMaxAllowedSeverity(s string) bool {
	return s == "" || s == "low" || s == "medium" || s == "high"
}

func policyRank(s string) int {
	if r, ok := severityRank[s]; ok {
		return r
	}
	return severityRank["critical"]
}

func maxAllowedRank(s string) int {
	if !ValidMaxAllowedSeverity(s) {
		return 0
	}
	return severityRank[s] // "" → 0
}

// StaleAfter returns the team's stale-after, applying the default.
func StaleAfter(s store.TeamSettings) time.Duration {
	if s.StaleAfter <= 0 {
		return DefaultStaleAfter
	}
	return s.StaleAfter
}

// MissedReports returns the team's missed-reports count, applying the default.
func MissedReports(s store.TeamSettings) int {
	if s.MissedReports <= 0 {
		return DefaultMissedReports
	}
	return s.MissedReports
}

// SilentAt is when a host that sends no further result batch goes UNKNOWN
// ("silent"): its last batch (or, before any, its enrollment) plus the
// team's missed reports times the interval the hub sent it. Zero when the
// hub never sent it an interval.
func SilentAt(h store.Host, r store.HostReporting, s store.TeamSettings) time.Time {
	if r.ReportInterval <= 0 {
		return time.Time{}
	}
	base := r.LastReportAt
	if base.IsZero() {
		base = h.EnrolledAt
	}
	if base.IsZero() {
		return time.Time{}
	}
	return base.Add(time.Duration(MissedReports(s)) * r.ReportInterval)
}

// Evaluate computes a host's verdict. See the package doc for the rules.
func Evaluate(in Input) Verdict {
	now := in.Now
	if in.Host.Revoked() {
		return Verdict{State: Noncompliant, Cause: CauseRevoked}
	}
	// Before team settings: a team with conditional access off must not
	// release a device another host also speaks for.
	switch in.Device.State {
	case ClaimConflict:
		return Verdict{State: Noncompliant, Cause: CauseDeviceConflict}
	case ClaimRevoked:
		return Verdict{State: Noncompliant, Cause: CauseDeviceRevoked}
	}
	if !in.Settings.ConditionalAccess {
		return Verdict{State: Compliant, Cause: CauseCADisabled}
	}

	var next time.Time
	consider := func(t time.Time) {
		if t.After(now) && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}

	lastSeen := in.Host.LastSeenAt
	if lastSeen.IsZero() {
		lastSeen = in.Host.EnrolledAt
	}
	if !lastSeen.IsZero() {
		staleAt := lastSeen.Add(StaleAfter(in.Settings))
		if !now.Before(staleAt) {
			return Verdict{State: Unknown, Cause: CauseStale}
		}
		consider(staleAt)
	}

	// The host says it cannot run policies or keep results: whatever it
	// reported before is no longer evidence.
	if hh := in.Reporting.Health; hh != nil && !hh.Healthy() {
		return Verdict{State: Unknown, Cause: CauseUnhealthy}
	}
	// Silence fails closed, connected or not: a host with conditional-access
	// policies to run sends a batch every interval.
	if silentAt := SilentAt(in.Host, in.Reporting, in.Settings); !silentAt.IsZero() && hasCAPolicy(in) {
		if !now.Before(silentAt) {
			return Verdict{State: Unknown, Cause: CauseSilent}
		}
		consider(silentAt)
	}

	latest := make(map[string]store.Result, len(in.Results))
	for _, r := range in.Results {
		if r.HostID != "" && in.Host.ID != "" && r.HostID != in.Host.ID {
			continue
		}
		if cur, ok := latest[r.PolicyID]; !ok || r.EvaluatedAt.After(cur.EvaluatedAt) {
			latest[r.PolicyID] = r
		}
	}

	maxRank := maxAllowedRank(in.Settings.MaxAllowedSeverity)
	var reasons []Reason
	var blocking, missing, grace bool
	seen := make(map[string]bool, len(in.Policies))
	for _, p := range in.Policies {
		if !p.ConditionalAccess || !p.AppliesTo(in.Host.Platform, in.Host.Team) || seen[p.ID] {
			continue
		}
		seen[p.ID] = true
		res, ok := latest[p.ID]
		if !ok || res.Revision != p.Revision {
			missing = true
			reasons = append(reasons, Reason{PolicyID: p.ID, Status: StatusMissing, Severity: p.Severity})
			continue
		}
		switch res.Status {
		case store.StatusFail, store.StatusError:
		default:
			continue // PASS (or anything unexpected that is not a failure)
		}
		r := Reason{
			PolicyID: p.ID,
			Status:   res.Status,
			Error:    res.Error,
			Severity: p.Severity,
			Since:    res.StatusSince,
			Counted:  res.Status == store.StatusFail || in.Settings.ErrorsAsFailures,
		}
		if !r.Counted {
			reasons = append(reasons, r)
			continue
		}
		r.Allowed = policyRank(p.Severity) <= maxRank
		if until, ok := exemptUntil(in.Exemptions, p.ID, now); ok && !r.Allowed {
			r.Exempt, r.ExemptUntil = true, until
		}
		if p.GracePeriod > 0 {
			since := res.StatusSince
			if since.IsZero() {
				since = res.EvaluatedAt
			}
			r.GraceDeadline = since.Add(p.GracePeriod)
		}
		inGrace := !r.GraceDeadline.IsZero() && now.Before(r.GraceDeadline)
		switch {
		case r.Allowed:
			// Severity does not change with time: no transition.
		case r.Exempt:
			// The grace deadline only matters once the exemption ends; the
			// evaluation at its end will schedule it.
			if !r.ExemptUntil.IsZero() {
				consider(r.ExemptUntil)
			}
		case inGrace:
			r.InGrace = true
			grace = true
			consider(r.GraceDeadline)
		default:
			r.Blocking = true
			blocking = true
		}
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool { return reasons[i].PolicyID < reasons[j].PolicyID })

	v := Verdict{Reasons: reasons, NextTransition: next}
	switch {
	case blocking:
		v.State, v.Cause = Noncompliant, CauseFailing
	case missing:
		v.State, v.Cause = Unknown, CauseNoResults
	case grace:
		v.State, v.Cause = Grace, CauseGrace
	default:
		v.State, v.Cause = Compliant, CausePassing
	}
	return v
}

func hasCAPolicy(in Input) bool {
	for _, p := range in.Policies {
		if p.ConditionalAccess && p.AppliesTo(in.Host.Platform, in.Host.Team) {
			return true
		}
	}
	return false
}

// exemptUntil returns whether an unexpired exemption covers the policy and
// until when (zero = forever); the latest expiry wins.
func exemptUntil(ex []Exemption, policyID string, now time.Time) (time.Time, bool) {
	var until time.Time
	found := false
	for _, e := range ex {
		if e.PolicyID != "" && e.PolicyID != policyID {
			continue
		}
		if !e.ExpiresAt.IsZero() && !now.Before(e.ExpiresAt) {
			continue
		}
		if e.ExpiresAt.IsZero() {
			return time.Time{}, true
		}
		if !found || e.ExpiresAt.After(until) {
			until = e.ExpiresAt
		}
		found = true
	}
	return until, found
}

// Desired maps a verdict to what Entra should hold: DesiredCompliant,
// DesiredNoncompliant, or "" for no write (the sink keeps its value). See
// the package doc for why UNKNOWN splits by cause.
func Desired(v Verdict) string {
	switch v.State {
	case Compliant, Grace:
		return DesiredCompliant
	case Noncompliant:
		return DesiredNoncompliant
	case Unknown:
		switch v.Cause {
		case CauseStale, CauseUnhealthy, CauseSilent:
			return DesiredNoncompliant
		}
		return ""
	}
	return ""
}
