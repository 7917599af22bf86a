package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

// interspersed moves flags in front of the positional arguments, so
// `teams set NAME --stale-after 2h` parses like `teams set --stale-after 2h
// NAME` (the flag package stops at the first positional). It needs the
// command's flags to know which ones take a value; the probe flag set it
// returns is parsed (errors ignored: apiCommand reports them).
func interspersed(args []string, extra func(fs *flag.FlagSet)) ([]string, *flag.FlagSet) {
	probe := flag.NewFlagSet("probe", flag.ContinueOnError)
	probe.SetOutput(io.Discard)
	var cf clientFlags
	cf.register(probe)
	if extra != nil {
		extra(probe)
	}
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name, _, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		f := probe.Lookup(name)
		if hasValue || f == nil || isBoolFlag(f) {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	out := append(append(flags, "--"), pos...)
	_ = probe.Parse(out)
	return out, probe
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// given reports which flags were set (on the command line or from POSTURE_ variables).
func given(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	return set
}

// withUsage puts a synopsis above the flag list of -h and of flag errors.
func withUsage(fs *flag.FlagSet, synopsis string) {
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: posture-hub %s\n\nflags (also after the arguments):\n", synopsis)
		fs.PrintDefaults()
	}
}

func newTable(w io.Writer) *tabwriter.Writer { return tabwriter.NewWriter(w, 0, 4, 2, ' ', 0) }

// --- teams ---

func cmdTeams(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "list, set")
	if !ok {
		return 2
	}
	switch verb {
	case "list":
		return apiCommand(ctx, "teams list", rest, stdout, stderr, nil, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			resp, err := c.ListTeams(ctx, &posturev1.ListTeamsRequest{})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := newTable(stdout)
			fmt.Fprintln(tw, "NAME\tCONDITIONAL ACCESS\tMAX ALLOWED SEVERITY\tERRORS AS FAILURES\tSTALE AFTER")
			for _, t := range resp.GetTeams() {
				s := t.GetSettings()
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.GetName(), onOff(s.GetConditionalAccess()),
					maxSeverity(s.GetMaxAllowedSeverity()), yesNo(s.GetErrorsAsFailures()), staleAfter(s.GetStaleAfter()))
			}
			return tw.Flush()
		})
	case "set":
		return teamsSet(ctx, rest, stdout, stderr)
	}
	fmt.Fprintf(stderr, "teams: unknown subcommand %q\n", verb)
	return 2
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func maxSeverity(s string) string {
	if s == "" {
		return "none (any failure blocks)"
	}
	return s
}

func staleAfter(d *durationpb.Duration) string {
	if d == nil || d.AsDuration() == 0 {
		return "24h (default)"
	}
	return d.AsDuration().String()
}

// teamsSet changes only the settings given: PutTeam replaces the whole
// team, so the current settings are read first.
func teamsSet(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var fs *flag.FlagSet
	var ca, errorsAsFailures bool
	var maxSev string
	var stale time.Duration
	extra := func(f *flag.FlagSet) {
		fs = f
		withUsage(f, "teams set NAME [flags]\n\nChanges only the settings given; a new team starts with conditional access off.")
		f.BoolVar(&ca, "conditional-access", false, "enforce verdicts for the team's hosts (false: every host counts as compliant)")
		f.StringVar(&maxSev, "max-allowed-severity", "", `failures up to this severity are allowed: low, medium, high, or "" (any failure blocks)`)
		f.BoolVar(&errorsAsFailures, "errors-as-failures", false, "count policy errors as failures")
		f.DurationVar(&stale, "stale-after", 0, "a host silent longer than this is UNKNOWN (0: the default, 24h)")
	}
	args, _ = interspersed(args, extra)
	return apiCommand(ctx, "teams set", args, stdout, stderr, extra, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
		name := strings.TrimSpace(pos[0])
		if name == "" {
			return errors.New("team name is required")
		}
		set := given(fs)
		switch sev := strings.ToLower(strings.TrimSpace(maxSev)); sev {
		case "", "low", "medium", "high":
			maxSev = sev
		default:
			return fmt.Errorf(`--max-allowed-severity %q: want low, medium, high or "" (any failure blocks)`, maxSev)
		}
		if stale < 0 {
			return errors.New("--stale-after must not be negative")
		}
		teams, err := c.ListTeams(ctx, &posturev1.ListTeamsRequest{})
		if err != nil {
			return err
		}
		var settings *posturev1.TeamSettings
		for _, t := range teams.GetTeams() {
			if t.GetName() == name {
				settings = t.GetSettings()
			}
		}
		if settings == nil {
			settings = &posturev1.TeamSettings{}
			if !set["conditional-access"] {
				fmt.Fprintf(stderr, "team %q is new: conditional access stays off until you set --conditional-access=true\n", name)
			}
		}
		if set["conditional-access"] {
			settings.ConditionalAccess = ca
		}
		if set["max-allowed-severity"] {
			settings.MaxAllowedSeverity = maxSev
		}
		if set["errors-as-failures"] {
			settings.ErrorsAsFailures = errorsAsFailures
		}
		if set["stale-after"] {
			settings.StaleAfter = nil
			if stale > 0 {
				settings.StaleAfter = durationpb.New(stale)
			}
		}
		t, err := c.PutTeam(ctx, &posturev1.PutTeamRequest{Team: &posturev1.Team{Name: name, Settings: settings}})
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, t) })
		}
		s := t.GetSettings()
		fmt.Fprintf(stdout, "team %s: conditional access %s, max allowed severity %s, errors as failures %s, stale after %s\n", t.GetName(),
			onOff(s.GetConditionalAccess()), maxSeverity(s.GetMaxAllowedSeverity()), yesNo(s.GetErrorsAsFailures()), staleAfter(s.GetStaleAfter()))
		return nil
	})
}

// --- exemptions ---

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

// oneLine keeps free text from breaking a table row.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// --- hosts: identity and verdicts ---

func hostsSetEntraID(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var clearID bool
	extra := func(fs *flag.FlagSet) {
		withUsage(fs, "hosts set-entra-id HOST_ID DEVICE_ID | HOST_ID --clear\n\nOverrides the Entra device id the host reports (\"\" or --clear removes the override).")
		fs.BoolVar(&clearID, "clear", false, "remove the override (same as DEVICE_ID \"\"): the id the host reports applies again")
	}
	args, probe := interspersed(args, extra)
	nargs := 2
	if f := probe.Lookup("clear"); f != nil && f.Value.String() == "true" {
		nargs = 1
	}
	return apiCommand(ctx, "hosts set-entra-id", args, stdout, stderr, extra, nargs, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
		device := ""
		if !clearID {
			device = strings.TrimSpace(pos[1])
		}
		h, err := c.SetHostEntraDeviceId(ctx, &posturev1.SetHostEntraDeviceIdRequest{Id: pos[0], EntraDeviceId: device})
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, h) })
		}
		if device == "" {
			fmt.Fprintf(stdout, "cleared the Entra device id override of %s; in force: %s\n", h.GetId(), orDash(h.GetEntraDeviceId()))
		} else {
			fmt.Fprintf(stdout, "host %s now maps to Entra device %s\n", h.GetId(), h.GetEntraDeviceId())
		}
		return nil
	})
}

func hostsUnmapped(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return apiCommand(ctx, "hosts unmapped", args, stdout, stderr, nil, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
		resp, err := c.ListUnmappedHosts(ctx, &posturev1.ListUnmappedHostsRequest{})
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, resp) })
		}
		tw := newTable(stdout)
		fmt.Fprintln(tw, "ID\tHOSTNAME\tREASON")
		for _, h := range resp.GetHosts() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", h.GetId(), h.GetFacts().GetHostname(), h.GetUnmappedReason())
		}
		return tw.Flush()
	})
}

// verdictState is the VERDICT column of `hosts list`.
func verdictState(h *posturev1.Host) string {
	if s := h.GetVerdict().GetState(); s != "" {
		return s
	}
	return "-"
}

// printVerdict is the verdict part of `hosts get`: what was decided, why,
// and when it changes on its own.
func printVerdict(w io.Writer, h *posturev1.Host) error {
	v := h.GetVerdict()
	if v == nil {
		fmt.Fprintln(w, "verdict -  (not computed yet)")
	} else {
		line := fmt.Sprintf("verdict %s (%s)  writes %s  updated %s", v.GetState(), orDash(v.GetCause()), orNone(v.GetDesired()), fmtTime(v.GetUpdatedAt()))
		if v.GetNextTransition() != nil {
			line += "  next change " + fmtTime(v.GetNextTransition())
		}
		fmt.Fprintln(w, line)
	}
	if r := h.GetUnmappedReason(); r != "" {
		fmt.Fprintln(w, "unmapped:", r)
	}
	if len(v.GetReasons()) > 0 {
		tw := newTable(w)
		fmt.Fprintln(tw, "\nREASON\tPOLICY\tSTATUS\tSEVERITY\tGRACE UNTIL")
		for _, r := range v.GetReasons() {
			st := strings.TrimPrefix(r.GetStatus().String(), "RESULT_STATUS_")
			if r.GetStatus() == posturev1.ResultStatus_RESULT_STATUS_UNSPECIFIED {
				st = "MISSING"
			}
			pol := r.GetPolicyId()
			if n := r.GetPolicyName(); n != "" && n != pol {
				pol += " (" + n + ")"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", reasonKind(r), pol, st, orDash(r.GetSeverity()), fmtTime(r.GetGraceDeadline()))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

func orNone(s string) string {
	if s == "" {
		return "nothing"
	}
	return s
}

func reasonKind(r *posturev1.VerdictReason) string {
	switch {
	case r.GetBlocking():
		return "blocking"
	case r.GetExempt():
		return "exempt"
	case r.GetAllowed():
		return "allowed"
	case r.GetGraceDeadline() != nil:
		return "grace"
	case r.GetStatus() == posturev1.ResultStatus_RESULT_STATUS_UNSPECIFIED:
		return "missing" // no result for the policy's current revision yet
	}
	return "not counted"
}

// --- integrations ---

func cmdIntegrations(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "list, get, create, update, delete, test")
	if !ok {
		return 2
	}
	switch verb {
	case "list":
		return apiCommand(ctx, "integrations list", rest, stdout, stderr, nil, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			resp, err := c.ListIntegrations(ctx, &posturev1.ListIntegrationsRequest{})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := newTable(stdout)
			fmt.Fprintln(tw, "ID\tNAME\tCLOUD\tTENANT\tATTRIBUTE\tCREDENTIAL\tTEAMS\tHEALTH\tWARNINGS")
			for _, in := range resp.GetIntegrations() {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%d\n", in.GetId(), in.GetName(), in.GetCloud(), in.GetTenantId(),
					in.GetExtensionAttribute(), orDash(in.GetCredentialKind()), teamsList(in.GetTeams()), orUnchecked(in.GetHealth()), len(in.GetWarnings()))
			}
			return tw.Flush()
		})
	case "get":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "integrations get", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
			in, err := c.GetIntegration(ctx, &posturev1.GetIntegrationRequest{Id: pos[0]})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, in) })
			}
			return printIntegration(stdout, in)
		})
	case "create":
		return integrationWrite(ctx, rest, stdout, stderr, false)
	case "update":
		return integrationWrite(ctx, rest, stdout, stderr, true)
	case "delete":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "integrations delete", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, _ *clientFlags, pos []string) error {
			if _, err := c.DeleteIntegration(ctx, &posturev1.DeleteIntegrationRequest{Id: pos[0]}); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "deleted integration %s\n", pos[0])
			return nil
		})
	case "test":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "integrations test", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
			r, err := c.TestIntegration(ctx, &posturev1.TestIntegrationRequest{Id: pos[0]})
			if err != nil {
				return err
			}
			if cf.json {
				if err := printJSON(stdout, r); err != nil {
					return err
				}
			} else {
				tw := newTable(stdout)
				fmt.Fprintf(tw, "ok\t%v\n", r.GetOk())
				fmt.Fprintf(tw, "token\t%s\n", okFailed(r.GetTokenOk()))
				fmt.Fprintf(tw, "device read\t%s\n", okFailed(r.GetDeviceReadOk()))
				fmt.Fprintf(tw, "health\t%s\n", orUnchecked(r.GetHealth()))
				fmt.Fprintf(tw, "message\t%s\n", r.GetMessage())
				if err := tw.Flush(); err != nil {
					return err
				}
			}
			if !r.GetOk() {
				return fmt.Errorf("integration %s: connection test failed (%s)", pos[0], r.GetHealth())
			}
			return nil
		})
	}
	fmt.Fprintf(stderr, "integrations: unknown subcommand %q\n", verb)
	return 2
}

func okFailed(b bool) string {
	if b {
		return "ok"
	}
	return "failed"
}

func orUnchecked(h string) string {
	if h == "" {
		return "unchecked"
	}
	return h
}

func teamsList(ts []string) string {
	if len(ts) == 0 {
		return "(all)"
	}
	return strings.Join(ts, ",")
}

// printIntegration shows everything the API returns; credentials are
// write-only, so only their kind and expiry appear.
func printIntegration(w io.Writer, in *posturev1.Integration) error {
	tw := newTable(w)
	fmt.Fprintf(tw, "id\t%s\n", in.GetId())
	fmt.Fprintf(tw, "name\t%s\n", in.GetName())
	fmt.Fprintf(tw, "kind\t%s\n", in.GetKind())
	fmt.Fprintf(tw, "cloud\t%s\n", in.GetCloud())
	if in.GetCloud() == "custom" {
		fmt.Fprintf(tw, "authority host\t%s\n", in.GetAuthorityHost())
		fmt.Fprintf(tw, "graph base url\t%s\n", in.GetGraphBaseUrl())
		ca := "none"
		if in.GetExtraCaPem() != "" {
			ca = "yes (PEM)"
		}
		fmt.Fprintf(tw, "extra CA\t%s\n", ca)
	}
	fmt.Fprintf(tw, "tenant id\t%s\n", in.GetTenantId())
	fmt.Fprintf(tw, "client id\t%s\n", in.GetClientId())
	cred := orDash(in.GetCredentialKind())
	switch {
	case in.GetCredentialKind() == "certificate" && in.GetCertificateNotAfter() != nil:
		cred += ", valid until " + fmtTime(in.GetCertificateNotAfter())
	case in.GetSecretExpiresAt() != nil:
		cred += ", expires " + fmtTime(in.GetSecretExpiresAt())
	}
	fmt.Fprintf(tw, "credential\t%s\n", cred)
	fmt.Fprintf(tw, "attribute\textensionAttribute%d = %q / %q\n", in.GetExtensionAttribute(), in.GetCompliantValue(), in.GetNoncompliantValue())
	fmt.Fprintf(tw, "teams\t%s\n", teamsList(in.GetTeams()))
	health := orUnchecked(in.GetHealth())
	if in.GetHealthCheckedAt() != nil {
		health += " (checked " + fmtTime(in.GetHealthCheckedAt()) + ")"
	}
	fmt.Fprintf(tw, "health\t%s\n", health)
	if m := in.GetHealthMessage(); m != "" {
		fmt.Fprintf(tw, "health message\t%s\n", oneLine(m))
	}
	for _, warn := range in.GetWarnings() {
		fmt.Fprintf(tw, "warning\t%s\n", warn)
	}
	fmt.Fprintf(tw, "created\t%s\n", fmtTime(in.GetCreatedAt()))
	fmt.Fprintf(tw, "updated\t%s\n", fmtTime(in.GetUpdatedAt()))
	return tw.Flush()
}

// Credentials come from files or the environment, never from a flag
// value: a command line is visible to every user in ps and is kept in
// shell history.
const (
	envClientSecret = "POSTURE_CLIENT_SECRET"
	envCertPassword = "POSTURE_CERTIFICATE_PASSWORD"
)

// integrationWrite is `integrations create` and `integrations update ID`.
// Update replaces the whole integration on the hub, so it starts from the
// current settings and changes only the flags given; an absent credential
// keeps the stored one.
func integrationWrite(ctx context.Context, args []string, stdout, stderr io.Writer, update bool) int {
	name := "integrations create"
	nargs := 0
	if update {
		name, nargs = "integrations update", 1
	}
	var fs *flag.FlagSet
	var (
		intName, cloud, authority, graphURL, caFile, tenant, client string
		secretFile, certFile, certPwFile, secretExpires             string
		compliantValue, noncompliantValue, teams                    string
		attribute                                                   int
	)
	extra := func(f *flag.FlagSet) {
		fs = f
		if update {
			withUsage(f, "integrations update ID [flags]\n\nChanges only the settings given; without a new credential the stored one is kept.")
		} else {
			withUsage(f, "integrations create --name N --tenant-id T --client-id C --attribute 1..15 (--client-secret-file F | --certificate-file F) [flags]\n\n"+
				"The client secret is read from a file or "+envClientSecret+", never from the command line, where ps and shell history would show it.")
		}
		f.StringVar(&intName, "name", "", "a name for the integration")
		f.StringVar(&cloud, "cloud", "public", "Microsoft cloud: public, usgov (GCC High), usgov-dod, china (21Vianet) or custom")
		f.StringVar(&authority, "authority-host", "", "custom cloud: Entra authority host (https://…)")
		f.StringVar(&graphURL, "graph-base-url", "", "custom cloud: Graph base URL (https://…)")
		f.StringVar(&caFile, "extra-ca-file", "", "custom cloud: PEM file of a CA to trust for the authority and Graph")
		f.StringVar(&tenant, "tenant-id", "", "Entra tenant id")
		f.StringVar(&client, "client-id", "", "application (client) id of the app registration")
		f.StringVar(&secretFile, "client-secret-file", "",
			"file holding the client secret (or set "+envClientSecret+"); there is no flag for the secret itself, because a command line shows in ps and shell history")
		f.StringVar(&certFile, "certificate-file", "", "certificate with its private key, PEM or PFX (instead of a client secret)")
		f.StringVar(&certPwFile, "certificate-password-file", "", "file holding the PFX password (or set "+envCertPassword+")")
		f.StringVar(&secretExpires, "secret-expires", "", "when the client secret expires, RFC 3339 date (2027-01-31) or time; enables expiry warnings")
		f.IntVar(&attribute, "attribute", 0, "device extension attribute to write, 1..15")
		f.StringVar(&compliantValue, "compliant-value", "", `value written for compliant devices (default "Compliant")`)
		f.StringVar(&noncompliantValue, "noncompliant-value", "", `value written for non-compliant devices (default "Non-compliant")`)
		f.StringVar(&teams, "teams", "", `comma-separated teams whose hosts it syncs (empty: every team)`)
	}
	args, _ = interspersed(args, extra)
	return apiCommand(ctx, name, args, stdout, stderr, extra, nargs, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
		set := given(fs)
		in := &posturev1.Integration{}
		if update {
			cur, err := c.GetIntegration(ctx, &posturev1.GetIntegrationRequest{Id: pos[0]})
			if err != nil {
				return err
			}
			in = &posturev1.Integration{
				Id: cur.GetId(), Name: cur.GetName(), Kind: cur.GetKind(), Cloud: cur.GetCloud(), AuthorityHost: cur.GetAuthorityHost(),
				GraphBaseUrl: cur.GetGraphBaseUrl(), ExtraCaPem: cur.GetExtraCaPem(), TenantId: cur.GetTenantId(), ClientId: cur.GetClientId(),
				SecretExpiresAt: cur.GetSecretExpiresAt(), ExtensionAttribute: cur.GetExtensionAttribute(),
				CompliantValue: cur.GetCompliantValue(), NoncompliantValue: cur.GetNoncompliantValue(), Teams: cur.GetTeams(),
			}
		} else {
			set["cloud"] = true // the default applies
			if strings.TrimSpace(intName) == "" {
				return errors.New("--name is required")
			}
			if tenant == "" || client == "" {
				return errors.New("--tenant-id and --client-id are required")
			}
			if attribute == 0 {
				return errors.New("--attribute (1..15) is required: the device extension attribute Conditional Access filters on")
			}
		}
		str := map[string]*string{
			"name": &in.Name, "cloud": &in.Cloud, "authority-host": &in.AuthorityHost, "graph-base-url": &in.GraphBaseUrl,
			"tenant-id": &in.TenantId, "client-id": &in.ClientId, "compliant-value": &in.CompliantValue, "noncompliant-value": &in.NoncompliantValue,
		}
		val := map[string]string{
			"name": intName, "cloud": cloud, "authority-host": authority, "graph-base-url": graphURL,
			"tenant-id": tenant, "client-id": client, "compliant-value": compliantValue, "noncompliant-value": noncompliantValue,
		}
		for k, p := range str {
			if set[k] {
				*p = strings.TrimSpace(val[k])
			}
		}
		switch in.GetCloud() {
		case "public", "usgov", "usgov-dod", "china", "custom":
		default:
			return fmt.Errorf("--cloud %q: want public, usgov, usgov-dod, china or custom", in.GetCloud())
		}
		if set["attribute"] {
			if attribute < 1 || attribute > 15 {
				return fmt.Errorf("--attribute %d: want 1..15 (extensionAttribute1..15)", attribute)
			}
			in.ExtensionAttribute = int32(attribute)
		}
		if set["teams"] {
			in.Teams = nil
			for _, t := range strings.Split(teams, ",") {
				if t = strings.TrimSpace(t); t != "" {
					in.Teams = append(in.Teams, t)
				}
			}
		}
		if set["extra-ca-file"] {
			in.ExtraCaPem = ""
			if caFile != "" {
				b, err := os.ReadFile(caFile)
				if err != nil {
					return fmt.Errorf("--extra-ca-file: %w", err)
				}
				if !strings.Contains(string(b), "-----BEGIN CERTIFICATE-----") {
					return fmt.Errorf("--extra-ca-file %s: no PEM certificate", caFile)
				}
				in.ExtraCaPem = string(b)
			}
		}
		// The credential.
		secret, err := readSecret(secretFile, "--client-secret-file", envClientSecret)
		if err != nil {
			return err
		}
		in.ClientSecret = secret
		if certFile != "" {
			if in.Certificate, err = os.ReadFile(certFile); err != nil {
				return fmt.Errorf("--certificate-file: %w", err)
			}
			if in.CertificatePassword, err = readSecret(certPwFile, "--certificate-password-file", envCertPassword); err != nil {
				return err
			}
		} else if certPwFile != "" {
			return errors.New("--certificate-password-file needs --certificate-file")
		}
		switch {
		case in.ClientSecret != "" && len(in.Certificate) > 0:
			return fmt.Errorf("give a client secret (--client-secret-file or %s) or --certificate-file, not both", envClientSecret)
		case !update && in.ClientSecret == "" && len(in.Certificate) == 0:
			return fmt.Errorf("a credential is required: --client-secret-file (or %s), or --certificate-file", envClientSecret)
		}
		if in.ClientSecret != "" || len(in.Certificate) > 0 {
			in.SecretExpiresAt = nil // the old expiry belonged to the old credential
		}
		if secretExpires != "" {
			t, err := parseDateOrTime(secretExpires)
			if err != nil {
				return fmt.Errorf("--secret-expires: %w", err)
			}
			in.SecretExpiresAt = timestamppb.New(t)
		}
		var out *posturev1.Integration
		if update {
			out, err = c.UpdateIntegration(ctx, &posturev1.UpdateIntegrationRequest{Integration: in})
		} else {
			out, err = c.CreateIntegration(ctx, &posturev1.CreateIntegrationRequest{Integration: in})
		}
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, out) })
		}
		verb := "created"
		if update {
			verb = "updated"
		}
		fmt.Fprintf(stderr, "%s integration %s; check it with `posture-hub integrations test %s`\n", verb, out.GetId(), out.GetId())
		return printIntegration(stdout, out)
	})
}

// readSecret reads a credential from file (trailing newline dropped), else
// from the environment variable env; "" when neither is given.
func readSecret(file, flagName, env string) (string, error) {
	if file == "" {
		return os.Getenv(env), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("%s: %w", flagName, err)
	}
	s := strings.TrimRight(string(b), "\r\n")
	if s == "" {
		return "", fmt.Errorf("%s %s: the file is empty", flagName, file)
	}
	return s, nil
}

func parseDateOrTime(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("%q: want an RFC 3339 date (2027-01-31) or time (2027-01-31T00:00:00Z)", s)
}

// --- sync outbox ---

func cmdSync(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "list, retry")
	if !ok {
		return 2
	}
	switch verb {
	case "list":
		var state, integration string
		var limit int
		extra := func(fs *flag.FlagSet) {
			fs.StringVar(&state, "state", "", "pending, dead or done (default: pending and dead)")
			fs.StringVar(&integration, "integration", "", "only this integration's items")
			fs.IntVar(&limit, "limit", 100, "at most this many items (1..1000)")
		}
		rest, _ = interspersed(rest, extra)
		return apiCommand(ctx, "sync list", rest, stdout, stderr, extra, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
			switch state {
			case "", "pending", "dead", "done":
			default:
				return fmt.Errorf("--state %q: want pending, dead or done", state)
			}
			if limit < 1 || limit > 1000 {
				return fmt.Errorf("--limit %d: want 1..1000", limit)
			}
			resp, err := c.ListSyncItems(ctx, &posturev1.ListSyncItemsRequest{State: state, IntegrationId: integration, Limit: int32(limit)})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, resp) })
			}
			tw := newTable(stdout)
			fmt.Fprintln(tw, "ID\tINTEGRATION\tHOST\tDEVICE\tDESIRED\tSTATE\tATTEMPTS\tCREATED\tNEXT ATTEMPT\tERROR")
			for _, it := range resp.GetItems() {
				errText := it.GetError()
				if code := it.GetErrorCode(); code != "" {
					errText = code + ": " + errText
				}
				next := fmtTime(it.GetNextAttemptAt())
				if it.GetState() == "done" {
					next = "-"
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", it.GetId(), it.GetIntegrationId(), it.GetHostId(), it.GetDeviceId(),
					it.GetDesired(), it.GetState(), it.GetAttempts(), fmtTime(it.GetCreatedAt()), next, orDash(oneLine(errText)))
			}
			return tw.Flush()
		})
	case "retry":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "sync retry", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
			id, err := strconv.ParseInt(pos[0], 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("sync item id %q: want a positive number (see `posture-hub sync list --state dead`)", pos[0])
			}
			it, err := c.RetrySyncItem(ctx, &posturev1.RetrySyncItemRequest{Id: id})
			if err != nil || cf.json {
				return firstErr(err, func() error { return printJSON(stdout, it) })
			}
			fmt.Fprintf(stdout, "sync item %d (device %s, %s) is %s again, next attempt %s\n", it.GetId(), it.GetDeviceId(), it.GetDesired(), it.GetState(), fmtTime(it.GetNextAttemptAt()))
			return nil
		})
	}
	fmt.Fprintf(stderr, "sync: unknown subcommand %q\n", verb)
	return 2
}
