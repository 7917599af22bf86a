package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/ca"
	"github.com/posture-dev/posture/hub/policy"
	"github.com/posture-dev/posture/hub/server"
)

// clientFlags reach the admin API over the hub's TLS gRPC port.
type clientFlags struct {
	addr, caFile, token string
	json                bool
	timeout             time.Duration
}

func (c *clientFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "localhost:8443", "hub gRPC address")
	fs.StringVar(&c.caFile, "ca", "", "hub CA certificate (default: ca.pem in $POSTURE_DATA_DIR or "+defaultDataDir()+")")
	fs.StringVar(&c.token, "token", "", "API token (better: POSTURE_TOKEN, which keeps it out of ps)")
	fs.BoolVar(&c.json, "json", false, "print JSON")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "deadline for the call")
}

// clientFlagNames lets `policies apply` pass our flags through its own parser.
var clientFlagNames = map[string]bool{"addr": true, "ca": true, "token": true, "json": true, "timeout": true}

func (c *clientFlags) dial(ctx context.Context) (posturev1.AdminServiceClient, func(), error) {
	if c.token == "" {
		return nil, nil, errors.New("no API token: set POSTURE_TOKEN or --token (create the first with `posture-hub token create`)")
	}
	caFile := c.caFile
	if caFile == "" {
		dir := os.Getenv("POSTURE_DATA_DIR")
		if dir == "" {
			dir = defaultDataDir()
		}
		caFile = filepath.Join(dir, ca.CertFile)
	}
	pemBytes, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("hub CA: %w (set --ca or POSTURE_CA)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		return nil, nil, fmt.Errorf("hub CA %s: no PEM certificate", caFile)
	}
	conn, err := grpc.NewClient(c.addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})),
		grpc.WithPerRPCCredentials(bearer(c.token)))
	if err != nil {
		return nil, nil, fmt.Errorf("dial %s: %w", c.addr, err)
	}
	return posturev1.NewAdminServiceClient(conn), func() { conn.Close() }, nil
}

// bearer sends the token on every call; TLS is required for it.
type bearer string

func (b bearer) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}
func (bearer) RequireTransportSecurity() bool { return true }

// apiCommand parses client flags plus extra ones and runs f with a client.
func apiCommand(ctx context.Context, name string, args []string, stdout, stderr io.Writer,
	extra func(fs *flag.FlagSet), nargs int, f func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error) int {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	var cf clientFlags
	cf.register(fs)
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(fs, args); err != nil {
		return 2
	}
	if fs.NArg() != nargs {
		fmt.Fprintf(stderr, "%s: want %d argument(s), got %d\n", name, nargs, fs.NArg())
		return 2
	}
	client, closeFn, err := cf.dial(ctx)
	if err != nil {
		fmt.Fprintln(stderr, "posture-hub:", err)
		return 1
	}
	defer closeFn()
	ctx, cancel := context.WithTimeout(ctx, cf.timeout)
	defer cancel()
	if err := f(ctx, client, &cf, fs.Args()); err != nil {
		if st, ok := status.FromError(err); ok {
			fmt.Fprintf(stderr, "posture-hub: %s: %s\n", st.Code(), st.Message())
		} else {
			fmt.Fprintln(stderr, "posture-hub:", err)
		}
		return 1
	}
	return 0
}

func printJSON(w io.Writer, m proto.Message) error {
	b, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintln(w, string(b))
	return err
}

func fmtTime(t *timestamppb.Timestamp) string {
	if t == nil {
		return "-"
	}
	return t.AsTime().Local().Format("2006-01-02 15:04:05")
}

// --- token ---

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

func firstErr(err error, f func() error) error {
	if err != nil {
		return err
	}
	return f()
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
	if err := st.CreateAPIToken(ctx, nt.Stored); err != nil {
		fmt.Fprintln(stderr, "token create:", err)
		return 1
	}
	fmt.Fprintf(stderr, "created %s token %q (id %s); it is shown only once:\n", nt.Stored.Role, nt.Stored.Name, nt.Stored.ID)
	fmt.Fprintln(stdout, nt.Plain)
	return 0
}

// --- enroll secrets ---

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

// --- hosts ---

func cmdHosts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "list, get, revoke, delete, recheck, set-entra-id, unmapped")
	if !ok {
		return 2
	}
	switch verb {
	case "list":
		var team string
		var results bool
		return apiCommand(ctx, "hosts list", rest, stdout, stderr, func(fs *flag.FlagSet) {
			fs.StringVar(&team, "team", "", "only this team")
			fs.BoolVar(&results, "results", false, "include each host's results")
		}, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			resp, err := c.ListHosts(ctx, &posturev1.ListHostsRequest{Team: team, IncludeResults: results})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tHOSTNAME\tPLATFORM\tTEAM\tVERDICT\tPASS\tFAIL\tERROR\tLAST SEEN\tSTATE")
			for _, h := range resp.GetHosts() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\t%s\n", h.GetId(), h.GetFacts().GetHostname(), h.GetFacts().GetPlatform(),
					h.GetTeam(), verdictState(h), h.GetPassing(), h.GetFailing(), h.GetErrors(), fmtTime(h.GetLastSeenAt()), hostState(h))
				if results {
					printResults(tw, h.GetResults(), "\t")
				}
			}
			return tw.Flush()
		})
	case "get":
		return apiCommand(ctx, "hosts get", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
			h, err := c.GetHost(ctx, &posturev1.GetHostRequest{Id: pos[0]})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, h) })
			}
			f := h.GetFacts()
			fmt.Fprintf(stdout, "%s  %s (%s %s)  team %s  %s\n", h.GetId(), f.GetHostname(), f.GetOsName(), f.GetOsVersion(), h.GetTeam(), hostState(h))
			fmt.Fprintf(stdout, "serial %s  uuid %s  entra device %s  user %s\n", f.GetHardwareSerial(), f.GetHardwareUuid(), orDash(h.GetEntraDeviceId()), orDash(h.GetUserPrincipalName()))
			fmt.Fprintf(stdout, "enrolled %s  last seen %s  certificate until %s\n", fmtTime(h.GetEnrolledAt()), fmtTime(h.GetLastSeenAt()), fmtTime(h.GetCertificateNotAfter()))
			if err := printVerdict(stdout, h); err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "POLICY\tSTATUS\tSINCE\tEVALUATED\tERROR")
			printResults(tw, h.GetResults(), "")
			return tw.Flush()
		})
	case "revoke":
		return apiCommand(ctx, "hosts revoke", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, _ *clientFlags, pos []string) error {
			h, err := c.RevokeHost(ctx, &posturev1.RevokeHostRequest{Id: pos[0]})
			if err == nil {
				fmt.Fprintf(stdout, "revoked host %s (%s)\n", h.GetId(), h.GetFacts().GetHostname())
			}
			return err
		})
	case "delete":
		return apiCommand(ctx, "hosts delete", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, _ *clientFlags, pos []string) error {
			_, err := c.DeleteHost(ctx, &posturev1.DeleteHostRequest{Id: pos[0]})
			if err == nil {
				fmt.Fprintf(stdout, "deleted host %s\n", pos[0])
			}
			return err
		})
	case "set-entra-id":
		return hostsSetEntraID(ctx, rest, stdout, stderr)
	case "unmapped":
		return hostsUnmapped(ctx, rest, stdout, stderr)
	case "recheck":
		return apiCommand(ctx, "hosts recheck", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, _ *clientFlags, pos []string) error {
			r, err := c.RecheckHost(ctx, &posturev1.RecheckHostRequest{Id: pos[0]})
			if err != nil {
				return err
			}
			if !r.GetDelivered() {
				return fmt.Errorf("host %s has no open stream to this hub; it will run policies at its next interval", pos[0])
			}
			fmt.Fprintf(stdout, "recheck sent to %s\n", pos[0])
			return nil
		})
	}
	fmt.Fprintf(stderr, "hosts: unknown subcommand %q\n", verb)
	return 2
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func hostState(h *posturev1.Host) string {
	switch {
	case h.GetRevoked():
		return "revoked"
	case h.GetConnected():
		return "connected"
	}
	return "offline"
}

func printResults(tw io.Writer, rs []*posturev1.HostResult, indent string) {
	for _, r := range rs {
		st := strings.TrimPrefix(r.GetStatus().String(), "RESULT_STATUS_")
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", indent, r.GetPolicyId(), st, fmtTime(r.GetStatusSince()), fmtTime(r.GetEvaluatedAt()), r.GetError())
	}
}

// --- policies ---

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
