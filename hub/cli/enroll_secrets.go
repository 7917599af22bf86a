package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

func cmdEnrollSecret(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "create, list, revoke")
	if !ok {
		return 2
	}
	switch verb {
	case "create":
		var team, desc string
		var expires time.Duration
		return apiCommand(ctx, "enroll-secret create", rest, stdout, stderr, func(fs *flag.FlagSet) {
			fs.StringVar(&team, "team", "default", "team the enrolled hosts join")
			fs.StringVar(&desc, "description", "", "what the secret is for")
			fs.DurationVar(&expires, "expires", 0, "lifetime (e.g. 720h); 0 = no expiry")
		}, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			req := &posturev1.CreateEnrollSecretRequest{Team: team, Description: desc}
			if expires > 0 {
				req.ExpiresAt = timestamppb.New(time.Now().Add(expires))
			}
			resp, err := c.CreateEnrollSecret(ctx, req)
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			fmt.Fprintf(stderr, "created enroll secret %s for team %q; it is shown only once:\n", resp.GetEnrollSecret().GetId(), resp.GetEnrollSecret().GetTeam())
			fmt.Fprintln(stdout, resp.GetSecret())
			return nil
		})
	case "list":
		return apiCommand(ctx, "enroll-secret list", rest, stdout, stderr, nil, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			resp, err := c.ListEnrollSecrets(ctx, &posturev1.ListEnrollSecretsRequest{})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tTEAM\tDESCRIPTION\tCREATED\tEXPIRES\tLAST USED\tREVOKED")
			for _, s := range resp.GetEnrollSecrets() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.GetId(), s.GetTeam(), s.GetDescription(), fmtTime(s.GetCreatedAt()),
					fmtTime(s.GetExpiresAt()), fmtTime(s.GetLastUsedAt()), fmtTime(s.GetRevokedAt()))
			}
			return tw.Flush()
		})
	case "revoke":
		return apiCommand(ctx, "enroll-secret revoke", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, _ *clientFlags, pos []string) error {
			s, err := c.RevokeEnrollSecret(ctx, &posturev1.RevokeEnrollSecretRequest{Id: pos[0]})
			if err == nil {
				fmt.Fprintf(stdout, "revoked enroll secret %s (team %s)\n", s.GetId(), s.GetTeam())
			}
			return err
		})
	}
	fmt.Fprintf(stderr, "enroll-secret: unknown subcommand %q\n", verb)
	return 2
}
