package storetest

import (
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

var auditTests = []suiteTest{
	{"AuditLog", testAuditLog},
	{"AuditLogInvalid", testAuditLogInvalid},
}

func testAuditLog(t *testing.T, s store.Store) {
	if got := must(s.ListAuditEvents(ctx(t), store.AuditFilter{}))(t); len(got) != 0 {
		t.Fatalf("empty log lists %+v", got)
	}
	events := []store.AuditEvent{
		{At: at(0), Actor: "ci", ActorRole: store.RoleMaintainer, Action: "ApplyPolicies", Target: "policies", Source: "10.0.0.1:5555", Result: "ok"},
		{At: at(time.Minute), Actor: "alice", ActorRole: store.RoleAdmin, Action: "UpdateTeam", Target: "team/default",
			Result: "ok", Before: `{"conditionalAccess":true}`, After: `{"conditionalAccess":false}`},
		{At: at(2 * time.Minute), Actor: "ci", ActorRole: store.RoleMaintainer, Action: "UpdateTeam", Target: "team/default",
			Result: "PermissionDenied", Error: "needs role admin"},
		{At: at(2 * time.Minute), Actor: "local", ActorRole: store.RoleAdmin, Action: "tokens create", Target: "token/bob", Result: "ok"},
	}
	for _, e := range events {
		noErr(t, s.RecordAuditEvent(ctx(t), e))
	}
	all := must(s.ListAuditEvents(ctx(t), store.AuditFilter{}))(t)
	if len(all) != 4 {
		t.Fatalf("got %d events, want 4", len(all))
	}
	// Newest first, in the order written (two share a time).
	for i, want := range []string{"tokens create", "UpdateTeam", "UpdateTeam", "ApplyPolicies"} {
		if all[i].Action != want {
			t.Errorf("event %d action = %q, want %q", i, all[i].Action, want)
		}
		if i > 0 && all[i].ID >= all[i-1].ID {
			t.Errorf("ids not decreasing: %d then %d", all[i-1].ID, all[i].ID)
		}
	}
	got := all[2]
	want := events[1]
	want.ID = got.ID
	want.At = micro(want.At)
	if got != want {
		t.Errorf("round trip:\n got %+v\nwant %+v", got, want)
	}
	if got := must(s.ListAuditEvents(ctx(t), store.AuditFilter{Actor: "ci"}))(t); len(got) != 2 || got[0].Result != "PermissionDenied" {
		t.Errorf("actor filter: %+v", got)
	}
	if got := must(s.ListAuditEvents(ctx(t), store.AuditFilter{Action: "UpdateTeam", Actor: "alice"}))(t); len(got) != 1 || got[0].Actor != "alice" {
		t.Errorf("action+actor filter: %+v", got)
	}
	if got := must(s.ListAuditEvents(ctx(t), store.AuditFilter{Since: at(time.Minute)}))(t); len(got) != 3 {
		t.Errorf("since filter: %d events, want 3", len(got))
	}
	if got := must(s.ListAuditEvents(ctx(t), store.AuditFilter{Limit: 1}))(t); len(got) != 1 || got[0].Action != "tokens create" {
		t.Errorf("limit 1: %+v", got)
	}
}

func testAuditLogInvalid(t *testing.T, s store.Store) {
	for name, e := range map[string]store.AuditEvent{
		"no action": {At: at(0), Actor: "x", Result: "ok"},
		"no result": {At: at(0), Actor: "x", Action: "DeleteHost"},
		"no time":   {Actor: "x", Action: "DeleteHost", Result: "ok"},
	} {
		t.Run(name, func(t *testing.T) { wantErr(t, s.RecordAuditEvent(ctx(t), e), store.ErrInvalid) })
	}
}
