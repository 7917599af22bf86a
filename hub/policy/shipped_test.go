package policy

import (
	"regexp"
	"slices"
	"testing"
)

// TestShippedPolicies lints the packs in policies/ the way `posture-hub
// policies lint policies/` does, and checks what issue 4 asks of them.
func TestShippedPolicies(t *testing.T) {
	tree, err := LoadDir("../../policies")
	if err != nil {
		t.Fatalf("shipped policies do not lint:\n%v", err)
	}
	for _, w := range tree.Warnings {
		t.Errorf("warning: %s", w)
	}
	numbered := regexp.MustCompile(`(?m)^\s*1\.\s`)
	perPlatform := map[string]int{}
	for _, p := range tree.Policies {
		if len(p.Platforms) != 1 {
			t.Errorf("%s: %s names %d platforms, want exactly one", p.Pos, p.ID, len(p.Platforms))
			continue
		}
		perPlatform[p.Platforms[0]]++
		if !numbered.MatchString(p.Resolution) {
			t.Errorf("%s: %s: resolution has no numbered steps", p.Pos, p.ID)
		}
		if p.Description == "" {
			t.Errorf("%s: %s has no description", p.Pos, p.ID)
		}
	}
	for _, pl := range []string{"darwin", "windows", "linux"} {
		if perPlatform[pl] < 15 {
			t.Errorf("%s pack has %d policies, want at least 15", pl, perPlatform[pl])
		}
		var names []string
		for _, f := range tree.FactsFor(pl) {
			names = append(names, f.Name)
		}
		for _, want := range KnownFacts {
			if !slices.Contains(names, want) {
				t.Errorf("no %s fact query for %s", want, pl)
			}
		}
	}
}
