//go:build windows

package main

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"time"

	"golang.org/x/sys/windows"
)

// errParentGone: the process that started us (osqueryd, when it autoloads
// the extension) has exited.
var errParentGone = errors.New("parent process exited")

// parentPoll is how often the parent's handle is checked; one wait call
// with a zero timeout.
const parentPoll = 500 * time.Millisecond

// watchParent ends the extension promptly when the osqueryd that autoloaded
// it exits, as on Unix (parent_unix.go). Windows does not re-parent orphans,
// so the parent is watched through a handle to it: the handle stays valid
// after the parent exits and is signalled then. A parent id already reused
// by a process younger than us means the parent is gone. A service's parent
// is the service control manager (services.exe) or its wrapper, which does
// not exit, so a service is unaffected.
//
// Compile-checked in CI; not run here.
func watchParent(ctx context.Context, log *slog.Logger) error {
	ppid := os.Getppid()
	h, err := windows.OpenProcess(windows.SYNCHRONIZE|windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(ppid))
	if err != nil {
		// Not ours to open (another account's process) or already gone
		// before we looked: the osquery watch still covers it.
		log.Debug("parent process not watched", "parent_pid", ppid, "err", err)
		<-ctx.Done()
		return nil
	}
	defer windows.CloseHandle(h)
	if younger, err := startedAfterUs(h); err == nil && younger {
		log.Info("the process that started posture.ext exited; exiting", "parent_pid", ppid)
		return errParentGone
	}
	t := time.NewTicker(parentPoll)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			if ev, err := windows.WaitForSingleObject(h, 0); err == nil && ev == windows.WAIT_OBJECT_0 {
				log.Info("the process that started posture.ext exited; exiting", "parent_pid", ppid)
				return errParentGone
			}
		}
	}
}

// startedAfterUs reports whether process h was created after this process,
// so it cannot be the one that started us.
func startedAfterUs(h windows.Handle) (bool, error) {
	var theirs, ours, x1, x2, x3 windows.Filetime
	if err := windows.GetProcessTimes(h, &theirs, &x1, &x2, &x3); err != nil {
		return false, err
	}
	if err := windows.GetProcessTimes(windows.CurrentProcess(), &ours, &x1, &x2, &x3); err != nil {
		return false, err
	}
	return theirs.Nanoseconds() > ours.Nanoseconds(), nil
}
