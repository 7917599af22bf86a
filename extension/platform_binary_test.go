//go:build unix

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/internal/fakehub"
)

// A state directory that already exists with a loose mode (made by hand or
// by a package) is set to 0700 by the running binary; it used to be left
// as it was, so every local user could list the spool and read the cert.
func TestBinaryTightensAnOpenStateDir(t *testing.T) {
	dir, err := os.MkdirTemp("", "pstd")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(state, 0o755); err != nil { // whatever the umask
		t.Fatal(err)
	}
	caFile := filepath.Join(dir, "hub-ca.pem")
	if err := os.WriteFile(caFile, fakehub.NewCA(t, clock.Real{}).PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	// No osqueryd and no hub: the extension keeps retrying both, which is
	// enough to see what it did to its state directory.
	p := startExt(t, filepath.Join(dir, "em.sock"), "127.0.0.1:1", caFile, state)
	poll(t, "the state dir at 0700", func() bool {
		fi, err := os.Stat(state)
		return err == nil && fi.Mode().Perm() == 0o700
	})
	if done, err := p.exited(); done {
		t.Fatalf("posture.ext exited: %v", err)
	}
}

// A socket osquery-go cannot serve tables next to is refused at start with
// the reason, instead of a table-registration retry every minute forever.
func TestBinaryRefusesAnOverlongSocket(t *testing.T) {
	sock := "/tmp/" + strings.Repeat("s", 100) + ".em"
	cmd := exec.Command(builtBinary(t), "--socket", sock, "--hub", "127.0.0.1:1", "--state-dir", t.TempDir())
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); !ok {
		t.Fatalf("exit: %v (%s)", err, out)
	}
	if !strings.Contains(string(out), "longer than 97") || !strings.Contains(string(out), "--extensions_socket") {
		t.Fatalf("the error does not say what is wrong:\n%s", out)
	}
}
