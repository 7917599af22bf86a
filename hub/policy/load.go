package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/posture-dev/posture/hub/store"
	"gopkg.in/yaml.v3"
)

// Policy is a policy as written in the tree.
type Policy struct {
	ID                string
	Name              string
	Query             string
	Description       string
	Resolution        string
	Platforms         []string // sorted; empty = all
	Severity          string
	ConditionalAccess bool
	GracePeriod       time.Duration
	Team              string
	Pos               Pos
}

// Team is a team with its settings as written in the tree.
type Team struct {
	Name     string
	Settings store.TeamSettings
	Pos      Pos
}

// Fact is a fact query: the first column of its first row is the value
// (e.g. the host's Entra device id).
type Fact struct {
	Name        string
	Platforms   []string // sorted; empty = all
	Query       string
	Description string
	Pos         Pos
}

// Tree is everything loaded from a policy folder, in file order.
type Tree struct {
	Policies []Policy
	Teams    []Team
	Facts    []Fact
	Files    []string
	Warnings []Issue
}

// DefaultSeverity is used when a policy sets neither severity nor critical.
const DefaultSeverity = "medium"

// KnownFacts are the fact names the hub reads from a host's FactReport.
var KnownFacts = []string{"entra_device_id", "user_principal_name"}

// Platforms posture runs on.
var knownPlatforms = map[string]bool{"darwin": true, "windows": true, "linux": true}

var (
	idRe       = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,127}$`)
	factNameRe = regexp.MustCompile(`^[a-z][a-z0-9_]{0,63}$`)
	yamlLineRe = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// Keys a policy may have. posture's own keys are acted on; of Fleet's, some
// map onto posture's and the rest are accepted and ignored (see doc.go).
var (
	postureKeys = set("id", "name", "query", "description", "resolution", "severity",
		"platform", "conditional_access", "grace_period", "team")
	// Fleet keys with a posture meaning.
	fleetMappedKeys = set("critical", "conditional_access_enabled", "fleet")
	// Fleet keys posture does not act on: automations, label scoping and
	// the read-only fields `fleetctl get policies` prints.
	fleetIgnoredKeys = set("calendar_events_enabled", "software_title_id", "script_id",
		"labels_include_any", "labels_include_all", "labels_exclude_any", "labels_exclude_all",
		"continuous_automations_enabled", "type", "fleet_maintained_app_slug",
		"run_script", "install_software", "patch_software",
		"author_id", "author_name", "author_email", "team_id", "fleet_id",
		"passing_host_count", "failing_host_count", "host_count_updated_at",
		"created_at", "updated_at", "query_id", "report_id")
	teamKeys         = set("name", "settings")
	teamSettingsKeys = set("conditional_access", "max_allowed_severity", "errors_as_failures", "stale_after",
		"revoke_sessions", "revoke_sessions_min_severity", "missed_reports")
	factKeys = set("name", "platform", "query", "description")
	docKeys  = set("apiVersion", "kind", "spec")
	// Fleet document kinds that carry nothing posture uses.
	fleetOtherKinds = set("query", "pack", "label", "config", "enroll_secret", "user_roles", "software")
)

func set(ks ...string) map[string]bool {
	m := make(map[string]bool, len(ks))
	for _, k := range ks {
		m[k] = true
	}
	return m
}

// LoadDir reads every .yml/.yaml file under dir (recursively, in sorted
// path order, skipping hidden files and folders) into one tree. On lint
// errors it returns the tree loaded so far and an Errors with every
// problem found.
func LoadDir(dir string) (Tree, error) {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.IsDir() && isYAML(p) {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return Tree{}, fmt.Errorf("read policy folder: %w", err)
	}
	if len(paths) == 0 {
		return Tree{}, fmt.Errorf("no .yml or .yaml files under %s", dir)
	}
	sort.Strings(paths)
	l := newLoader()
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			return Tree{}, fmt.Errorf("read policy file: %w", err)
		}
		l.file(p, data)
	}
	return l.finish()
}

// LoadFile reads one policy file.
func LoadFile(path string) (Tree, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Tree{}, fmt.Errorf("read policy file: %w", err)
	}
	return Parse(path, data)
}

// Parse loads one file's content; name is used in messages and decides,
// by its base name, whether a plain list holds policies, teams or facts.
func Parse(name string, data []byte) (Tree, error) {
	l := newLoader()
	l.file(name, data)
	return l.finish()
}

func isYAML(p string) bool {
	ext := strings.ToLower(filepath.Ext(p))
	return ext == ".yml" || ext == ".yaml"
}

// listKind says what a plain YAML list in the file holds.
func listKind(path string) string {
	base := strings.ToLower(filepath.Base(path))
	base = strings.TrimSuffix(strings.TrimSuffix(base, ".yml"), ".yaml")
	switch base {
	case "teams":
		return "team"
	case "facts":
		return "fact"
	}
	return "policy"
}

type loader struct {
	tree      Tree
	errs      Errors
	policyIDs map[string]Pos
	names     map[string]Pos // policy name -> first definition
	teamNames map[string]Pos
	factSeen  map[string]Pos // name + "\x00" + platform
	teamRefs  []teamRef
}

type teamRef struct {
	team string
	pos  Pos
}

func newLoader() *loader {
	return &loader{
		policyIDs: map[string]Pos{},
		names:     map[string]Pos{},
		teamNames: map[string]Pos{},
		factSeen:  map[string]Pos{},
	}
}

func (l *loader) errorf(file string, n *yaml.Node, format string, args ...any) {
	l.errs = append(l.errs, Issue{Pos: pos(file, n), Msg: fmt.Sprintf(format, args...)})
}

func (l *loader) warnf(file string, n *yaml.Node, format string, args ...any) {
	l.tree.Warnings = append(l.tree.Warnings, Issue{Pos: pos(file, n), Msg: fmt.Sprintf(format, args...)})
}

func pos(file string, n *yaml.Node) Pos {
	if n == nil {
		return Pos{File: file}
	}
	return Pos{File: file, Line: n.Line}
}

func (l *loader) finish() (Tree, error) {
	for _, r := range l.teamRefs {
		if _, ok := l.teamNames[r.team]; !ok && r.team != store.DefaultTeam {
			l.tree.Warnings = append(l.tree.Warnings, Issue{Pos: r.pos,
				Msg: fmt.Sprintf("team %q is not declared in this tree; it gets default settings unless it already exists on the hub", r.team)})
		}
	}
	if len(l.errs) == 0 && len(l.tree.Policies) == 0 && len(l.tree.Files) > 0 {
		l.tree.Warnings = append(l.tree.Warnings, Issue{Pos: Pos{File: l.tree.Files[0]}, Msg: "no policies in this tree"})
	}
	sortIssues(l.tree.Warnings)
	if len(l.errs) > 0 {
		sortIssues(l.errs)
		return l.tree, l.errs
	}
	return l.tree, nil
}

// file parses every YAML document of one file.
func (l *loader) file(path string, data []byte) {
	l.tree.Files = append(l.tree.Files, path)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			l.yamlError(path, err)
			return // the decoder cannot resync after a syntax error
		}
		if len(doc.Content) == 0 {
			continue
		}
		root := resolve(doc.Content[0])
		switch {
		case isNull(root):
			continue
		case root.Kind == yaml.SequenceNode:
			kind := listKind(path)
			for _, item := range root.Content {
				l.item(path, kind, resolve(item), false)
			}
		case root.Kind == yaml.MappingNode && (hasKey(root, "kind") || hasKey(root, "apiVersion")):
			l.document(path, root)
		case root.Kind == yaml.MappingNode && hasKey(root, "policies"):
			l.errorf(path, root, "this looks like a Fleet GitOps default.yml or team file; posture reads the policy lists themselves (e.g. Fleet's lib/ files) and teams from teams.yml")
		case root.Kind == yaml.MappingNode && hasKey(root, "query"):
			l.errorf(path, root, "a single policy must be a list item (start it with \"- \") or a kind: policy document")
		default:
			l.errorf(path, root, "expected a list of %ss or an apiVersion/kind/spec document", listKind(path))
		}
	}
}

// yamlError turns a yaml.v3 error ("yaml: line 3: …") into file:line form.
func (l *loader) yamlError(path string, err error) {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	// yaml.v3 reports the line where the broken construct started, and
	// leaves the line out when that is the first one.
	line := 1
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	l.errs = append(l.errs, Issue{Pos: Pos{File: path, Line: line}, Msg: "invalid YAML: " + msg})
}

// document handles an apiVersion/kind/spec document (Fleet's form, also
// used by posture for teams and facts).
func (l *loader) document(path string, root *yaml.Node) {
	kv, ok := l.fields(path, root, docKeys, "document")
	if !ok {
		return
	}
	kindF, hasKind := kv["kind"]
	if !hasKind {
		l.errorf(path, root, "document has apiVersion but no kind")
		return
	}
	kind, ok := l.str(path, kindF)
	if !ok {
		return
	}
	if av, ok := kv["apiVersion"]; !ok {
		l.errorf(path, root, "missing apiVersion: v1")
	} else if v, ok := l.str(path, av); ok && v != "v1" {
		l.errorf(path, av.val, "unsupported apiVersion %q (want v1)", v)
	}
	switch kind {
	case "policy", "team", "fact":
	default:
		if fleetOtherKinds[kind] {
			l.warnf(path, kindF.val, "kind: %s ignored: posture reads policy, team and fact documents", kind)
		} else {
			l.errorf(path, kindF.val, "unknown kind %q (want policy, team or fact)", kind)
		}
		return
	}
	spec, ok := kv["spec"]
	if !ok {
		l.errorf(path, root, "kind: %s document has no spec", kind)
		return
	}
	if spec.val.Kind != yaml.MappingNode {
		l.errorf(path, spec.val, "spec must be a mapping")
		return
	}
	if kind == "team" && hasKey(spec.val, "team") {
		l.errorf(path, spec.val, "this looks like a Fleet team document (spec.team); posture reads teams as kind: team with spec {name, settings}")
		return
	}
	l.item(path, kind, spec.val, true)
}

// item handles one policy, team or fact mapping.
func (l *loader) item(path, kind string, n *yaml.Node, fromDoc bool) {
	if n.Kind != yaml.MappingNode {
		l.errorf(path, n, "expected a %s (a mapping), got %s", kind, nodeKind(n))
		return
	}
	switch kind {
	case "policy":
		l.policy(path, n, fromDoc)
	case "team":
		l.team(path, n)
	case "fact":
		l.fact(path, n)
	}
}

func (l *loader) policy(path string, n *yaml.Node, fromDoc bool) {
	if f, ok := mapGet(n, "path"); ok {
		l.errorf(path, f.key, "Fleet GitOps path: references are not followed; put the referenced file in the policy folder instead")
		return
	}
	allowed := make(map[string]bool, len(postureKeys)+len(fleetMappedKeys)+len(fleetIgnoredKeys))
	for _, s := range []map[string]bool{postureKeys, fleetMappedKeys, fleetIgnoredKeys} {
		for k := range s {
			allowed[k] = true
		}
	}
	kv, ok := l.fields(path, n, allowed, "policy")
	nErr := len(l.errs)
	p := Policy{Pos: pos(path, n)}
	if f, ok := kv["name"]; ok {
		p.Name, _ = l.str(path, f)
		p.Name = strings.TrimSpace(p.Name)
	}
	if p.Name == "" {
		l.errorf(path, n, "policy has no name")
	}
	// id: explicit slug, else derived from the name. Fleet's exported
	// numeric ids (fleetctl get policies) are database ids, not slugs.
	idNode := n
	if f, ok := kv["id"]; ok && !(fromDoc && f.val.Tag == "!!int") {
		idNode = f.val
		if id, ok := l.str(path, f); ok {
			if !idRe.MatchString(id) {
				l.errorf(path, f.val, "invalid id %q: use lower case letters, digits, '-' and '_' (at most 128, starting with a letter or digit)", id)
			}
			p.ID = id
		}
	} else if p.Name != "" {
		p.ID = slug(p.Name)
		if p.ID == "" {
			l.errorf(path, n, "cannot derive an id from name %q; set id", p.Name)
		}
	}
	if f, ok := kv["query"]; ok {
		if q, ok := l.str(path, f); ok {
			// Surrounding blanks never change what a query does; trimming
			// them keeps "|" vs "|-" from bumping the revision.
			p.Query = strings.TrimSpace(q)
			l.checkSQL(path, f.val, q)
		}
	} else {
		l.errorf(path, n, "policy %q has no query", p.Name)
	}
	if f, ok := kv["description"]; ok {
		p.Description, _ = l.str(path, f)
		p.Description = strings.TrimRight(p.Description, " \t\r\n")
	}
	if f, ok := kv["resolution"]; ok {
		p.Resolution, _ = l.str(path, f)
		p.Resolution = strings.TrimRight(p.Resolution, " \t\r\n")
	}
	if strings.TrimSpace(p.Resolution) == "" {
		l.warnf(path, n, "policy %q has no resolution: users whose device fails it get no instructions", p.ID)
	}
	if f, ok := kv["platform"]; ok {
		p.Platforms = l.platforms(path, f)
	}

	// severity, or Fleet's critical flag.
	sevF, hasSev := kv["severity"]
	if hasSev {
		if s, ok := l.str(path, sevF); ok {
			s = strings.ToLower(strings.TrimSpace(s))
			switch s {
			case "low", "medium", "high", "critical":
				p.Severity = s
			default:
				l.errorf(path, sevF.val, "invalid severity %q (want low, medium, high or critical)", s)
			}
		}
	}
	if f, ok := kv["critical"]; ok {
		if crit, ok := l.boolean(path, f); ok && crit {
			if hasSev && p.Severity != "" && p.Severity != "critical" {
				l.errorf(path, f.key, "critical: true contradicts severity: %s", p.Severity)
			}
			p.Severity = "critical"
		}
	} else if !hasSev {
		l.warnf(path, n, "policy %q sets no severity; using %s", p.ID, DefaultSeverity)
	}
	if p.Severity == "" {
		p.Severity = DefaultSeverity
	}

	// conditional_access, or Fleet's conditional_access_enabled.
	caF, hasCA := kv["conditional_access"]
	if hasCA {
		p.ConditionalAccess, _ = l.boolean(path, caF)
	}
	if f, ok := kv["conditional_access_enabled"]; ok {
		if v, ok := l.boolean(path, f); ok {
			if hasCA && v != p.ConditionalAccess {
				l.errorf(path, f.key, "conditional_access_enabled: %t contradicts conditional_access: %t", v, p.ConditionalAccess)
			}
			p.ConditionalAccess = p.ConditionalAccess || v
		}
	}
	if f, ok := kv["grace_period"]; ok {
		if s, ok := l.str(path, f); ok {
			d, err := ParseDuration(s)
			if err != nil {
				l.errorf(path, f.val, "invalid grace_period: %v", err)
			}
			p.GracePeriod = d
		}
	}

	// team, or Fleet's newer name for it.
	teamF, hasTeam := kv["team"]
	if f, ok := kv["fleet"]; ok {
		if hasTeam {
			l.errorf(path, f.key, "set team or fleet, not both")
		}
		teamF, hasTeam = f, true
	}
	if hasTeam {
		if t, ok := l.str(path, teamF); ok {
			t = strings.TrimSpace(t)
			if t == "No team" {
				// Fleet's "No team" holds hosts without a team: posture's default team.
				t = store.DefaultTeam
			}
			if t != "" && l.checkTeamName(path, teamF.val, t) {
				p.Team = t
				l.teamRefs = append(l.teamRefs, teamRef{t, pos(path, teamF.val)})
			}
		}
	}

	if f, ok := kv["type"]; ok {
		if t, ok := l.str(path, f); ok && t != "" && t != "dynamic" {
			l.errorf(path, f.val, "Fleet %s policies are not supported: posture runs dynamic (query) policies only", t)
		}
	}
	for _, k := range sortedKeys(kv) {
		f := kv[k]
		if fleetIgnoredKeys[k] && k != "type" && !isZero(f.val) && !strings.HasSuffix(k, "_count") &&
			!strings.HasPrefix(k, "author_") && !strings.HasSuffix(k, "_at") {
			l.warnf(path, f.key, "Fleet key %s is ignored by posture%s", k, ignoredWhy(k))
		}
	}

	if !ok || len(l.errs) > nErr {
		// Keep the tree to what is valid; the duplicate check still needs
		// the id so one typo does not also report a phantom duplicate.
		if p.ID != "" {
			l.claimID(path, idNode, p.ID)
		}
		return
	}
	if l.claimID(path, idNode, p.ID) {
		// Fleet identifies policies by name and users see names: two
		// policies sharing one are legal here but confusing.
		if first, dup := l.names[p.Name]; dup {
			l.warnf(path, n, "policy %q has the same name as the one at %s", p.ID, first)
		} else {
			l.names[p.Name] = p.Pos
		}
		l.tree.Policies = append(l.tree.Policies, p)
	}
}

// ignoredWhy says what ignoring a Fleet key means where it changes scope.
func ignoredWhy(key string) string {
	switch {
	case strings.HasPrefix(key, "labels_"):
		return ": the policy applies to every host of its platforms and team"
	case key == "team_id" || key == "fleet_id":
		return ": name the team with team: (without it the policy applies to every team)"
	}
	return ""
}

// claimID records a policy id, reporting a duplicate.
func (l *loader) claimID(path string, n *yaml.Node, id string) bool {
	if first, dup := l.policyIDs[id]; dup {
		l.errorf(path, n, "duplicate policy id %q (first defined at %s)", id, first)
		return false
	}
	l.policyIDs[id] = pos(path, n)
	return true
}

func (l *loader) team(path string, n *yaml.Node) {
	kv, ok := l.fields(path, n, teamKeys, "team")
	nErr := len(l.errs)
	t := Team{Pos: pos(path, n)}
	nameNode := n
	if f, ok := kv["name"]; ok {
		nameNode = f.val
		t.Name, _ = l.str(path, f)
		t.Name = strings.TrimSpace(t.Name)
	}
	if t.Name == "" {
		l.errorf(path, n, "team has no name")
	} else {
		l.checkTeamName(path, nameNode, t.Name)
	}
	sf, hasSettings := kv["settings"]
	if !hasSettings {
		l.warnf(path, n, "team %q has no settings: conditional access is off for its hosts", t.Name)
	} else if sf.val.Kind != yaml.MappingNode {
		if !isNull(sf.val) {
			l.errorf(path, sf.val, "settings must be a mapping")
		}
	} else {
		ss, _ := l.fields(path, sf.val, teamSettingsKeys, "team settings")
		if f, ok := ss["conditional_access"]; ok {
			t.Settings.ConditionalAccess, _ = l.boolean(path, f)
		} else {
			l.warnf(path, sf.key, "team %q does not set conditional_access: it is off, so its hosts always count as compliant", t.Name)
		}
		if f, ok := ss["max_allowed_severity"]; ok {
			if s, ok := l.str(path, f); ok {
				s = strings.ToLower(strings.TrimSpace(s))
				switch s {
				case "", "low", "medium", "high":
					t.Settings.MaxAllowedSeverity = s
				default:
					l.errorf(path, f.val, "invalid max_allowed_severity %q (want low, medium or high; empty means any failure counts)", s)
				}
			}
		}
		if f, ok := ss["errors_as_failures"]; ok {
			t.Settings.ErrorsAsFailures, _ = l.boolean(path, f)
		}
		if f, ok := ss["revoke_sessions"]; ok {
			t.Settings.RevokeSessions, _ = l.boolean(path, f)
		}
		if f, ok := ss["revoke_sessions_min_severity"]; ok {
			if s, ok := l.str(path, f); ok {
				s = strings.ToLower(strings.TrimSpace(s))
				switch s {
				case "", "low", "medium", "high", "critical":
					t.Settings.RevokeSessionsMinSeverity = s
				default:
					l.errorf(path, f.val, "invalid revoke_sessions_min_severity %q (want low, medium, high or critical; empty means high)", s)
				}
			}
		}
		if f, ok := ss["stale_after"]; ok {
			if s, ok := l.str(path, f); ok {
				d, err := ParseDuration(s)
				if err != nil {
					l.errorf(path, f.val, "invalid stale_after: %v", err)
				}
				t.Settings.StaleAfter = d
			}
		}
		if f, ok := ss["missed_reports"]; ok {
			n, err := strconv.Atoi(f.val.Value)
			if f.val.Kind != yaml.ScalarNode || f.val.Tag != "!!int" || err != nil || n < 0 || n > 1000 {
				l.errorf(path, f.val, "missed_reports must be a whole number from 0 to 1000 (0 = hub default, 3)")
			} else {
				t.Settings.MissedReports = n
			}
		}
	}
	if t.Name == "" {
		return
	}
	if first, dup := l.teamNames[t.Name]; dup {
		l.errorf(path, nameNode, "duplicate team %q (first defined at %s)", t.Name, first)
		return
	}
	l.teamNames[t.Name] = pos(path, nameNode)
	if ok && len(l.errs) == nErr {
		l.tree.Teams = append(l.tree.Teams, t)
	}
}

func (l *loader) fact(path string, n *yaml.Node) {
	kv, ok := l.fields(path, n, factKeys, "fact")
	nErr := len(l.errs)
	f := Fact{Pos: pos(path, n)}
	nameNode := n
	if nf, ok := kv["name"]; ok {
		nameNode = nf.val
		f.Name, _ = l.str(path, nf)
		if f.Name != "" && !factNameRe.MatchString(f.Name) {
			l.errorf(path, nf.val, "invalid fact name %q: use lower case letters, digits and '_', starting with a letter", f.Name)
		}
	}
	if f.Name == "" {
		l.errorf(path, n, "fact has no name")
	} else if factNameRe.MatchString(f.Name) && !slices.Contains(KnownFacts, f.Name) {
		l.warnf(path, nameNode, "fact %q is not read by the hub (it reads %s)", f.Name, strings.Join(KnownFacts, ", "))
	}
	if qf, ok := kv["query"]; ok {
		if q, ok := l.str(path, qf); ok {
			f.Query = strings.TrimSpace(q)
			l.checkSQL(path, qf.val, q)
		}
	} else {
		l.errorf(path, n, "fact %q has no query", f.Name)
	}
	if pf, ok := kv["platform"]; ok {
		f.Platforms = l.platforms(path, pf)
	}
	if df, ok := kv["description"]; ok {
		f.Description, _ = l.str(path, df)
	}
	if f.Name == "" {
		return
	}
	// One query per fact and platform: the host must know which answer is
	// the fact.
	plats := f.Platforms
	if len(plats) == 0 {
		plats = []string{"darwin", "linux", "windows"}
	}
	for _, pl := range plats {
		key := f.Name + "\x00" + pl
		if first, dup := l.factSeen[key]; dup {
			l.errorf(path, nameNode, "duplicate fact %q for platform %s (first defined at %s)", f.Name, pl, first)
			return
		}
	}
	for _, pl := range plats {
		l.factSeen[f.Name+"\x00"+pl] = pos(path, nameNode)
	}
	if ok && len(l.errs) == nErr {
		l.tree.Facts = append(l.tree.Facts, f)
	}
}

// checkSQL lints a query and reports the line of the problem: for a
// literal block (|) the exact line inside it, else the value's line.
func (l *loader) checkSQL(path string, val *yaml.Node, q string) {
	if _, err := checkQuery(q); err != nil {
		line := val.Line
		if val.Style&yaml.LiteralStyle != 0 && err.off > 0 {
			off := min(err.off, len(q))
			line = val.Line + 1 + strings.Count(q[:off], "\n")
		}
		l.errs = append(l.errs, Issue{Pos: Pos{File: path, Line: line}, Msg: err.msg})
	}
}

func (l *loader) checkTeamName(path string, n *yaml.Node, name string) bool {
	if err := teamNameErr(name); err != "" {
		l.errorf(path, n, "team name %q %s", name, err)
		return false
	}
	return true
}

// platforms reads Fleet's platform key: a comma-separated string or a list.
func (l *loader) platforms(path string, f field) []string {
	var raw []struct {
		v string
		n *yaml.Node
	}
	switch f.val.Kind {
	case yaml.ScalarNode:
		if isNull(f.val) {
			return nil
		}
		for _, s := range strings.Split(f.val.Value, ",") {
			raw = append(raw, struct {
				v string
				n *yaml.Node
			}{s, f.val})
		}
	case yaml.SequenceNode:
		for _, it := range f.val.Content {
			it = resolve(it)
			if it.Kind != yaml.ScalarNode {
				l.errorf(path, it, "platform list items must be strings")
				continue
			}
			raw = append(raw, struct {
				v string
				n *yaml.Node
			}{it.Value, it})
		}
	default:
		l.errorf(path, f.val, "platform must be a comma-separated string or a list")
		return nil
	}
	seen := map[string]bool{}
	var out []string
	for _, r := range raw {
		p := strings.ToLower(strings.TrimSpace(r.v))
		switch {
		case p == "" && f.val.Kind == yaml.ScalarNode:
			continue // "darwin," or "" (all platforms) as Fleet allows
		case p == "chrome":
			l.errorf(path, r.n, "platform chrome (ChromeOS) is not supported: posture's extension runs on darwin, windows and linux")
			continue
		case !knownPlatforms[p]:
			l.errorf(path, r.n, "unknown platform %q (want darwin, windows or linux)", r.v)
			continue
		}
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}

// field is one key/value pair of a mapping.
type field struct {
	key, val *yaml.Node
}

// fields reads a mapping, reporting unknown and duplicate keys. ok is false
// when a key was rejected.
func (l *loader) fields(path string, n *yaml.Node, allowed map[string]bool, what string) (map[string]field, bool) {
	out := map[string]field{}
	ok := true
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], resolve(n.Content[i+1])
		if k.Kind != yaml.ScalarNode {
			l.errorf(path, k, "%s keys must be strings", what)
			ok = false
			continue
		}
		if k.Value == "<<" {
			l.errorf(path, k, "YAML merge keys (<<) are not supported")
			ok = false
			continue
		}
		if prev, dup := out[k.Value]; dup {
			l.errorf(path, k, "duplicate key %s (first at line %d)", k.Value, prev.key.Line)
			ok = false
			continue
		}
		if !allowed[k.Value] {
			l.errorf(path, k, "unknown %s key %s%s", what, k.Value, suggest(k.Value, allowed))
			ok = false
			continue
		}
		out[k.Value] = field{k, v}
	}
	return out, ok
}

// str reads a scalar as a string; null is "".
func (l *loader) str(path string, f field) (string, bool) {
	if f.val.Kind != yaml.ScalarNode {
		l.errorf(path, f.val, "%s must be a string, got %s", f.key.Value, nodeKind(f.val))
		return "", false
	}
	if isNull(f.val) {
		return "", true
	}
	return f.val.Value, true
}

func (l *loader) boolean(path string, f field) (bool, bool) {
	if f.val.Kind != yaml.ScalarNode || f.val.Tag != "!!bool" {
		l.errorf(path, f.val, "%s must be true or false", f.key.Value)
		return false, false
	}
	b, err := strconv.ParseBool(strings.ToLower(f.val.Value))
	if err != nil {
		l.errorf(path, f.val, "%s must be true or false", f.key.Value)
		return false, false
	}
	return b, true
}

func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// isZero reports whether a value is empty, false, 0 or null: a Fleet key
// left at its default says nothing posture would ignore.
func isZero(n *yaml.Node) bool {
	switch n.Kind {
	case yaml.ScalarNode:
		switch n.Tag {
		case "!!null":
			return true
		case "!!bool":
			return strings.EqualFold(n.Value, "false")
		case "!!int":
			return n.Value == "0"
		}
		return n.Value == ""
	case yaml.SequenceNode, yaml.MappingNode:
		return len(n.Content) == 0
	}
	return false
}

func nodeKind(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "null"
		}
		return "a scalar"
	}
	return "something else"
}

func hasKey(m *yaml.Node, key string) bool {
	_, ok := mapGet(m, key)
	return ok
}

func mapGet(m *yaml.Node, key string) (field, bool) {
	if m.Kind != yaml.MappingNode {
		return field{}, false
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Kind == yaml.ScalarNode && m.Content[i].Value == key {
			return field{m.Content[i], resolve(m.Content[i+1])}, true
		}
	}
	return field{}, false
}

func sortedKeys(m map[string]field) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// slug derives a policy id from a name: "macOS - Disk encryption" becomes
// "macos-disk-encryption". Non-ASCII letters are dropped.
func slug(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		switch {
		case (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9'):
			if dash && b.Len() > 0 {
				b.WriteByte('-')
			}
			dash = false
			b.WriteRune(r)
		default:
			dash = true
		}
	}
	s := b.String()
	if len(s) > 128 {
		s = strings.TrimRight(s[:128], "-")
	}
	return s
}

// ParseDuration reads a Go duration ("72h", "90m") with an optional leading
// whole number of days ("3d", "1d12h"). Negative durations are refused.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("empty duration")
	}
	var days time.Duration
	if i := strings.IndexByte(s, 'd'); i > 0 {
		n, err := strconv.ParseUint(s[:i], 10, 16)
		if err != nil {
			return 0, fmt.Errorf("%q: days must be a whole number, e.g. 3d or 1d12h", s)
		}
		days = time.Duration(n) * 24 * time.Hour
		s = s[i+1:]
		if s == "" {
			return days, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q: want a duration like 3d, 72h or 1d12h", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q: must not be negative", s)
	}
	return days + d, nil
}

// suggest returns " (did you mean x?)" for the allowed key closest to a
// typo, if one is close enough.
func suggest(key string, allowed map[string]bool) string {
	best, bestD := "", 3
	for _, k := range sortedSet(allowed) {
		if d := editDistance(key, k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %s?)", best)
}

func sortedSet(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// editDistance is the Levenshtein distance between two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
