package main

import (
	"context"
	"errors"
	"log/slog"
	"time"
)

// errParentGone: the process that started us (osqueryd, when it autoloads
// the extension) has exited.
var errParentGone = errors.New("parent process exited")

// parentPoll is how often the parent is checked (one cheap system call).
const parentPoll = 500 * time.Millisecond

// pollParent checks gone every parentPoll until it reports the parent
// exited (errParentGone) or ctx ends (nil). The per-OS watchParent decides
// how to tell (parent_unix.go, parent_windows.go).
func pollParent(ctx context.Context, ppid int, gone func() bool, log *slog.Logger) error {
	t := time.NewTicker(parentPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if gone() {
				log.Info("the process that started posture.ext exited; exiting", "parent_pid", ppid)
				return errParentGone
			}
		}
	}
}
