//go:build unix

package main

import (
	"context"
	"log/slog"
	"os"
)

// watchParent ends the extension promptly when the osqueryd that autoloaded
// it exits: osqueryd starts a fresh copy of every autoloaded extension, so a
// stray one must not linger for --osquery-gone-exit. On Unix an orphan is
// re-parented, so a changed parent pid means the parent died. A service
// (started by init, systemd or launchd: parent pid 1) is left alone; it
// reconnects to a restarted osqueryd instead.
func watchParent(ctx context.Context, log *slog.Logger) error {
	parent := os.Getppid()
	if parent <= 1 {
		<-ctx.Done()
		return nil
	}
	return pollParent(ctx, parent, func() bool { return os.Getppid() != parent }, log)
}
