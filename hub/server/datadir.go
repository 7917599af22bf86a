package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// LockFile is the lock file in the data dir.
const LockFile = "posture-hub.lock"

// dirLock is an exclusive flock on the data dir's lock file.
type dirLock struct{ f *os.File }

// lockDataDir takes the data dir's exclusive lock, waiting up to wait for a
// holder to let go. It guards what must happen once per data dir (creating
// the CA and the secrets key) and, on SQLite, the database itself: a second
// hub on the same file would corrupt nothing (SQLite locks) but would run
// a second scheduler and CA beside the first.
func lockDataDir(dir string, wait time.Duration) (*dirLock, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("data dir lock: %w", err)
	}
	deadline := time.Now().Add(wait)
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("data dir lock %s: %w", path, err)
		}
		if time.Now().After(deadline) {
			holder := "another process"
			if b, rerr := os.ReadFile(path); rerr == nil {
				if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); perr == nil {
					holder = fmt.Sprintf("another posture-hub (pid %d)", pid)
				}
			}
			f.Close()
			return nil, fmt.Errorf("data dir %s is in use by %s: one data dir serves one hub "+
				"(replicas need PostgreSQL, --database-url, and then share only the CA files)", dir, holder)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Record the holder for the next one's error message.
	if err := f.Truncate(0); err == nil {
		_, _ = f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	}
	return &dirLock{f: f}, nil
}

// unlock releases the lock (closing the file drops the flock).
func (l *dirLock) unlock() {
	if l != nil && l.f != nil {
		l.f.Close()
		l.f = nil
	}
}
