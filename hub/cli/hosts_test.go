package cli

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

func TestCLIHostsIdentityAndVerdict(t *testing.T) {
	c := startCLIHub(t)

	if out := c.ok(t, "hosts", "unmapped"); strings.TrimSpace(out) != "ID  HOSTNAME  REASON" {
		t.Fatalf("unmapped hosts on a fresh hub:\n%s", out)
	}
	var unmapped posturev1.ListUnmappedHostsResponse
	c.jsonOut(t, &unmapped, "hosts", "unmapped")
	if len(unmapped.GetHosts()) != 0 {
		t.Fatalf("unmapped on a fresh hub: %v", unmapped.GetHosts())
	}

	c.enrollHost(t, "host-1", "mac-1")
	out := c.ok(t, "hosts", "unmapped")
	if !strings.Contains(out, "host-1") || !strings.Contains(out, "mac-1") || !strings.Contains(out, "not reported its Entra registration") {
		t.Fatalf("unmapped after enrolling:\n%s", out)
	}

	if errs := c.fails(t, "hosts", "set-entra-id", "host-1", "not-a-guid"); !strings.Contains(errs, "GUID") {
		t.Fatalf("bad device id: %q", errs)
	}
	if errs := c.fails(t, "hosts", "set-entra-id", "host-1"); !strings.Contains(errs, "want 2 argument(s)") {
		t.Fatalf("missing device id: %q", errs)
	}
	const device = "3fa85f64-5717-4562-b3fc-2c963f66afa6"
	if out := c.ok(t, "hosts", "set-entra-id", "host-1", strings.ToUpper(device)); !strings.Contains(out, device) {
		t.Fatalf("set-entra-id output: %q", out)
	}
	c.jsonOut(t, &unmapped, "hosts", "unmapped")
	if len(unmapped.GetHosts()) != 0 {
		t.Fatalf("a mapped host is listed as unmapped: %v", unmapped.GetHosts())
	}
	var h posturev1.Host
	c.jsonOut(t, &h, "hosts", "get", "host-1")
	if h.GetEntraDeviceIdOverride() != device {
		t.Fatalf("override: %v", &h)
	}

	// The override made the engine evaluate the host; the CLI shows it.
	deadline := time.Now().Add(20 * time.Second)
	for h.GetVerdict().GetState() == "" {
		if time.Now().After(deadline) {
			t.Fatal("no verdict computed for host-1")
		}
		c.jsonOut(t, &h, "hosts", "get", "host-1")
	}
	get := c.ok(t, "hosts", "get", "host-1")
	if !strings.Contains(get, "verdict "+h.GetVerdict().GetState()+" ("+h.GetVerdict().GetCause()+")") || !strings.Contains(get, "entra device "+device) {
		t.Fatalf("hosts get:\n%s", get)
	}
	list := c.ok(t, "hosts", "list")
	lines := strings.Split(strings.TrimSpace(list), "\n")
	if !strings.Contains(lines[0], "VERDICT") || len(lines) != 2 || !strings.Contains(lines[1], h.GetVerdict().GetState()) {
		t.Fatalf("hosts list:\n%s", list)
	}

	// --clear after the host id (flags may follow positionals).
	c.ok(t, "hosts", "set-entra-id", "host-1", "--clear")
	c.jsonOut(t, &unmapped, "hosts", "unmapped")
	if len(unmapped.GetHosts()) != 1 || unmapped.GetHosts()[0].GetId() != "host-1" {
		t.Fatalf("after --clear: %v", unmapped.GetHosts())
	}
}

func TestPrintVerdictReasons(t *testing.T) {
	deadline := timestamppb.New(time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC))
	h := &posturev1.Host{Verdict: &posturev1.Verdict{
		State: "NONCOMPLIANT", Cause: "failing", Desired: "noncompliant", NextTransition: deadline,
		Reasons: []*posturev1.VerdictReason{
			{PolicyId: "filevault", PolicyName: "FileVault on", Status: posturev1.ResultStatus_RESULT_STATUS_FAIL, Severity: "high", Blocking: true},
			{PolicyId: "firewall", Status: posturev1.ResultStatus_RESULT_STATUS_FAIL, Severity: "high", GraceDeadline: deadline},
			{PolicyId: "screensaver", Status: posturev1.ResultStatus_RESULT_STATUS_FAIL, Severity: "medium", Exempt: true},
			{PolicyId: "bluetooth", Status: posturev1.ResultStatus_RESULT_STATUS_FAIL, Severity: "low", Allowed: true},
			{PolicyId: "new-policy", Severity: "high"},
		},
	}, UnmappedReason: "no Entra registration"}
	var b bytes.Buffer
	if err := printVerdict(&b, h); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	want := map[string][]string{
		"filevault":   {"blocking", "FileVault on", "FAIL", "high"},
		"firewall":    {"grace", "FAIL", fmtTime(deadline)},
		"screensaver": {"exempt"},
		"bluetooth":   {"allowed", "low"},
		"new-policy":  {"missing", "MISSING"},
	}
	for _, l := range strings.Split(out, "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		for _, w := range want[f[1]] {
			if !strings.Contains(l, w) {
				t.Errorf("reason line %q lacks %q", l, w)
			}
		}
		delete(want, f[1])
	}
	if len(want) != 0 {
		t.Errorf("reasons not printed: %v\n%s", want, out)
	}
	for _, s := range []string{"verdict NONCOMPLIANT (failing)", "writes noncompliant", "next change " + fmtTime(deadline), "unmapped: no Entra registration"} {
		if !strings.Contains(out, s) {
			t.Errorf("verdict output lacks %q:\n%s", s, out)
		}
	}
}

func TestPrintTrust(t *testing.T) {
	h := &posturev1.Host{
		Id: "h2", DuplicateOf: "h1", ReenrollCount: 2, ReenrolledAt: timestamppb.New(time.Date(2030, 1, 2, 12, 0, 0, 0, time.UTC)),
		EntraClaim: "conflict", EntraClaimHosts: []string{"h1", "h3"}, EntraClaimReason: "Entra device d is also claimed by another host",
	}
	var b bytes.Buffer
	printTrust(&b, h)
	for _, want := range []string{"DUPLICATE of host h1", "re-enrolled 2 time(s), last 2030-01-02", "entra claim conflict: Entra device d", "[other hosts: h1, h3]"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("printTrust lacks %q:\n%s", want, b.String())
		}
	}
	if got := unmappedReason(h); !strings.Contains(got, "h3") {
		t.Errorf("unmapped reason %q", got)
	}
	b.Reset()
	printTrust(&b, &posturev1.Host{Id: "plain", EntraClaim: "owner"})
	if b.Len() != 0 {
		t.Errorf("a plain host prints trust lines: %q", b.String())
	}
}

func TestCLIHostsSetUPN(t *testing.T) {
	c := startCLIHub(t)
	c.enrollHost(t, "host-1", "mac-1")
	if err := c.hub.Store.SetHostIdentity(context.Background(), "host-1", "", "kiosk@example.com"); err != nil {
		t.Fatal(err)
	}
	if get := c.ok(t, "hosts", "get", "host-1"); !strings.Contains(get, "user kiosk@example.com\n") {
		t.Fatalf("hosts get before the override:\n%s", get)
	}
	if errs := c.fails(t, "hosts", "set-upn", "host-1", "not a upn"); !strings.Contains(errs, "user@example.com") {
		t.Fatalf("bad upn: %q", errs)
	}
	if errs := c.fails(t, "hosts", "set-upn", "nope", "ada@example.com"); !strings.Contains(errs, "not found") && !strings.Contains(errs, "NotFound") {
		t.Fatalf("unknown host: %q", errs)
	}
	if out := c.ok(t, "hosts", "set-upn", "host-1", "ada@example.com"); !strings.Contains(out, "ada@example.com") {
		t.Fatalf("set-upn output: %q", out)
	}
	if get := c.ok(t, "hosts", "get", "host-1"); !strings.Contains(get, "user ada@example.com (set by admin)") {
		t.Fatalf("hosts get after the override:\n%s", get)
	}
	var h posturev1.Host
	c.jsonOut(t, &h, "hosts", "get", "host-1")
	if h.GetUserPrincipalName() != "ada@example.com" || h.GetUserPrincipalNameOverride() != "ada@example.com" {
		t.Fatalf("host: %v", &h)
	}
	// The change is in the audit log with who and what (before/after).
	var resp posturev1.ListAuditEventsResponse
	c.jsonOut(t, &resp, "audit", "list", "--action", "SetHostUserPrincipalName")
	ev := resp.GetEvents()
	if len(ev) != 3 || ev[0].GetActor() != "cli-test" || ev[0].GetTarget() != "host-1" || ev[0].GetResult() != "ok" ||
		!strings.Contains(ev[0].GetAfter(), "ada@example.com") || strings.Contains(ev[0].GetBefore(), "ada@example.com") {
		t.Fatalf("audit events: %v", ev)
	}
	// "" clears it: the reported user applies again.
	if out := c.ok(t, "hosts", "set-upn", "host-1", ""); !strings.Contains(out, "in force: kiosk@example.com") {
		t.Fatalf("clear output: %q", out)
	}
	c.ok(t, "hosts", "set-upn", "host-1", "ada@example.com")
	c.ok(t, "hosts", "set-upn", "host-1", "--clear")
	if get := c.ok(t, "hosts", "get", "host-1"); !strings.Contains(get, "user kiosk@example.com\n") {
		t.Fatalf("hosts get after --clear:\n%s", get)
	}
}
