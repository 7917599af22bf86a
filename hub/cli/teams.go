package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/fieldmaskpb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

func cmdTeams(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "list, set")
	if !ok {
		return 2
	}
	switch verb {
	case "list":
		return apiCommand(ctx, "teams list", rest, stdout, stderr, nil, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			resp, err := c.ListTeams(ctx, &posturev1.ListTeamsRequest{})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := newTable(stdout)
			fmt.Fprintln(tw, "NAME\tCONDITIONAL ACCESS\tMAX ALLOWED SEVERITY\tERRORS AS FAILURES\tSTALE AFTER\tREVOKE SESSIONS\tMISSED REPORTS")
			for _, t := range resp.GetTeams() {
				s := t.GetSettings()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.GetName(), onOff(s.GetConditionalAccess()),
					maxSeverity(s.GetMaxAllowedSeverity()), yesNo(s.GetErrorsAsFailures()), staleAfter(s.GetStaleAfter()), revokeSessions(s),
					missedReports(s.GetMissedReports()))
			}
			return tw.Flush()
		})
	case "set":
		return teamsSet(ctx, rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "teams: unknown subcommand %q\n", verb)
	return 2
}

// revokeSessions shows a team's session revocation setting.
func revokeSessions(s *posturev1.TeamSettings) string {
	if !s.GetRevokeSessions() {
		return "off"
	}
	min := s.GetRevokeSessionsMinSeverity()
	if min == "" {
		min = "high"
	}
	return "on (" + min + " and above)"
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func maxSeverity(s string) string {
	if s == "" {
		return "none (any failure blocks)"
	}
	return s
}

func staleAfter(d *durationpb.Duration) string {
	if d == nil || d.AsDuration() == 0 {
		return "24h (default)"
	}
	return d.AsDuration().String()
}

func missedReports(n int32) string {
	if n <= 0 {
		return "3 (default)"
	}
	return fmt.Sprint(n)
}

// teamsSet changes only the settings given (UpdateTeam with a field mask).
func teamsSet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var fs *flag.FlagSet
	var ca, errorsAsFailures bool
	var maxSev, revokeMin string
	var stale time.Duration
	var missed int
	var revoke bool
	extra := func(f *flag.FlagSet) {
		fs = f
		withUsage(f, "teams set NAME [flags]\n\nChanges only the settings given; a new team starts from the defaults (conditional access on).\nTurning conditional access off or raising --max-allowed-severity needs an admin token.")
		f.BoolVar(&ca, "conditional-access", false, "enforce verdicts for the team's hosts (false: every host counts as compliant)")
		f.StringVar(&maxSev, "max-allowed-severity", "", `failures up to this severity are allowed: low, medium, high, or "" (any failure blocks)`)
		f.BoolVar(&errorsAsFailures, "errors-as-failures", false, "count policy errors as failures")
		f.DurationVar(&stale, "stale-after", 0, "a host silent longer than this is UNKNOWN (0: the default, 24h)")
		f.IntVar(&missed, "missed-reports", 0, "a host with no result batch for this many policy intervals is UNKNOWN, connected or not (0: the default, 3)")
		f.BoolVar(&revoke, "revoke-sessions", false, "block now: on a transition to NONCOMPLIANT caused by a policy at or above --revoke-sessions-min-severity, "+
			"also revoke the device user's Entra sign-in sessions (the integration's app needs User.RevokeSessions.All)")
		f.StringVar(&revokeMin, "revoke-sessions-min-severity", "", `lowest policy severity that revokes sessions: low, medium, high or critical ("" = high)`)
	}
	args, _ = interspersed(args, extra)
	return apiCommand(ctx, "teams set", args, stdout, stderr, extra, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
		name := strings.TrimSpace(pos[0])
		if name == "" {
			return errors.New("team name is required")
		}
		set := given(fs)
		switch sev := strings.ToLower(strings.TrimSpace(maxSev)); sev {
		case "", "low", "medium", "high":
			maxSev = sev
		default:
			return fmt.Errorf(`--max-allowed-severity %q: want low, medium, high or "" (any failure blocks)`, maxSev)
		}
		if stale < 0 {
			return errors.New("--stale-after must not be negative")
		}
		if missed < 0 || missed > 1000 {
			return errors.New("--missed-reports must be from 0 to 1000")
		}
		switch sev := strings.ToLower(strings.TrimSpace(revokeMin)); sev {
		case "", "low", "medium", "high", "critical":
			revokeMin = sev
		default:
			return fmt.Errorf(`--revoke-sessions-min-severity %q: want low, medium, high, critical or "" (high)`, revokeMin)
		}
		// PATCH semantics: only the flags given are sent, named in the mask,
		// so a concurrent change of another setting is not overwritten.
		settings := &posturev1.TeamSettings{}
		var mask []string
		if set["conditional-access"] {
			settings.ConditionalAccess = &ca
			mask = append(mask, "settings.conditional_access")
		}
		if set["max-allowed-severity"] {
			settings.MaxAllowedSeverity = &maxSev
			mask = append(mask, "settings.max_allowed_severity")
		}
		if set["errors-as-failures"] {
			settings.ErrorsAsFailures = &errorsAsFailures
			mask = append(mask, "settings.errors_as_failures")
		}
		if set["revoke-sessions"] {
			settings.RevokeSessions = &revoke
			mask = append(mask, "settings.revoke_sessions")
		}
		if set["revoke-sessions-min-severity"] {
			settings.RevokeSessionsMinSeverity = &revokeMin
			mask = append(mask, "settings.revoke_sessions_min_severity")
		}
		if set["stale-after"] {
			settings.StaleAfter = durationpb.New(stale)
			mask = append(mask, "settings.stale_after")
		}
		if set["missed-reports"] {
			m := int32(missed)
			settings.MissedReports = &m
			mask = append(mask, "settings.missed_reports")
		}
		if len(mask) == 0 {
			return errors.New("nothing to change: give at least one of --conditional-access, --max-allowed-severity, --errors-as-failures, --stale-after, --revoke-sessions, --revoke-sessions-min-severity, --missed-reports")
		}
		t, err := c.UpdateTeam(ctx, &posturev1.UpdateTeamRequest{
			Team: &posturev1.Team{Name: name, Settings: settings}, UpdateMask: &fieldmaskpb.FieldMask{Paths: mask},
		})
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, t) })
		}
		s := t.GetSettings()
		fmt.Fprintf(stdout, "team %s: conditional access %s, max allowed severity %s, errors as failures %s, stale after %s, revoke sessions %s, missed reports %s\n", t.GetName(),
			onOff(s.GetConditionalAccess()), maxSeverity(s.GetMaxAllowedSeverity()), yesNo(s.GetErrorsAsFailures()), staleAfter(s.GetStaleAfter()), revokeSessions(s),
			missedReports(s.GetMissedReports()))
		return nil
	})
}
