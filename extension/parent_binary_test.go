//go:build unix

package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/internal/fakehub"
)

// osqueryd autoloads posture.ext as its child and starts a fresh copy when
// it comes back, so the old one must not linger after its parent dies (it
// used to stay until --osquery-gone-exit, 5 minutes). Here a shell stands in
// for osqueryd as the parent: it starts the built binary and is killed.
func TestBinaryExitsWhenItsParentDies(t *testing.T) {
	sock := shortSocket(t, "ppar")
	dir := filepath.Dir(sock)
	osqd := startOsqueryd(t, sock, "linux")
	ca := fakehub.NewCA(t, clock.Real{})
	caFile := filepath.Join(dir, "hub-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	pidFile := filepath.Join(dir, "ext.pid")
	// No hub is needed to test the lifecycle: the link retries in the
	// background while the extension serves osqueryd.
	script := `"$0" --socket "$1" --timeout 3 --interval 1 --hub 127.0.0.1:1 --enroll-secret x --hub-ca "$4" --state-dir "$2" & echo $! > "$3"; wait`
	parent := exec.Command("sh", "-c", script, builtBinary(t), sock, filepath.Join(dir, "state"), pidFile, caFile)
	parent.Stderr = tlog{t}
	parent.Stdout = tlog{t}
	if err := parent.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	poll(t, "the extension's pid", func() bool {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return false
		}
		pid, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err == nil && pid > 0
	})
	defer syscall.Kill(pid, syscall.SIGKILL)
	poll(t, "the extension registered with osqueryd", func() bool {
		_, err := osqd.Query(context.Background(), "SELECT * FROM posture_status")
		return err == nil
	})
	if err := parent.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = parent.Wait()
	killed := time.Now()
	poll(t, "the orphaned extension exits", func() bool {
		// Signal 0 probes for the process; it is reaped by init once gone.
		return syscall.Kill(pid, 0) != nil
	})
	t.Logf("exited %v after its parent died", time.Since(killed).Round(time.Millisecond))
}
