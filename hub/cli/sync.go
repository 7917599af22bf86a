package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strconv"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

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
				desired := it.GetDesired()
				if it.GetKind() == "revoke_sessions" {
					desired = "revoke sessions of " + it.GetSubject()
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", it.GetId(), it.GetIntegrationId(), it.GetHostId(), it.GetDeviceId(),
					desired, it.GetState(), it.GetAttempts(), fmtTime(it.GetCreatedAt()), next, orDash(oneLine(errText)))
			}
			return tw.Flush()
		})
	case "retry":
		rest, _ = interspersed(rest, nil)
		return apiCommand(ctx, "sync retry", rest, stdout, stderr, nil, 1, func(ctx context.Context, c posturev1.AdminServiceClient, cf *clientFlags, pos []string) error {
			id, err := strconv.ParseInt(pos[0], 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("sync item id %q: want a positive number (see `posture-hub sync list`)", pos[0])
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
