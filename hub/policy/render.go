package policy

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/posture-dev/posture/hub/store"
)

// RenderChanges writes a readable diff of an apply: one line per added (+),
// changed (~, with the changed fields) and removed (-) policy or team, then
// counts per kind. Unchanged objects are only counted. The CLI prints, e.g.:
//
//	Apply would make these changes:
//	+ policy  macos-firewall        (revision 1)
//	~ policy  macos-filevault       query, severity (revision 1 → 2: older results no longer count)
//	- policy  legacy-av
//	~ team    engineering           conditional_access
//
//	policies: 1 added, 1 changed, 1 removed, 14 unchanged
//	teams: 0 added, 1 changed, 0 removed, 1 unchanged
func RenderChanges(w io.Writer, changes []store.PolicyChange) error {
	cs := slices.Clone(changes)
	slices.SortStableFunc(cs, func(a, b store.PolicyChange) int {
		if d := kindRank(a.Kind) - kindRank(b.Kind); d != 0 {
			return d
		}
		return strings.Compare(a.ID, b.ID)
	})
	type counts struct{ added, changed, removed, unchanged, other int }
	byKind := map[string]*counts{}
	var kinds []string
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	shown := 0
	for _, c := range cs {
		k, ok := byKind[c.Kind]
		if !ok {
			k = &counts{}
			byKind[c.Kind] = k
			kinds = append(kinds, c.Kind)
		}
		var mark, detail string
		switch c.Action {
		case store.ActionAdded:
			k.added++
			mark = "+"
			if c.Kind == "policy" && c.Revision > 0 {
				detail = fmt.Sprintf("(revision %d)", c.Revision)
			}
		case store.ActionChanged:
			k.changed++
			mark = "~"
			fields := make([]string, len(c.Fields))
			for i, f := range c.Fields {
				fields[i] = clean(f)
			}
			detail = strings.Join(fields, ", ")
			if c.Kind == "policy" && slices.Contains(c.Fields, "query") && c.Revision > 1 {
				detail += fmt.Sprintf(" (revision %d → %d: older results no longer count)", c.Revision-1, c.Revision)
			}
		case store.ActionRemoved:
			k.removed++
			mark = "-"
		case store.ActionUnchanged:
			k.unchanged++
			continue
		default:
			k.other++
			mark = "?"
			detail = clean(c.Action)
		}
		shown++
		fmt.Fprintf(tw, "%s %s\t%s\t%s\n", mark, clean(c.Kind), clean(c.ID), detail)
	}
	if err := tw.Flush(); err != nil {
		return fmt.Errorf("render changes: %w", err)
	}
	if shown == 0 {
		if _, err := fmt.Fprintln(w, "No changes."); err != nil {
			return fmt.Errorf("render changes: %w", err)
		}
	}
	fmt.Fprintln(w)
	for _, kind := range kinds {
		k := byKind[kind]
		line := fmt.Sprintf("%s: %d added, %d changed, %d removed, %d unchanged", plural(clean(kind)), k.added, k.changed, k.removed, k.unchanged)
		if k.other > 0 {
			line += fmt.Sprintf(", %d other", k.other)
		}
		if _, err := fmt.Fprintln(w, line); err != nil {
			return fmt.Errorf("render changes: %w", err)
		}
	}
	return nil
}

func kindRank(kind string) int {
	switch kind {
	case "policy":
		return 0
	case "team":
		return 1
	case "fact":
		return 2
	}
	return 3
}

func plural(kind string) string {
	switch kind {
	case "policy":
		return "policies"
	case "team":
		return "teams"
	case "fact":
		return "facts"
	}
	return kind
}

// clean keeps text from the server from driving the terminal: anything
// with a control or non-printable character is shown Go-quoted.
func clean(s string) string {
	for _, r := range s {
		if !unicode.IsPrint(r) || r == '\t' {
			return strconv.Quote(s)
		}
	}
	return s
}
