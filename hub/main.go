// Command posture-hub runs the posture hub (`serve`) and administers it:
// tokens, enroll secrets, hosts, policies, teams, exemptions, integrations
// and the sync outbox. The commands live in package hub/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/posture-dev/posture/hub/cli"
)

// version is set at build time (-ldflags "-X main.version=…").
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cli.Version = version
	os.Exit(cli.Run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}
