//go:build windows

package main

import (
	"context"
	"log/slog"
	"os"

	"golang.org/x/sys/windows"
)

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
	// A wait with a zero timeout: signalled once the parent has exited.
	return pollParent(ctx, ppid, func() bool {
		ev, err := windows.WaitForSingleObject(h, 0)
		return err == nil && ev == windows.WAIT_OBJECT_0
	}, log)
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
