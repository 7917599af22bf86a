package compliance

import (
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

var t0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

func pol(id, sev string, mods ...func(*store.Policy)) store.Policy {
	p := store.Policy{ID: id, Severity: sev, ConditionalAccess: true, Revision: 1}
	for _, m := range mods {
		m(&p)
	}
	return p
}

func grace(d time.Duration) func(*store.Policy) { return func(p *store.Policy) { p.GracePeriod = d } }
func noCA(p *store.Policy)                      { p.ConditionalAccess = false }
func rev(n int64) func(*store.Policy)           { return func(p *store.Policy) { p.Revision = n } }
func platforms(pl ...string) func(*store.Policy) {
	return func(p *store.Policy) { p.Platforms = pl }
}
func team(t string) func(*store.Policy) { return func(p *store.Policy) { p.Team = t } }

func res(policy, status string, since time.Time) store.Result {
	return store.Result{HostID: "h1", PolicyID: policy, Revision: 1, Status: status, EvaluatedAt: t0.Add(-time.Minute), StatusSince: since}
}

func baseInput() Input {
	return Input{
		Host: store.Host{ID: "h1", Team: "default", Platform: "darwin", LastSeenAt: t0.Add(-time.Minute)},
		Settings: store.TeamSettings{
			ConditionalAccess: true,
		},
		Now: t0,
	}
}

type tcase struct {
	name   string
	mod    func(*Input)
	state  State
	cause  string
	next   time.Time
	check  func(t *testing.T, v Verdict)
	desire string
}

func runCases(t *testing.T, cases []tcase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			in := baseInput()
			c.mod(&in)
			v := Evaluate(in)
			if v.State != c.state || v.Cause != c.cause {
				t.Fatalf("got %s/%s, want %s/%s (reasons %+v)", v.State, v.Cause, c.state, c.cause, v.Reasons)
			}
			if !v.NextTransition.Equal(c.next) {
				t.Fatalf("next transition %v, want %v", v.NextTransition, c.next)
			}
			if c.check != nil {
				c.check(t, v)
			}
			if got := Desired(v); got != c.desire {
				t.Fatalf("Desired = %q, want %q", got, c.desire)
			}
		})
	}
}

// staleAt is when baseInput's host goes stale with the default stale-after.
var staleAt = t0.Add(-time.Minute).Add(DefaultStaleAfter)

func TestPrecedence(t *testing.T) {
	revoked := t0.Add(-time.Hour)
	runCases(t, []tcase{
		{"revoked beats CA off", func(in *Input) {
			in.Host.RevokedAt = &revoked
			in.Settings.ConditionalAccess = false
		}, Noncompliant, CauseRevoked, time.Time{}, nil, DesiredNoncompliant},
		{"revoked beats passing", func(in *Input) {
			in.Host.RevokedAt = &revoked
			in.Policies = []store.Policy{pol("a", "low")}
			in.Results = []store.Result{res("a", store.StatusPass, t0)}
		}, Noncompliant, CauseRevoked, time.Time{}, nil, DesiredNoncompliant},
		{"CA off beats failing and stale", func(in *Input) {
			in.Settings.ConditionalAccess = false
			in.Host.LastSeenAt = t0.Add(-48 * time.Hour)
			in.Policies = []store.Policy{pol("a", "critical")}
			in.Results = []store.Result{res("a", store.StatusFail, t0)}
		}, Compliant, CauseCADisabled, time.Time{}, nil, DesiredCompliant},
		{"stale beats failing", func(in *Input) {
			in.Host.LastSeenAt = t0.Add(-25 * time.Hour)
			in.Policies = []store.Policy{pol("a", "critical")}
			in.Results = []store.Result{res("a", store.StatusFail, t0.Add(-25*time.Hour))}
		}, Unknown, CauseStale, time.Time{}, nil, DesiredNoncompliant},
		{"failing beats missing", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high"), pol("b", "high")}
			in.Results = []store.Result{res("a", store.StatusFail, t0)}
		}, Noncompliant, CauseFailing, staleAt, func(t *testing.T, v Verdict) {
			if len(v.Reasons) != 2 || v.Reasons[1].Status != StatusMissing || !v.Reasons[0].Blocking {
				t.Fatalf("reasons %+v", v.Reasons)
			}
		}, DesiredNoncompliant},
		{"missing beats grace", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high", grace(time.Hour)), pol("b", "high")}
			in.Results = []store.Result{res("a", store.StatusFail, t0.Add(-time.Minute))}
		}, Unknown, CauseNoResults, t0.Add(59 * time.Minute), nil, ""},
		{"grace beats compliant", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high", grace(time.Hour)), pol("b", "high")}
			in.Results = []store.Result{res("a", store.StatusFail, t0.Add(-time.Minute)), res("b", store.StatusPass, t0)}
		}, Grace, CauseGrace, t0.Add(59 * time.Minute), nil, DesiredCompliant},
		{"all passing", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high"), pol("b", "low")}
			in.Results = []store.Result{res("a", store.StatusPass, t0), res("b", store.StatusPass, t0)}
		}, Compliant, CausePassing, staleAt, func(t *testing.T, v Verdict) {
			if len(v.Reasons) != 0 {
				t.Fatalf("reasons %+v", v.Reasons)
			}
		}, DesiredCompliant},
	})
}

func TestConditionalAccessFlagAndScope(t *testing.T) {
	runCases(t, []tcase{
		{"failing non-CA policy is ignored", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "critical", noCA), pol("b", "low")}
			in.Results = []store.Result{res("a", store.StatusFail, t0), res("b", store.StatusPass, t0)}
		}, Compliant, CausePassing, staleAt, nil, DesiredCompliant},
		{"only non-CA policies: compliant, not unknown", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "critical", noCA)}
		}, Compliant, CausePassing, staleAt, nil, DesiredCompliant},
		{"policy for another platform is ignored", func(in *Input) {
			in.Policies = []store.Policy{pol("w", "critical", platforms("windows")), pol("b", "low")}
			in.Results = []store.Result{res("b", store.StatusPass, t0)}
		}, Compliant, CausePassing, staleAt, nil, DesiredCompliant},
		{"policy for another team is ignored", func(in *Input) {
			in.Policies = []store.Policy{pol("x", "critical", team("eng")), pol("b", "low")}
			in.Results = []store.Result{res("b", store.StatusPass, t0)}
		}, Compliant, CausePassing, staleAt, nil, DesiredCompliant},
		{"policy for the host's team and platform counts", func(in *Input) {
			in.Policies = []store.Policy{pol("x", "critical", team("default"), platforms("linux", "darwin"))}
			in.Results = []store.Result{res("x", store.StatusFail, t0)}
		}, Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
		{"results of another host are ignored", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high")}
			r := res("a", store.StatusFail, t0)
			r.HostID = "h2"
			in.Results = []store.Result{r}
		}, Unknown, CauseNoResults, staleAt, nil, ""},
	})
}

func TestSeverity(t *testing.T) {
	fail := func(sev, max string) func(*Input) {
		return func(in *Input) {
			in.Settings.MaxAllowedSeverity = max
			in.Policies = []store.Policy{pol("a", sev)}
			in.Results = []store.Result{res("a", store.StatusFail, t0)}
		}
	}
	allowed := func(t *testing.T, v Verdict) {
		if len(v.Reasons) != 1 || !v.Reasons[0].Allowed || v.Reasons[0].Blocking {
			t.Fatalf("reasons %+v", v.Reasons)
		}
	}
	runCases(t, []tcase{
		{"max empty: low blocks", fail("low", ""), Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
		{"max low: low allowed", fail("low", "low"), Compliant, CausePassing, staleAt, allowed, DesiredCompliant},
		{"max low: medium blocks", fail("medium", "low"), Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
		{"max medium: medium allowed", fail("medium", "medium"), Compliant, CausePassing, staleAt, allowed, DesiredCompliant},
		{"max medium: high blocks", fail("high", "medium"), Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
		{"max high: high allowed", fail("high", "high"), Compliant, CausePassing, staleAt, allowed, DesiredCompliant},
		{"max high: critical blocks", fail("critical", "high"), Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
		{"unknown policy severity ranks critical", fail("bogus", "high"), Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
		{"unknown team maximum allows nothing", fail("low", "critical"), Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
	})
}

func TestErrors(t *testing.T) {
	errIn := func(asFailures bool) func(*Input) {
		return func(in *Input) {
			in.Settings.ErrorsAsFailures = asFailures
			in.Policies = []store.Policy{pol("a", "high")}
			r := res("a", store.StatusError, t0)
			r.Error = "no such table: foo"
			in.Results = []store.Result{r}
		}
	}
	runCases(t, []tcase{
		{"error ignored by default", errIn(false), Compliant, CausePassing, staleAt, func(t *testing.T, v Verdict) {
			if len(v.Reasons) != 1 || v.Reasons[0].Counted || v.Reasons[0].Error != "no such table: foo" {
				t.Fatalf("reasons %+v", v.Reasons)
			}
		}, DesiredCompliant},
		{"error counts when the team says so", errIn(true), Noncompliant, CauseFailing, staleAt, func(t *testing.T, v Verdict) {
			if !v.Reasons[0].Counted || !v.Reasons[0].Blocking || v.Reasons[0].Status != store.StatusError {
				t.Fatalf("reasons %+v", v.Reasons)
			}
		}, DesiredNoncompliant},
	})
}

func TestGrace(t *testing.T) {
	failedAt := t0.Add(-30 * time.Minute)
	deadline := failedAt.Add(time.Hour)
	in := func(now time.Time) func(*Input) {
		return func(in *Input) {
			in.Now = now
			in.Policies = []store.Policy{pol("a", "high", grace(time.Hour))}
			in.Results = []store.Result{res("a", store.StatusFail, failedAt)}
		}
	}
	runCases(t, []tcase{
		{"before deadline: grace", in(t0), Grace, CauseGrace, deadline, func(t *testing.T, v Verdict) {
			r := v.Reasons[0]
			if !r.InGrace || r.Blocking || !r.GraceDeadline.Equal(deadline) {
				t.Fatalf("reason %+v", r)
			}
		}, DesiredCompliant},
		{"at deadline: noncompliant", in(deadline), Noncompliant, CauseFailing, staleAt, func(t *testing.T, v Verdict) {
			r := v.Reasons[0]
			if r.InGrace || !r.Blocking || !r.GraceDeadline.Equal(deadline) {
				t.Fatalf("reason %+v", r)
			}
		}, DesiredNoncompliant},
		{"zero grace period blocks at once", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high")}
			in.Results = []store.Result{res("a", store.StatusFail, t0)}
		}, Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
		{"status-since missing: evaluated-at starts grace", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high", grace(time.Hour))}
			in.Results = []store.Result{res("a", store.StatusFail, time.Time{})}
		}, Grace, CauseGrace, t0.Add(59 * time.Minute), nil, DesiredCompliant},
		{"earliest of two deadlines", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high", grace(time.Hour)), pol("b", "high", grace(2*time.Hour))}
			in.Results = []store.Result{res("a", store.StatusFail, t0), res("b", store.StatusFail, t0.Add(-90*time.Minute))}
		}, Grace, CauseGrace, t0.Add(30 * time.Minute), nil, DesiredCompliant},
		{"grace deadline after stale moment", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high", grace(48*time.Hour))}
			in.Results = []store.Result{res("a", store.StatusFail, t0)}
		}, Grace, CauseGrace, staleAt, nil, DesiredCompliant},
	})
}

func TestExemptions(t *testing.T) {
	exp := t0.Add(2 * time.Hour)
	failing := func(ex ...Exemption) func(*Input) {
		return func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high"), pol("b", "low")}
			in.Results = []store.Result{res("a", store.StatusFail, t0), res("b", store.StatusPass, t0)}
			in.Exemptions = ex
		}
	}
	runCases(t, []tcase{
		{"exemption for the policy", failing(Exemption{PolicyID: "a", ExpiresAt: exp}), Compliant, CausePassing, exp, func(t *testing.T, v Verdict) {
			r := v.Reasons[0]
			if !r.Exempt || !r.ExemptUntil.Equal(exp) || r.Blocking {
				t.Fatalf("reason %+v", r)
			}
		}, DesiredCompliant},
		{"exemption for all policies, no expiry", failing(Exemption{}), Compliant, CausePassing, staleAt, nil, DesiredCompliant},
		{"exemption for another policy", failing(Exemption{PolicyID: "b"}), Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
		{"expired exemption", failing(Exemption{PolicyID: "a", ExpiresAt: t0}), Noncompliant, CauseFailing, staleAt, nil, DesiredNoncompliant},
		{"latest expiry wins", failing(Exemption{PolicyID: "a", ExpiresAt: t0.Add(time.Hour)}, Exemption{ExpiresAt: exp}), Compliant, CausePassing, exp, nil, DesiredCompliant},
		{"exemption ending inside grace: both moments", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high", grace(3*time.Hour))}
			in.Results = []store.Result{res("a", store.StatusFail, t0)}
			in.Exemptions = []Exemption{{PolicyID: "a", ExpiresAt: exp}}
		}, Compliant, CausePassing, exp, nil, DesiredCompliant},
		{"after exemption ends inside grace: grace", func(in *Input) {
			in.Now = exp
			in.Host.LastSeenAt = exp
			in.Policies = []store.Policy{pol("a", "high", grace(3*time.Hour))}
			in.Results = []store.Result{res("a", store.StatusFail, t0)}
			in.Exemptions = []Exemption{{PolicyID: "a", ExpiresAt: exp}}
		}, Grace, CauseGrace, t0.Add(3 * time.Hour), nil, DesiredCompliant},
		{"exemption on an allowed severity adds no moment", func(in *Input) {
			in.Settings.MaxAllowedSeverity = "high"
			in.Policies = []store.Policy{pol("a", "high")}
			in.Results = []store.Result{res("a", store.StatusFail, t0)}
			in.Exemptions = []Exemption{{PolicyID: "a", ExpiresAt: exp}}
		}, Compliant, CausePassing, staleAt, nil, DesiredCompliant},
	})
}

func TestStaleness(t *testing.T) {
	pass := func(in *Input) {
		in.Policies = []store.Policy{pol("a", "high")}
		in.Results = []store.Result{res("a", store.StatusPass, t0)}
	}
	runCases(t, []tcase{
		{"just before default stale-after", func(in *Input) {
			pass(in)
			in.Host.LastSeenAt = t0.Add(-DefaultStaleAfter + time.Second)
		}, Compliant, CausePassing, t0.Add(time.Second), nil, DesiredCompliant},
		{"at default stale-after", func(in *Input) {
			pass(in)
			in.Host.LastSeenAt = t0.Add(-DefaultStaleAfter)
		}, Unknown, CauseStale, time.Time{}, nil, DesiredNoncompliant},
		{"team stale-after", func(in *Input) {
			pass(in)
			in.Settings.StaleAfter = time.Hour
			in.Host.LastSeenAt = t0.Add(-time.Hour)
		}, Unknown, CauseStale, time.Time{}, nil, DesiredNoncompliant},
		{"never seen: enrolled-at counts", func(in *Input) {
			in.Host.LastSeenAt = time.Time{}
			in.Host.EnrolledAt = t0.Add(-25 * time.Hour)
		}, Unknown, CauseStale, time.Time{}, nil, DesiredNoncompliant},
		{"never seen nor enrolled: never stale", func(in *Input) {
			pass(in)
			in.Host.LastSeenAt = time.Time{}
		}, Compliant, CausePassing, time.Time{}, nil, DesiredCompliant},
	})
}

func TestMissingResults(t *testing.T) {
	runCases(t, []tcase{
		{"new host without results", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high"), pol("b", "low")}
		}, Unknown, CauseNoResults, staleAt, func(t *testing.T, v Verdict) {
			if len(v.Reasons) != 2 || v.Reasons[0].Status != StatusMissing || v.Reasons[0].Blocking {
				t.Fatalf("reasons %+v", v.Reasons)
			}
		}, ""},
		{"old revision counts as missing", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high", rev(2))}
			in.Results = []store.Result{res("a", store.StatusPass, t0)}
		}, Unknown, CauseNoResults, staleAt, nil, ""},
		{"old revision failure does not block", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high", rev(2))}
			in.Results = []store.Result{res("a", store.StatusFail, t0)}
		}, Unknown, CauseNoResults, staleAt, nil, ""},
		{"newest of duplicate results wins", func(in *Input) {
			in.Policies = []store.Policy{pol("a", "high")}
			old := res("a", store.StatusFail, t0)
			old.EvaluatedAt = t0.Add(-time.Hour)
			in.Results = []store.Result{res("a", store.StatusPass, t0), old}
		}, Compliant, CausePassing, staleAt, nil, DesiredCompliant},
	})
}

func TestDesiredUnknownCauses(t *testing.T) {
	if got := Desired(Verdict{State: Unknown, Cause: CauseStale}); got != DesiredNoncompliant {
		t.Fatalf("stale: %q", got)
	}
	if got := Desired(Verdict{State: Unknown, Cause: CauseNoResults}); got != "" {
		t.Fatalf("no results: %q", got)
	}
	if got := Desired(Verdict{State: "bogus"}); got != "" {
		t.Fatalf("bogus: %q", got)
	}
}

func TestValidSeverity(t *testing.T) {
	for _, s := range []string{"low", "medium", "high", "critical"} {
		if !ValidSeverity(s) {
			t.Errorf("%s should be valid", s)
		}
	}
	if ValidSeverity("") || ValidSeverity("urgent") {
		t.Error("invalid severities accepted")
	}
	if !ValidMaxAllowedSeverity("") || ValidMaxAllowedSeverity("critical") {
		t.Error("max allowed severity validation wrong")
	}
}

// Evaluating at NextTransition must give a different verdict than just
// before it: the moment is real, not a wasted wake-up.
func TestNextTransitionChangesVerdict(t *testing.T) {
	in := baseInput()
	in.Policies = []store.Policy{pol("a", "high", grace(time.Hour)), pol("b", "high")}
	in.Results = []store.Result{res("a", store.StatusFail, t0), res("b", store.StatusFail, t0)}
	in.Exemptions = []Exemption{{PolicyID: "b", ExpiresAt: t0.Add(30 * time.Minute)}}
	var states []State
	for i := 0; i < 4; i++ {
		v := Evaluate(in)
		states = append(states, v.State)
		if v.NextTransition.IsZero() {
			break
		}
		in.Now = v.NextTransition
		in.Host.LastSeenAt = in.Now // keep it fresh so staleness stays out of the way
	}
	want := []State{Grace, Noncompliant, Noncompliant}
	if len(states) < len(want) {
		t.Fatalf("states %v", states)
	}
	for i, s := range want {
		if states[i] != s {
			t.Fatalf("states %v, want prefix %v", states, want)
		}
	}
}
