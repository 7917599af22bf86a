package osquerytest

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// specColumn is one column of an osquery table spec as listed in
// ../shared/osquery-schema/<platform>.json.
type specColumn struct {
	Name    string   `json:"name"`
	Type    string   `json:"type"`
	Hidden  bool     `json:"hidden"`
	Collate string   `json:"collate"`
	Aliases []string `json:"aliases"`
}

// loadSpecs reads osquery's table specs for platform: the schema folder
// beside the repository (../shared/osquery-schema from the module root) or
// POSTURE_OSQUERY_SCHEMA.
func loadSpecs(t *testing.T, platform string) map[string][]specColumn {
	t.Helper()
	dir := os.Getenv("POSTURE_OSQUERY_SCHEMA")
	if dir == "" {
		root, err := os.Getwd()
		if err != nil {
			t.Fatal(err)
		}
		for {
			if _, err := os.Stat(filepath.Join(root, "go.mod")); err == nil {
				break
			}
			up := filepath.Dir(root)
			if up == root {
				t.Fatal("no go.mod above the test directory")
			}
			root = up
		}
		dir = filepath.Join(root, "..", "shared", "osquery-schema")
	}
	data, err := os.ReadFile(filepath.Join(dir, platform+".json"))
	if err != nil {
		t.Fatalf("osquery table specs missing (want ../shared/osquery-schema beside the repository, or POSTURE_OSQUERY_SCHEMA): %v", err)
	}
	var doc struct {
		Tables []struct {
			Name    string       `json:"name"`
			Columns []specColumn `json:"columns"`
		} `json:"tables"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("%s.json: %v", platform, err)
	}
	out := map[string][]specColumn{}
	for _, tb := range doc.Tables {
		out[tb.Name] = tb.Columns
	}
	return out
}

// TestFixturesMatchOsquerySpecs keeps the stand-in true to osquery: every
// table or view it serves exists on that platform in osquery's specs, with
// the spec's visible columns, in order, with osquery's type names.
// (Hidden columns are left out: a plain SQLite table cannot hide them from
// SELECT *.)
func TestFixturesMatchOsquerySpecs(t *testing.T) {
	for _, platform := range Platforms() {
		t.Run(platform, func(t *testing.T) {
			specs := loadSpecs(t, platform)
			s := startServer(t, platform)
			ctx := context.Background()
			rows, err := s.db.query(ctx, "SELECT name, type FROM sqlite_master WHERE type IN ('table', 'view') ORDER BY name")
			if err != nil {
				t.Fatal(err)
			}
			if len(rows) < 10 {
				t.Fatalf("only %d fixture tables", len(rows))
			}
			for _, r := range rows {
				name := r["name"]
				spec, ok := specs[name]
				if !ok {
					t.Errorf("table %s: osquery has no such table on %s", name, platform)
					continue
				}
				cols, err := s.db.tableColumns(ctx, name)
				if err != nil {
					t.Fatal(err)
				}
				var want []specColumn
				for _, c := range spec {
					if !c.Hidden {
						want = append(want, c)
					}
				}
				var got, exp []string
				for _, c := range cols {
					g := c.name
					if r["type"] == "table" {
						g += " " + c.typ
					}
					got = append(got, g)
				}
				for _, c := range want {
					e := c.Name
					if r["type"] == "table" {
						e += " " + c.Type
					}
					exp = append(exp, e)
				}
				if strings.Join(got, ", ") != strings.Join(exp, ", ") {
					t.Errorf("table %s (%s):\n got columns %s\nwant columns %s", name, platform, strings.Join(got, ", "), strings.Join(exp, ", "))
				}
			}
		})
	}
}
