//go:build unix

package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"
)

// errParentGone: the process that started us (osqueryd, when it autoloads
// the extension) has exited.
var errParentGone = errors.New("parent process exited")

// parentPoll is how often the parent pid is compared; one getppid call.
const parentPoll = 500 * time.Millisecond

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
	t := time.NewTicker(parentPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if now := os.Getppid(); now != parent {
				log.Info("the process that started posture.ext exited; exiting", "parent_pid", parent)
				return errParentGone
			}
		}
	}
}
