package store

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"
)

// Change kinds in PolicyChange.Kind.
const (
	KindFact   = "fact"
	KindPolicy = "policy"
	KindTeam   = "team"
)

// PolicyChangedFields names the fields (snake_case, in a fixed order) in
// which b differs from a. Revision and timestamps are not compared: the store
// sets them.
func PolicyChangedFields(a, b Policy) []string {
	var f []string
	add := func(changed bool, name string) {
		if changed {
			f = append(f, name)
		}
	}
	add(a.Name != b.Name, "name")
	add(a.Query != b.Query, "query")
	add(a.Description != b.Description, "description")
	add(a.Resolution != b.Resolution, "resolution")
	add(!slices.Equal(a.Platforms, b.Platforms), "platforms")
	add(a.Severity != b.Severity, "severity")
	add(a.ConditionalAccess != b.ConditionalAccess, "conditional_access")
	add(a.GracePeriod != b.GracePeriod, "grace_period")
	add(a.Team != b.Team, "team")
	return f
}

// TeamChangedFields names the settings in which b differs from a.
func TeamChangedFields(a, b Team) []string {
	var f []string
	add := func(changed bool, name string) {
		if changed {
			f = append(f, name)
		}
	}
	add(a.Settings.ConditionalAccess != b.Settings.ConditionalAccess, "conditional_access")
	add(a.Settings.MaxAllowedSeverity != b.Settings.MaxAllowedSeverity, "max_allowed_severity")
	add(a.Settings.ErrorsAsFailures != b.Settings.ErrorsAsFailures, "errors_as_failures")
	add(a.Settings.StaleAfter != b.Settings.StaleAfter, "stale_after")
	add(a.Settings.MissedReports != b.Settings.MissedReports, "missed_reports")
	add(a.Settings.RevokeSessions != b.Settings.RevokeSessions, "revoke_sessions")
	add(a.Settings.RevokeSessionsMinSeverity != b.Settings.RevokeSessionsMinSeverity, "revoke_sessions_min_severity")
	return f
}

// ApplyPlan is what an apply writes, computed once for every backend.
type ApplyPlan struct {
	// Changes is the answer of ApplyPolicies: every policy and team of the
	// request plus pruned policies, sorted by kind then id.
	Changes []PolicyChange
	// Upsert holds added and changed policies, complete (revision and
	// timestamps set), sorted by id.
	Upsert []Policy
	// Added marks which of Upsert are new (insert rather than update).
	Added map[string]bool
	// Bumped lists policies whose revision changed: their latest results and
	// counts belong to the old revision and must be dropped in the same
	// transaction.
	Bumped []string
	// Remove lists policies to delete (prune), sorted.
	Remove []string
	// UpsertTeams holds added and changed teams, sorted by name.
	UpsertTeams []Team
	// ReplaceFacts: the stored fact queries become Facts (sorted by name,
	// then platform). Set only when the request's set differs.
	ReplaceFacts bool
	Facts        []FactQuery
}

// Empty reports whether the plan writes nothing (the policy set version must
// then stay as it is).
func (p ApplyPlan) Empty() bool {
	return len(p.Upsert) == 0 && len(p.Remove) == 0 && len(p.UpsertTeams) == 0 && !p.ReplaceFacts
}

// NormalizePolicy gives a policy the form it is stored and compared in.
func NormalizePolicy(p Policy) Policy {
	if len(p.Platforms) == 0 {
		p.Platforms = nil
	} else {
		p.Platforms = slices.Clone(p.Platforms)
	}
	p.CreatedAt = StoredTime(p.CreatedAt)
	p.UpdatedAt = StoredTime(p.UpdatedAt)
	return p
}

// ValidateApply checks the structure of a request: non-empty unique ids,
// non-empty queries, no negative durations. Enumerations (severity, maximum
// allowed severity) are enforced by the database.
func ValidateApply(req ApplyRequest) error {
	seen := map[string]bool{}
	for i, p := range req.Policies {
		switch {
		case strings.TrimSpace(p.ID) == "":
			return fmt.Errorf("policy #%d: empty id: %w", i+1, ErrInvalid)
		case seen[p.ID]:
			return fmt.Errorf("policy %q: listed twice: %w", p.ID, ErrInvalid)
		case strings.TrimSpace(p.Query) == "":
			return fmt.Errorf("policy %q: empty query: %w", p.ID, ErrInvalid)
		case p.GracePeriod < 0:
			return fmt.Errorf("policy %q: negative grace period: %w", p.ID, ErrInvalid)
		}
		seen[p.ID] = true
	}
	seenTeam := map[string]bool{}
	for i, t := range req.Teams {
		switch {
		case strings.TrimSpace(t.Name) == "":
			return fmt.Errorf("team #%d: empty name: %w", i+1, ErrInvalid)
		case seenTeam[t.Name]:
			return fmt.Errorf("team %q: listed twice: %w", t.Name, ErrInvalid)
		case t.Settings.StaleAfter < 0:
			return fmt.Errorf("team %q: negative stale-after: %w", t.Name, ErrInvalid)
		case t.Settings.MissedReports < 0:
			return fmt.Errorf("team %q: negative missed reports: %w", t.Name, ErrInvalid)
		}
		seenTeam[t.Name] = true
	}
	return ValidateFacts(req.Facts)
}

// PlanApply compares a request with the stored policies, teams and fact
// queries. at is the apply time (already defaulted by the caller).
func PlanApply(cur []Policy, curTeams []Team, curFacts []FactQuery, req ApplyRequest, at time.Time) (ApplyPlan, error) {
	if err := ValidateApply(req); err != nil {
		return ApplyPlan{}, err
	}
	at = StoredTime(at)
	old := make(map[string]Policy, len(cur))
	for _, p := range cur {
		old[p.ID] = NormalizePolicy(p)
	}
	oldTeams := make(map[string]Team, len(curTeams))
	for _, t := range curTeams {
		oldTeams[t.Name] = t
	}
	plan := ApplyPlan{Added: map[string]bool{}}
	inReq := map[string]bool{}
	for _, p := range req.Policies {
		p = NormalizePolicy(p)
		inReq[p.ID] = true
		prev, ok := old[p.ID]
		if !ok {
			p.Revision, p.CreatedAt, p.UpdatedAt = 1, at, at
			plan.Upsert = append(plan.Upsert, p)
			plan.Added[p.ID] = true
			plan.Changes = append(plan.Changes, PolicyChange{Kind: KindPolicy, ID: p.ID, Action: ActionAdded, Revision: 1})
			continue
		}
		fields := PolicyChangedFields(prev, p)
		if len(fields) == 0 {
			plan.Changes = append(plan.Changes, PolicyChange{Kind: KindPolicy, ID: p.ID, Action: ActionUnchanged, Revision: prev.Revision})
			continue
		}
		p.Revision, p.CreatedAt, p.UpdatedAt = prev.Revision, prev.CreatedAt, at
		if prev.Query != p.Query {
			p.Revision++
			plan.Bumped = append(plan.Bumped, p.ID)
		}
		plan.Upsert = append(plan.Upsert, p)
		plan.Changes = append(plan.Changes, PolicyChange{Kind: KindPolicy, ID: p.ID, Action: ActionChanged, Fields: fields, Revision: p.Revision})
	}
	if req.Prune {
		for _, p := range cur {
			if !inReq[p.ID] {
				plan.Remove = append(plan.Remove, p.ID)
				plan.Changes = append(plan.Changes, PolicyChange{Kind: KindPolicy, ID: p.ID, Action: ActionRemoved, Revision: p.Revision})
			}
		}
	}
	for _, t := range req.Teams {
		prev, ok := oldTeams[t.Name]
		if !ok {
			plan.UpsertTeams = append(plan.UpsertTeams, t)
			plan.Changes = append(plan.Changes, PolicyChange{Kind: KindTeam, ID: t.Name, Action: ActionAdded})
			continue
		}
		fields := TeamChangedFields(prev, t)
		if len(fields) == 0 {
			plan.Changes = append(plan.Changes, PolicyChange{Kind: KindTeam, ID: t.Name, Action: ActionUnchanged})
			continue
		}
		plan.UpsertTeams = append(plan.UpsertTeams, t)
		plan.Changes = append(plan.Changes, PolicyChange{Kind: KindTeam, ID: t.Name, Action: ActionChanged, Fields: fields})
	}
	if req.Facts != nil {
		changes, replace := planFacts(curFacts, req.Facts)
		plan.Changes = append(plan.Changes, changes...)
		if replace {
			plan.ReplaceFacts, plan.Facts = true, SortFacts(req.Facts)
		}
	}
	sort.Slice(plan.Changes, func(i, j int) bool {
		a, b := plan.Changes[i], plan.Changes[j]
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		return a.ID < b.ID
	})
	sort.Slice(plan.Upsert, func(i, j int) bool { return plan.Upsert[i].ID < plan.Upsert[j].ID })
	sort.Strings(plan.Bumped)
	sort.Strings(plan.Remove)
	sort.Slice(plan.UpsertTeams, func(i, j int) bool { return plan.UpsertTeams[i].Name < plan.UpsertTeams[j].Name })
	return plan, nil
}
