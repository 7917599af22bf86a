package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/server"
	"google.golang.org/protobuf/types/known/timestamppb"
)

func cmdToken(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "create, list, revoke")
	if !ok {
		return 2
	}
	switch verb {
	case "create":
		return tokenCreateLocal(ctx, rest, stdout, stderr)
	case "list":
		return apiCommand(ctx, "token list", rest, stdout, stderr, nil, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			resp, err := c.ListApiTokens(ctx, &posturev1.ListApiTokensRequest{})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tNAME\tROLE\tCREATED\tEXPIRES\tLAST USED\tREVOKED")
			for _, t := range resp.GetApiTokens() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", t.GetId(), t.GetName(), t.GetRole(), fmtTime(t.GetCreatedAt()),
					fmtTime(t.GetExpiresAt()), fmtTime(t.GetLastUsedAt()), fmtTime(t.GetRevokedAt()))
			}
			return tw.Flush()
		})
	case "revoke":
		return apiCommand(ctx, "token revoke", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, _ *clientFlags, pos []string) error {
			t, err := c.RevokeApiToken(ctx, &posturev1.RevokeApiTokenRequest{Id: pos[0]})
			if err == nil {
				fmt.Fprintf(stdout, "revoked token %s (%s)\n", t.GetId(), t.GetName())
			}
			return err
		})
	}
	fmt.Fprintf(stderr, "token: unknown subcommand %q\n", verb)
	return 2
}

// tokenCreateLocal writes a token straight into the store: it is how the
// first admin token comes to exist, so it needs the hub's data, not its API.
func tokenCreateLocal(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("token create", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", defaultDataDir(), "hub data directory (embedded store)")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (instead of --data-dir)")
	name := fs.String("name", "", "who or what the token is for")
	role := fs.String("role", "admin", "admin, maintainer or observer")
	expires := fs.Duration("expires", 0, "lifetime (e.g. 720h); 0 = no expiry")
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	now := time.Now()
	var exp *timestamppb.Timestamp
	if *expires > 0 {
		exp = timestamppb.New(now.Add(*expires))
	}
	nt, err := admin.NewAPIToken(*name, *role, now, exp)
	if err != nil {
		fmt.Fprintln(stderr, "token create:", err)
		return 2
	}
	st, err := server.OpenStore(ctx, *dataDir, *dbURL)
	if err != nil {
		fmt.Fprintln(stderr, "token create: open store:", err)
		return 1
	}
	defer st.Close()
	err = st.CreateAPIToken(ctx, nt.Stored)
	after := fmt.Sprintf(`{"id":%q,"name":%q,"role":%q}`, nt.Stored.ID, nt.Stored.Name, nt.Stored.Role)
	if aerr := localAudit(ctx, st, "token create", "token/"+nt.Stored.Name, after, err); aerr != nil {
		fmt.Fprintln(stderr, "token create: audit log:", aerr)
		if err == nil {
			// The token exists but its creation is not on record: revoke it
			// rather than hand out an unaudited credential.
			if _, rerr := st.RevokeAPIToken(ctx, nt.Stored.ID, time.Now()); rerr != nil {
				fmt.Fprintln(stderr, "token create: revoke unaudited token:", rerr)
			}
			return 1
		}
	}
	if err != nil {
		fmt.Fprintln(stderr, "token create:", err)
		return 1
	}
	fmt.Fprintf(stderr, "created %s token %q (id %s); it is shown only once:\n", nt.Stored.Role, nt.Stored.Name, nt.Stored.ID)
	fmt.Fprintln(stdout, nt.Plain)
	return 0
}
