package policy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

func TestLoadDirGoodPack(t *testing.T) {
	tree, err := LoadDir("testdata/good")
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	wantFiles := []string{
		"testdata/good/facts.yml",
		"testdata/good/fleet.yml",
		"testdata/good/macos.yml",
		"testdata/good/nested/linux.yaml",
		"testdata/good/teams.yml",
	}
	if !reflect.DeepEqual(tree.Files, wantFiles) {
		t.Errorf("files = %v, want %v (sorted, recursive, hidden skipped)", tree.Files, wantFiles)
	}

	wantPolicies := []Policy{
		{
			ID:          "windows-bitlocker-enabled",
			Name:        "Windows - BitLocker enabled",
			Query:       "SELECT 1 FROM bitlocker_info WHERE drive_letter = 'C:' AND protection_status = 1;",
			Description: "Checks BitLocker on C:.", Resolution: "Turn on BitLocker in Settings.",
			Platforms: []string{"windows"}, Severity: "critical",
			Pos: Pos{"testdata/good/fleet.yml", 5},
		},
		{
			ID:         "linux-macos-ssh-password-auth-off",
			Name:       "Linux & macOS - SSH password auth off",
			Query:      "SELECT 1 FROM augeas WHERE path = '/etc/ssh/sshd_config' AND label = 'PasswordAuthentication' AND value = 'no';",
			Resolution: "Set PasswordAuthentication no in sshd_config.",
			Platforms:  []string{"darwin", "linux"}, Severity: "medium",
			ConditionalAccess: true, Team: "engineering",
			Pos: Pos{"testdata/good/fleet.yml", 16},
		},
		{
			ID:   "macos-filevault",
			Name: "FileVault disk encryption is on",
			Query: "-- a ';' in a comment; and in a string below\nSELECT 1 FROM disk_encryption\n" +
				"WHERE name = '/dev/disk1s1' AND encrypted = 1 AND type != 'a;b';",
			Description: "The startup disk is encrypted with FileVault.",
			Resolution: "1. Open System Settings > Privacy & Security > FileVault.\n" +
				"2. Click Turn On and follow the steps.",
			Platforms: []string{"darwin"}, Severity: "high", ConditionalAccess: true,
			GracePeriod: 72 * time.Hour,
			Pos:         Pos{"testdata/good/macos.yml", 2},
		},
		{
			ID: "macos-firewall", Name: "Application firewall is on",
			Query:      "SELECT 1 FROM alf WHERE global_state >= 1",
			Resolution: "Open System Settings > Network > Firewall and turn it on.",
			Platforms:  []string{"darwin"}, Severity: "medium",
			GracePeriod: 36 * time.Hour, Team: "engineering",
			Pos: Pos{"testdata/good/macos.yml", 16},
		},
		{
			ID: "gatekeeper-is-enabled", Name: "Gatekeeper is enabled",
			Query:      "WITH g AS (SELECT assessments_enabled AS on_ FROM gatekeeper) SELECT 1 FROM g WHERE on_ = 1",
			Resolution: "Run `sudo spctl --master-enable`.",
			Platforms:  []string{"darwin"}, Severity: "critical",
			Pos: Pos{"testdata/good/macos.yml", 24},
		},
		{
			ID: "linux-firewall", Name: "A host firewall is active",
			Query:      "SELECT 1 FROM systemd_units WHERE id IN ('ufw.service', 'firewalld.service') AND active_state = 'active'",
			Resolution: "Enable ufw or firewalld.",
			Platforms:  []string{"linux"}, Severity: "low",
			Pos: Pos{"testdata/good/nested/linux.yaml", 1},
		},
	}
	if len(tree.Policies) != len(wantPolicies) {
		t.Fatalf("got %d policies, want %d: %+v", len(tree.Policies), len(wantPolicies), tree.Policies)
	}
	for i, want := range wantPolicies {
		if got := tree.Policies[i]; !reflect.DeepEqual(got, want) {
			t.Errorf("policy %d:\n got  %+v\n want %+v", i, got, want)
		}
	}

	wantTeams := []Team{
		{Name: "contractors", Settings: store.TeamSettings{ConditionalAccess: true, MaxAllowedSeverity: "high", ErrorsAsFailures: true, StaleAfter: 12 * time.Hour}, Pos: Pos{"testdata/good/fleet.yml", 33}},
		{Name: "engineering", Settings: store.TeamSettings{ConditionalAccess: true, MaxAllowedSeverity: "low", StaleAfter: 48 * time.Hour,
			RevokeSessions: true, RevokeSessionsMinSeverity: "critical"}, Pos: Pos{"testdata/good/teams.yml", 1}},
	}
	if !reflect.DeepEqual(tree.Teams, wantTeams) {
		t.Errorf("teams:\n got  %+v\n want %+v", tree.Teams, wantTeams)
	}

	if len(tree.Facts) != 3 {
		t.Fatalf("got %d facts, want 3: %+v", len(tree.Facts), tree.Facts)
	}
	if f := tree.Facts[1]; f.Name != "entra_device_id" || !reflect.DeepEqual(f.Platforms, []string{"windows"}) ||
		!strings.Contains(f.Query, `JoinInfo\%'`) {
		t.Errorf("windows fact = %+v", f)
	}
	if f := tree.Facts[2]; f.Name != "user_principal_name" || f.Platforms != nil || f.Description == "" {
		t.Errorf("upn fact = %+v", f)
	}
	if got := names(tree.FactsFor("windows")); !reflect.DeepEqual(got, []string{"entra_device_id", "user_principal_name"}) {
		t.Errorf("FactsFor(windows) = %v", got)
	}
	if got := names(tree.FactsFor("linux")); !reflect.DeepEqual(got, []string{"user_principal_name"}) {
		t.Errorf("FactsFor(linux) = %v", got)
	}

	wantWarn := []string{"testdata/good/fleet.yml:25: kind: query ignored: posture reads policy, team and fact documents"}
	if got := issueStrings(tree.Warnings); !reflect.DeepEqual(got, wantWarn) {
		t.Errorf("warnings:\n got  %q\n want %q", got, wantWarn)
	}
}

// TestLoadDirBadPack pins every error class to its exact file:line.
func TestLoadDirBadPack(t *testing.T) {
	_, err := LoadDir("testdata/bad")
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("LoadDir error = %v (%T), want Errors", err, err)
	}
	want := []string{
		`testdata/bad/facts.yml:1: invalid fact name "Entra-Device-ID": use lower case letters, digits and '_', starting with a letter`,
		`testdata/bad/facts.yml:6: duplicate fact "upn" for platform windows (first defined at testdata/bad/facts.yml:4)`,
		`testdata/bad/fleet.yml:10: unsupported apiVersion "v2" (want v1)`,
		`testdata/bad/fleet.yml:15: Fleet patch policies are not supported: posture runs dynamic (query) policies only`,
		`testdata/bad/fleet.yml:19: unknown kind "polciy" (want policy, team or fact)`,
		`testdata/bad/fleet.yml:26: this looks like a Fleet team document (spec.team); posture reads teams as kind: team with spec {name, settings}`,
		`testdata/bad/fleet.yml:36: unknown policy key severity_level`,
		`testdata/bad/fleet.yml:38: Fleet GitOps path: references are not followed; put the referenced file in the policy folder instead`,
		`testdata/bad/policies.yml:1: invalid id "Bad_ID": use lower case letters, digits, '-' and '_' (at most 128, starting with a letter or digit)`,
		`testdata/bad/policies.yml:11: duplicate policy id "dup" (first defined at testdata/bad/policies.yml:6)`,
		`testdata/bad/policies.yml:18: empty query`,
		`testdata/bad/policies.yml:23: query has 2 statements; a policy is exactly one SELECT`,
		// Line of DELETE inside the literal block, not of the query key.
		`testdata/bad/policies.yml:30: DELETE is not allowed: a policy query must be read-only`,
		// The Fleet document's derived id collides across files.
		`testdata/bad/policies.yml:34: duplicate policy id "pragma" (first defined at testdata/bad/fleet.yml:4)`,
		`testdata/bad/policies.yml:36: query starts with PRAGMA; only a read-only SELECT or WITH … SELECT is allowed`,
		`testdata/bad/policies.yml:39: policy has no name`,
		`testdata/bad/policies.yml:47: unknown policy key severety (did you mean severity?)`,
		`testdata/bad/policies.yml:52: invalid severity "urgent" (want low, medium, high or critical)`,
		`testdata/bad/policies.yml:53: unknown platform "macos" (want darwin, windows or linux)`,
		`testdata/bad/policies.yml:54: invalid grace_period: "soon": want a duration like 3d, 72h or 1d12h`,
		`testdata/bad/policies.yml:55: conditional_access must be true or false`,
		`testdata/bad/policies.yml:61: platform chrome (ChromeOS) is not supported: posture's extension runs on darwin, windows and linux`,
		`testdata/bad/policies.yml:67: critical: true contradicts severity: low`,
		`testdata/bad/policies.yml:71: duplicate key query (first at line 70)`,
		`testdata/bad/policies.yml:74: policy "No query" has no query`,
		`testdata/bad/policies.yml:80: unterminated string literal`,
		`testdata/bad/policies.yml:85: query starts with ATTACH; only a read-only SELECT or WITH … SELECT is allowed`,
		`testdata/bad/syntax.yml:2: invalid YAML: did not find expected ',' or ']'`,
		`testdata/bad/teams.yml:4: invalid max_allowed_severity "critical" (want low, medium or high; empty means any failure counts)`,
		`testdata/bad/teams.yml:5: invalid stale_after: "5 minutes": want a duration like 3d, 72h or 1d12h`,
		`testdata/bad/teams.yml:6: unknown team settings key owner`,
		`testdata/bad/teams.yml:7: duplicate team "engineering" (first defined at testdata/bad/teams.yml:1)`,
		`testdata/bad/teams.yml:10: team has no name`,
	}
	got := issueStrings(errs)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("errors:\n got:\n%s\n want:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if errs.Error() != strings.Join(want, "\n") {
		t.Errorf("Errors.Error() is not one issue per line:\n%s", errs.Error())
	}
}

func TestParseForms(t *testing.T) {
	tests := []struct {
		name, file, src string
		wantErrs        []string // exact issues; nil = no error
		check           func(t *testing.T, tr Tree)
	}{
		{
			name: "fleet numeric id is ignored and No team is the default team",
			file: "export.yml",
			src: "apiVersion: v1\nkind: policy\nspec:\n  id: 42\n  name: Screen lock\n  query: SELECT 1\n" +
				"  resolution: x\n  team: No team\n  author_name: Ann\n  passing_host_count: 3\n",
			check: func(t *testing.T, tr Tree) {
				p := tr.Policies[0]
				if p.ID != "screen-lock" || p.Team != store.DefaultTeam || p.Severity != DefaultSeverity {
					t.Errorf("policy = %+v", p)
				}
			},
		},
		{
			name: "fleet key renamed fleet is the team",
			file: "p.yml",
			src:  "- name: a\n  query: SELECT 1\n  resolution: x\n  severity: low\n  fleet: Workstations\n",
			check: func(t *testing.T, tr Tree) {
				if tr.Policies[0].Team != "Workstations" {
					t.Errorf("team = %q", tr.Policies[0].Team)
				}
				if got := issueStrings(tr.Warnings); len(got) != 1 || !strings.Contains(got[0], `p.yml:5: team "Workstations" is not declared`) {
					t.Errorf("warnings = %q", got)
				}
			},
		},
		{
			name: "aliases are followed",
			file: "p.yml",
			src:  "- id: a\n  name: A\n  query: &q SELECT 1 FROM users\n  resolution: &r Fix it.\n  severity: low\n- id: b\n  name: B\n  query: *q\n  resolution: *r\n  severity: low\n",
			check: func(t *testing.T, tr Tree) {
				if tr.Policies[1].Query != "SELECT 1 FROM users" || tr.Policies[1].Resolution != "Fix it." {
					t.Errorf("policy b = %+v", tr.Policies[1])
				}
			},
		},
		{
			name: "empty platform string means all, list form deduplicated and sorted",
			file: "p.yml",
			src: "- {id: a, name: A, query: SELECT 1, resolution: x, severity: low, platform: ''}\n" +
				"- {id: b, name: B, query: SELECT 1, resolution: x, severity: low, platform: [windows, linux, windows]}\n",
			check: func(t *testing.T, tr Tree) {
				if tr.Policies[0].Platforms != nil || !reflect.DeepEqual(tr.Policies[1].Platforms, []string{"linux", "windows"}) {
					t.Errorf("platforms = %v / %v", tr.Policies[0].Platforms, tr.Policies[1].Platforms)
				}
			},
		},
		{
			name:     "merge keys are refused",
			file:     "p.yml",
			src:      "- &base {id: a, name: A, query: SELECT 1, resolution: x, severity: low}\n- <<: *base\n  id: b\n",
			wantErrs: []string{"p.yml:2: YAML merge keys (<<) are not supported", `p.yml:2: policy has no name`, `p.yml:2: policy "" has no query`},
		},
		{
			name:     "single mapping policy",
			file:     "p.yml",
			src:      "name: A\nquery: SELECT 1\n",
			wantErrs: []string{`p.yml:1: a single policy must be a list item (start it with "- ") or a kind: policy document`},
		},
		{
			name:     "fleet gitops default.yml",
			file:     "default.yml",
			src:      "policies:\n  - path: lib/macos.yml\nqueries:\n",
			wantErrs: []string{"default.yml:1: this looks like a Fleet GitOps default.yml or team file; posture reads the policy lists themselves (e.g. Fleet's lib/ files) and teams from teams.yml"},
		},
		{
			name: "same name twice warns",
			file: "p.yml",
			src: "- {id: a, name: Same, query: SELECT 1, resolution: x, severity: low}\n" +
				"- {id: b, name: Same, query: SELECT 2, resolution: x, severity: low}\n",
			check: func(t *testing.T, tr Tree) {
				want := []string{`p.yml:2: policy "b" has the same name as the one at p.yml:1`}
				if got := issueStrings(tr.Warnings); !reflect.DeepEqual(got, want) || len(tr.Policies) != 2 {
					t.Errorf("warnings = %q, policies = %d", got, len(tr.Policies))
				}
			},
		},
		{
			name:     "scalar document",
			file:     "teams.yml",
			src:      "just text\n",
			wantErrs: []string{"teams.yml:1: expected a list of teams or an apiVersion/kind/spec document"},
		},
		{
			name:     "list of scalars",
			file:     "p.yml",
			src:      "- a\n- b\n",
			wantErrs: []string{"p.yml:1: expected a policy (a mapping), got a scalar", "p.yml:2: expected a policy (a mapping), got a scalar"},
		},
		{
			name:     "yaml error on the first line",
			file:     "p.yml",
			src:      "- a: b: c\n",
			wantErrs: []string{"p.yml:1: invalid YAML: mapping values are not allowed in this context"},
		},
		{
			name:     "wrong value types",
			file:     "p.yml",
			src:      "- id: a\n  name: [A]\n  query: {q: 1}\n  resolution: x\n  severity: low\n  conditional_access: 1\n",
			wantErrs: []string{"p.yml:1: policy has no name", "p.yml:2: name must be a string, got a list", "p.yml:3: query must be a string, got a mapping", "p.yml:6: conditional_access must be true or false"},
		},
		{
			name:     "conditional access flags contradict",
			file:     "p.yml",
			src:      "- {id: a, name: A, query: SELECT 1, resolution: x, severity: low, conditional_access: false, conditional_access_enabled: true}\n",
			wantErrs: []string{"p.yml:1: conditional_access_enabled: true contradicts conditional_access: false"},
		},
		{
			name:     "id not derivable",
			file:     "p.yml",
			src:      "- {name: '***', query: SELECT 1, resolution: x, severity: low}\n",
			wantErrs: []string{`p.yml:1: cannot derive an id from name "***"; set id`},
		},
		{
			name:     "team and fleet both set",
			file:     "p.yml",
			src:      "- {id: a, name: A, query: SELECT 1, resolution: x, severity: low, team: x, fleet: y}\n",
			wantErrs: []string{"p.yml:1: set team or fleet, not both"},
		},
		{
			name:     "negative grace period",
			file:     "p.yml",
			src:      "- {id: a, name: A, query: SELECT 1, resolution: x, severity: low, grace_period: -1h}\n",
			wantErrs: []string{`p.yml:1: invalid grace_period: "-1h": must not be negative`},
		},
		{
			name:     "document without kind or spec",
			file:     "p.yml",
			src:      "apiVersion: v1\n---\nkind: policy\n---\napiVersion: v1\nkind: fact\n",
			wantErrs: []string{"p.yml:1: document has apiVersion but no kind", "p.yml:3: missing apiVersion: v1", "p.yml:3: kind: policy document has no spec", "p.yml:5: kind: fact document has no spec"},
		},
		{
			name: "fact documents and empty documents",
			file: "p.yml",
			src:  "---\n---\napiVersion: v1\nkind: fact\nspec:\n  name: serial\n  query: SELECT hardware_serial FROM system_info\n",
			check: func(t *testing.T, tr Tree) {
				if len(tr.Facts) != 1 || tr.Facts[0].Name != "serial" {
					t.Errorf("facts = %+v", tr.Facts)
				}
				want := []string{
					`p.yml: no policies in this tree`,
					`p.yml:6: fact "serial" is not read by the hub (it reads entra_device_id, user_principal_name)`,
				}
				if got := issueStrings(tr.Warnings); !reflect.DeepEqual(got, want) {
					t.Errorf("warnings:\n got  %q\n want %q", got, want)
				}
			},
		},
		{
			name: "warnings for missing severity and resolution and ignored keys",
			file: "p.yml",
			src:  "- id: a\n  name: A\n  query: SELECT 1\n  labels_include_any: [laptops]\n  calendar_events_enabled: false\n",
			check: func(t *testing.T, tr Tree) {
				want := []string{
					`p.yml:1: policy "a" has no resolution: users whose device fails it get no instructions`,
					`p.yml:1: policy "a" sets no severity; using medium`,
					`p.yml:4: Fleet key labels_include_any is ignored by posture: the policy applies to every host of its platforms and team`,
				}
				if got := issueStrings(tr.Warnings); !reflect.DeepEqual(got, want) {
					t.Errorf("warnings:\n got  %q\n want %q", got, want)
				}
			},
		},
		{
			name: "team without settings warns",
			file: "teams.yml",
			src:  "- name: a\n- name: b\n  settings:\n    errors_as_failures: true\n",
			check: func(t *testing.T, tr Tree) {
				want := []string{
					`teams.yml: no policies in this tree`,
					`teams.yml:1: team "a" has no settings: conditional access is off for its hosts`,
					`teams.yml:3: team "b" does not set conditional_access: it is off, so its hosts always count as compliant`,
				}
				if got := issueStrings(tr.Warnings); !reflect.DeepEqual(got, want) {
					t.Errorf("warnings:\n got  %q\n want %q", got, want)
				}
				if len(tr.Teams) != 2 || !tr.Teams[1].Settings.ErrorsAsFailures {
					t.Errorf("teams = %+v", tr.Teams)
				}
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := Parse(tc.file, []byte(tc.src))
			if tc.wantErrs == nil {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				tc.check(t, tr)
				return
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error = %v, want Errors", err)
			}
			if got := issueStrings(errs); !reflect.DeepEqual(got, tc.wantErrs) {
				t.Errorf("errors:\n got  %q\n want %q", got, tc.wantErrs)
			}
		})
	}
}

// A query's problem is reported on its own line inside a literal block.
func TestQueryLineInLiteralBlock(t *testing.T) {
	src := "- id: a\n  name: A\n  resolution: x\n  severity: low\n  query: |\n\n    SELECT 1\n    FROM users;\n    SELECT 2\n"
	_, err := Parse("p.yml", []byte(src))
	if err == nil || err.Error() != "p.yml:9: query has 2 statements; a policy is exactly one SELECT" {
		t.Fatalf("error = %v", err)
	}
}

func TestLoadDirEmptyAndMissing(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "README.md"), []byte("# not yaml"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadDir(dir); err == nil || !strings.Contains(err.Error(), "no .yml or .yaml files") {
		t.Errorf("empty folder error = %v", err)
	}
	if _, err := LoadDir(filepath.Join(dir, "missing")); err == nil {
		t.Error("missing folder loaded without error")
	}
	if _, err := LoadFile(filepath.Join(dir, "missing.yml")); err == nil {
		t.Error("missing file loaded without error")
	}
}

func TestParseDuration(t *testing.T) {
	good := map[string]time.Duration{
		"3d": 72 * time.Hour, "1d12h": 36 * time.Hour, "72h": 72 * time.Hour,
		"90m": 90 * time.Minute, "0s": 0, " 2d ": 48 * time.Hour, "0d": 0,
	}
	for in, want := range good {
		if got, err := ParseDuration(in); err != nil || got != want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "3", "soon", "-1h", "1.5d", "d", "-2d", "3d-1h", "1d2d"} {
		if got, err := ParseDuration(in); err == nil {
			t.Errorf("ParseDuration(%q) = %v, want an error", in, got)
		}
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{
		"macOS - Disk encryption enabled": "macos-disk-encryption-enabled",
		"  Linux & macOS: SSH (v2)  ":     "linux-macos-ssh-v2",
		"Ünïcödé":                         "n-c-d",
		"***":                             "",
		strings.Repeat("ab-", 60):         strings.TrimRight(strings.Repeat("ab-", 60)[:128], "-"),
	} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
		if got := slug(in); got != "" && !idRe.MatchString(got) {
			t.Errorf("slug(%q) = %q is not a valid id", in, got)
		}
	}
}

func issueStrings(is []Issue) []string {
	out := make([]string, len(is))
	for i, x := range is {
		out[i] = x.String()
	}
	return out
}

func names(fs []Fact) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Name)
	}
	return out
}

// FuzzParse: any input yields a tree or Errors, never a panic, and every
// issue names the file.
func FuzzParse(f *testing.F) {
	// Small seeds: the mutator crawls on kilobyte-sized ones.
	for _, s := range []string{
		"- {id: a, name: A, query: SELECT 1, severity: low, platform: darwin}\n",
		"apiVersion: v1\nkind: policy\nspec:\n  name: A\n  query: SELECT 1\n  critical: true\n---\n- x\n",
		"- name: t\n  settings: {conditional_access: true, stale_after: 1d}\n",
		"apiVersion: v1\nkind: fact\nspec: {name: entra_device_id, query: SELECT 1}\n",
		"- &a {id: x, name: *a}\n",
		"- query: |\n    SELECT 1;\n    DELETE\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		tr, err := Parse("f.yml", []byte(src))
		var errs Errors
		if err != nil && !errors.As(err, &errs) {
			t.Fatalf("error of type %T: %v", err, err)
		}
		for _, is := range append(errs, tr.Warnings...) {
			if is.Pos.File != "f.yml" || is.Pos.Line < 0 {
				t.Fatalf("issue without position: %+v", is)
			}
		}
		if err == nil {
			for _, p := range tr.Policies {
				if !idRe.MatchString(p.ID) || CheckQuery(p.Query) != nil {
					t.Fatalf("invalid policy accepted: %+v", p)
				}
			}
		}
	})
}
