package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/policy"
	"google.golang.org/grpc"
)

func cmdPolicies(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "lint, apply, list")
	if !ok {
		return 2
	}
	switch verb {
	case "lint":
		return policy.LintCommand(rest, stdout, stderr)
	case "apply":
		clientArgs, applyArgs := splitFlags(rest, clientFlagNames)
		fs := flag.NewFlagSet("policies apply", flag.ContinueOnError)
		fs.SetOutput(stderr)
		var cf clientFlags
		cf.register(fs)
		if err := parseFlags(fs, clientArgs); err != nil {
			return 2
		}
		// Lint errors come first: a broken tree is reported even when the
		// hub is unreachable (ApplyCommand lints before it calls the hub).
		var client posturev1.AdminServiceClient
		client, closeFn, err := cf.dial(ctx)
		if err != nil {
			client = unreachable{err: err}
		} else {
			defer closeFn()
		}
		ctx, cancel := context.WithTimeout(ctx, cf.timeout)
		defer cancel()
		return policy.ApplyCommand(ctx, client, applyArgs, stdout, stderr)
	case "list":
		return apiCommand(ctx, "policies list", rest, stdout, stderr, nil, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			resp, err := c.ListPolicies(ctx, &posturev1.ListPoliciesRequest{})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSEVERITY\tCA\tPLATFORMS\tREV\tPASS\tFAIL\tERROR\tNAME")
			for _, p := range resp.GetPolicies() {
				pl := strings.Join(p.GetPlatforms(), ",")
				fmt.Fprintf(tw, "%s\t%s\t%v\t%s\t%d\t%d\t%d\t%d\t%s\n", p.GetId(), p.GetSeverity(), p.GetConditionalAccess(), orDash(pl),
					p.GetRevision(), p.GetPassing(), p.GetFailing(), p.GetErrors(), p.GetName())
			}
			return tw.Flush()
		})
	}
	fmt.Fprintf(stderr, "policies: unknown subcommand %q\n", verb)
	return 2
}

// unreachable answers every call with the dial error.
type unreachable struct {
	posturev1.AdminServiceClient // nil: only ApplyPolicies is called
	err                          error
}

func (u unreachable) ApplyPolicies(context.Context, *posturev1.ApplyPoliciesRequest, ...grpc.CallOption) (*posturev1.ApplyPoliciesResponse, error) {
	return nil, u.err
}

// splitFlags moves the named flags (and their values) out of args.
func splitFlags(args []string, names map[string]bool) (picked, rest []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name := strings.TrimLeft(a, "-")
		if !strings.HasPrefix(a, "-") || name == "" {
			rest = append(rest, a)
			continue
		}
		base, _, hasValue := strings.Cut(name, "=")
		if !names[base] {
			rest = append(rest, a)
			continue
		}
		picked = append(picked, a)
		if !hasValue && base != "json" && i+1 < len(args) {
			i++
			picked = append(picked, args[i])
		}
	}
	return picked, rest
}
