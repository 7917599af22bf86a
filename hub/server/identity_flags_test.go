package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	posturev1 "github.com/posture-dev/posture/api/posture/v1"
)

// checkDuplicateFlag: the duplicate is visible in hosts get and list.
func checkDuplicateFlag(t *testing.T, th *idHub, dup, of string) {
	t.Helper()
	if h := th.host(t, dup); h.GetDuplicateOf() != of {
		t.Fatalf("duplicate_of = %q, want %q", h.GetDuplicateOf(), of)
	}
	checkAudit(t, th, "host enrolled as duplicate", dup)
	if h := th.host(t, of); h.GetDuplicateOf() != "" || h.GetReenrollCount() != 0 {
		t.Fatalf("the original is flagged: %v", h)
	}
	hs, err := th.adminc.ListHosts(th.actx, &posturev1.ListHostsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range hs.GetHosts() {
		if h.GetId() == dup && h.GetDuplicateOf() == of {
			return
		}
	}
	t.Fatalf("hosts list does not show the duplicate: %v", hs)
}

func checkReenrollFlag(t *testing.T, th *idHub, id string, n int) {
	t.Helper()
	h := th.host(t, id)
	if int(h.GetReenrollCount()) != n || h.GetReenrolledAt() == nil {
		t.Fatalf("re-enroll flag: count %d at %v, want %d", h.GetReenrollCount(), h.GetReenrolledAt(), n)
	}
	checkAudit(t, th, "host re-enrolled", id)
}

// checkAudit: the hub wrote the enroll event to the audit log.
func checkAudit(t *testing.T, th *idHub, action, hostID string) {
	t.Helper()
	ev, err := th.adminc.ListAuditEvents(th.actx, &posturev1.ListAuditEventsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ev.GetEvents() {
		if e.GetAction() == action && e.GetTarget() == "host/"+hostID && e.GetActor() == "hub" {
			return
		}
	}
	t.Fatalf("audit log lacks %q for host %s: %v", action, hostID, ev)
}

// checkConflict: both claimants are NONCOMPLIANT for the conflict, and
// hosts get / hosts unmapped name the other host.
func checkConflict(t *testing.T, th *idHub, a, b, device string) {
	t.Helper()
	eventually(t, "both claimants in conflict", 30*time.Second, func() (bool, string) {
		for _, pair := range [][2]string{{a, b}, {b, a}} {
			h := th.host(t, pair[0])
			if h.GetEntraClaim() != "conflict" || strings.Join(h.GetEntraClaimHosts(), ",") != pair[1] ||
				!strings.Contains(h.GetEntraClaimReason(), device) || h.GetVerdict().GetCause() != "device_conflict" ||
				h.GetVerdict().GetState() != "NONCOMPLIANT" {
				return false, fmt.Sprint(h)
			}
		}
		return true, ""
	})
	un, err := th.adminc.ListUnmappedHosts(th.actx, &posturev1.ListUnmappedHostsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, h := range un.GetHosts() {
		if h.GetEntraClaim() == "conflict" {
			seen[h.GetId()] = true
		}
	}
	if !seen[a] || !seen[b] {
		t.Fatalf("hosts unmapped does not list both claimants: %v", un)
	}
}
