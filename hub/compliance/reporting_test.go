package compliance

import (
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

func reporting(interval time.Duration, last time.Time) func(*Input) {
	return func(in *Input) {
		in.Reporting.ReportInterval = interval
		in.Reporting.LastReportAt = last
	}
}

func passingA(in *Input) {
	in.Policies = []store.Policy{pol("a", "high")}
	in.Results = []store.Result{res("a", store.StatusPass, t0.Add(-time.Hour))}
}

func all(mods ...func(*Input)) func(*Input) {
	return func(in *Input) {
		for _, m := range mods {
			m(in)
		}
	}
}

func TestReportingRules(t *testing.T) {
	revoked := t0.Add(-time.Hour)
	unhealthy := func(osq, spool bool) func(*Input) {
		return func(in *Input) {
			in.Reporting.Health = &store.HostHealth{OsqueryOK: osq, SpoolOK: spool, Detail: "x", At: t0.Add(-time.Minute)}
		}
	}
	runCases(t, []tcase{
		{"reported within the window: passing, wakes when it would go silent",
			all(passingA, reporting(time.Minute, t0.Add(-2*time.Minute))),
			Compliant, CausePassing, t0.Add(time.Minute), nil, DesiredCompliant},
		{"exactly missed_reports intervals: silent",
			all(passingA, reporting(time.Minute, t0.Add(-3*time.Minute))),
			Unknown, CauseSilent, time.Time{}, nil, DesiredNoncompliant},
		{"silent even though last-seen is fresh (stream up)",
			all(passingA, reporting(time.Minute, t0.Add(-10*time.Minute)), func(in *Input) { in.Host.LastSeenAt = t0 }),
			Unknown, CauseSilent, time.Time{}, nil, DesiredNoncompliant},
		{"team missed_reports widens the window",
			all(passingA, reporting(time.Minute, t0.Add(-10*time.Minute)), func(in *Input) { in.Settings.MissedReports = 20 }),
			Compliant, CausePassing, t0.Add(10 * time.Minute), nil, DesiredCompliant},
		{"no batch yet: counted from enrollment",
			all(passingA, reporting(time.Minute, time.Time{}), func(in *Input) { in.Host.EnrolledAt = t0.Add(-4 * time.Minute) }),
			Unknown, CauseSilent, time.Time{}, nil, DesiredNoncompliant},
		{"no interval ever sent: rule does not apply",
			all(passingA, reporting(0, t0.Add(-time.Hour))),
			Compliant, CausePassing, staleAt, nil, DesiredCompliant},
		{"no conditional-access policy: nothing to report",
			all(reporting(time.Minute, t0.Add(-time.Hour)), func(in *Input) { in.Policies = []store.Policy{pol("a", "high", noCA)} }),
			Compliant, CausePassing, staleAt, nil, DesiredCompliant},
		{"silent beats failing (both fail closed)",
			all(reporting(time.Minute, t0.Add(-time.Hour)), func(in *Input) {
				in.Policies = []store.Policy{pol("a", "critical")}
				in.Results = []store.Result{res("a", store.StatusFail, t0.Add(-time.Hour))}
			}),
			Unknown, CauseSilent, time.Time{}, nil, DesiredNoncompliant},
		{"stale beats silent",
			all(passingA, reporting(time.Minute, t0.Add(-48*time.Hour)), func(in *Input) { in.Host.LastSeenAt = t0.Add(-48 * time.Hour) }),
			Unknown, CauseStale, time.Time{}, nil, DesiredNoncompliant},
		{"CA off beats silent",
			all(passingA, reporting(time.Minute, t0.Add(-time.Hour)), func(in *Input) { in.Settings.ConditionalAccess = false }),
			Compliant, CauseCADisabled, time.Time{}, nil, DesiredCompliant},
		{"revoked beats unhealthy",
			all(passingA, unhealthy(false, true), func(in *Input) { in.Host.RevokedAt = &revoked }),
			Noncompliant, CauseRevoked, time.Time{}, nil, DesiredNoncompliant},
		{"osquery down: unhealthy although results pass",
			all(passingA, unhealthy(false, true), reporting(time.Minute, t0)),
			Unknown, CauseUnhealthy, time.Time{}, nil, DesiredNoncompliant},
		{"spool failing: unhealthy",
			all(passingA, unhealthy(true, false)),
			Unknown, CauseUnhealthy, time.Time{}, nil, DesiredNoncompliant},
		{"healthy report changes nothing",
			all(passingA, unhealthy(true, true)),
			Compliant, CausePassing, staleAt, nil, DesiredCompliant},
		{"unhealthy beats silent",
			all(passingA, unhealthy(true, false), reporting(time.Minute, t0.Add(-time.Hour))),
			Unknown, CauseUnhealthy, time.Time{}, nil, DesiredNoncompliant},
	})
}

func TestSilentAt(t *testing.T) {
	h := store.Host{EnrolledAt: t0}
	if got := SilentAt(h, store.HostReporting{}, store.TeamSettings{}); !got.IsZero() {
		t.Fatalf("no interval: %v", got)
	}
	r := store.HostReporting{ReportInterval: 2 * time.Minute, LastReportAt: t0.Add(time.Hour)}
	if got, want := SilentAt(h, r, store.TeamSettings{}), t0.Add(time.Hour+6*time.Minute); !got.Equal(want) {
		t.Fatalf("SilentAt = %v, want %v", got, want)
	}
	if got, want := SilentAt(h, r, store.TeamSettings{MissedReports: 1}), t0.Add(time.Hour+2*time.Minute); !got.Equal(want) {
		t.Fatalf("SilentAt(1) = %v, want %v", got, want)
	}
}
