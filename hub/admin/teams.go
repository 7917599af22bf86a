package admin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/compliance"
	"github.com/posture-dev/posture/hub/policy"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/verdicts"
)

// settingsFields are TeamSettings' fields as a PUT must carry them (proto
// name, JSON name).
var settingsFields = [][2]string{
	{"conditional_access", "conditionalAccess"},
	{"max_allowed_severity", "maxAllowedSeverity"},
	{"errors_as_failures", "errorsAsFailures"},
	{"stale_after", "staleAfter"},
}

// missingSetting names the first settings field absent from s ("" if none).
func missingSetting(s *posturev1.TeamSettings) string {
	present := map[string]bool{
		"conditional_access":   s.ConditionalAccess != nil,
		"max_allowed_severity": s.MaxAllowedSeverity != nil,
		"errors_as_failures":   s.ErrorsAsFailures != nil,
		"stale_after":          s.StaleAfter != nil,
	}
	for _, f := range settingsFields {
		if !present[f[0]] {
			return fmt.Sprintf("team.settings.%s (JSON settings.%s)", f[0], f[1])
		}
	}
	return ""
}

// PutTeam replaces a team: every settings field must be given, so a partial
// body can never switch conditional access off by omission.
func (s *Server) PutTeam(ctx context.Context, req *posturev1.PutTeamRequest) (*posturev1.Team, error) {
	pt := req.GetTeam()
	if pt == nil || pt.GetSettings() == nil {
		return nil, status.Error(codes.InvalidArgument, "team.settings is required: PUT replaces the whole team (use PATCH to change some fields)")
	}
	if m := missingSetting(pt.GetSettings()); m != "" {
		return nil, status.Errorf(codes.InvalidArgument, "%s is required: PUT replaces the whole team (use PATCH to change some fields)", m)
	}
	before, err := s.currentTeam(ctx, pt.GetName())
	if err != nil {
		return nil, err
	}
	after := policy.TeamFromProto(pt)
	// Session revocation came later: a PUT from a client that does not
	// know it keeps what is stored.
	if pt.GetSettings().RevokeSessions == nil {
		after.Settings.RevokeSessions = before.Settings.RevokeSessions
	}
	if pt.GetSettings().RevokeSessionsMinSeverity == nil {
		after.Settings.RevokeSessionsMinSeverity = before.Settings.RevokeSessionsMinSeverity
	}
	// So did missed_reports (absent: kept, never silently reset).
	if pt.GetSettings().MissedReports == nil {
		after.Settings.MissedReports = before.Settings.MissedReports
	}
	return s.saveTeam(ctx, before, after)
}

// UpdateTeam changes the settings named in update_mask; the others keep
// their values (a team never applied starts from the defaults verdicts use).
func (s *Server) UpdateTeam(ctx context.Context, req *posturev1.UpdateTeamRequest) (*posturev1.Team, error) {
	name := req.GetTeam().GetName()
	paths := req.GetUpdateMask().GetPaths()
	if len(paths) == 0 {
		return nil, status.Error(codes.InvalidArgument, "update_mask is empty: name the settings to change (REST: the JSON body's keys)")
	}
	before, err := s.currentTeam(ctx, name)
	if err != nil {
		return nil, err
	}
	after := before
	in := req.GetTeam().GetSettings()
	for _, p := range paths {
		switch p {
		case "name":
			// The name comes from the path; the body may repeat it.
		case "settings":
			if in == nil {
				return nil, status.Error(codes.InvalidArgument, "team.settings is required by update_mask path \"settings\"")
			}
			if m := missingSetting(in); m != "" {
				return nil, status.Errorf(codes.InvalidArgument, "%s is required when update_mask names all of settings", m)
			}
			after.Settings = policy.TeamFromProto(&posturev1.Team{Settings: in}).Settings
		case "settings.conditional_access":
			after.Settings.ConditionalAccess = in.GetConditionalAccess()
		case "settings.max_allowed_severity":
			after.Settings.MaxAllowedSeverity = in.GetMaxAllowedSeverity()
		case "settings.errors_as_failures":
			after.Settings.ErrorsAsFailures = in.GetErrorsAsFailures()
		case "settings.stale_after":
			after.Settings.StaleAfter = in.GetStaleAfter().AsDuration()
		case "settings.missed_reports":
			after.Settings.MissedReports = int(in.GetMissedReports())
		case "settings.revoke_sessions":
			after.Settings.RevokeSessions = in.GetRevokeSessions()
		case "settings.revoke_sessions_min_severity":
			after.Settings.RevokeSessionsMinSeverity = in.GetRevokeSessionsMinSeverity()
		default:
			return nil, status.Errorf(codes.InvalidArgument, "update_mask: unknown field %q (want settings.conditional_access, "+
				"settings.max_allowed_severity, settings.errors_as_failures, settings.stale_after, settings.revoke_sessions, "+
				"settings.revoke_sessions_min_severity or settings.missed_reports)", p)
		}
	}
	return s.saveTeam(ctx, before, after)
}

// currentTeam is the stored team, or the defaults a team never applied has.
func (s *Server) currentTeam(ctx context.Context, name string) (store.Team, error) {
	name = strings.TrimSpace(name)
	if name == "" {
		return store.Team{}, status.Error(codes.InvalidArgument, "team.name is required")
	}
	t, err := s.cfg.Store.GetTeam(ctx, name)
	if errors.Is(err, store.ErrNotFound) {
		return store.Team{Name: name, Settings: verdicts.DefaultSettings}, nil
	}
	if err != nil {
		return store.Team{}, storeErr("team "+name, err)
	}
	return t, nil
}

// severityRank orders max_allowed_severity from strictest ("": any failure
// blocks) to laxest.
var severityRank = map[string]int{"": 0, "low": 1, "medium": 2, "high": 3, "critical": 4}

// relaxations says how after lets more hosts count as compliant than
// before did, in words (none: nil).
func relaxations(before, after store.TeamSettings) []string {
	var out []string
	if before.ConditionalAccess && !after.ConditionalAccess {
		out = append(out, "turns conditional access off")
	}
	if b, a := compliance.MissedReports(before), compliance.MissedReports(after); a > b {
		out = append(out, fmt.Sprintf("lets hosts stay silent longer (missed_reports %d → %d)", b, a))
	}
	if severityRank[after.MaxAllowedSeverity] > severityRank[before.MaxAllowedSeverity] {
		out = append(out, fmt.Sprintf("raises max_allowed_severity from %q to %q", before.MaxAllowedSeverity, after.MaxAllowedSeverity))
	}
	if before.ErrorsAsFailures && !after.ErrorsAsFailures {
		out = append(out, "stops counting query errors as failures (errors_as_failures off)")
	}
	if b, a := compliance.StaleAfter(before), compliance.StaleAfter(after); a > b {
		out = append(out, fmt.Sprintf("lets hosts go unseen longer (stale_after %s → %s)", b, a))
	}
	if before.RevokeSessions && !after.RevokeSessions {
		out = append(out, "turns session revocation off")
	}
	if before.RevokeSessions && after.RevokeSessions && revokeRank(after.RevokeSessionsMinSeverity) > revokeRank(before.RevokeSessionsMinSeverity) {
		out = append(out, fmt.Sprintf("raises revoke_sessions_min_severity from %q to %q", before.RevokeSessionsMinSeverity, after.RevokeSessionsMinSeverity))
	}
	return out
}

// revokeRank orders revoke_sessions_min_severity ("" means high).
func revokeRank(s string) int {
	if s == "" {
		s = verdicts.DefaultRevokeMinSeverity
	}
	return severityRank[s]
}

// policyRelaxations says how after lets more hosts count as compliant than
// the stored policy before did, in words (none: nil).
func policyRelaxations(before, after store.Policy) []string {
	var out []string
	if before.ConditionalAccess && !after.ConditionalAccess {
		out = append(out, "takes it out of conditional access")
	}
	if severityRank[after.Severity] < severityRank[before.Severity] {
		out = append(out, fmt.Sprintf("lowers its severity from %q to %q", before.Severity, after.Severity))
	}
	if after.GracePeriod > before.GracePeriod {
		out = append(out, fmt.Sprintf("lengthens its grace period from %s to %s", before.GracePeriod, after.GracePeriod))
	}
	if before.ConditionalAccess && narrowsPlatforms(before.Platforms, after.Platforms) {
		out = append(out, fmt.Sprintf("narrows its platforms from %s to %s", platformsText(before.Platforms), platformsText(after.Platforms)))
	}
	if before.ConditionalAccess && after.Team != before.Team && after.Team != "" {
		out = append(out, fmt.Sprintf("narrows its scope from %s to team %q", teamText(before.Team), after.Team))
	}
	return out
}

// narrowsPlatforms reports whether after covers fewer platforms than before
// (empty = all platforms).
func narrowsPlatforms(before, after []string) bool {
	if len(after) == 0 {
		return false
	}
	if len(before) == 0 {
		return true
	}
	for _, b := range before {
		if !slices.Contains(after, b) {
			return true
		}
	}
	return false
}

func platformsText(ps []string) string {
	if len(ps) == 0 {
		return "all"
	}
	return strings.Join(ps, ",")
}

func teamText(team string) string {
	if team == "" {
		return "every team"
	}
	return fmt.Sprintf("team %q", team)
}

// removalRelaxes says what removing p relaxes: dropping a conditional
// access policy releases every host it failed.
func removalRelaxes(p store.Policy) []string {
	if !p.ConditionalAccess {
		return nil
	}
	return []string{"removes a conditional access policy"}
}

// needAdminToRelax refuses a change that relaxes a team unless the caller
// is an admin.
func needAdminToRelax(ctx context.Context, team string, before, after store.TeamSettings) error {
	return needAdmin(ctx, "team "+team, relaxations(before, after))
}

// needAdmin refuses a change with relaxations r (what it relaxes, in
// words) unless the caller is an admin. Every relax rule ends here.
func needAdmin(ctx context.Context, what string, r []string) error {
	if len(r) == 0 {
		return nil
	}
	if t, ok := Caller(ctx); ok && t.Role == store.RoleAdmin {
		return nil
	}
	return status.Errorf(codes.PermissionDenied, "%s: this change %s, which needs the admin role", what, strings.Join(r, " and "))
}

func (s *Server) saveTeam(ctx context.Context, before, after store.Team) (*posturev1.Team, error) {
	after.Name = before.Name
	auditTarget(ctx, "team/"+after.Name)
	if err := policy.ValidateApply(nil, []store.Team{after}); err != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	auditChange(ctx, policy.TeamToProto(before), policy.TeamToProto(after))
	if err := needAdminToRelax(ctx, after.Name, before.Settings, after.Settings); err != nil {
		return nil, err
	}
	// One team through the atomic apply: the current policies go along
	// unchanged (no prune), so only the team can change.
	current, err := s.cfg.Store.ListPolicies(ctx)
	if err != nil {
		return nil, storeErr("policies", err)
	}
	if _, err := s.cfg.Store.ApplyPolicies(ctx, store.ApplyRequest{Policies: current, Teams: []store.Team{after}, At: s.cfg.Now()}); err != nil {
		return nil, storeErr("team "+after.Name, err)
	}
	s.audit(ctx, "team settings set", "team", after.Name)
	s.cfg.Streams.PoliciesChanged()
	s.notifyAll(ctx, false)
	return policy.TeamToProto(after), nil
}

// checkApplyRelax applies the relax rules to a policy apply: its teams, and
// its policies that already exist (a new policy only adds checks).
func (s *Server) checkApplyRelax(ctx context.Context, ps []store.Policy, teams []store.Team, prune bool) error {
	for _, t := range teams {
		before, err := s.currentTeam(ctx, t.Name)
		if err != nil {
			return err
		}
		if err := needAdminToRelax(ctx, t.Name, before.Settings, t.Settings); err != nil {
			return err
		}
	}
	if len(ps) == 0 && !prune {
		return nil
	}
	current, err := s.cfg.Store.ListPolicies(ctx)
	if err != nil {
		return storeErr("policies", err)
	}
	byID := make(map[string]store.Policy, len(current))
	for _, p := range current {
		byID[p.ID] = p
	}
	applied := make(map[string]bool, len(ps))
	for _, p := range ps {
		applied[p.ID] = true
		if before, ok := byID[p.ID]; ok {
			if err := needAdmin(ctx, "policy "+p.ID, policyRelaxations(before, p)); err != nil {
				return err
			}
		}
	}
	if prune { // policies missing from the apply are deleted
		for _, p := range current {
			if !applied[p.ID] {
				if err := needAdmin(ctx, "policy "+p.ID, removalRelaxes(p)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
