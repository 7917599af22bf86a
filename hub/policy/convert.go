package policy

import (
	"fmt"
	"slices"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"
)

// StorePolicy converts a loaded policy; revision and timestamps are the
// store's to set.
func (p Policy) StorePolicy() store.Policy {
	return store.Policy{
		ID:                p.ID,
		Name:              p.Name,
		Query:             p.Query,
		Description:       p.Description,
		Resolution:        p.Resolution,
		Platforms:         slices.Clone(p.Platforms),
		Severity:          p.Severity,
		ConditionalAccess: p.ConditionalAccess,
		GracePeriod:       p.GracePeriod,
		Team:              p.Team,
	}
}

// StorePolicies converts the tree's policies, in tree order.
func (t Tree) StorePolicies() []store.Policy {
	out := make([]store.Policy, len(t.Policies))
	for i, p := range t.Policies {
		out[i] = p.StorePolicy()
	}
	return out
}

// StoreTeams converts the tree's teams, in tree order.
func (t Tree) StoreTeams() []store.Team {
	out := make([]store.Team, len(t.Teams))
	for i, tm := range t.Teams {
		out[i] = store.Team{Name: tm.Name, Settings: tm.Settings}
	}
	return out
}

// FactsFor lists the fact queries that run on a host of that platform.
func (t Tree) FactsFor(platform string) []Fact {
	var out []Fact
	for _, f := range t.Facts {
		if len(f.Platforms) == 0 || slices.Contains(f.Platforms, platform) {
			out = append(out, f)
		}
	}
	return out
}

// ProtoFactQueries converts facts to the wire form, one FactQuery per
// platform of a fact (Platform "" for a fact that runs everywhere).
func ProtoFactQueries(fs []Fact) []*posturev1.FactQuery {
	var out []*posturev1.FactQuery
	for _, f := range fs {
		if len(f.Platforms) == 0 {
			out = append(out, &posturev1.FactQuery{Name: f.Name, Query: f.Query})
			continue
		}
		for _, pl := range f.Platforms {
			out = append(out, &posturev1.FactQuery{Name: f.Name, Query: f.Query, Platform: pl})
		}
	}
	return out
}

// FactQueries is what a host of that platform gets in its PolicySet.
func (t Tree) FactQueries(platform string) []*posturev1.FactQuery {
	var out []*posturev1.FactQuery
	for _, q := range ProtoFactQueries(t.FactsFor(platform)) {
		if q.GetPlatform() == "" || q.GetPlatform() == platform {
			out = append(out, q)
		}
	}
	return out
}

// ApplyRequest builds the AdminService request for the whole tree,
// policies, teams and fact queries.
func (t Tree) ApplyRequest(dryRun, prune bool) *posturev1.ApplyPoliciesRequest {
	req := &posturev1.ApplyPoliciesRequest{DryRun: dryRun, Prune: prune, Facts: ProtoFactQueries(t.Facts)}
	for _, p := range t.StorePolicies() {
		req.Policies = append(req.Policies, PolicyToProto(p))
	}
	for _, tm := range t.StoreTeams() {
		req.Teams = append(req.Teams, TeamToProto(tm))
	}
	return req
}

// ValidateFactQueries applies the linter's fact rules to fact queries
// received over the API: a valid name, a known platform (or "" for all),
// one read-only SELECT, and one query per fact and platform.
func ValidateFactQueries(fqs []*posturev1.FactQuery) Errors {
	var errs Errors
	add := func(subject, format string, args ...any) {
		errs = append(errs, Issue{Subject: subject, Msg: fmt.Sprintf(format, args...)})
	}
	seen := map[string]bool{}
	for i, q := range fqs {
		subj := fmt.Sprintf("fact %q", q.GetName())
		if q.GetPlatform() != "" {
			subj = fmt.Sprintf("fact %q (%s)", q.GetName(), q.GetPlatform())
		}
		if q.GetName() == "" {
			subj = fmt.Sprintf("facts[%d]", i)
			add(subj, "name is required")
		} else if !factNameRe.MatchString(q.GetName()) {
			add(subj, "invalid name: use lower case letters, digits and '_', starting with a letter")
		}
		plats := []string{q.GetPlatform()}
		if q.GetPlatform() == "" {
			plats = []string{"darwin", "linux", "windows"}
		} else if !knownPlatforms[q.GetPlatform()] {
			add(subj, "unknown platform %q (want darwin, windows, linux or empty)", q.GetPlatform())
		}
		if err := CheckQuery(q.GetQuery()); err != nil {
			add(subj, "%v", err)
		}
		for _, pl := range plats {
			key := q.GetName() + "\x00" + pl
			if seen[key] {
				add(subj, "duplicate fact for platform %s", pl)
				break
			}
		}
		for _, pl := range plats {
			seen[q.GetName()+"\x00"+pl] = true
		}
	}
	return errs
}

// PolicyToProto converts a stored policy. Host counts are left zero: they
// live in the store's PolicyCounts.
func PolicyToProto(p store.Policy) *posturev1.Policy {
	return &posturev1.Policy{
		Id:                p.ID,
		Name:              p.Name,
		Query:             p.Query,
		Description:       p.Description,
		Resolution:        p.Resolution,
		Platforms:         slices.Clone(p.Platforms),
		Severity:          p.Severity,
		ConditionalAccess: p.ConditionalAccess,
		GracePeriod:       durationOrNil(p.GracePeriod),
		Team:              p.Team,
		Revision:          p.Revision,
		CreatedAt:         timeOrNil(p.CreatedAt),
		UpdatedAt:         timeOrNil(p.UpdatedAt),
	}
}

// PolicyFromProto converts an API policy. It does not validate: run
// Validate on the result before storing it.
func PolicyFromProto(p *posturev1.Policy) store.Policy {
	out := store.Policy{
		ID:                p.GetId(),
		Name:              p.GetName(),
		Query:             p.GetQuery(),
		Description:       p.GetDescription(),
		Resolution:        p.GetResolution(),
		Platforms:         slices.Clone(p.GetPlatforms()),
		Severity:          p.GetSeverity(),
		ConditionalAccess: p.GetConditionalAccess(),
		Team:              p.GetTeam(),
		Revision:          p.GetRevision(),
	}
	if d := p.GetGracePeriod(); d != nil {
		out.GracePeriod = d.AsDuration()
	}
	if ts := p.GetCreatedAt(); ts != nil {
		out.CreatedAt = ts.AsTime()
	}
	if ts := p.GetUpdatedAt(); ts != nil {
		out.UpdatedAt = ts.AsTime()
	}
	return out
}

// TeamToProto converts a stored team.
func TeamToProto(t store.Team) *posturev1.Team {
	return &posturev1.Team{
		Name: t.Name,
		// Every field is set (stale_after "0s" = the default) so that what
		// is read can be written back whole with PutTeam.
		Settings: &posturev1.TeamSettings{
			ConditionalAccess:         proto.Bool(t.Settings.ConditionalAccess),
			MaxAllowedSeverity:        proto.String(t.Settings.MaxAllowedSeverity),
			ErrorsAsFailures:          proto.Bool(t.Settings.ErrorsAsFailures),
			StaleAfter:                durationpb.New(t.Settings.StaleAfter),
			RevokeSessions:            proto.Bool(t.Settings.RevokeSessions),
			RevokeSessionsMinSeverity: proto.String(t.Settings.RevokeSessionsMinSeverity),
			MissedReports:             proto.Int32(int32(t.Settings.MissedReports)),
		},
	}
}

// TeamFromProto converts an API team (nil settings = defaults).
func TeamFromProto(t *posturev1.Team) store.Team {
	s := t.GetSettings()
	out := store.Team{
		Name: t.GetName(),
		Settings: store.TeamSettings{
			ConditionalAccess:         s.GetConditionalAccess(),
			MaxAllowedSeverity:        s.GetMaxAllowedSeverity(),
			ErrorsAsFailures:          s.GetErrorsAsFailures(),
			RevokeSessions:            s.GetRevokeSessions(),
			RevokeSessionsMinSeverity: s.GetRevokeSessionsMinSeverity(),
			MissedReports:             int(s.GetMissedReports()),
		},
	}
	if d := s.GetStaleAfter(); d != nil {
		out.Settings.StaleAfter = d.AsDuration()
	}
	return out
}

var actionToProto = map[string]posturev1.ChangeAction{
	store.ActionAdded:     posturev1.ChangeAction_CHANGE_ACTION_ADDED,
	store.ActionChanged:   posturev1.ChangeAction_CHANGE_ACTION_CHANGED,
	store.ActionRemoved:   posturev1.ChangeAction_CHANGE_ACTION_REMOVED,
	store.ActionUnchanged: posturev1.ChangeAction_CHANGE_ACTION_UNCHANGED,
}

// ChangesToProto converts what a store apply reported.
func ChangesToProto(cs []store.PolicyChange) []*posturev1.Change {
	out := make([]*posturev1.Change, len(cs))
	for i, c := range cs {
		out[i] = &posturev1.Change{
			Kind:     c.Kind,
			Id:       c.ID,
			Action:   actionToProto[c.Action],
			Fields:   slices.Clone(c.Fields),
			Revision: c.Revision,
		}
	}
	return out
}

// ChangesFromProto converts an ApplyPolicies answer; an unknown action
// comes back as "unknown" so it is still shown.
func ChangesFromProto(cs []*posturev1.Change) []store.PolicyChange {
	out := make([]store.PolicyChange, len(cs))
	for i, c := range cs {
		action := "unknown"
		for a, pa := range actionToProto {
			if pa == c.GetAction() {
				action = a
			}
		}
		out[i] = store.PolicyChange{
			Kind:     c.GetKind(),
			ID:       c.GetId(),
			Action:   action,
			Fields:   slices.Clone(c.GetFields()),
			Revision: c.GetRevision(),
		}
	}
	return out
}

func durationOrNil(d time.Duration) *durationpb.Duration {
	if d == 0 {
		return nil
	}
	return durationpb.New(d)
}

func timeOrNil(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	return timestamppb.New(t)
}

// Validate applies the linter's rules to policies and teams that did not
// come from files (e.g. an ApplyPolicies call made with curl), so the hub
// refuses what `policies lint` would. Issues name the object instead of a
// file line.
func Validate(policies []store.Policy, teams []store.Team) Errors {
	var errs Errors
	add := func(subject, format string, args ...any) {
		errs = append(errs, Issue{Subject: subject, Msg: fmt.Sprintf(format, args...)})
	}
	seen := map[string]bool{}
	for i, p := range policies {
		subj := fmt.Sprintf("policy %q", p.ID)
		if p.ID == "" {
			subj = fmt.Sprintf("policies[%d]", i)
			add(subj, "id is required")
		} else if !idRe.MatchString(p.ID) {
			add(subj, "invalid id: use lower case letters, digits, '-' and '_' (at most 128, starting with a letter or digit)")
		}
		if p.ID != "" && seen[p.ID] {
			add(subj, "duplicate policy id")
		}
		seen[p.ID] = true
		if p.Name == "" {
			add(subj, "name is required")
		}
		if err := CheckQuery(p.Query); err != nil {
			add(subj, "%v", err)
		}
		switch p.Severity {
		case "low", "medium", "high", "critical":
		default:
			add(subj, "invalid severity %q (want low, medium, high or critical)", p.Severity)
		}
		for _, pl := range p.Platforms {
			if !knownPlatforms[pl] {
				add(subj, "unknown platform %q (want darwin, windows or linux)", pl)
			}
		}
		if p.GracePeriod < 0 {
			add(subj, "grace period must not be negative")
		}
		if err := teamNameErr(p.Team); p.Team != "" && err != "" {
			add(subj, "team %s", err)
		}
	}
	seenTeams := map[string]bool{}
	for i, t := range teams {
		subj := fmt.Sprintf("team %q", t.Name)
		if t.Name == "" {
			subj = fmt.Sprintf("teams[%d]", i)
			add(subj, "name is required")
		} else if err := teamNameErr(t.Name); err != "" {
			add(subj, "name %s", err)
		}
		if t.Name != "" && seenTeams[t.Name] {
			add(subj, "duplicate team")
		}
		seenTeams[t.Name] = true
		switch t.Settings.MaxAllowedSeverity {
		case "", "low", "medium", "high":
		default:
			add(subj, "invalid max_allowed_severity %q (want low, medium or high)", t.Settings.MaxAllowedSeverity)
		}
		switch t.Settings.RevokeSessionsMinSeverity {
		case "", "low", "medium", "high", "critical":
		default:
			add(subj, "invalid revoke_sessions_min_severity %q (want low, medium, high or critical)", t.Settings.RevokeSessionsMinSeverity)
		}
		if t.Settings.StaleAfter < 0 {
			add(subj, "stale_after must not be negative")
		}
		if t.Settings.MissedReports < 0 || t.Settings.MissedReports > 1000 {
			add(subj, "missed_reports must be from 0 to 1000")
		}
	}
	return errs
}

// ValidateApply is Validate shaped for hooks that take an error (e.g.
// admin.Config.Validate): nil when the apply is fine, else the Errors.
func ValidateApply(policies []store.Policy, teams []store.Team) error {
	if errs := Validate(policies, teams); len(errs) > 0 {
		return errs
	}
	return nil
}

func teamNameErr(name string) string {
	if len(name) > 128 {
		return "is longer than 128 characters"
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f {
			return "contains control characters"
		}
	}
	return ""
}
