package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/store"
)

func cmdAudit(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	verb, rest, ok := subcommand(args, stderr, "list")
	if !ok {
		return 2
	}
	if verb != "list" {
		fmt.Fprintf(stderr, "audit: unknown subcommand %q\n", verb)
		return 2
	}
	var actor, action, since string
	var limit int
	extra := func(fs *flag.FlagSet) {
		withUsage(fs, "audit list [--actor NAME] [--action METHOD] [--since 24h|RFC3339] [--limit N]")
		fs.StringVar(&actor, "actor", "", `only this token name ("local": the CLI on the store)`)
		fs.StringVar(&action, "action", "", "only this action, e.g. UpdateTeam, CreateExemption, \"token create\"")
		fs.StringVar(&since, "since", "", "only events since a duration ago (24h) or a time (RFC 3339)")
		fs.IntVar(&limit, "limit", store.DefaultAuditLimit, "at most this many events, newest first (max 1000)")
	}
	rest, _ = interspersed(rest, extra)
	return apiCommand(ctx, "audit list", rest, stdout, stderr, extra, 0, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, _ []string) error {
		req := &posturev1.ListAuditEventsRequest{Actor: actor, Action: action, Limit: int32(limit)}
		if since != "" {
			t, err := parseSince(since, time.Now())
			if err != nil {
				return err
			}
			req.Since = timestamppb.New(t)
		}
		resp, err := c.ListAuditEvents(ctx, req)
		if err != nil || cf.json {
			return firstErr(err, func() error { return printJSON(stdout, resp) })
		}
		tw := newTable(stdout)
		fmt.Fprintln(tw, "TIME\tACTOR\tROLE\tACTION\tTARGET\tSOURCE\tRESULT")
		for _, e := range resp.GetEvents() {
			result := e.GetResult()
			if e.GetError() != "" {
				result += ": " + oneLine(e.GetError())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", fmtTime(e.GetAt()), orDash(e.GetActor()), orDash(e.GetActorRole()),
				e.GetAction(), orDash(e.GetTarget()), orDash(e.GetSource()), result)
		}
		return tw.Flush()
	})
}

func parseSince(s string, now time.Time) (time.Time, error) {
	if d, err := time.ParseDuration(s); err == nil {
		if d < 0 {
			return time.Time{}, errors.New("--since: a duration must not be negative")
		}
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want a duration (24h) or an RFC 3339 time", s)
	}
	return t, nil
}

// localAudit records an action the CLI took on the store directly (no token
// involved: the actor is "local", the source names the OS user).
func localAudit(ctx context.Context, st store.Audit, action, target, after string, actErr error) error {
	src := "local"
	if u, err := user.Current(); err == nil {
		src = "local user " + u.Username
	}
	if h, err := os.Hostname(); err == nil {
		src += " on " + h
	}
	e := store.AuditEvent{
		At: time.Now(), Actor: store.AuditActorLocal, ActorRole: store.RoleAdmin, Action: action, Target: target,
		Source: src, Result: store.AuditOK, After: after,
	}
	if actErr != nil {
		e.Result, e.Error = "error", actErr.Error()
	}
	return st.RecordAuditEvent(ctx, e)
}
