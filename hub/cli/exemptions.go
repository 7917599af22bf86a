package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

func cmdExemptions(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "list, create, delete")
	if !ok {
		return 2
	}
	switch verb {
	case "list":
		var host string
		extra := func(fs *flag.FlagSet) { fs.StringVar(&host, "host", "", "only this host's exemptions") }
		rest, _ = interspersed(rest, extra)
		return apiCommand(ctx, "exemptions list", rest, stdout, stderr, extra, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			resp, err := c.ListExemptions(ctx, &posturev1.ListExemptionsRequest{HostId: host})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := newTable(stdout)
			fmt.Fprintln(tw, "ID\tHOST\tPOLICY\tEXPIRES\tCREATED\tBY\tREASON")
			for _, e := range resp.GetExemptions() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.GetId(), e.GetHostId(), orAll(e.GetPolicyId()), fmtTime(e.GetExpiresAt()),
					fmtTime(e.GetCreatedAt()), orDash(e.GetCreatedBy()), oneLine(e.GetReason()))
			}
			return tw.Flush()
		})
	case "create":
		var host, pol, reason, until string
		var expires time.Duration
		extra := func(fs *flag.FlagSet) {
			withUsage(fs, "exemptions create --host ID [--policy ID] --reason TEXT (--expires 72h | --until RFC3339)")
			fs.StringVar(&host, "host", "", "host id (required)")
			fs.StringVar(&pol, "policy", "", "policy id (default: every policy)")
			fs.StringVar(&reason, "reason", "", "why the host is exempt (required; shown to auditors)")
			fs.DurationVar(&expires, "expires", 0, "lifetime, e.g. 72h (this or --until is required: exemptions always end)")
			fs.StringVar(&until, "until", "", "end time, RFC 3339 (e.g. 2026-12-31T18:00:00Z)")
		}
		rest, _ = interspersed(rest, extra)
		return apiCommand(ctx, "exemptions create", rest, stdout, stderr, extra, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			if strings.TrimSpace(host) == "" {
				return errors.New("--host is required")
			}
			if strings.TrimSpace(reason) == "" {
				return errors.New("--reason is required (it is shown to auditors)")
			}
			var exp time.Time
			switch {
			case expires != 0 && until != "":
				return errors.New("give --expires or --until, not both")
			case expires < 0:
				return errors.New("--expires must be positive")
			case expires > 0:
				exp = time.Now().Add(expires)
			case until != "":
				t, err := time.Parse(time.RFC3339, until)
				if err != nil {
					return fmt.Errorf("--until %q: want RFC 3339, e.g. 2026-12-31T18:00:00Z", until)
				}
				exp = t
			default:
				return errors.New("--expires (e.g. 72h) or --until (RFC 3339) is required: exemptions always end")
			}
			e, err := c.CreateExemption(ctx, &posturev1.CreateExemptionRequest{
				HostId: strings.TrimSpace(host), PolicyId: strings.TrimSpace(pol), Reason: reason, ExpiresAt: timestamppb.New(exp),
			})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, e) })
			}
			fmt.Fprintf(stdout, "created exemption %s: host %s, policy %s, until %s\n", e.GetId(), e.GetHostId(), orAll(e.GetPolicyId()), fmtTime(e.GetExpiresAt()))
			return nil
		})
	case "delete":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "exemptions delete", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, _ *clientFlags, pos []string) error {
			if _, err := c.DeleteExemption(ctx, &posturev1.DeleteExemptionRequest{Id: pos[0]}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted exemption %s\n", pos[0])
			return nil
		})
	}
	fmt.Fprintf(stderr, "exemptions: unknown subcommand %q\n", verb)
	return 2
}

func orAll(policyID string) string {
	if policyID == "" {
		return "(all)"
	}
	return policyID
}
