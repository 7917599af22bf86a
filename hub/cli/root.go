// Package cli is posture-hub's command line: `serve` and the admin commands,
// one file per noun (hosts, policies, teams, exemptions, integrations, sync,
// tokens, enroll secrets). Admin commands reach the hub's AdminService over
// TLS gRPC with a bearer token; `token create` and `serve` use the store
// directly.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// Version is printed by `posture-hub version`; main sets it from its
// build-time value.
var Version = "dev"

type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

var commands = map[string]command{
	"serve":         {"run the hub", cmdServe},
	"token":         {"API tokens: create (bootstrap, local), list, revoke", cmdToken},
	"enroll-secret": {"enroll secrets: create, list, revoke", cmdEnrollSecret},
	"hosts":         {"hosts: list, get, revoke, delete, recheck, set-entra-id, set-upn, unmapped", cmdHosts},
	"policies":      {"policies: lint DIR, apply DIR [--dry-run] [--prune], list", cmdPolicies},
	"teams":         {"team settings: list, set NAME [--conditional-access] [--max-allowed-severity] ...", cmdTeams},
	"exemptions":    {"exemptions: list [--host], create --host --reason --expires|--until, delete", cmdExemptions},
	"integrations":  {"Entra integrations: list, get, create, update, delete, test, resume", cmdIntegrations},
	"sync":          {"sync outbox: list [--state pending|dead|done], retry ID (a dead item, or a pending one now)", cmdSync},
	"audit":         {"audit log of admin actions: list [--actor] [--action] [--since] [--limit]", cmdAudit},
	"version":       {"print the version", func(_ context.Context, _ []string, out, _ io.Writer) int { fmt.Fprintln(out, Version); return 0 }},
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: posture-hub <command> [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-14s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEvery flag can also be set with a POSTURE_ environment variable, e.g. --data-dir as POSTURE_DATA_DIR.")
}

// Run executes one command line (without the program name) and returns the
// process exit code: 0 ok, 1 failed, 2 usage error.
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "posture-hub: unknown command %q\n\n", args[0])
		usage(stderr)
		return 2
	}
	return c.run(ctx, args[1:], stdout, stderr)
}

// parseFlags parses fs, then fills every flag not given on the command line
// from POSTURE_<FLAG_NAME> (dashes become underscores).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if set[f.Name] {
			return
		}
		env := "POSTURE_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v, ok := os.LookupEnv(env); ok {
			if err := fs.Set(f.Name, v); err != nil {
				err = fmt.Errorf("%s: %w", env, err)
				fmt.Fprintln(fs.Output(), err) // as fs.Parse does for a bad flag
				errs = append(errs, err)
			}
		}
	})
	return errors.Join(errs...)
}

// subcommand splits "verb args..." for the nested commands.
func subcommand(args []string, stderr io.Writer, verbs string) (string, []string, bool) {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprintf(stderr, "missing subcommand: one of %s\n", verbs)
		return "", nil, false
	}
	return args[0], args[1:], true
}
