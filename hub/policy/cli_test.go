package policy

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestLintCommand(t *testing.T) {
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string   // substring
		stderr []string // substrings
	}{
		{
			name:   "good pack",
			args:   []string{"testdata/good"},
			code:   ExitOK,
			stdout: "testdata/good: 6 policies, 2 teams, 3 facts in 5 file(s), 1 warning(s)",
			stderr: []string{"testdata/good/fleet.yml:25: warning: kind: query ignored"},
		},
		{
			name:   "strict makes warnings fail",
			args:   []string{"testdata/good", "--strict"},
			code:   ExitLint,
			stderr: []string{"warning: kind: query ignored"},
		},
		{
			name:   "single file",
			args:   []string{"testdata/good/macos.yml"},
			code:   ExitOK,
			stdout: "testdata/good/macos.yml: 3 policies, 0 teams, 0 facts in 1 file(s)",
		},
		{
			name: "bad pack",
			args: []string{"testdata/bad"},
			code: ExitLint,
			stderr: []string{
				"testdata/bad/policies.yml:30: DELETE is not allowed",
				"testdata/bad/policies.yml:11: duplicate policy id \"dup\" (first defined at testdata/bad/policies.yml:6)",
				"33 error(s)",
			},
		},
		{name: "no folder", args: nil, code: ExitUsage, stderr: []string{"usage: posture-hub policies lint"}},
		{name: "two folders", args: []string{"a", "b"}, code: ExitUsage},
		{name: "unknown flag", args: []string{"--nope", "testdata/good"}, code: ExitUsage, stderr: []string{"flag provided but not defined: -nope"}},
		{name: "help", args: []string{"-h"}, code: ExitOK, stderr: []string{"usage:"}},
		{name: "missing folder", args: []string{"testdata/missing"}, code: ExitLint, stderr: []string{"testdata/missing"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := LintCommand(tc.args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, tc.code, out.String(), errb.String())
			}
			if !strings.Contains(out.String(), tc.stdout) {
				t.Errorf("stdout %q lacks %q", out.String(), tc.stdout)
			}
			for _, s := range tc.stderr {
				if !strings.Contains(errb.String(), s) {
					t.Errorf("stderr lacks %q:\n%s", s, errb.String())
				}
			}
		})
	}
}

// fakeAdmin answers ApplyPolicies; other methods are not used by the CLI
// and would panic through the nil embedded interface.
type fakeAdmin struct {
	posturev1.AdminServiceClient
	calls   int
	req     *posturev1.ApplyPoliciesRequest
	resp    *posturev1.ApplyPoliciesResponse
	respErr error
}

func (f *fakeAdmin) ApplyPolicies(_ context.Context, req *posturev1.ApplyPoliciesRequest, _ ...grpc.CallOption) (*posturev1.ApplyPoliciesResponse, error) {
	f.calls++
	f.req = req
	return f.resp, f.respErr
}

func TestApplyCommandDryRun(t *testing.T) {
	fake := &fakeAdmin{resp: &posturev1.ApplyPoliciesResponse{DryRun: true, Changes: []*posturev1.Change{
		{Kind: "policy", Id: "macos-filevault", Action: posturev1.ChangeAction_CHANGE_ACTION_CHANGED, Fields: []string{"query"}, Revision: 3},
		{Kind: "policy", Id: "macos-firewall", Action: posturev1.ChangeAction_CHANGE_ACTION_ADDED, Revision: 1},
		{Kind: "team", Id: "engineering", Action: posturev1.ChangeAction_CHANGE_ACTION_UNCHANGED},
	}}}
	var out, errb bytes.Buffer
	// Flags after the folder, as people type them.
	code := ApplyCommand(context.Background(), fake, []string{"testdata/good", "--dry-run", "--prune"}, &out, &errb)
	if code != ExitOK {
		t.Fatalf("exit %d\nstderr: %s", code, errb.String())
	}
	if fake.calls != 1 || !fake.req.GetDryRun() || !fake.req.GetPrune() {
		t.Fatalf("request dry_run=%v prune=%v calls=%d", fake.req.GetDryRun(), fake.req.GetPrune(), fake.calls)
	}
	if len(fake.req.GetPolicies()) != 6 || len(fake.req.GetTeams()) != 2 {
		t.Errorf("sent %d policies, %d teams", len(fake.req.GetPolicies()), len(fake.req.GetTeams()))
	}
	want := "Dry run: nothing was changed. Apply would make these changes:\n" +
		"~ policy  macos-filevault  query (revision 2 → 3: older results no longer count)\n" +
		"+ policy  macos-firewall   (revision 1)\n" +
		"\npolicies: 1 added, 1 changed, 0 removed, 0 unchanged\n" +
		"teams: 0 added, 0 changed, 0 removed, 1 unchanged\n"
	if got := trimLines(out.String()); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}
	var facts []string
	for _, f := range fake.req.GetFacts() {
		facts = append(facts, f.GetName()+"/"+f.GetPlatform())
	}
	if got := strings.Join(facts, " "); got != "entra_device_id/darwin entra_device_id/windows user_principal_name/" {
		t.Errorf("sent facts %s", got)
	}
}

func TestApplyCommandApplied(t *testing.T) {
	fake := &fakeAdmin{resp: &posturev1.ApplyPoliciesResponse{Changes: []*posturev1.Change{
		{Kind: "policy", Id: "a", Action: posturev1.ChangeAction_CHANGE_ACTION_REMOVED},
	}}}
	var out, errb bytes.Buffer
	code := ApplyCommand(context.Background(), fake, []string{"testdata/good/macos.yml"}, &out, &errb)
	if code != ExitOK || fake.req.GetDryRun() || fake.req.GetPrune() {
		t.Fatalf("exit %d, dry_run=%v prune=%v\n%s", code, fake.req.GetDryRun(), fake.req.GetPrune(), errb.String())
	}
	if !strings.HasPrefix(out.String(), "Applied:\n- policy  a") {
		t.Errorf("stdout = %q", out.String())
	}
}

func TestApplyCommandRefusals(t *testing.T) {
	onlyTeams := t.TempDir()
	if err := os.WriteFile(filepath.Join(onlyTeams, "teams.yml"), []byte("- name: a\n  settings: {conditional_access: true}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		respErr error
		code    int
		called  bool
		stderr  string
	}{
		{name: "lint errors", args: []string{"testdata/bad"}, code: ExitLint, stderr: "nothing applied: fix the errors above first"},
		{name: "prune with no policies", args: []string{"--prune", onlyTeams}, code: ExitLint, stderr: "refusing --prune with no policies"},
		{name: "usage", args: []string{}, code: ExitUsage, stderr: "usage: posture-hub policies apply"},
		{
			name: "server refuses", args: []string{onlyTeams},
			respErr: status.Error(codes.PermissionDenied, "token role observer cannot apply"),
			code:    ExitLint, called: true,
			stderr: "apply failed, nothing changed: PermissionDenied: token role observer cannot apply",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fake := &fakeAdmin{resp: &posturev1.ApplyPoliciesResponse{}, respErr: tc.respErr}
			var out, errb bytes.Buffer
			code := ApplyCommand(context.Background(), fake, tc.args, &out, &errb)
			if code != tc.code {
				t.Errorf("exit %d, want %d\nstderr: %s", code, tc.code, errb.String())
			}
			if (fake.calls > 0) != tc.called {
				t.Errorf("ApplyPolicies called %d times, want called=%v", fake.calls, tc.called)
			}
			if !strings.Contains(errb.String(), tc.stderr) {
				t.Errorf("stderr lacks %q:\n%s", tc.stderr, errb.String())
			}
		})
	}
}

func TestParseInterleaved(t *testing.T) {
	var out bytes.Buffer
	code := LintCommand([]string{"--", "--strict"}, &out, &out)
	// "--strict" after "--" is a folder name, which does not exist.
	if code != ExitLint || !strings.Contains(out.String(), "--strict") {
		t.Errorf("exit %d, output %q", code, out.String())
	}
}
