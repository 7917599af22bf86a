package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/extension/clock"
	"github.com/posture-dev/posture/extension/internal/fakehub"
	"github.com/posture-dev/posture/extension/osquerytest"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// builtBinary builds posture.ext once per test run: the tests below run it
// as a real process, the way osqueryd autoloads it.
func builtBinary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "posture-ext-bin")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "posture.ext")
		out, err := exec.Command("go", "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = err
			t.Logf("%s", out)
		}
	})
	if buildErr != nil {
		t.Fatalf("build posture.ext: %v", buildErr)
	}
	return binPath
}

// shortSocket is a socket path in a fresh temporary directory, short enough
// for a unix socket address once osquery-go appends ".<uuid>".
func shortSocket(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "em.sock")
}

// waitExtensionSocket waits for the socket the extension serves its tables
// on (osqueryd's socket path plus "." and the route UUID) and returns it.
func waitExtensionSocket(t testing.TB, sock string) string {
	t.Helper()
	var extSock string
	poll(t, "the extension's socket", func() bool {
		m, _ := filepath.Glob(sock + ".*")
		if len(m) == 1 {
			extSock = m[0]
		}
		return extSock != ""
	})
	return extSock
}

// startOsqueryd starts the osqueryd stand-in on sock; it is closed when the
// test ends (Close is idempotent, so tests may also close it early).
func startOsqueryd(t testing.TB, sock, platform string) *osquerytest.Server {
	t.Helper()
	osqd, err := osquerytest.Start(context.Background(), osquerytest.Options{Platform: platform, SocketPath: sock})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { osqd.Close() })
	return osqd
}

// hubFlags are the --hub address (by name, as the certificate says) and a
// --hub-ca file for a fake hub.
func hubFlags(t testing.TB, hub *fakehub.Hub, ca *fakehub.CA) (addr, caFile string) {
	t.Helper()
	caFile = filepath.Join(t.TempDir(), "hub-ca.pem")
	if err := os.WriteFile(caFile, ca.PEM, 0o644); err != nil {
		t.Fatal(err)
	}
	return strings.Replace(hub.Addr, "127.0.0.1", "localhost", 1), caFile
}

type extProc struct {
	cmd  *exec.Cmd
	done chan error
}

// startExt runs the binary with the flags osqueryd passes to an autoloaded
// extension, plus the hub flags from the extensions' flag file.
func startExt(t testing.TB, sock, hubAddr, caFile, stateDir string) *extProc {
	t.Helper()
	cmd := exec.Command(builtBinary(t),
		"--socket", sock, "--timeout", "3", "--interval", "1", "--verbose",
		"--hub", hubAddr, "--enroll-secret", "s3cret", "--hub-ca", caFile, "--state-dir", stateDir)
	cmd.Stderr = tlog{t}
	cmd.Stdout = tlog{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &extProc{cmd: cmd, done: make(chan error, 1)}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

func (p *extProc) stop(t testing.TB) {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
		t.Error("posture.ext did not exit on SIGTERM")
	}
}

// exited reports whether the process has ended (non-blocking).
func (p *extProc) exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err
		return true, err
	default:
		return false, nil
	}
}

// Issue 7, point 5: an empty or garbled spool seq file made posture.ext exit
// on every start, and a restart reported the Entra device id as empty
// because the fact query ran before posture_entra was registered. Both over
// the real binary.
func TestBinaryRestartWithGarbledSeqKeepsReportingAndIdentity(t *testing.T) {
	sock := shortSocket(t, "pbin")
	startOsqueryd(t, sock, "darwin")

	ca := fakehub.NewCA(t, clock.Real{})
	st := fakehub.NewState()
	const fallback = "device-from-fallback"
	st.PolicySet = &posturev1.PolicySet{
		Version:  "bin-1",
		Interval: durationpb.New(time.Hour),
		Policies: []*posturev1.AgentPolicy{
			{Id: "filevault", Revision: 1, Query: "SELECT 1 FROM disk_encryption WHERE encrypted = 1 AND filevault_status = 'on'"},
		},
		// Reads the extension's own table: before it is registered the query
		// fails ("no such table"); after, it answers (the fallback on a host
		// with no registration).
		Facts: []*posturev1.FactQuery{
			{Name: "entra_device_id", Query: "SELECT COALESCE((SELECT device_id FROM posture_entra LIMIT 1), '" + fallback + "') AS device_id"},
		},
	}
	hub := fakehub.Start(t, st, ca, "")
	hubAddr, caFile := hubFlags(t, hub, ca)
	stateDir := t.TempDir()

	// First run: enroll, report, cache the policy set.
	p := startExt(t, sock, hubAddr, caFile, stateDir)
	poll(t, "first result", func() bool { return countResults(st, "filevault") >= 1 })
	poll(t, "identity fact", func() bool {
		st.Mu.Lock()
		defer st.Mu.Unlock()
		return len(st.Facts) > 0
	})
	p.stop(t)

	for _, garbage := range []string{"", "\x00\x00garbage\n"} {
		if err := os.WriteFile(filepath.Join(stateDir, "spool", "seq"), []byte(garbage), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(stateDir, "spool", "seq.bak")); err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
		st.Mu.Lock()
		before := len(st.Batches)
		st.Mu.Unlock()
		p = startExt(t, sock, hubAddr, caFile, stateDir)
		poll(t, "results after a start with a damaged seq file", func() bool {
			if done, err := p.exited(); done {
				t.Fatalf("posture.ext exited with a damaged seq file (%q): %v", garbage, err)
			}
			st.Mu.Lock()
			defer st.Mu.Unlock()
			return len(st.Batches) > before
		})
		p.stop(t)
	}

	st.Mu.Lock()
	defer st.Mu.Unlock()
	// The same batch sent again (it was not acked before a stop) is a
	// redelivery; a seq carrying different results is a reuse.
	seen := map[uint64]*posturev1.ResultBatch{}
	for _, b := range st.Batches {
		if prev, ok := seen[b.Batch.GetSeq()]; ok && !proto.Equal(prev, b.Batch) {
			t.Errorf("seq %d reused for other results after the seq file was damaged", b.Batch.GetSeq())
		}
		seen[b.Batch.GetSeq()] = b.Batch
	}
	for i, f := range st.Facts {
		if v, ok := f["entra_device_id"]; ok && v != fallback {
			t.Errorf("fact report %d cleared the identity: entra_device_id=%q (want %q or absent)", i, v, fallback)
		}
	}
}
