package policy

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
)

// This file checks shipped policy and fact queries against osquery's own
// table specs (../shared/osquery-schema, generated from osquery's specs/):
// a query that names a table or column osquery does not have on the
// policy's platform fails on every real host, whatever the stand-in says.

// osquerySchema is platform → table → column names (hidden columns and
// column aliases included: osquery accepts them when named).
type osquerySchema map[string]map[string]map[string]bool

// schemaDir finds ../shared/osquery-schema beside the repository (the
// module root is the nearest directory above the test with a go.mod), or
// the directory POSTURE_OSQUERY_SCHEMA names (e.g. from a git worktree
// that lives elsewhere).
func schemaDir(t *testing.T) string {
	t.Helper()
	if d := os.Getenv("POSTURE_OSQUERY_SCHEMA"); d != "" {
		if _, err := os.Stat(filepath.Join(d, "darwin.json")); err != nil {
			t.Fatalf("schema check: POSTURE_OSQUERY_SCHEMA=%s: %v", d, err)
		}
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			break
		}
		up := filepath.Dir(dir)
		if up == dir {
			t.Fatal("schema check: no go.mod above the test directory")
		}
		dir = up
	}
	sd := filepath.Join(dir, "..", "shared", "osquery-schema")
	if _, err := os.Stat(filepath.Join(sd, "darwin.json")); err != nil {
		t.Fatalf("schema check: osquery table specs missing: want %s/{darwin,linux,windows}.json beside the repository (../shared/osquery-schema from the repo root), or set POSTURE_OSQUERY_SCHEMA: %v", sd, err)
	}
	return sd
}

func loadOsquerySchema(t *testing.T) osquerySchema {
	t.Helper()
	dir := schemaDir(t)
	out := osquerySchema{}
	for _, pl := range []string{"darwin", "linux", "windows"} {
		data, err := os.ReadFile(filepath.Join(dir, pl+".json"))
		if err != nil {
			t.Fatalf("schema check: %v", err)
		}
		var doc struct {
			Platform string `json:"platform"`
			Tables   []struct {
				Name    string `json:"name"`
				Columns []struct {
					Name    string   `json:"name"`
					Aliases []string `json:"aliases"`
				} `json:"columns"`
			} `json:"tables"`
		}
		if err := json.Unmarshal(data, &doc); err != nil {
			t.Fatalf("schema check: %s.json: %v", pl, err)
		}
		if doc.Platform != pl || len(doc.Tables) == 0 {
			t.Fatalf("schema check: %s.json: platform %q with %d tables", pl, doc.Platform, len(doc.Tables))
		}
		tables := map[string]map[string]bool{}
		for _, tb := range doc.Tables {
			cols := map[string]bool{}
			for _, c := range tb.Columns {
				cols[strings.ToLower(c.Name)] = true
				for _, a := range c.Aliases {
					cols[strings.ToLower(a)] = true
				}
			}
			tables[strings.ToLower(tb.Name)] = cols
		}
		out[pl] = tables
	}
	return out
}

// ---- a small SELECT scope extractor ---------------------------------------

// colRef is a column named in a query, qualified ("m.path") or not.
type colRef struct {
	qual, name string
	off        int
}

// fromItem is one table or derived table in a FROM clause.
type fromItem struct {
	name, alias string
	off         int
	derived     []*scope // the SELECT cores of a (subquery); nil for a table
}

// scope is one SELECT core: the tables it reads and the columns it names.
type scope struct {
	parent   *scope
	from     []fromItem
	refs     []colRef
	result   []string // output names ("" where unknown, "*" for SELECT *)
	children [][]*scope
}

type extractor struct {
	toks    []token
	i       int
	aliases map[string]bool // every AS alias and output name in the query
}

// sqlKeywords are the words that are never column names in a policy query.
var sqlKeywords = set("SELECT", "FROM", "WHERE", "AND", "OR", "NOT", "IN", "IS", "NULL",
	"LIKE", "GLOB", "REGEXP", "MATCH", "BETWEEN", "EXISTS", "CASE", "WHEN", "THEN", "ELSE", "END",
	"AS", "JOIN", "ON", "USING", "LEFT", "RIGHT", "FULL", "INNER", "OUTER", "CROSS", "NATURAL",
	"GROUP", "BY", "ORDER", "HAVING", "LIMIT", "OFFSET", "UNION", "ALL", "DISTINCT", "INTERSECT",
	"EXCEPT", "WITH", "CAST", "ASC", "DESC", "COLLATE", "NOCASE", "BINARY", "RTRIM", "ESCAPE",
	"VALUES", "TRUE", "FALSE", "NULLS", "FIRST", "LAST", "ISNULL", "NOTNULL", "CURRENT_DATE",
	"CURRENT_TIME", "CURRENT_TIMESTAMP", "INDEXED", "FILTER", "OVER", "WINDOW", "PARTITION")

var joinWords = set("JOIN", "LEFT", "RIGHT", "FULL", "INNER", "OUTER", "CROSS", "NATURAL")

// clauseWords end a FROM item (they cannot be a bare table alias).
var clauseWords = set("WHERE", "GROUP", "ORDER", "HAVING", "LIMIT", "UNION", "INTERSECT",
	"EXCEPT", "ON", "USING", "WINDOW", "JOIN", "LEFT", "RIGHT", "FULL", "INNER", "OUTER",
	"CROSS", "NATURAL", "INDEXED", "NOT")

func (x *extractor) peek(k int) *token {
	if x.i+k < len(x.toks) {
		return &x.toks[x.i+k]
	}
	return nil
}

func (x *extractor) isWord(k int, words map[string]bool) bool {
	t := x.peek(k)
	return t != nil && t.kind == tokWord && words[strings.ToUpper(t.text)]
}

func (x *extractor) startsSelect(k int) bool {
	return x.isWord(k, set("SELECT", "WITH", "VALUES"))
}

func identText(t token) string {
	if t.kind == tokQuoted {
		return strings.ToLower(t.text[1 : len(t.text)-1])
	}
	return strings.ToLower(t.text)
}

// compound parses SELECT cores joined by UNION/INTERSECT/EXCEPT, up to a
// ')' that closes the enclosing parenthesis (not consumed) or the end.
func (x *extractor) compound(parent *scope) ([]*scope, error) {
	var cores []*scope
	for {
		t := x.peek(0)
		if t == nil {
			return cores, nil
		}
		switch strings.ToUpper(t.text) {
		case "WITH":
			return nil, fmt.Errorf("offset %d: WITH is not supported by the schema check; write the CTE as a subquery", t.off)
		case "VALUES":
			return nil, fmt.Errorf("offset %d: VALUES is not supported by the schema check", t.off)
		case "SELECT":
		default:
			return nil, fmt.Errorf("offset %d: expected SELECT, found %q", t.off, t.text)
		}
		x.i++
		s := &scope{parent: parent}
		if err := x.core(s); err != nil {
			return nil, err
		}
		cores = append(cores, s)
		if !x.isWord(0, set("UNION", "INTERSECT", "EXCEPT")) {
			return cores, nil
		}
		x.i++
		if x.isWord(0, set("ALL")) {
			x.i++
		}
	}
}

// core reads one SELECT core after its SELECT keyword.
func (x *extractor) core(s *scope) error {
	depth := 0
	inResult := true
	var cur []token // tokens of the current result column (depth 0 view)
	endResult := func() {
		s.result = append(s.result, resultName(cur))
		cur = nil
	}
	for x.i < len(x.toks) {
		t := x.toks[x.i]
		if inResult && depth == 0 && !(t.kind == tokOther && t.text == ",") && !(t.kind == tokWord && strings.EqualFold(t.text, "FROM")) {
			cur = append(cur, t)
		}
		switch t.kind {
		case tokLParen:
			if x.startsSelect(1) {
				x.i++
				sub, err := x.compound(s)
				if err != nil {
					return err
				}
				if x.peek(0) == nil || x.peek(0).kind != tokRParen {
					return fmt.Errorf("offset %d: subquery without ')'", t.off)
				}
				s.children = append(s.children, sub)
				x.i++
				continue
			}
			depth++
		case tokRParen:
			if depth == 0 {
				if inResult {
					endResult()
				}
				return nil
			}
			depth--
		case tokOther:
			if t.text == "," && depth == 0 && inResult {
				endResult()
			}
		case tokQuoted:
			s.refs = append(s.refs, colRef{name: identText(t), off: t.off})
		case tokWord:
			w := strings.ToUpper(t.text)
			if depth == 0 {
				switch {
				case w == "UNION" || w == "INTERSECT" || w == "EXCEPT":
					if inResult {
						endResult()
					}
					return nil
				case w == "FROM":
					if inResult {
						endResult()
						inResult = false
					}
					x.i++
					if err := x.fromList(s); err != nil {
						return err
					}
					continue
				case joinWords[w]:
					for x.isWord(0, joinWords) {
						x.i++
					}
					if err := x.fromList(s); err != nil {
						return err
					}
					continue
				}
			}
			if w == "AS" {
				if n := x.peek(1); n != nil && (n.kind == tokWord || n.kind == tokQuoted) {
					x.aliases[identText(*n)] = true
					if inResult && depth == 0 {
						cur = append(cur, *n)
					}
					x.i += 2
					continue
				}
			}
			if sqlKeywords[w] {
				break
			}
			if n := x.peek(1); n != nil && n.kind == tokLParen {
				break // a function
			}
			if n := x.peek(1); n != nil && n.kind == tokOther && n.text == "." {
				if c := x.peek(2); c != nil && (c.kind == tokWord || c.kind == tokQuoted) {
					s.refs = append(s.refs, colRef{qual: identText(t), name: identText(*c), off: c.off})
					if inResult && depth == 0 {
						cur = append(cur, x.toks[x.i+1], *c)
					}
					x.i += 3
					continue
				}
			}
			s.refs = append(s.refs, colRef{name: identText(t), off: t.off})
		}
		x.i++
	}
	if inResult {
		endResult()
	}
	return nil
}

// resultName is the output name of a result column: its alias, or the
// column it names when it is a bare (possibly qualified) column.
func resultName(ts []token) string {
	switch {
	case len(ts) == 1 && ts[0].kind == tokOther && ts[0].text == "*":
		return "*"
	case len(ts) >= 2 && strings.EqualFold(ts[len(ts)-2].text, "AS"):
		return identText(ts[len(ts)-1])
	case len(ts) == 1 && (ts[0].kind == tokWord || ts[0].kind == tokQuoted):
		return identText(ts[0])
	case len(ts) == 3 && ts[1].text == "." && ts[2].kind != tokOther:
		return identText(ts[2])
	case len(ts) == 3 && ts[1].text == "." && ts[2].text == "*":
		return "*"
	}
	return ""
}

// fromList reads FROM items separated by commas; JOINs come back through
// core, which sees them at depth 0.
func (x *extractor) fromList(s *scope) error {
	for {
		t := x.peek(0)
		if t == nil {
			return fmt.Errorf("FROM without a table")
		}
		item := fromItem{off: t.off}
		switch {
		case t.kind == tokLParen && x.startsSelect(1):
			x.i++
			sub, err := x.compound(s)
			if err != nil {
				return err
			}
			if x.peek(0) == nil || x.peek(0).kind != tokRParen {
				return fmt.Errorf("offset %d: subquery without ')'", t.off)
			}
			x.i++
			item.derived = sub
		case t.kind == tokWord || t.kind == tokQuoted:
			item.name = identText(*t)
			x.i++
			if n := x.peek(0); n != nil && n.kind == tokOther && n.text == "." {
				return fmt.Errorf("offset %d: schema-qualified table %s.… is not supported", t.off, item.name)
			}
			if n := x.peek(0); n != nil && n.kind == tokLParen {
				return fmt.Errorf("offset %d: table-valued function %s(…) is not supported", t.off, item.name)
			}
		default:
			return fmt.Errorf("offset %d: unexpected %q after FROM", t.off, t.text)
		}
		if x.isWord(0, set("AS")) {
			x.i++
		}
		if n := x.peek(0); n != nil && (n.kind == tokQuoted || (n.kind == tokWord && !clauseWords[strings.ToUpper(n.text)])) {
			item.alias = identText(*n)
			x.i++
		}
		s.from = append(s.from, item)
		if n := x.peek(0); n != nil && n.kind == tokOther && n.text == "," {
			x.i++
			continue
		}
		return nil
	}
}

// schemaProblems lists the tables and columns of q that osquery lacks on
// platform. extra holds tables an extension serves (name → columns).
func schemaProblems(q string, tables map[string]map[string]bool, extra map[string][]string) ([]string, error) {
	toks, serr := tokenize(q)
	if serr != nil {
		return nil, serr
	}
	for len(toks) > 0 && toks[len(toks)-1].kind == tokSemi {
		toks = toks[:len(toks)-1]
	}
	x := &extractor{toks: toks, aliases: map[string]bool{}}
	cores, err := x.compound(nil)
	if err != nil {
		return nil, err
	}
	if x.i != len(toks) {
		return nil, fmt.Errorf("offset %d: unexpected %q", toks[x.i].off, toks[x.i].text)
	}
	for _, c := range cores {
		for _, n := range c.result {
			if n != "" && n != "*" {
				x.aliases[n] = true
			}
		}
	}
	lookup := func(name string) (map[string]bool, bool) {
		if cols, ok := tables[name]; ok {
			return cols, true
		}
		if cols, ok := extra[name]; ok {
			m := map[string]bool{}
			for _, c := range cols {
				m[c] = true
			}
			return m, true
		}
		return nil, false
	}
	// derivedHas reports whether a derived table's output has column c
	// (true when it cannot tell, e.g. SELECT *).
	derivedHas := func(d []*scope, c string) bool {
		if len(d) == 0 {
			return true
		}
		for _, n := range d[0].result {
			if n == "*" || n == c {
				return true
			}
		}
		return false
	}
	var problems []string
	var walk func(s *scope)
	walk = func(s *scope) {
		for _, f := range s.from {
			if f.derived == nil {
				if _, ok := lookup(f.name); !ok {
					problems = append(problems, fmt.Sprintf("no table %q", f.name))
				}
			}
		}
		for _, r := range s.refs {
			if r.qual != "" {
				var item *fromItem
				for sc := s; sc != nil && item == nil; sc = sc.parent {
					for i := range sc.from {
						f := &sc.from[i]
						if f.alias == r.qual || (f.alias == "" && f.name == r.qual) {
							item = f
							break
						}
					}
				}
				switch {
				case item == nil:
					problems = append(problems, fmt.Sprintf("%s.%s: no table or alias %q in scope", r.qual, r.name, r.qual))
				case item.derived != nil:
					if !derivedHas(item.derived, r.name) {
						problems = append(problems, fmt.Sprintf("%s.%s: the subquery has no column %q", r.qual, r.name, r.name))
					}
				default:
					if cols, ok := lookup(item.name); ok && !cols[r.name] {
						problems = append(problems, fmt.Sprintf("table %q has no column %q", item.name, r.name))
					}
				}
				continue
			}
			if x.aliases[r.name] {
				continue
			}
			found := false
			var nearest []string // tables of the innermost scope that has any
			for sc := s; sc != nil && !found; sc = sc.parent {
				for _, f := range sc.from {
					if f.derived != nil {
						if derivedHas(f.derived, r.name) {
							found = true
						}
					} else if cols, ok := lookup(f.name); !ok || cols[r.name] {
						found = true // an unknown table is reported once, above
					}
				}
				if nearest == nil && len(sc.from) > 0 {
					for _, f := range sc.from {
						if f.derived == nil {
							nearest = append(nearest, f.name)
						} else {
							nearest = append(nearest, "(subquery)")
						}
					}
				}
			}
			if !found {
				if len(nearest) == 0 {
					problems = append(problems, fmt.Sprintf("column %q with no table in scope", r.name))
				} else {
					problems = append(problems, fmt.Sprintf("no column %q in %s", r.name, strings.Join(nearest, ", ")))
				}
			}
		}
		for _, ch := range s.children {
			for _, c := range ch {
				walk(c)
			}
		}
		for _, f := range s.from {
			for _, c := range f.derived {
				walk(c)
			}
		}
	}
	for _, c := range cores {
		walk(c)
	}
	sort.Strings(problems)
	return slices.Compact(problems), nil
}

// extensionTables are served by posture.ext itself, not by osquery.
var extensionTables = map[string][]string{
	"posture_entra": {"device_id", "user_principal_name", "source"},
}

func checkTreeAgainstSchema(t *testing.T, schema osquerySchema, tree Tree) []string {
	t.Helper()
	var out []string
	check := func(what string, pos Pos, platforms []string, q string, extra map[string][]string) {
		if len(platforms) == 0 {
			platforms = []string{"darwin", "linux", "windows"}
		}
		for _, pl := range platforms {
			tables, ok := schema[pl]
			if !ok {
				out = append(out, fmt.Sprintf("%s: %s: platform %q has no osquery schema", pos, what, pl))
				continue
			}
			probs, err := schemaProblems(q, tables, extra)
			if err != nil {
				out = append(out, fmt.Sprintf("%s: %s: cannot check query: %v", pos, what, err))
				continue
			}
			for _, p := range probs {
				out = append(out, fmt.Sprintf("%s: %s (%s): %s", pos, what, pl, p))
			}
		}
	}
	for _, p := range tree.Policies {
		check("policy "+p.ID, p.Pos, p.Platforms, p.Query, nil)
	}
	for _, f := range tree.Facts {
		check("fact "+f.Name, f.Pos, f.Platforms, f.Query, extensionTables)
	}
	return out
}

// TestShippedQueriesMatchOsquerySchema fails when a shipped policy or fact
// query names a table or column osquery does not have on its platform.
func TestShippedQueriesMatchOsquerySchema(t *testing.T) {
	schema := loadOsquerySchema(t)
	tree, err := LoadDir("../../policies")
	if err != nil {
		t.Fatalf("shipped policies do not lint:\n%v", err)
	}
	if len(tree.Policies) < 45 {
		t.Fatalf("only %d shipped policies loaded", len(tree.Policies))
	}
	for _, p := range checkTreeAgainstSchema(t, schema, tree) {
		t.Error(p)
	}
}

// TestSchemaCheckCatchesBadQueries proves the check is not vacuous: every
// policy in testdata/schema/bad.yml names something osquery lacks, and
// every one in testdata/schema/good.yml is fine.
func TestSchemaCheckCatchesBadQueries(t *testing.T) {
	schema := loadOsquerySchema(t)
	bad, err := LoadFile("testdata/schema/bad.yml")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"sshd-config-table":      `no table "sshd_config"`,
		"wrong-platform-table":   `no table "registry"`,
		"misspelt-column":        `no column "global_status" in alf`,
		"unqualified-column":     `no column "filevault" in disk_encryption`,
		"alias-column":           `table "mounts" has no column "device_name"`,
		"subquery-column":        `no column "enabled" in managed_policies`,
		"correlated-outer-alias": `table "users" has no column "home"`,
		"unknown-alias":          `x.name: no table or alias "x" in scope`,
		"derived-column":         `v.nope: the subquery has no column "nope"`,
		"union-second-arm":       `no table "rpm_package"`,
		"join-on-column":         `table "disk_encryption" has no column "device"`,
	}
	if len(bad.Policies) != len(want) {
		t.Fatalf("bad.yml has %d policies, want %d", len(bad.Policies), len(want))
	}
	got := map[string][]string{}
	for _, line := range checkTreeAgainstSchema(t, schema, bad) {
		for _, p := range bad.Policies {
			if strings.Contains(line, "policy "+p.ID+" ") {
				got[p.ID] = append(got[p.ID], line)
			}
		}
	}
	for id, w := range want {
		if !slices.ContainsFunc(got[id], func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("%s: want a problem containing %q, got %q", id, w, got[id])
		}
	}

	good, err := LoadFile("testdata/schema/good.yml")
	if err != nil {
		t.Fatal(err)
	}
	if len(good.Policies) == 0 {
		t.Fatal("good.yml has no policies")
	}
	for _, p := range checkTreeAgainstSchema(t, schema, good) {
		t.Errorf("false alarm: %s", p)
	}
}
