package policy

import (
	"bytes"
	"testing"

	"github.com/posture-dev/posture/hub/store"
)

func TestRenderChanges(t *testing.T) {
	changes := []store.PolicyChange{
		// Deliberately unsorted: teams first, ids out of order.
		{Kind: "team", ID: "engineering", Action: store.ActionChanged, Fields: []string{"conditional_access"}},
		{Kind: "team", ID: "default", Action: store.ActionUnchanged},
		{Kind: "policy", ID: "macos-firewall", Action: store.ActionAdded, Revision: 1},
		{Kind: "policy", ID: "macos-filevault", Action: store.ActionChanged, Fields: []string{"query", "severity"}, Revision: 2},
		{Kind: "policy", ID: "legacy-av", Action: store.ActionRemoved},
		{Kind: "policy", ID: "screen-lock", Action: store.ActionChanged, Fields: []string{"resolution"}, Revision: 4},
		{Kind: "policy", ID: "gatekeeper", Action: store.ActionUnchanged, Revision: 1},
		{Kind: "team", ID: "contractors", Action: store.ActionAdded},
	}
	var b bytes.Buffer
	if err := RenderChanges(&b, changes); err != nil {
		t.Fatal(err)
	}
	want := `- policy  legacy-av
~ policy  macos-filevault  query, severity (revision 1 → 2: older results no longer count)
+ policy  macos-firewall   (revision 1)
~ policy  screen-lock      resolution
+ team    contractors
~ team    engineering      conditional_access

policies: 1 added, 2 changed, 1 removed, 1 unchanged
teams: 1 added, 1 changed, 0 removed, 1 unchanged
`
	if got := trimLines(b.String()); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestRenderChangesNothing(t *testing.T) {
	var b bytes.Buffer
	if err := RenderChanges(&b, []store.PolicyChange{{Kind: "policy", ID: "a", Action: store.ActionUnchanged}}); err != nil {
		t.Fatal(err)
	}
	want := "No changes.\n\npolicies: 0 added, 0 changed, 0 removed, 1 unchanged\n"
	if b.String() != want {
		t.Errorf("got %q, want %q", b.String(), want)
	}
}

// Text from the server never reaches the terminal raw.
func TestRenderChangesEscapes(t *testing.T) {
	var b bytes.Buffer
	err := RenderChanges(&b, []store.PolicyChange{
		{Kind: "policy", ID: "evil\x1b]0;pwned\x07", Action: store.ActionChanged, Fields: []string{"na\nme"}},
		{Kind: "policy", ID: "x", Action: "exploded"},
	})
	if err != nil {
		t.Fatal(err)
	}
	if bytes.ContainsAny(b.Bytes(), "\x1b\x07") {
		t.Fatalf("control characters rendered: %q", b.String())
	}
	want := "~ policy  \"evil\\x1b]0;pwned\\a\"  \"na\\nme\"\n? policy  x                     exploded\n\npolicies: 0 added, 1 changed, 0 removed, 0 unchanged, 1 other\n"
	if got := trimLines(b.String()); got != want {
		t.Errorf("got:\n%q\nwant:\n%q", got, want)
	}
}

// trimLines drops the trailing blanks tabwriter pads short rows with.
func trimLines(s string) string {
	lines := bytes.Split([]byte(s), []byte("\n"))
	for i, l := range lines {
		lines[i] = bytes.TrimRight(l, " ")
	}
	return string(bytes.Join(lines, []byte("\n")))
}
