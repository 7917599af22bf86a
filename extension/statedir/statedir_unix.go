//go:build unix

package statedir

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// Prepare creates dir (0700) if it is missing and makes sure only its owner,
// the extension's user, can use it. It returns a note of what it fixed, for
// the log, or "" when nothing needed fixing.
func Prepare(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return "", fmt.Errorf("state dir: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("state dir %s is not a directory", dir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return "", errors.New("state dir: no owner information")
	}
	if uid := os.Geteuid(); int(st.Uid) != uid {
		return "", errOwner{dir: dir, owner: int(st.Uid), uid: uid}
	}
	if perm := fi.Mode().Perm(); perm != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return "", fmt.Errorf("state dir: set mode %04o to 0700: %w", perm, err)
		}
		return fmt.Sprintf("mode %04o changed to 0700", perm), nil
	}
	return "", nil
}

// Exposed reports why a secret file is readable by others than its owner,
// or "" when it is not.
func Exposed(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Sprintf("mode %04o lets other users read it; chmod 600 it", perm), nil
	}
	return "", nil
}
