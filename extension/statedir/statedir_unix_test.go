//go:build unix

package statedir

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func mode(t *testing.T, p string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestPrepareCreates0700EvenUnderAPermissiveUmask(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	dir := filepath.Join(t.TempDir(), "a", "posture")
	note, err := Prepare(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 || note != "" {
		t.Fatalf("mode %04o note %q, want 0700 and no note", m, note)
	}
	// Again: nothing to fix.
	if note, err := Prepare(dir); err != nil || note != "" {
		t.Fatalf("second Prepare: %q %v", note, err)
	}
}

// A state directory made by hand or by a package with a loose mode let every
// local user list the spool and read the certificate; it is tightened.
func TestPrepareTightensAnOpenDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	note, err := Prepare(dir)
	if err != nil {
		t.Fatal(err)
	}
	if m := mode(t, dir); m != 0o700 {
		t.Fatalf("mode %04o after Prepare, want 0700", m)
	}
	if !strings.Contains(note, "0755") {
		t.Fatalf("note %q does not say what was changed", note)
	}
}

// A directory another account owns could have its key or certificate
// swapped by that account: refused, with the reason.
func TestPrepareRefusesADirectoryOwnedByAnotherUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the directory to another uid")
	}
	dir := t.TempDir()
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	_, err := Prepare(dir)
	var eo errOwner
	if !errors.As(err, &eo) || eo.owner != 65534 || !strings.Contains(err.Error(), "chown") {
		t.Fatalf("Prepare = %v, want a refusal naming uid 65534", err)
	}
}

func TestPrepareRefusesAFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "state")
	if err := os.WriteFile(f, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Prepare(f); err == nil {
		t.Fatal("a file accepted as the state directory")
	}
}

func TestExposed(t *testing.T) {
	p := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(p, []byte("s"), 0o600); err != nil {
		t.Fatal(err)
	}
	if why, err := Exposed(p); err != nil || why != "" {
		t.Fatalf("0600: %q %v", why, err)
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	if why, err := Exposed(p); err != nil || !strings.Contains(why, "chmod 600") {
		t.Fatalf("0640: %q %v", why, err)
	}
}
