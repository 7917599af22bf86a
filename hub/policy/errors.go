package policy

import (
	"fmt"
	"sort"
	"strings"
)

// Pos is where something was defined: a file and a 1-based line. A zero
// Line means the whole file (or, with an empty File, an object that did not
// come from a file, e.g. one received over the API).
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string {
	switch {
	case p.File == "":
		return ""
	case p.Line <= 0:
		return p.File
	default:
		return fmt.Sprintf("%s:%d", p.File, p.Line)
	}
}

// Issue is one lint finding.
type Issue struct {
	Pos Pos
	// Subject names the object when Pos has no file (API validation), e.g.
	// `policy "disk-encryption"`.
	Subject string
	Msg     string
}

func (i Issue) String() string {
	switch {
	case i.Pos.File != "":
		return i.Pos.String() + ": " + i.Msg
	case i.Subject != "":
		return i.Subject + ": " + i.Msg
	default:
		return i.Msg
	}
}

// Errors are all the problems found in a policy tree. Error prints one per
// line as "file:line: message", the format editors and CI annotate.
type Errors []Issue

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, is := range e {
		lines[i] = is.String()
	}
	return strings.Join(lines, "\n")
}

// sortIssues orders by file, then line, keeping discovery order otherwise.
func sortIssues(is []Issue) {
	sort.SliceStable(is, func(a, b int) bool {
		if is[a].Pos.File != is[b].Pos.File {
			return is[a].Pos.File < is[b].Pos.File
		}
		return is[a].Pos.Line < is[b].Pos.Line
	})
}
