package osquerytest

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	osquery "github.com/osquery/osquery-go"
	"github.com/osquery/osquery-go/plugin/table"
	"gopkg.in/yaml.v3"
)

// policiesDir is the repository's shipped policy packs.
var policiesDir = filepath.Join("..", "..", "policies")

type packPolicy struct {
	ID                string `yaml:"id"`
	Name              string `yaml:"name"`
	Query             string `yaml:"query"`
	Description       string `yaml:"description"`
	Resolution        string `yaml:"resolution"`
	Severity          string `yaml:"severity"`
	Platform          string `yaml:"platform"`
	ConditionalAccess *bool  `yaml:"conditional_access"`
	GracePeriod       string `yaml:"grace_period"`
}

type packFact struct {
	Name        string `yaml:"name"`
	Platform    string `yaml:"platform"`
	Query       string `yaml:"query"`
	Description string `yaml:"description"`
}

var packs = map[string]string{"macos.yml": "darwin", "windows.yml": "windows", "linux.yml": "linux"}

func loadPacks(t *testing.T) map[string][]packPolicy {
	t.Helper()
	out := map[string][]packPolicy{}
	for file, platform := range packs {
		data, err := os.ReadFile(filepath.Join(policiesDir, file))
		if err != nil {
			t.Fatal(err)
		}
		var ps []packPolicy
		dec := yaml.NewDecoder(strings.NewReader(string(data)))
		dec.KnownFields(true)
		if err := dec.Decode(&ps); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, p := range ps {
			if p.Platform != platform {
				t.Errorf("%s: policy %s has platform %q, want %q", file, p.ID, p.Platform, platform)
			}
		}
		out[platform] = ps
	}
	return out
}

var numberedStep = regexp.MustCompile(`(?m)^\s*1\. `)

// TestPolicyPacksWellFormed checks what the flip test cannot: every shipped
// policy carries the fields the hub and the end-user portal need.
func TestPolicyPacksWellFormed(t *testing.T) {
	seen := map[string]string{}
	for platform, ps := range loadPacks(t) {
		if len(ps) < 15 {
			t.Errorf("%s pack has %d policies, want at least 15", platform, len(ps))
		}
		for _, p := range ps {
			if p.ID == "" || p.Name == "" || p.Query == "" || p.Description == "" || p.Resolution == "" {
				t.Errorf("%s: policy %q misses id/name/query/description/resolution", platform, p.ID)
			}
			if prev, dup := seen[p.ID]; dup {
				t.Errorf("duplicate policy id %s (%s and %s)", p.ID, prev, platform)
			}
			seen[p.ID] = platform
			switch p.Severity {
			case "low", "medium", "high", "critical":
			default:
				t.Errorf("%s: severity %q", p.ID, p.Severity)
			}
			if p.ConditionalAccess == nil {
				t.Errorf("%s: conditional_access not set", p.ID)
			}
			if p.GracePeriod != "" {
				if _, err := time.ParseDuration(strings.Replace(p.GracePeriod, "d", "h", 1)); err != nil {
					t.Errorf("%s: grace_period %q: %v", p.ID, p.GracePeriod, err)
				}
			}
			if !numberedStep.MatchString(p.Resolution) && !strings.Contains(p.Resolution, "contact") {
				t.Errorf("%s: resolution has no numbered steps", p.ID)
			}
			if strings.Count(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(p.Query), ";")), ";") > 0 {
				t.Errorf("%s: query has more than one statement", p.ID)
			}
		}
	}
}

// TestPolicyFlips is the flip test: every shipped policy passes on the
// healthy stand-in of its platform and fails once its flip (fixtures/
// flips.yml) is applied, using the real osquery-go client.
func TestPolicyFlips(t *testing.T) {
	all := loadPacks(t)
	fl, err := Flips()
	if err != nil {
		t.Fatal(err)
	}
	shipped := map[string]bool{}
	for platform, ps := range all {
		t.Run(platform, func(t *testing.T) {
			s := startServer(t, platform)
			c := newClient(t, s, 10*time.Second)
			ctx := context.Background()
			for _, p := range ps {
				shipped[p.ID] = true
				if err := s.Reset(ctx); err != nil {
					t.Fatal(err)
				}
				// posture.ext validates a new revision with getQueryColumns first.
				cols, err := c.GetQueryColumns(p.Query)
				if err != nil || cols.Status.Code != 0 {
					t.Errorf("%s: getQueryColumns: %v %+v", p.ID, err, cols.GetStatus())
					continue
				}
				rows, err := c.QueryRows(p.Query)
				if err != nil {
					t.Errorf("%s: healthy host: %v", p.ID, err)
					continue
				}
				if len(rows) == 0 {
					t.Errorf("%s: healthy host: no rows (FAIL), want PASS", p.ID)
					continue
				}
				stmts, ok := fl[p.ID]
				if !ok || len(stmts) == 0 {
					t.Errorf("%s: no flip in fixtures/flips.yml", p.ID)
					continue
				}
				if err := s.Break(ctx, p.ID); err != nil {
					t.Errorf("%s: %v", p.ID, err)
					continue
				}
				rows, err = c.QueryRows(p.Query)
				if err != nil {
					t.Errorf("%s: broken host: query error %v, want FAIL (no rows)", p.ID, err)
					continue
				}
				if len(rows) != 0 {
					t.Errorf("%s: broken host: %d rows (PASS), want FAIL", p.ID, len(rows))
				}
			}
		})
	}
	var stale []string
	for id := range fl {
		if !shipped[id] {
			stale = append(stale, id)
		}
	}
	sort.Strings(stale)
	if len(stale) > 0 {
		t.Errorf("flips for policies that are not shipped: %v", stale)
	}
}

// TestFactQueries runs policies/facts.yml on each stand-in, with posture.ext's
// posture_entra table served by a real osquery-go extension.
func TestFactQueries(t *testing.T) {
	data, err := os.ReadFile(filepath.Join(policiesDir, "facts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	var facts []packFact
	dec := yaml.NewDecoder(strings.NewReader(string(data)))
	dec.KnownFields(true)
	if err := dec.Decode(&facts); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, f := range facts {
		want[f.Platform+"/"+f.Name] = true
	}
	for _, p := range Platforms() {
		for _, n := range []string{"entra_device_id", "user_principal_name"} {
			if !want[p+"/"+n] {
				t.Errorf("facts.yml has no %s query for %s", n, p)
			}
		}
	}

	for _, platform := range Platforms() {
		t.Run(platform, func(t *testing.T) {
			s := startServer(t, platform, func(o *Options) { o.UserPrincipalName = "jamie.lee@contoso.com" })
			c := newClient(t, s, 10*time.Second)
			var mu sync.Mutex
			var extRow map[string]string // nil: the extension knows nothing
			ext, err := osquery.NewExtensionManagerServer("posture-"+platform, s.SocketPath(), osquery.ServerTimeout(5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			ext.RegisterPlugin(table.NewPlugin("posture_entra",
				[]table.ColumnDefinition{table.TextColumn("device_id"), table.TextColumn("user_principal_name"), table.TextColumn("source")},
				func(ctx context.Context, qc table.QueryContext) ([]map[string]string, error) {
					mu.Lock()
					defer mu.Unlock()
					if extRow == nil {
						return nil, nil
					}
					return []map[string]string{extRow}, nil
				}))
			go ext.Start()
			t.Cleanup(func() { ext.Shutdown(context.Background()) })
			deadline := time.Now().Add(10 * time.Second)
			for {
				if _, err := c.QueryRows("SELECT * FROM posture_entra"); err == nil {
					break
				}
				if time.Now().After(deadline) {
					_, err := c.QueryRows("SELECT * FROM posture_entra")
					t.Fatalf("posture_entra never registered: %v", err)
				}
				time.Sleep(20 * time.Millisecond)
			}

			run := func(name string) string {
				for _, f := range facts {
					if f.Platform == platform && f.Name == name {
						rows, err := c.QueryRows(f.Query)
						if err != nil {
							t.Fatalf("%s/%s: %v", platform, name, err)
						}
						if len(rows) == 0 {
							return ""
						}
						if len(rows[0]) != 1 {
							t.Fatalf("%s/%s: want one column, got %v", platform, name, rows[0])
						}
						for _, v := range rows[0] {
							return v
						}
					}
				}
				t.Fatalf("no fact %s for %s", name, platform)
				return ""
			}

			// Without the extension's answer, core tables are the fallback.
			switch platform {
			case "darwin":
				if got := run("entra_device_id"); got != s.EntraDeviceID() {
					t.Errorf("certificate fallback: entra_device_id = %q, want %q", got, s.EntraDeviceID())
				}
			case "windows":
				if got := run("entra_device_id"); got != s.EntraDeviceID() {
					t.Errorf("certificate fallback: entra_device_id = %q, want %q", got, s.EntraDeviceID())
				}
				if got := run("user_principal_name"); got != "jamie.lee@contoso.com" {
					t.Errorf("JoinInfo fallback: user_principal_name = %q", got)
				}
			case "linux":
				if got := run("entra_device_id"); got != "" {
					t.Errorf("linux without broker registration: entra_device_id = %q, want empty", got)
				}
			}

			// The extension's answer wins.
			mu.Lock()
			extRow = map[string]string{"device_id": "0f5a2c1e-8b7d-4e3f-9a1b-2c3d4e5f6a7b", "user_principal_name": "sam.ortiz@contoso.com", "source": "test"}
			mu.Unlock()
			if got := run("entra_device_id"); got != "0f5a2c1e-8b7d-4e3f-9a1b-2c3d4e5f6a7b" {
				t.Errorf("entra_device_id = %q, want the extension's", got)
			}
			if got := run("user_principal_name"); got != "sam.ortiz@contoso.com" {
				t.Errorf("user_principal_name = %q, want the extension's", got)
			}
		})
	}
}

func TestBreakAndReset(t *testing.T) {
	s := startServer(t, "darwin")
	c := newClient(t, s, 5*time.Second)
	ctx := context.Background()
	const q = "SELECT 1 FROM alf WHERE global_state >= 1"
	if err := s.Break(ctx, "macos-firewall"); err != nil {
		t.Fatal(err)
	}
	if rows, _ := c.QueryRows(q); len(rows) != 0 {
		t.Fatalf("after Break: %v", rows)
	}
	if err := s.Reset(ctx); err != nil {
		t.Fatal(err)
	}
	if rows, err := c.QueryRows(q); err != nil || len(rows) != 1 {
		t.Fatalf("after Reset: %v %v", rows, err)
	}
	row, err := c.QueryRow("SELECT hostname FROM system_info")
	if err != nil || row["hostname"] != s.Hostname() {
		t.Errorf("identity after Reset: %v %v", row, err)
	}
	if err := s.Break(ctx, "no-such-policy"); err == nil {
		t.Error("Break of an unknown policy succeeded")
	}
}
