package policy

import (
	"reflect"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
	"google.golang.org/protobuf/proto"
)

func TestTreeToStoreAndRequest(t *testing.T) {
	tree, err := LoadDir("testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	ps := tree.StorePolicies()
	if len(ps) != len(tree.Policies) {
		t.Fatalf("%d store policies for %d tree policies", len(ps), len(tree.Policies))
	}
	fv := ps[2]
	want := store.Policy{
		ID: "macos-filevault", Name: "FileVault disk encryption is on",
		Query:       tree.Policies[2].Query,
		Description: "The startup disk is encrypted with FileVault.",
		Resolution:  tree.Policies[2].Resolution,
		Platforms:   []string{"darwin"}, Severity: "high", ConditionalAccess: true,
		GracePeriod: 72 * time.Hour,
	}
	if !reflect.DeepEqual(fv, want) {
		t.Errorf("store policy:\n got  %+v\n want %+v", fv, want)
	}
	// The store copy must not alias the tree's slices.
	ps[2].Platforms[0] = "linux"
	if tree.Policies[2].Platforms[0] != "darwin" {
		t.Error("StorePolicies shares the Platforms slice with the tree")
	}

	teams := tree.StoreTeams()
	if len(teams) != 2 || teams[1].Name != "engineering" || teams[1].Settings.StaleAfter != 48*time.Hour {
		t.Errorf("store teams = %+v", teams)
	}

	req := tree.ApplyRequest(true, false)
	if !req.GetDryRun() || req.GetPrune() || len(req.GetPolicies()) != len(ps) || len(req.GetTeams()) != 2 {
		t.Fatalf("request = %v", req)
	}
	p := req.GetPolicies()[2]
	if p.GetId() != "macos-filevault" || p.GetGracePeriod().AsDuration() != 72*time.Hour || !p.GetConditionalAccess() ||
		p.GetRevision() != 0 || p.GetCreatedAt() != nil {
		t.Errorf("proto policy = %v", p)
	}
	if p := req.GetPolicies()[0]; p.GetGracePeriod() != nil {
		t.Errorf("zero grace period sent as %v, want unset", p.GetGracePeriod())
	}
	if s := req.GetTeams()[0].GetSettings(); s.GetMaxAllowedSeverity() != "high" || !s.GetErrorsAsFailures() || s.GetStaleAfter().AsDuration() != 12*time.Hour {
		t.Errorf("proto team settings = %v", s)
	}
	fq := tree.FactQueries("darwin")
	if len(fq) != 2 || fq[0].GetName() != "entra_device_id" || fq[0].GetPlatform() != "darwin" ||
		fq[0].GetQuery() != "SELECT device_id FROM posture_entra;" || fq[1].GetPlatform() != "" {
		t.Errorf("fact queries = %v", fq)
	}
	// A fact for several platforms becomes one query per platform; a host
	// gets only its own.
	multi := Tree{Facts: []Fact{{Name: "serial", Platforms: []string{"darwin", "linux"}, Query: "SELECT 1"}}}
	if got := ProtoFactQueries(multi.Facts); len(got) != 2 || got[0].GetPlatform() != "darwin" || got[1].GetPlatform() != "linux" {
		t.Errorf("expanded = %v", got)
	}
	if got := multi.FactQueries("linux"); len(got) != 1 || got[0].GetPlatform() != "linux" {
		t.Errorf("linux facts = %v", got)
	}
	if got := multi.FactQueries("windows"); len(got) != 0 {
		t.Errorf("windows facts = %v", got)
	}
	if errs := ValidateFactQueries(req.GetFacts()); len(errs) != 0 {
		t.Errorf("linted facts fail ValidateFactQueries: %v", errs)
	}
}

func TestProtoRoundTrip(t *testing.T) {
	at := time.Date(2026, 11, 23, 5, 0, 0, 0, time.UTC)
	p := store.Policy{
		ID: "a", Name: "A", Query: "SELECT 1", Description: "d", Resolution: "r",
		Platforms: []string{"darwin", "linux"}, Severity: "low", ConditionalAccess: true,
		GracePeriod: 90 * time.Minute, Team: "eng", Revision: 3, CreatedAt: at, UpdatedAt: at.Add(time.Hour),
	}
	if got := PolicyFromProto(PolicyToProto(p)); !reflect.DeepEqual(got, p) {
		t.Errorf("policy round trip:\n got  %+v\n want %+v", got, p)
	}
	tm := store.Team{Name: "eng", Settings: store.TeamSettings{ConditionalAccess: true, MaxAllowedSeverity: "medium", ErrorsAsFailures: true, StaleAfter: time.Hour}}
	if got := TeamFromProto(TeamToProto(tm)); !reflect.DeepEqual(got, tm) {
		t.Errorf("team round trip:\n got  %+v\n want %+v", got, tm)
	}
	if got := TeamFromProto(&posturev1.Team{Name: "x"}); got != (store.Team{Name: "x"}) {
		t.Errorf("team without settings = %+v", got)
	}
	cs := []store.PolicyChange{
		{Kind: "policy", ID: "a", Action: store.ActionAdded, Revision: 1},
		{Kind: "policy", ID: "b", Action: store.ActionChanged, Fields: []string{"query"}, Revision: 2},
		{Kind: "policy", ID: "c", Action: store.ActionRemoved},
		{Kind: "team", ID: "eng", Action: store.ActionUnchanged},
	}
	pcs := ChangesToProto(cs)
	if pcs[1].GetAction() != posturev1.ChangeAction_CHANGE_ACTION_CHANGED {
		t.Errorf("action = %v", pcs[1].GetAction())
	}
	if got := ChangesFromProto(pcs); !reflect.DeepEqual(got, cs) {
		t.Errorf("changes round trip:\n got  %+v\n want %+v", got, cs)
	}
	if got := ChangesFromProto([]*posturev1.Change{{Kind: "policy", Id: "z"}}); got[0].Action != "unknown" {
		t.Errorf("unspecified action = %q", got[0].Action)
	}
	// Wire round trip too: what the CLI sends is what the server decodes.
	b, err := proto.Marshal(PolicyToProto(p))
	if err != nil {
		t.Fatal(err)
	}
	var back posturev1.Policy
	if err := proto.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if got := PolicyFromProto(&back); !reflect.DeepEqual(got, p) {
		t.Errorf("wire round trip = %+v", got)
	}
}

func TestValidate(t *testing.T) {
	tree, err := LoadDir("testdata/good")
	if err != nil {
		t.Fatal(err)
	}
	if errs := Validate(tree.StorePolicies(), tree.StoreTeams()); len(errs) != 0 {
		t.Fatalf("a linted tree fails Validate:\n%v", errs)
	}
	ok := store.Policy{ID: "ok", Name: "OK", Query: "SELECT 1", Severity: "low"}
	bad := []store.Policy{
		ok,
		{ID: "ok", Name: "Dup", Query: "SELECT 1", Severity: "low"},
		{ID: "Bad ID", Name: "x", Query: "SELECT 1", Severity: "low"},
		{Name: "no id", Query: "SELECT 1", Severity: "low"},
		{ID: "q", Query: "DELETE FROM users", Severity: "", Platforms: []string{"chrome"}, GracePeriod: -time.Second, Team: "a\x1bb"},
	}
	teams := []store.Team{
		{Name: "eng", Settings: store.TeamSettings{MaxAllowedSeverity: "critical", StaleAfter: -1}},
		{Name: "eng"},
		{},
	}
	want := []string{
		`policy "ok": duplicate policy id`,
		`policy "Bad ID": invalid id: use lower case letters, digits, '-' and '_' (at most 128, starting with a letter or digit)`,
		`policies[3]: id is required`,
		`policy "q": name is required`,
		`policy "q": query starts with DELETE; only a read-only SELECT or WITH … SELECT is allowed`,
		`policy "q": invalid severity "" (want low, medium, high or critical)`,
		`policy "q": unknown platform "chrome" (want darwin, windows or linux)`,
		`policy "q": grace period must not be negative`,
		`policy "q": team contains control characters`,
		`team "eng": invalid max_allowed_severity "critical" (want low, medium or high)`,
		`team "eng": stale_after must not be negative`,
		`team "eng": duplicate team`,
		`teams[2]: name is required`,
	}
	if err := ValidateApply(tree.StorePolicies(), tree.StoreTeams()); err != nil {
		t.Errorf("ValidateApply of a linted tree = %v, want nil (not a typed nil)", err)
	}
	if err := ValidateApply(bad, teams); err == nil || !strings.Contains(err.Error(), "duplicate policy id") {
		t.Errorf("ValidateApply = %v", err)
	}
	got := issueStrings(Validate(bad, teams))
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Validate:\n got:\n%s\n want:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestValidateFactQueries(t *testing.T) {
	got := issueStrings(ValidateFactQueries([]*posturev1.FactQuery{
		{Name: "upn", Query: "SELECT 1"},
		{Name: "upn", Platform: "linux", Query: "SELECT 2"},
		{Name: "Bad-Name", Platform: "chrome", Query: "PRAGMA x"},
		{Query: "SELECT 1"},
	}))
	want := []string{
		`fact "upn" (linux): duplicate fact for platform linux`,
		`fact "Bad-Name" (chrome): invalid name: use lower case letters, digits and '_', starting with a letter`,
		`fact "Bad-Name" (chrome): unknown platform "chrome" (want darwin, windows, linux or empty)`,
		`fact "Bad-Name" (chrome): query starts with PRAGMA; only a read-only SELECT or WITH … SELECT is allowed`,
		`facts[3]: name is required`,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ValidateFactQueries:\n got:\n%s\n want:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
