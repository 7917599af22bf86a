package verdicts

import (
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

// revokes lists the session revocation rows as "integration user".
func (f *fixture) revokes() []string {
	var out []string
	for _, it := range f.rows() {
		if it.Kind == store.OutboxRevokeSessions {
			out = append(out, it.IntegrationID+" "+it.Subject)
		}
	}
	return out
}

// A transition to NONCOMPLIANT caused by a policy at or above the team's
// minimum severity enqueues one revocation per covering integration (only
// for an opted-in team); staying non-compliant, a forced re-evaluation or
// a lower-severity failure enqueue none.
func TestRevokeSessionsOncePerQualifyingTransition(t *testing.T) {
	f := newFixture(t)
	low := policy("screen-lock", 0)
	low.Severity = "low"
	req := store.ApplyRequest{Policies: []store.Policy{policy("disk", 0), low}, At: f.base, Teams: []store.Team{
		{Name: "eng", Settings: store.TeamSettings{ConditionalAccess: true, RevokeSessions: true}},
		{Name: "sales", Settings: store.TeamSettings{ConditionalAccess: true}},
	}}
	if _, err := f.st.ApplyPolicies(f.ctx, req); err != nil {
		t.Fatal(err)
	}
	f.integration("all")
	f.host("h1", "eng", "dev-1")
	f.host("h2", "sales", "dev-2")
	e := f.engine(nil)
	for _, h := range []string{"h1", "h2"} {
		f.result(h, "disk", store.StatusPass, f.base)
		f.result(h, "screen-lock", store.StatusPass, f.base)
		f.evaluate(e, h, false)
	}
	// Low severity (below the default minimum, high): blocks, no revocation.
	at := f.base.Add(time.Minute)
	f.result("h1", "screen-lock", store.StatusFail, at)
	f.clock.Set(at)
	if v := f.evaluate(e, "h1", false); v.State != "NONCOMPLIANT" {
		t.Fatalf("verdict %+v", v)
	}
	if got := f.revokes(); len(got) != 0 {
		t.Fatalf("low-severity failure revoked: %v", got)
	}
	// Back to compliant, then the high-severity failure: one revocation.
	at = at.Add(time.Minute)
	f.result("h1", "screen-lock", store.StatusPass, at)
	f.clock.Set(at)
	f.evaluate(e, "h1", false)
	at = at.Add(time.Minute)
	f.result("h1", "disk", store.StatusFail, at)
	f.result("h2", "disk", store.StatusFail, at)
	f.clock.Set(at)
	f.evaluate(e, "h1", false)
	f.evaluate(e, "h2", false)
	if got := f.revokes(); len(got) != 1 || got[0] != "all h1@example.com" {
		t.Fatalf("revocations %v (want one, for h1 only: h2's team did not opt in)", got)
	}
	// Still non-compliant: another failure, a forced re-evaluation: none.
	at = at.Add(time.Minute)
	f.result("h1", "screen-lock", store.StatusFail, at)
	f.clock.Set(at)
	f.evaluate(e, "h1", false)
	f.evaluate(e, "h1", true)
	if got := f.revokes(); len(got) != 1 {
		t.Fatalf("revocations after staying non-compliant: %v", got)
	}
}
