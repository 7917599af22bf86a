package policy

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"google.golang.org/grpc/status"
)

// Exit codes of the policies subcommands.
const (
	ExitOK    = 0
	ExitLint  = 1 // lint errors, or the hub refused the apply
	ExitUsage = 2
)

// LintCommand is `posture-hub policies lint [--strict] DIR|FILE`. It works
// offline, prints every problem as file:line: message on stderr and returns
// 1 when there are errors (or warnings with --strict).
func LintCommand(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("policies lint", flag.ContinueOnError)
	fset.SetOutput(stderr)
	strict := fset.Bool("strict", false, "treat warnings as errors")
	fset.Usage = func() {
		fmt.Fprintln(stderr, "usage: posture-hub policies lint [--strict] DIR|FILE")
		fset.PrintDefaults()
	}
	pos, err := parseInterleaved(fset, args)
	if err != nil {
		return usageErr(err)
	}
	if len(pos) != 1 {
		fset.Usage()
		return ExitUsage
	}
	tree, ok := loadAndReport(pos[0], stderr)
	if !ok {
		return ExitLint
	}
	fmt.Fprintf(stdout, "%s: %s, %d warning(s)\n", pos[0], summary(tree), len(tree.Warnings))
	if *strict && len(tree.Warnings) > 0 {
		return ExitLint
	}
	return ExitOK
}

// ApplyCommand is `posture-hub policies apply DIR|FILE [--dry-run]
// [--prune]`. It lints locally first (nothing is sent when that fails), then
// calls AdminService.ApplyPolicies with the tree's policies, teams and fact
// queries (the hub applies all or nothing) and prints the diff.
func ApplyCommand(ctx context.Context, client posturev1.AdminServiceClient, args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("policies apply", flag.ContinueOnError)
	fset.SetOutput(stderr)
	dryRun := fset.Bool("dry-run", false, "show what would change without changing anything")
	prune := fset.Bool("prune", false, "delete policies on the hub that are not in the tree (teams are kept)")
	fset.Usage = func() {
		fmt.Fprintln(stderr, "usage: posture-hub policies apply [--dry-run] [--prune] DIR|FILE")
		fset.PrintDefaults()
	}
	pos, err := parseInterleaved(fset, args)
	if err != nil {
		return usageErr(err)
	}
	if len(pos) != 1 {
		fset.Usage()
		return ExitUsage
	}
	tree, ok := loadAndReport(pos[0], stderr)
	if !ok {
		fmt.Fprintln(stderr, "nothing applied: fix the errors above first")
		return ExitLint
	}
	if *prune && len(tree.Policies) == 0 {
		// An empty folder (a bad checkout, a wrong path) must not wipe the hub.
		fmt.Fprintln(stderr, "refusing --prune with no policies in the tree: it would delete every policy on the hub")
		return ExitLint
	}
	resp, err := client.ApplyPolicies(ctx, tree.ApplyRequest(*dryRun, *prune))
	if err != nil {
		msg := err.Error()
		if st, ok := status.FromError(err); ok {
			msg = fmt.Sprintf("%s: %s", st.Code(), st.Message())
		}
		fmt.Fprintf(stderr, "apply failed, nothing changed: %s\n", msg)
		return ExitLint
	}
	if resp.GetDryRun() {
		fmt.Fprintln(stdout, "Dry run: nothing was changed. Apply would make these changes:")
	} else {
		fmt.Fprintln(stdout, "Applied:")
	}
	if err := RenderChanges(stdout, ChangesFromProto(resp.GetChanges())); err != nil {
		fmt.Fprintln(stderr, err)
		return ExitLint
	}
	return ExitOK
}

// loadAndReport loads a folder or file and prints warnings and errors.
func loadAndReport(path string, stderr io.Writer) (Tree, bool) {
	var (
		tree Tree
		err  error
	)
	if fi, statErr := os.Stat(path); statErr == nil && !fi.IsDir() {
		tree, err = LoadFile(path)
	} else {
		tree, err = LoadDir(path)
	}
	for _, w := range tree.Warnings {
		fmt.Fprintf(stderr, "%s: warning: %s\n", w.Pos, w.Msg)
	}
	var lintErrs Errors
	switch {
	case errors.As(err, &lintErrs):
		fmt.Fprintln(stderr, lintErrs.Error())
		fmt.Fprintf(stderr, "%d error(s)\n", len(lintErrs))
		return tree, false
	case err != nil:
		fmt.Fprintln(stderr, err)
		return tree, false
	}
	return tree, true
}

func summary(t Tree) string {
	return fmt.Sprintf("%d policies, %d teams, %d facts in %d file(s)", len(t.Policies), len(t.Teams), len(t.Facts), len(t.Files))
}

// parseInterleaved accepts flags before and after positional arguments
// (`apply DIR --dry-run`), which the flag package alone stops at.
func parseInterleaved(fset *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fset.Parse(args); err != nil {
			return nil, err
		}
		rest := fset.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if i := len(args) - len(rest) - 1; i >= 0 && args[i] == "--" {
			// Everything after "--" is positional.
			return append(pos, rest...), nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func usageErr(err error) int {
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	return ExitUsage
}
