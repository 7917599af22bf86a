package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

func cmdHosts(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "list, get, revoke, delete, recheck, set-entra-id, set-upn, unmapped")
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
			fmt.Fprintf(stdout, "serial %s  uuid %s  entra device %s  user %s\n", f.GetHardwareSerial(), f.GetHardwareUuid(), orDash(h.GetEntraDeviceId()), userOf(h))
			fmt.Fprintf(stdout, "enrolled %s  last seen %s  certificate until %s\n", fmtTime(h.GetEnrolledAt()), fmtTime(h.GetLastSeenAt()), fmtTime(h.GetCertificateNotAfter()))
			printReporting(stdout, h)
			printTrust(stdout, h)
			if err := printVerdict(stdout, h); err != nil {
				return err
			}
			printHostScopes(stdout, h)
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
	case "set-upn":
		return hostsSetUPN(ctx, rest, stdout, stderr)
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

func hostState(h *posturev1.Host) string {
	state := "offline"
	switch {
	case h.GetRevoked():
		return "revoked"
	case h.GetConnected():
		state = "connected"
	}
	if hh := h.GetHealth(); hh != nil && (!hh.GetOsqueryOk() || !hh.GetSpoolOk()) {
		state += ", agent unhealthy"
	}
	if h.GetHealth().GetSpoolDroppedTransitions() > 0 {
		// The spool dropped status changes at its cap: the history at the
		// hub has gaps. The verdict is unaffected.
		state += ", history gap"
	}
	return state
}

// printReporting is the reporting line of `hosts get`: the agent's own
// health, its cadence and where its stream is.
func printReporting(w io.Writer, h *posturev1.Host) {
	ok := func(b bool) string {
		if b {
			return "ok"
		}
		return "FAILING"
	}
	if hh := h.GetHealth(); hh != nil {
		line := fmt.Sprintf("agent health: osquery %s, spool %s, %d batches spooled (reported %s)",
			ok(hh.GetOsqueryOk()), ok(hh.GetSpoolOk()), hh.GetSpoolDepth(), fmtTime(hh.GetReportedAt()))
		if d := hh.GetDetail(); d != "" {
			line += ": " + d
		}
		fmt.Fprintln(w, line)
		printSpoolDrops(w, hh)
	} else {
		fmt.Fprintln(w, "agent health: not reported")
	}
	every := "-"
	if d := h.GetReportInterval(); d != nil {
		every = d.AsDuration().String()
	}
	fmt.Fprintf(w, "reports every %s  last batch %s  stream %s\n", every, fmtTime(h.GetLastReportAt()), orDash(h.GetConnectedReplica()))
}

// printSpoolDrops says what the host's spool dropped at its byte cap, if
// anything: lost transitions are gaps in the history, lost repeats are not.
func printSpoolDrops(w io.Writer, hh *posturev1.HostHealth) {
	res, tr := hh.GetSpoolDroppedResults(), hh.GetSpoolDroppedTransitions()
	switch {
	case tr > 0:
		fmt.Fprintf(w, "spool: %d status transitions dropped at the cap (history gap; verdict unaffected); %d results dropped in all\n", tr, res)
	case res > 0:
		fmt.Fprintf(w, "spool: %d repeated results dropped at the cap (no status change lost; verdict unaffected)\n", res)
	}
}

func printResults(tw io.Writer, rs []*posturev1.HostResult, indent string) {
	for _, r := range rs {
		st := strings.TrimPrefix(r.GetStatus().String(), "RESULT_STATUS_")
		fmt.Fprintf(tw, "%s%s\t%s\t%s\t%s\t%s\n", indent, r.GetPolicyId(), st, fmtTime(r.GetStatusSince()), fmtTime(r.GetEvaluatedAt()), r.GetError())
	}
}

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

// userOf is the host's user principal name in force, marked when an admin
// set it.
func userOf(h *posturev1.Host) string {
	if h.GetUserPrincipalNameOverride() != "" {
		return h.GetUserPrincipalNameOverride() + " (set by admin)"
	}
	return orDash(h.GetUserPrincipalName())
}

func hostsSetUPN(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	var clearUPN bool
	extra := func(fs *flag.FlagSet) {
		withUsage(fs, "hosts set-upn HOST_ID UPN | HOST_ID --clear\n\nOverrides the user principal name the host reports (\"\" or --clear removes the override):\nthe user the Intune partner sink, session revocation and the portal go by.")
		fs.BoolVar(&clearUPN, "clear", false, "remove the override (same as UPN \"\"): the user the host reports applies again")
	}
	args, probe := interspersed(args, extra)
	nargs := 2
	if f := probe.Lookup("clear"); f != nil && f.Value.String() == "true" {
		nargs = 1
	}
	return apiCommand(ctx, "hosts set-upn", args, stdout, stderr, extra, nargs, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
		upn := ""
		if !clearUPN {
			upn = strings.TrimSpace(pos[1])
		}
		h, err := c.SetHostUserPrincipalName(ctx, &posturev1.SetHostUserPrincipalNameRequest{Id: pos[0], UserPrincipalName: upn})
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, h) })
		}
		if upn == "" {
			fmt.Fprintf(stdout, "cleared the user principal name override of %s; in force: %s\n", h.GetId(), orDash(h.GetUserPrincipalName()))
		} else {
			fmt.Fprintf(stdout, "host %s now belongs to user %s\n", h.GetId(), h.GetUserPrincipalName())
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
			fmt.Fprintf(tw, "%s\t%s\t%s\n", h.GetId(), h.GetFacts().GetHostname(), unmappedReason(h))
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
	if c := h.GetEntraCheck(); c != nil {
		if c.GetMismatch() != "" {
			fmt.Fprintln(w, "ENTRA DEVICE MISMATCH:", c.GetMismatch(), "(checked", fmtTime(c.GetCheckedAt())+")")
		} else {
			fmt.Fprintf(w, "entra device: %q, %s (matches; checked %s)\n", c.GetDisplayName(), orDash(c.GetOperatingSystem()), fmtTime(c.GetCheckedAt()))
		}
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

// printTrust is the identity part of `hosts get`: duplicate and re-enroll
// flags, and a device claim that is not plain ownership.
func printTrust(w io.Writer, h *posturev1.Host) {
	if d := h.GetDuplicateOf(); d != "" {
		fmt.Fprintf(w, "DUPLICATE of host %s: enrolled with another team's secret for that host's hardware uuid\n", d)
	}
	if n := h.GetReenrollCount(); n > 0 {
		fmt.Fprintf(w, "re-enrolled %d time(s), last %s (earlier certificates retired)\n", n, fmtTime(h.GetReenrolledAt()))
	}
	if r := claimReason(h); r != "" {
		fmt.Fprintf(w, "entra claim %s: %s\n", h.GetEntraClaim(), r)
	}
}

// claimReason is the device claim's reason with the other hosts named.
func claimReason(h *posturev1.Host) string {
	r := h.GetEntraClaimReason()
	if r == "" {
		return ""
	}
	if others := h.GetEntraClaimHosts(); len(others) > 0 {
		r += " [other hosts: " + strings.Join(others, ", ") + "]"
	}
	return r
}

// unmappedReason is the REASON column of `hosts unmapped`.
func unmappedReason(h *posturev1.Host) string {
	if r := h.GetUnmappedReason(); r != "" {
		return r
	}
	return claimReason(h)
}
