package storetest

import (
	"fmt"
	"testing"
	"time"

	"github.com/posture-dev/posture/hub/store"
)

func init() {
	hostTests = append(hostTests,
		suiteTest{"Hosts/OfUser", testHostsOfUser},
		suiteTest{"Hosts/OfUserRevokedAndDuplicates", testHostsOfUserRevokedDuplicates},
	)
}

// ofUser returns "hostname:state" of each host HostsOfUser returns for upn
// ("-" when the host has no verdict).
func ofUser(t *testing.T, s store.Store, upn string, limit int) []string {
	t.Helper()
	out := []string{}
	for _, hv := range must(s.HostsOfUser(ctx(t), upn, limit))(t) {
		st := "-"
		if hv.Verdict != nil {
			st = hv.Verdict.State
			eq(t, "verdict host", hv.Verdict.HostID, hv.Host.ID)
		}
		out = append(out, hv.Host.Hostname+":"+st)
	}
	return out
}

func testHostsOfUser(t *testing.T, s store.Store) {
	withUPN := func(name, upn string) store.Host {
		h := enroll(t, s, name, store.DefaultTeam)
		noErr(t, s.SetHostIdentity(ctx(t), h.ID, "dev-"+name, upn))
		return h
	}
	a1 := withUPN("a1", "Ada@Example.com")
	withUPN("a2", "ada@example.com")
	withUPN("b1", "bob@example.com")
	withUPN("nobody", "")
	// An admin's override wins over what the host reports, both ways.
	toAda := withUPN("kiosk", "kiosk@example.com")
	noErr(t, s.SetHostUPNOverride(ctx(t), toAda.ID, "ADA@example.COM"))
	fromAda := withUPN("a-lent", "ada@example.com")
	noErr(t, s.SetHostUPNOverride(ctx(t), fromAda.ID, "bob@example.com"))
	// Near misses of ada's UPN are somebody else's.
	withUPN("prefix", "ada@example.com.evil")
	withUPN("suffix", "xada@example.com")
	withUPN("like", "ad_@example.com")
	withUPN("space", "ada@example.com ")

	v := verdict(a1.ID, "NONCOMPLIANT", nil)
	v.Cause = "device_conflict"
	noErr(t, s.SaveVerdict(ctx(t), v, 0, nil))

	eq(t, "ada's hosts", ofUser(t, s, "ada@example.com", 0), []string{"a1:NONCOMPLIANT", "a2:-", "kiosk:-"})
	eq(t, "ada's hosts, upper case", ofUser(t, s, "ADA@EXAMPLE.COM", 0), []string{"a1:NONCOMPLIANT", "a2:-", "kiosk:-"})
	eq(t, "bob's hosts", ofUser(t, s, "bob@example.com", 0), []string{"a-lent:-", "b1:-"})
	eq(t, "kiosk user after the override", ofUser(t, s, "kiosk@example.com", 0), []string{})
	eq(t, "empty user", ofUser(t, s, "", 0), []string{})
	eq(t, "a LIKE pattern is no wildcard", ofUser(t, s, "ad_@example.com", 0), []string{"like:-"})
	eq(t, "limit", ofUser(t, s, "ada@example.com", 2), []string{"a1:NONCOMPLIANT", "a2:-"})

	got := must(s.HostsOfUser(ctx(t), "ada@example.com", 1))(t)
	want := v
	want.Version = 1
	want.UpdatedAt = micro(v.UpdatedAt)
	eq(t, "joined verdict", *got[0].Verdict, want)
	eq(t, "joined host", got[0].Host, must(s.GetHost(ctx(t), a1.ID))(t))

	// Clearing the override gives the host back to its reported user.
	noErr(t, s.SetHostUPNOverride(ctx(t), toAda.ID, ""))
	eq(t, "kiosk user after clearing", ofUser(t, s, "kiosk@example.com", 0), []string{"kiosk:-"})
}

// Revoked hosts and duplicates are the user's hosts too: the caller decides
// what to show, so the store returns them with what tells them apart.
func testHostsOfUserRevokedDuplicates(t *testing.T, s store.Store) {
	orig := enroll(t, s, "mac", "team-a")
	noErr(t, s.SetHostIdentity(ctx(t), orig.ID, "dev-mac", "ada@example.com"))
	dup := must(s.EnrollHost(ctx(t), store.Host{Team: "team-b", Hostname: "mac", Platform: "darwin",
		HardwareUUID: orig.HardwareUUID, EnrolledAt: at(time.Hour)}))(t)
	eq(t, "duplicate of", dup.DuplicateOf, orig.ID)
	noErr(t, s.SetHostIdentity(ctx(t), dup.ID, "dev-mac", "ada@example.com"))
	old := enroll(t, s, "old", store.DefaultTeam)
	noErr(t, s.SetHostIdentity(ctx(t), old.ID, "dev-old", "Ada@example.com"))
	must(s.RevokeHost(ctx(t), old.ID, at(2*time.Hour)))(t)

	got := must(s.HostsOfUser(ctx(t), "ada@example.com", 0))(t)
	var desc []string
	for _, hv := range got {
		desc = append(desc, fmt.Sprintf("%s dup=%v revoked=%v", hv.Host.ID, hv.Host.DuplicateOf == orig.ID, hv.Host.Revoked()))
	}
	// Sorted by hostname, then id: the two "mac" hosts by id.
	first, second := orig.ID, dup.ID
	if second < first {
		first, second = second, first
	}
	eq(t, "ada's hosts", desc, []string{
		fmt.Sprintf("%s dup=%v revoked=false", first, first == dup.ID),
		fmt.Sprintf("%s dup=%v revoked=false", second, second == dup.ID),
		old.ID + " dup=false revoked=true",
	})
	// Deleting a host removes it from its user's list.
	noErr(t, s.DeleteHost(ctx(t), old.ID))
	eq(t, "after delete", len(must(s.HostsOfUser(ctx(t), "ada@example.com", 0))(t)), 2)
}
