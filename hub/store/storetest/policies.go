package storetest

import (
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

var policyTests = []suiteTest{
	{"Policies/ApplyAddsAndRoundTrips", testApplyAdds},
	{"Policies/ApplyChangesAndRevisions", testApplyChanges},
	{"Policies/Prune", testApplyPrune},
	{"Policies/DryRunWritesNothing", testApplyDryRun},
	{"Policies/ApplyAtomicOnFailureMidway", testApplyAtomic},
	{"Policies/ApplyRejectsBadRequests", testApplyRejects},
	{"Policies/Teams", testTeams},
	{"Policies/Delete", testDeletePolicy},
}

func testApplyAdds(t *testing.T, s store.Store) {
	v0 := version(t, s)
	full := store.Policy{ID: "disk-encryption", Name: "Disk encryption", Query: "SELECT 1 FROM disk_encryption WHERE encrypted = 1;",
		Description: "FileVault on", Resolution: "1. Open **Settings**\n2. Turn on FileVault",
		Platforms: []string{"darwin", "windows"}, Severity: "critical", ConditionalAccess: true,
		GracePeriod: 72 * time.Hour, Team: "eng"}
	changes := apply(t, s, store.ApplyRequest{
		Policies: []store.Policy{pol("zeta", "SELECT 2"), full, pol("alpha", "SELECT 1")},
		Teams:    []store.Team{{Name: "eng"}},
	})
	eq(t, "changes sorted by kind then id", changes, []store.PolicyChange{
		{Kind: "policy", ID: "alpha", Action: store.ActionAdded, Revision: 1},
		{Kind: "policy", ID: "disk-encryption", Action: store.ActionAdded, Revision: 1},
		{Kind: "policy", ID: "zeta", Action: store.ActionAdded, Revision: 1},
		{Kind: "team", ID: "eng", Action: store.ActionAdded},
	})
	got := must(s.GetPolicy(ctx(t), "disk-encryption"))(t)
	want := full
	want.Revision, want.CreatedAt, want.UpdatedAt = 1, micro(t0), micro(t0)
	eq(t, "stored policy", got, want)
	utcTime(t, "CreatedAt", got.CreatedAt)

	var ids []string
	for _, p := range must(s.ListPolicies(ctx(t)))(t) {
		ids = append(ids, p.ID)
	}
	eq(t, "listed by id", ids, []string{"alpha", "disk-encryption", "zeta"})
	// Empty platforms come back as nil (= all platforms).
	noPlat := pol("any", "SELECT 3")
	noPlat.Platforms = []string{}
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{noPlat}})
	if p := must(s.GetPolicy(ctx(t), "any"))(t); p.Platforms != nil {
		t.Fatalf("platforms = %#v, want nil", p.Platforms)
	}
	_, err := s.GetPolicy(ctx(t), "missing")
	wantErr(t, err, store.ErrNotFound)
	if version(t, s) == v0 {
		t.Fatal("policy set version unchanged after adding policies")
	}
	eq(t, "counts start at zero", counts(t, s)["alpha"], pc("alpha", 0, 0, 0))
}

func testApplyChanges(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("a", "SELECT 1"), pol("b", "SELECT 2")}})
	v1 := version(t, s)

	// Same content again: nothing changes, not even the version.
	changes := apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("a", "SELECT 1"), pol("b", "SELECT 2")}, At: at(time.Hour)})
	eq(t, "no-op apply", changes, []store.PolicyChange{
		{Kind: "policy", ID: "a", Action: store.ActionUnchanged, Revision: 1},
		{Kind: "policy", ID: "b", Action: store.ActionUnchanged, Revision: 1},
	})
	eq(t, "version after no-op", version(t, s), v1)
	eq(t, "updated-at after no-op", must(s.GetPolicy(ctx(t), "a"))(t).UpdatedAt, micro(t0))

	// Non-query fields keep the revision; a query change bumps it.
	a := pol("a", "SELECT 1")
	a.Name, a.Severity, a.GracePeriod = "Renamed", "low", time.Hour
	b := pol("b", "SELECT 2 -- v2")
	changes = apply(t, s, store.ApplyRequest{Policies: []store.Policy{a, b}, At: at(2 * time.Hour)})
	eq(t, "changes", changes, []store.PolicyChange{
		{Kind: "policy", ID: "a", Action: store.ActionChanged, Fields: []string{"name", "severity", "grace_period"}, Revision: 1},
		{Kind: "policy", ID: "b", Action: store.ActionChanged, Fields: []string{"query"}, Revision: 2},
	})
	v2 := version(t, s)
	if v2 == v1 {
		t.Fatal("version unchanged after a change")
	}
	ga := must(s.GetPolicy(ctx(t), "a"))(t)
	eq(t, "a stored", []any{ga.Name, ga.Revision, ga.CreatedAt, ga.UpdatedAt}, []any{"Renamed", int64(1), micro(t0), micro(at(2 * time.Hour))})
	eq(t, "b revision", must(s.GetPolicy(ctx(t), "b"))(t).Revision, int64(2))

	b.Query = "SELECT 2 -- v3"
	changes = apply(t, s, store.ApplyRequest{Policies: []store.Policy{b}, At: at(3 * time.Hour)})
	eq(t, "second bump", changes, []store.PolicyChange{{Kind: "policy", ID: "b", Action: store.ActionChanged, Fields: []string{"query"}, Revision: 3}})
	// Without Prune, policies missing from the request stay.
	if _, err := s.GetPolicy(ctx(t), "a"); err != nil {
		t.Fatalf("policy a gone without prune: %v", err)
	}
}

func testApplyPrune(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("keep", "SELECT 1"), pol("drop", "SELECT 2")}, Teams: []store.Team{{Name: "eng"}}})
	h := enroll(t, s, "h", "")
	record(t, s, h.ID, res("keep", 1, store.StatusPass, at(time.Minute)), res("drop", 1, store.StatusFail, at(time.Minute)))
	v := version(t, s)

	changes := apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("keep", "SELECT 1")}, Prune: true})
	eq(t, "prune changes", changes, []store.PolicyChange{
		{Kind: "policy", ID: "drop", Action: store.ActionRemoved, Revision: 1},
		{Kind: "policy", ID: "keep", Action: store.ActionUnchanged, Revision: 1},
	})
	_, err := s.GetPolicy(ctx(t), "drop")
	wantErr(t, err, store.ErrNotFound)
	latest := must(s.LatestResults(ctx(t), h.ID))(t)
	eq(t, "results of pruned policy gone", len(latest), 1)
	eq(t, "remaining result", latest[0].PolicyID, "keep")
	eq(t, "history of pruned policy stays", len(must(s.History(ctx(t), h.ID, "drop", 0))(t)), 1)
	eq(t, "counts", counts(t, s), map[string]store.PolicyCounts{"keep": pc("keep", 1, 0, 0)})
	if version(t, s) == v {
		t.Fatal("version unchanged after prune")
	}
	// Teams are never pruned.
	must(s.GetTeam(ctx(t), "eng"))(t)
	// A result for the pruned policy is now unknown.
	out := record(t, s, h.ID, res("drop", 1, store.StatusPass, at(time.Hour)))
	eq(t, "unknown after prune", out.Unknown, 1)
}

func testApplyDryRun(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("a", "SELECT 1"), pol("b", "SELECT 2")}, Teams: []store.Team{{Name: "eng"}}})
	h := enroll(t, s, "h", "")
	record(t, s, h.ID, res("a", 1, store.StatusPass, at(time.Minute)))
	v := version(t, s)
	beforePolicies := must(s.ListPolicies(ctx(t)))(t)
	beforeTeams := must(s.ListTeams(ctx(t)))(t)

	req := store.ApplyRequest{
		Policies: []store.Policy{pol("a", "SELECT 1 -- changed"), pol("c", "SELECT 3")},
		Teams:    []store.Team{{Name: "eng", Settings: store.TeamSettings{ConditionalAccess: true}}, {Name: "ops"}},
		Prune:    true, DryRun: true, At: at(time.Hour),
	}
	dry := apply(t, s, req)
	want := []store.PolicyChange{
		{Kind: "policy", ID: "a", Action: store.ActionChanged, Fields: []string{"query"}, Revision: 2},
		{Kind: "policy", ID: "b", Action: store.ActionRemoved, Revision: 1},
		{Kind: "policy", ID: "c", Action: store.ActionAdded, Revision: 1},
		{Kind: "team", ID: "eng", Action: store.ActionChanged, Fields: []string{"conditional_access"}},
		{Kind: "team", ID: "ops", Action: store.ActionAdded},
	}
	eq(t, "dry-run changes", dry, want)
	eq(t, "policies untouched", must(s.ListPolicies(ctx(t)))(t), beforePolicies)
	eq(t, "teams untouched", must(s.ListTeams(ctx(t)))(t), beforeTeams)
	eq(t, "version untouched", version(t, s), v)
	eq(t, "results untouched", len(must(s.LatestResults(ctx(t), h.ID))(t)), 1)
	eq(t, "counts untouched", counts(t, s)["a"], pc("a", 1, 0, 0))

	// The real apply does what the dry run said.
	req.DryRun = false
	eq(t, "real apply matches dry run", apply(t, s, req), want)
}

func testApplyAtomic(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("a", "SELECT 1"), pol("b", "SELECT 2")},
		Teams: []store.Team{{Name: "eng"}}})
	h := enroll(t, s, "h", "")
	record(t, s, h.ID, res("a", 1, store.StatusFail, at(time.Minute)))
	v := version(t, s)
	beforePolicies := must(s.ListPolicies(ctx(t)))(t)
	beforeTeams := must(s.ListTeams(ctx(t)))(t)
	beforeCounts := counts(t, s)

	// Writes go in id order: a (query change: results dropped), b (pruned),
	// c (added), then zz fails on the severity constraint.
	bad := pol("zz-bad", "SELECT 9")
	bad.Severity = "apocalyptic"
	_, err := s.ApplyPolicies(ctx(t), store.ApplyRequest{
		Policies: []store.Policy{pol("a", "SELECT 1 -- v2"), pol("c", "SELECT 3"), bad},
		Teams:    []store.Team{{Name: "eng", Settings: store.TeamSettings{ErrorsAsFailures: true}}, {Name: "new"}},
		Prune:    true, At: at(time.Hour),
	})
	wantErr(t, err, store.ErrInvalid)
	eq(t, "policies rolled back", must(s.ListPolicies(ctx(t)))(t), beforePolicies)
	eq(t, "teams rolled back", must(s.ListTeams(ctx(t)))(t), beforeTeams)
	eq(t, "version rolled back", version(t, s), v)
	eq(t, "counts rolled back", counts(t, s), beforeCounts)
	eq(t, "results rolled back", len(must(s.LatestResults(ctx(t), h.ID))(t)), 1)

	// So does a bad team setting.
	_, err = s.ApplyPolicies(ctx(t), store.ApplyRequest{
		Policies: []store.Policy{pol("c", "SELECT 3")},
		Teams:    []store.Team{{Name: "eng", Settings: store.TeamSettings{MaxAllowedSeverity: "critical"}}},
	})
	wantErr(t, err, store.ErrInvalid)
	eq(t, "policies rolled back after team failure", must(s.ListPolicies(ctx(t)))(t), beforePolicies)
	eq(t, "version rolled back after team failure", version(t, s), v)
}

func testApplyRejects(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("a", "SELECT 1")}})
	v := version(t, s)
	for name, req := range map[string]store.ApplyRequest{
		"duplicate id":   {Policies: []store.Policy{pol("x", "SELECT 1"), pol("x", "SELECT 2")}},
		"empty id":       {Policies: []store.Policy{pol("", "SELECT 1")}},
		"empty query":    {Policies: []store.Policy{pol("x", "  ")}},
		"duplicate team": {Teams: []store.Team{{Name: "t"}, {Name: "t"}}},
		"empty team":     {Teams: []store.Team{{Name: ""}}},
	} {
		req.Prune = true
		_, err := s.ApplyPolicies(ctx(t), req)
		if err == nil {
			t.Fatalf("%s: accepted", name)
		}
		wantErr(t, err, store.ErrInvalid)
	}
	eq(t, "nothing pruned by rejected requests", len(must(s.ListPolicies(ctx(t)))(t)), 1)
	eq(t, "version", version(t, s), v)
}

func testTeams(t *testing.T, s store.Store) {
	_, err := s.GetTeam(ctx(t), "eng")
	wantErr(t, err, store.ErrNotFound)
	eng := store.Team{Name: "eng", Settings: store.TeamSettings{ConditionalAccess: true, MaxAllowedSeverity: "medium",
		ErrorsAsFailures: true, StaleAfter: 6 * time.Hour, RevokeSessions: true, RevokeSessionsMinSeverity: "critical"}}
	apply(t, s, store.ApplyRequest{Teams: []store.Team{eng, {Name: "ops"}}})
	eq(t, "get", must(s.GetTeam(ctx(t), "eng"))(t), eng)
	eq(t, "list", must(s.ListTeams(ctx(t)))(t), []store.Team{eng, {Name: "ops"}})
	v := version(t, s)

	eng.Settings.StaleAfter = time.Hour
	eng.Settings.ConditionalAccess = false
	eng.Settings.RevokeSessions = false
	changes := apply(t, s, store.ApplyRequest{Teams: []store.Team{eng, {Name: "ops"}}})
	eq(t, "team changes", changes, []store.PolicyChange{
		{Kind: "team", ID: "eng", Action: store.ActionChanged, Fields: []string{"conditional_access", "stale_after", "revoke_sessions"}},
		{Kind: "team", ID: "ops", Action: store.ActionUnchanged},
	})
	eq(t, "changed team", must(s.GetTeam(ctx(t), "eng"))(t), eng)
	if version(t, s) == v {
		t.Fatal("version unchanged after a team change")
	}
}

func testDeletePolicy(t *testing.T, s store.Store) {
	apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("a", "SELECT 1"), pol("b", "SELECT 2")}})
	h := enroll(t, s, "h", "")
	record(t, s, h.ID, res("a", 1, store.StatusFail, at(time.Minute)), res("b", 1, store.StatusPass, at(time.Minute)))
	v := version(t, s)
	noErr(t, s.DeletePolicy(ctx(t), "a"))
	_, err := s.GetPolicy(ctx(t), "a")
	wantErr(t, err, store.ErrNotFound)
	if version(t, s) == v {
		t.Fatal("version unchanged after delete")
	}
	eq(t, "results of deleted policy gone", len(must(s.LatestResults(ctx(t), h.ID))(t)), 1)
	eq(t, "history stays", len(must(s.History(ctx(t), h.ID, "a", 0))(t)), 1)
	eq(t, "counts", counts(t, s), map[string]store.PolicyCounts{"b": pc("b", 1, 0, 0)})
	wantErr(t, s.DeletePolicy(ctx(t), "a"), store.ErrNotFound)

	// Re-adding starts over at revision 1 with no results.
	changes := apply(t, s, store.ApplyRequest{Policies: []store.Policy{pol("a", "SELECT 1")}})
	eq(t, "re-added", changes[0], store.PolicyChange{Kind: "policy", ID: "a", Action: store.ActionAdded, Revision: 1})
	checkCounts(t, s)
}
