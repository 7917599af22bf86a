package policy_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"github.com/posture-dev/posture/hub/admin"
	"github.com/posture-dev/posture/hub/policy"
	"github.com/posture-dev/posture/hub/store"
	"github.com/posture-dev/posture/hub/store/sqlite"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// quietStreams stands in for the agent stream registry.
type quietStreams struct{ changed atomic.Int32 }

func (*quietStreams) Connected(string) bool                   { return false }
func (*quietStreams) Send(string, *posturev1.HubMessage) bool { return false }
func (*quietStreams) Disable(string, string) bool             { return false }
func (s *quietStreams) PoliciesChanged()                      { s.changed.Add(1) }

// TestApplyAgainstHub runs the CLI against the real AdminService and SQLite
// store over loopback gRPC: dry run, apply, an edit that bumps a revision,
// prune, and a refused tree.
func TestApplyAgainstHub(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "hub.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	streams := &quietStreams{}
	srv := admin.New(admin.Config{
		Store: st, Streams: streams,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// Calls run as an admin token (relaxing a team needs one).
	gs := grpc.NewServer(grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		return h(admin.WithCaller(ctx, store.APIToken{Name: "test", Role: store.RoleAdmin}), req)
	}))
	posturev1.RegisterAdminServiceServer(gs, srv)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := posturev1.NewAdminServiceClient(conn)

	run := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		code := policy.ApplyCommand(ctx, client, args, &out, &errb)
		return code, trim(out.String()), errb.String()
	}

	// Dry run of the good pack: everything added, nothing stored.
	code, out, stderr := run("testdata/good", "--dry-run")
	if code != 0 {
		t.Fatalf("dry run exit %d: %s", code, stderr)
	}
	wantDry := `Dry run: nothing was changed. Apply would make these changes:
+ policy  gatekeeper-is-enabled              (revision 1)
+ policy  linux-firewall                     (revision 1)
+ policy  linux-macos-ssh-password-auth-off  (revision 1)
+ policy  macos-filevault                    (revision 1)
+ policy  macos-firewall                     (revision 1)
+ policy  windows-bitlocker-enabled          (revision 1)
+ team    contractors
+ team    engineering
+ fact    entra_device_id:darwin
+ fact    entra_device_id:windows
+ fact    user_principal_name

policies: 6 added, 0 changed, 0 removed, 0 unchanged
teams: 2 added, 0 changed, 0 removed, 0 unchanged
facts: 3 added, 0 changed, 0 removed, 0 unchanged
`
	if out != wantDry {
		t.Errorf("dry run output:\n%s\nwant:\n%s", out, wantDry)
	}
	if ps, err := st.ListPolicies(ctx); err != nil || len(ps) != 0 {
		t.Fatalf("dry run stored %d policies (err %v)", len(ps), err)
	}

	// Apply for real.
	if code, out, stderr = run("testdata/good"); code != 0 || !strings.HasPrefix(out, "Applied:\n") {
		t.Fatalf("apply exit %d:\n%s\n%s", code, out, stderr)
	}
	ps, err := st.ListPolicies(ctx)
	if err != nil || len(ps) != 6 {
		t.Fatalf("stored %d policies (err %v)", len(ps), err)
	}
	if streams.changed.Load() != 1 {
		t.Errorf("PoliciesChanged called %d times, want 1", streams.changed.Load())
	}

	// Edit a copy: change one query and severity, drop the Linux file.
	dir := t.TempDir()
	copyTree(t, "testdata/good", dir)
	macos := filepath.Join(dir, "macos.yml")
	b, err := os.ReadFile(macos)
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(b), "query: SELECT 1 FROM alf WHERE global_state >= 1\n  resolution: Open System Settings > Network > Firewall and turn it on.\n  severity: medium",
		"query: SELECT 1 FROM alf WHERE global_state = 2\n  resolution: Open System Settings > Network > Firewall and turn it on.\n  severity: high", 1)
	if edited == string(b) {
		t.Fatal("test edit did not apply")
	}
	if err := os.WriteFile(macos, []byte(edited), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "nested")); err != nil {
		t.Fatal(err)
	}
	code, out, stderr = run("--dry-run", "--prune", dir)
	if code != 0 {
		t.Fatalf("second dry run exit %d: %s", code, stderr)
	}
	wantEdit := `Dry run: nothing was changed. Apply would make these changes:
- policy  linux-firewall
~ policy  macos-firewall  query, severity (revision 1 → 2: older results no longer count)

policies: 0 added, 1 changed, 1 removed, 4 unchanged
teams: 0 added, 0 changed, 0 removed, 2 unchanged
facts: 0 added, 0 changed, 0 removed, 3 unchanged
`
	if out != wantEdit {
		t.Errorf("edit dry run output:\n%s\nwant:\n%s", out, wantEdit)
	}

	// A tree with lint errors never reaches the hub; the stored set is intact.
	if code, _, stderr = run("testdata/bad", "--prune"); code != policy.ExitLint || !strings.Contains(stderr, "nothing applied") {
		t.Errorf("bad tree exit %d: %s", code, stderr)
	}
	if ps, err := st.ListPolicies(ctx); err != nil || len(ps) != 6 {
		t.Errorf("after refused apply: %d policies (err %v)", len(ps), err)
	}
}

func copyTree(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(from, p)
		if err != nil {
			return err
		}
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(to, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(to, rel), b, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func trim(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.TrimRight(l, " ")
	}
	return strings.Join(lines, "\n")
}
